"""Under emulator faults (errors, timeouts, lost responses, duplicated and delayed notifications), 100 top-ups
paid are each credited exactly once, and completions in Balance converge to billing's figures."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction

from customers.models import Customer
from payments import services
from payments.models import BalanceOrder, TopUp
from tests.customers.test_api import COMPANY
from tests.payments.conftest import post
from wallets.models import Account, LedgerTransaction

FAULTS = {"seed": 11, "*": {"error_rate": 0.3, "timeout_rate": 0.2, "lost_response_rate": 0.1},
          "notify": {"duplicate_rate": 0.3, "reorder": True, "delay_ms": 10, "fail_rate": 0.2}}


@pytest.mark.django_db(transaction=True)
def test_hundred_topups_under_faults_credit_once_and_completions_converge(
    api, emulator, run_outbox, balance_live, products, settings
):
    settings.BALANCE_READ_TIMEOUT = 0.3
    for i in range(10):
        body = {**COMPANY, "external_id": f"dealer:{i}", "user_uids": []}
        assert api.post("/api/v1/customers", body, format="json").status_code == 201
    run_outbox()
    assert Customer.objects.filter(status="active").count() == 10

    emulator.set_faults(FAULTS)
    expected: dict[str, Decimal] = {}
    for i in range(10):
        for j in range(10):
            amount = Decimal(100 + 10 * i + j)
            response = post(api, f"/api/v1/customers/dealer:{i}/topups", {"amount": f"{amount:.2f}"})
            assert response.status_code == 201, response.content
            expected[f"dealer:{i}"] = expected.get(f"dealer:{i}", Decimal(0)) + amount
    for _ in range(40):
        run_outbox()
        if not TopUp.objects.filter(status="pending").exists():
            break
    assert not TopUp.objects.exclude(status="awaiting_payment").exists()
    for topup in TopUp.objects.all():
        emulator.pay_request(topup.balance_request_id)
    balance_live.wait_notifications_idle(timeout=60)
    for _ in range(20):  # lost or failed notifications are caught up by the pull job (itself under faults)
        if not TopUp.objects.filter(status="awaiting_payment").exists():
            break
        try:
            services.orders_pull()
        except Exception:
            continue
    assert sorted(set(TopUp.objects.values_list("status", flat=True))) == ["succeeded"]
    for topup in TopUp.objects.all():
        assert LedgerTransaction.objects.filter(type="topup", reference_kind="topup",
                                                reference_id=str(topup.id)).count() == 1
    assert not LedgerTransaction.objects.filter(type="topup", reference_kind="balance_order").exists()
    for external_id, total in expected.items():
        wallet = Account.objects.get(kind="wallet", customer__external_id=external_id, payer_agency=None)
        assert wallet.balance == total

    # Spend, then report until Balance agrees with the ledger.
    for i in range(10):
        customer = Customer.objects.get(external_id=f"dealer:{i}")
        with transaction.atomic():
            services.charge_create(customer=customer, product=products["placement"], amount=Decimal("33.33"))
            services.charge_create(customer=customer, product=products["boost"], amount=Decimal(i + 1))
    for _ in range(40):
        run_outbox()
        try:
            services.spend_report()
        except Exception:
            continue
        if not services.orders_with_unreported_spend().exists() and not BalanceOrder.objects.exclude(
                sync_status="synced").exists():
            break
    emulator.set_faults({})
    services.spend_report()
    completions = {o["ServiceOrderID"]: Decimal(o["CompletionQty"]) for o in emulator.state()["orders"]}
    for order in BalanceOrder.objects.filter(kind="child").select_related("customer", "product"):
        spend = Account.objects.get(kind="spend", customer=order.customer, payer_agency=None,
                                    product_code=order.product.code).balance
        assert completions[str(order.pk)] == spend, order.key
    call_command("verify_ledger")
