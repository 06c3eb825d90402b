"""Limits from Balance: NotifyClient2 (Tid rule, duplicates, agencies, unknown clients), the GetOverdraftParams
pull, the ban flag, and an agency's customer that never gets an overdraft whatever Balance sends."""

import xmlrpc.client
from decimal import Decimal

import pytest
from django.test import Client

from balance_gateway.models import BalanceNotification
from customers.models import Customer
from overdrafts import selectors
from overdrafts.models import Overdraft
from overdrafts.services import overdrafts_pull
from tests.factories import AgencyFactory, CustomerFactory
from tests.overdrafts.conftest import CUSTOMER, charge, grant, register, verify_ledger_clean
from wallets.models import Account


def notify(settings, payload):
    body = xmlrpc.client.dumps((payload,), methodname="BalanceClient.NotifyClient2")
    return Client().post(f"/balance/notify?secret={settings.BALANCE_NOTIFY_SECRET}", body, content_type="text/xml")


def client_payload(client_id, limit, tid, spent="0.00", term="0000-00-00", ban=0):
    return {"ClientID": client_id, "OverdraftLimit": limit, "OverdraftSpent": spent, "MinPaymentTerm": term,
            "OverdraftBan": ban, "ClientCurrency": "RUB", "Tid": str(tid)}


def ok(response):
    assert response.status_code == 200, response.content
    assert b"SUCCESS" in response.content, response.content
    return response


def limit_of(customer):
    return selectors.overdraft_limit(customer=Customer.objects.get(pk=customer.pk))


@pytest.fixture
def direct(service):
    return CustomerFactory(service=service, external_id="dealer:20101", balance_client_id=100500)


@pytest.mark.django_db
def test_notify_client2_sets_the_limit_and_a_stale_tid_changes_nothing(settings, direct):
    ok(notify(settings, client_payload(100500, "5000.00", 1000, spent="120.50", term="2030-01-31")))
    overdraft = Overdraft.objects.get(customer=direct)
    assert (overdraft.granted_limit, overdraft.balance_spent, str(overdraft.balance_min_payment_term),
            overdraft.last_tid, overdraft.in_balance) == (Decimal("5000.00"), Decimal("120.50"), "2030-01-31", 1000,
                                                          True)
    assert limit_of(direct) == Decimal("5000.00")
    history = overdraft.history.count()

    ok(notify(settings, client_payload(100500, "9000.00", 999)))  # older Tid: stale
    ok(notify(settings, client_payload(100500, "1.00", 1000)))  # same Tid: a duplicate
    overdraft.refresh_from_db()
    assert (overdraft.granted_limit, overdraft.last_tid) == (Decimal("5000.00"), 1000)
    assert overdraft.history.count() == history
    outcomes = dict(BalanceNotification.objects.filter(kind="client").values_list("tid", "outcome"))
    assert outcomes == {1000: "applied", 999: "stale"}

    ok(notify(settings, client_payload(100500, "3000.00", 1001, ban=1)))
    overdraft.refresh_from_db()
    assert (overdraft.granted_limit, overdraft.banned) == (Decimal("3000.00"), True)
    assert limit_of(direct) == Decimal("0.00")  # a ban: no new overdraft spending
    ok(notify(settings, client_payload(100500, "3000.00", 1002, term="", ban="0")))
    assert limit_of(direct) == Decimal("3000.00")


@pytest.mark.django_db
def test_unknown_client_is_not_found_and_an_agency_client_is_stored_not_applied(settings, service):
    response = notify(settings, client_payload(999999, "5000.00", 1))
    assert b"NOT_FOUND" in response.content
    assert not BalanceNotification.objects.exists()
    agency = AgencyFactory(service=service, balance_client_id=777001)
    ok(notify(settings, client_payload(agency.balance_client_id, "5000.00", 2)))
    assert BalanceNotification.objects.get().outcome == "received"
    assert not Overdraft.objects.exists()


@pytest.mark.django_db
def test_malformed_notification_is_refused_and_nothing_is_stored(settings, direct):
    for bad in (client_payload(100500, "-5.00", 1), client_payload(100500, "abc", 1),
                {**client_payload(100500, "5.00", 1), "OverdraftBan": "maybe"},
                {**client_payload(100500, "5.00", 1), "MinPaymentTerm": "31.01.2030"}):
        response = notify(settings, bad)
        assert response.status_code == 400 and b"INVALID_PARAM" in response.content, response.content
    assert not BalanceNotification.objects.exists() and not Overdraft.objects.exists()


