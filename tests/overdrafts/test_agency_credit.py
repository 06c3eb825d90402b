"""Agency credit: the customers of an agency with a postpaid contract share its credit limit; prepaid means none;
the limit comes from the contract, then from GetClientCreditLimits once read; money in frees the credit."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction

from agencies.models import Contract
from agencies.services import agency_contracts_refresh
from overdrafts import selectors
from overdrafts.models import AgencyCredit
from overdrafts.services import agency_credits_pull, lock_agency_credit
from tests.factories import AgencyFactory, CustomerFactory
from tests.overdrafts.conftest import agency_with_contract, charge, pay_topup, register, verify_ledger_clean

A = "/api/v1/customers/dealer:a"
B = "/api/v1/customers/dealer:b"


@pytest.mark.django_db(transaction=True)
def test_two_customers_share_the_postpaid_credit(api, emulator, run_outbox, balance_live, products):
    agency = agency_with_contract(api, emulator, run_outbox, credit_limit="10000.00")
    register(api, run_outbox, "dealer:a", agency="agency:1")
    register(api, run_outbox, "dealer:b", agency="agency:1", inn="7707654321")
    assert api.get(f"{A}/wallet").json()["available"] == "10000.00"

    assert charge(api, "6000.00", customer=A).status_code == 201
    wallet_b = api.get(f"{B}/wallet").json()
    assert (wallet_b["overdraft_limit"], wallet_b["available"], wallet_b["payer"]) == \
        ("4000.00", "4000.00", "agency:1")
    refused = charge(api, "4000.01", customer=B)
    assert refused.status_code == 402 and refused.json()["code"] == "insufficient_funds"
    assert charge(api, "4000.00", customer=B).status_code == 201
    assert charge(api, "0.01", customer=A).status_code == 402
    credit = AgencyCredit.objects.get(agency=agency)
    assert (credit.credit_limit, credit.used, credit.contract_id) == \
        (Decimal("10000.00"), Decimal("10000.00"), Contract.objects.get().balance_contract_id)

    # Agency credit is the agency's debt under its contract: no due date, no block for the customer.
    wallet_a = api.get(f"{A}/wallet").json()
    assert (wallet_a["balance"], wallet_a["debt"], wallet_a["debt_due_at"], wallet_a["overdue"]) == \
        ("-6000.00", "6000.00", None, False)
    assert api.get(f"{A}/overdraft").json()["limit"] == "0.00"

    # The agency pays 2,500.00 for customer A: that frees credit for both.
    pay_topup(api, emulator, run_outbox, balance_live, "2500.00", customer=A)
    assert AgencyCredit.objects.get(agency=agency).used == Decimal("7500.00")
    assert charge(api, "2500.00", customer=B).status_code == 201
    assert charge(api, "0.01", customer=A).status_code == 402
    verify_ledger_clean()

    # Balance's own figure (GetClientCreditLimits) is read by the pull and becomes the limit.
    call_command("run_periodic", "agency_credits_pull")
    credit = AgencyCredit.objects.get(agency=agency)
    assert (credit.balance_limit_total, credit.balance_contract_id) == (Decimal("10000.00"), credit.contract_id)
    assert credit.balance_limit_spent is not None
    agency_contracts_refresh(agency=agency)  # a contract read after it: the contract's figure is used again
    assert credit.balance_refreshed_at < Contract.objects.get().refreshed_at


@pytest.mark.django_db
def test_prepaid_agency_or_no_contract_gives_no_credit(service, products):
    agency = AgencyFactory(service=service)
    customer = CustomerFactory(service=service, agency=agency)
    assert selectors.effective_overdraft_limit(customer=customer) == Decimal("0.00")
    Contract.objects.create(agency=agency, balance_contract_id=1, active=True, payment_type="prepaid",
                            credit_limit=Decimal("5000.00"), services=[service.balance_service_id])
    assert selectors.effective_overdraft_limit(customer=customer) == Decimal("0.00")
    Contract.objects.create(agency=agency, balance_contract_id=2, active=True, payment_type="postpaid",
                            credit_limit=Decimal("5000.00"), services=[service.balance_service_id + 1])
    assert selectors.effective_overdraft_limit(customer=customer) == Decimal("0.00")  # another service
    Contract.objects.create(agency=agency, balance_contract_id=3, active=False, payment_type="postpaid",
                            credit_limit=Decimal("5000.00"), services=[service.balance_service_id])
    assert selectors.effective_overdraft_limit(customer=customer) == Decimal("0.00")  # not active
    Contract.objects.create(agency=agency, balance_contract_id=4, active=True, payment_type="postpaid",
                            credit_limit=Decimal("700.00"), services=[service.balance_service_id])
    assert selectors.effective_overdraft_limit(customer=customer) == Decimal("700.00")
    assert not AgencyCredit.objects.exists()  # a read never writes
    from payments.services import charge_create

    charge_create(customer=customer, product=products["placement"], amount=Decimal("700.00"))
    assert AgencyCredit.objects.get().used == Decimal("700.00")


@pytest.mark.django_db
def test_credit_limit_from_balance_wins_when_read_after_the_contract(service):
    agency = AgencyFactory(service=service)
    contract = Contract.objects.create(agency=agency, balance_contract_id=9, active=True, payment_type="postpaid",
                                       credit_limit=Decimal("1000.00"), services=[])
    with transaction.atomic():
        credit = lock_agency_credit(agency)
    assert selectors.agency_credit_limit(contract=contract, credit=credit) == Decimal("1000.00")
    from django.utils import timezone

    credit.balance_limit_total, credit.balance_contract_id = Decimal("1500.00"), 9
    credit.balance_refreshed_at = timezone.now()
    assert selectors.agency_credit_limit(contract=contract, credit=credit) == Decimal("1500.00")
    credit.balance_contract_id = 8  # another contract's figure does not count
    assert selectors.agency_credit_limit(contract=contract, credit=credit) == Decimal("1000.00")


@pytest.mark.django_db
def test_credit_pull_failure_is_counted(settings, service):
    agency = AgencyFactory(service=service)
    Contract.objects.create(agency=agency, balance_contract_id=9, active=True, payment_type="postpaid",
                            credit_limit=Decimal("1000.00"), services=[])
    settings.BALANCE_URL = "http://127.0.0.1:9/xmlrpc"
    settings.BALANCE_CONNECT_TIMEOUT = settings.BALANCE_READ_TIMEOUT = 0.2
    assert agency_credits_pull() == {"agencies": 1, "refreshed": 0, "failed": 1, "skipped": 0}
