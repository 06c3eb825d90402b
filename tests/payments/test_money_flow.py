"""The money core end to end over HTTP with the emulator: top-up paid in Balance, charge, hold, capture, refund,
statement, and spend reported to Balance."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from payments.models import BalanceOrder, TopUp
from tests.payments.conftest import post

CUSTOMER = "/api/v1/customers/dealer:20101"


def verify_ledger_clean():
    call_command("verify_ledger")  # exits 1 (SystemExit) on any difference


def pay_topup(api, emulator, run_outbox, amount):
    response = post(api, f"{CUSTOMER}/topups", {"amount": amount})
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "pending"
    run_outbox()
    topup = api.get(f"/api/v1/topups/{response.json()['id']}").json()
    assert topup["status"] == "awaiting_payment" and topup["payment_url"].startswith("http"), topup
    request_id = int(topup["payment_url"].rstrip("/").rsplit("/", 1)[1])
    emulator.pay_request(request_id)
    return topup


@pytest.mark.django_db(transaction=True)
def test_register_topup_charge_hold_capture_refund_report(api, emulator, run_outbox, balance_live, active_customer,
                                                          products):
    topup = pay_topup(api, emulator, run_outbox, "1000.00")
    assert balance_live.wait_notifications_idle(timeout=10)
    assert api.get(f"/api/v1/topups/{topup['id']}").json()["status"] == "succeeded"
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == "1000.00"

    charge = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "300.00"})
    assert charge.status_code == 201, charge.content
    assert charge.json()["status"] == "succeeded" and charge.json()["payer"] is None
    hold = post(api, f"{CUSTOMER}/holds", {"product": "boost", "amount": "200.00"})
    assert hold.status_code == 201 and hold.json()["status"] == "held"
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert (wallet["balance"], wallet["held"], wallet["available"]) == ("700.00", "200.00", "500.00")

    captured = post(api, f"/api/v1/holds/{hold.json()['id']}/capture", {"amount": "150.00"})
    assert captured.status_code == 200, captured.content
    assert captured.json()["status"] == "captured" and captured.json()["captured"] == "150.00"
    refund = post(api, f"/api/v1/charges/{charge.json()['id']}/refunds", {"amount": "50.00", "reason": "bad photo"})
    assert refund.status_code == 201, refund.content

    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert wallet == {**wallet, "currency": "RUB", "balance": "600.00", "held": "0.00", "available": "600.00",
                      "overdraft_limit": "0.00", "payer": None, "other_payers": []}

    statement = api.get(f"{CUSTOMER}/wallet/transactions").json()["results"]
    rows = [(r["type"], r["amount"], r["balance_after"]) for r in reversed(statement)]
    assert rows == [
        ("topup", "1000.00", "1000.00"),
        ("charge", "-300.00", "700.00"),
        ("hold", "0.00", "700.00"),
        ("capture", "-150.00", "550.00"),
        ("refund", "50.00", "600.00"),
    ]
    assert statement[-1]["reference"] == {"kind": "topup", "id": topup["id"]}
    held = next(r for r in statement if r["type"] == "hold")
    assert held["held_change"] == "200.00"

    run_outbox()  # child orders created in Balance
    call_command("run_periodic", "spend_report")
    state = emulator.state()
    completion = {o["ServiceOrderID"]: Decimal(o["CompletionQty"]) for o in state["orders"]}
    placement = BalanceOrder.objects.get(kind="child", product=products["placement"])
    boost = BalanceOrder.objects.get(kind="child", product=products["boost"])
    assert completion[str(placement.pk)] == Decimal("250.00")
    assert completion[str(boost.pk)] == Decimal("150.00")
    wallet_order = next(o for o in state["orders"] if o["ServiceOrderID"] == str(placement.parent_id))
    # The group's money: on the wallet order ("parent" reporting), or its TotalConsumeQty ("enqueue").
    assert Decimal(wallet_order.get("TotalConsumeQty", wallet_order["ConsumeQty"])) == Decimal("1000.00")
    assert all(Decimal(o.get("UnpaidQty", "0")) == 0 for o in state["orders"])
    verify_ledger_clean()
    assert TopUp.objects.get().status == "succeeded"