@pytest.mark.django_db
def test_an_agency_customer_never_has_an_overdraft_whatever_balance_sends(settings, service, products):
    agency = AgencyFactory(service=service)
    customer = CustomerFactory(service=service, external_id="dealer:20101", agency=agency, balance_client_id=100501)
    ok(notify(settings, client_payload(100501, "5000.00", 5)))
    assert Overdraft.objects.get(customer=customer).granted_limit == Decimal("5000.00")  # stored as sent
    assert limit_of(customer) == Decimal("0.00")
    assert selectors.overdraft_status(customer=customer).granted_by_balance == Decimal("0.00")
    from disbalance.exceptions import InsufficientFunds
    from payments.services import charge_create

    with pytest.raises(InsufficientFunds):
        charge_create(customer=customer, product=products["placement"], amount=Decimal("1.00"))
    assert not Account.objects.filter(customer=customer, kind="spend").exists()


@pytest.mark.django_db(transaction=True)
def test_agency_customer_over_http_with_the_emulator(api, emulator, run_outbox, balance_live, products):
    from tests.overdrafts.conftest import agency_with_contract

    agency_with_contract(api, emulator, run_outbox, payment_type="prepaid", credit_limit="0.00")
    customer = register(api, run_outbox, "dealer:20101", agency="agency:1")
    emulator.grant_overdraft(customer.balance_client_id, Decimal("5000.00"), 15)  # Balance grants it anyway
    assert balance_live.wait_notifications_idle(timeout=10)
    assert Overdraft.objects.get(customer=customer).in_balance
    assert api.get(f"{CUSTOMER}/overdraft").json() == {
        "limit": "0.00", "granted_by_balance": "0.00", "spent": "0.00", "due_at": None, "overdue": False,
        "blocked": False,
    }
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert (wallet["overdraft_limit"], wallet["available"], wallet["payer"]) == ("0.00", "0.00", "agency:1")
    refused = charge(api, "100.00")
    assert refused.status_code == 402 and refused.json()["code"] == "insufficient_funds"
    assert overdrafts_pull()["customers"] == 0  # the pull skips customers served by an agency
    verify_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_the_pull_never_takes_auto_overdraft_settings_for_the_limit(api, emulator, run_outbox, balance, settings,
                                                                   active_customer):
    """GetOverdraftParams answers the client's auto-overdraft settings (ClientLimit), not its overdraft limit:
    the pull counts who has auto-overdraft on and changes no limit (version 1 overwrote real limits with it)."""
    ok(notify(settings, client_payload(active_customer.balance_client_id, "5000.00", 7)))
    assert limit_of(active_customer) == Decimal("5000.00")
    emulator.grant_overdraft(active_customer.balance_client_id, Decimal("5000.00"), 15)
    from balance_gateway.client import BalanceClient

    with BalanceClient() as client:
        client.set_overdraft_params(service_id=7, person_id=active_customer.balance_person_id,
                                    payment_method="bank", currency="RUB", client_limit=Decimal("3000.00"))
    history = Overdraft.objects.get(customer=active_customer).history.count()
    assert overdrafts_pull() == {"customers": 1, "auto_overdraft": 1, "none": 0, "failed": 0, "skipped": 0,
                                 "resent": 0}
    assert limit_of(active_customer) == Decimal("5000.00")
    assert Overdraft.objects.get(customer=active_customer).history.count() == history

    other = register(api, run_outbox, "dealer:2", inn="7707654321")
    assert overdrafts_pull()["none"] == 1 and not Overdraft.objects.filter(customer=other).exists()


@pytest.mark.django_db
def test_a_balance_failure_in_the_pull_is_counted_not_fatal(settings, direct):
    settings.BALANCE_URL = "http://127.0.0.1:9/xmlrpc"
    settings.BALANCE_CONNECT_TIMEOUT = settings.BALANCE_READ_TIMEOUT = 0.2
    assert overdrafts_pull()["failed"] == 1


@pytest.mark.django_db
def test_a_newer_notification_after_a_pull_still_applies(direct):
    grant(direct, "1000.00", tid=10)
    from overdrafts.services import overdraft_apply_balance_params

    assert overdraft_apply_balance_params(customer_id=direct.pk, params=None) == "applied"  # pull: NOT_FOUND
    assert limit_of(direct) == Decimal("0.00")
    assert Overdraft.objects.get(customer=direct).last_tid == 10
    assert grant(direct, "2000.00", tid=11) == "applied"
    assert grant(direct, "9000.00", tid=11) == "stale"
    assert limit_of(direct) == Decimal("2000.00")
