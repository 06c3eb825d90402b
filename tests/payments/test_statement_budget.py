"""A regression guard on the charge path's cost: SQL statements per money operation, counted (not timed).

Each operation runs once to create what its first use creates (accounts, Balance orders), then is counted on a
second, warm run, the way a busy customer pays. BEGIN and COMMIT count, as in bench/charges.py. A change that adds
a statement to one of these paths fails here: if the statement is really needed, raise the budget in the same
commit and say why. The same figures are in bench/charges.py's "Statements per operation".
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from payments.models import BalanceOrder, Charge, Hold
from payments.services import (
    OrderState,
    charge_create,
    hold_capture,
    hold_create,
    hold_release,
    order_apply_balance_state,
    refund_create,
)
from wallets.services import wallet_credit_topup

# Statements per warm operation of a customer that pays itself without an overdraft (BEGIN and COMMIT included).
# Every money operation also writes its event (`charge.succeeded`, ...: the feed and the webhook) in the same
# transaction: one INSERT each (+1 below), its per-customer sequence computed inside that INSERT and the payer's
# held amount read in the accounts' lock statement, so the event costs nothing more.
# On PostgreSQL a warm charge is one call of the database function `payments_charge_create` (one statement, its
# own transaction; the same rows: tests/payments/test_charge_function.py), so its budgets are the PG_ ones.
PG_BUDGET = {
    "charge": 1,  # SELECT payments_charge_create(...): the 9 statements below in one round trip
    "http_charge": 6,  # BEGIN, the key's claim, customer and product, the function, the stored answer, COMMIT
}
BUDGET = {
    "charge": 9,  # lock customer (+ overdraft? + order exists?), lock 2 accounts, txn, balances, entries, event, charge
    "hold": 9,
    # + the hold's lock and update, the charge, and the overdraft hooks' debt check: one statement (the debt and
    # whether an Overdraft row exists; none, no debt: nothing to lock)
    "capture": 12,
    "release": 11,  # + the hold's lock and update, the debt check
    "refund": 12,  # + the charge's lock and update, the refund, the debt check
    # The customer locked through the order; the order locked with, in the same statement, whether money is in
    # flight on it (adoption, payer transfer) and whether top-ups wait (none here: no top-up lookup); the accounts,
    # the clearing account, txn, balances, entries, event, the debt check, the order's figures.
    "topup_credit": 12,
    "http_charge": 12,  # + customer and product (one statement), the key's claim and its stored answer; token cached
}
if settings.IS_POSTGRES:
    BUDGET.update(PG_BUDGET)

pytestmark = pytest.mark.django_db(transaction=True)


def _count(operation) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        operation()
    return len(queries), [q["sql"][:160] for q in queries.captured_queries]


def _within(name: str, counted: tuple[int, list[str]]) -> None:
    count, statements = counted
    assert count <= BUDGET[name], f"{name}: {count} statements > budget {BUDGET[name]}:\n" + "\n".join(statements)


@pytest.fixture
def payer(active_customer):
    with transaction.atomic():
        wallet_credit_topup(customer=active_customer, payer_agency=None, amount=Decimal("1000.00"))
    return active_customer


def _api_hold(pk) -> Hold:
    return Hold.objects.select_related("customer", "payer_agency", "product").get(pk=pk)


def _api_charge(pk) -> Charge:
    return Charge.objects.select_related("customer", "payer_agency", "product").get(pk=pk)


def test_charge_and_hold(payer, products):
    charge_create(customer=payer, product=products["placement"], amount=Decimal("1.00"))  # accounts, orders
    counted = _count(lambda: charge_create(customer=payer, product=products["placement"], amount=Decimal("2.00")))
    _within("charge", counted)
    hold_create(customer=payer, product=products["boost"], amount=Decimal("1.00"))
    _within("hold", _count(lambda: hold_create(customer=payer, product=products["boost"], amount=Decimal("3.00"))))
    # What was counted did happen: the charges and holds are in the ledger.
    assert Charge.objects.filter(customer=payer).count() == 2 and Hold.objects.filter(customer=payer).count() == 2


def test_capture_release_refund(payer, products):
    holds = [hold_create(customer=payer, product=products["boost"], amount=Decimal("5.00")).pk for _ in range(3)]
    charges = [charge_create(customer=payer, product=products["boost"], amount=Decimal("5.00")).pk for _ in range(2)]
    hold_capture(hold=_api_hold(holds[0]), amount=Decimal("1.00"))
    hold = _api_hold(holds[1])
    _within("capture", _count(lambda: hold_capture(hold=hold, amount=Decimal("2.00"))))
    hold = _api_hold(holds[2])
    _within("release", _count(lambda: hold_release(hold=hold)))
    refund_create(charge=_api_charge(charges[0]), amount=Decimal("1.00"), reason="first")
    charge = _api_charge(charges[1])
    _within("refund", _count(lambda: refund_create(charge=charge, amount=Decimal("1.00"), reason="counted")))
    assert [h.status for h in Hold.objects.filter(pk__in=holds).order_by("created_at")] == [
        "captured", "captured", "released"]
    assert Charge.objects.get(pk=charges[1]).refunded_amount == Decimal("1.00")


def test_topup_crediting(payer, products):
    charge_create(customer=payer, product=products["placement"], amount=Decimal("1.00"))  # the wallet order
    order = BalanceOrder.objects.get(customer=payer, kind=BalanceOrder.Kind.WALLET)

    def credit(qty: str, tid: int) -> None:
        assert order_apply_balance_state(order_id=order.pk, state=OrderState(
            consume_money=Decimal(qty), completion_qty=Decimal("0"), tid=tid)) == "applied"

    credit("10.00", 1)
    _within("topup_credit", _count(lambda: credit("25.00", 2)))
    order.refresh_from_db()
    assert order.credited_qty == Decimal("25.00")


def test_http_charge(api, payer, products):
    def post(amount: str):
        return api.post(f"/api/v1/customers/{payer.external_id}/charges", {"product": "placement", "amount": amount},
                        format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))

    assert post("1.00").status_code == 201  # accounts, orders, token cached and touched
    responses = []
    _within("http_charge", _count(lambda: responses.append(post("2.00"))))
    assert responses[0].status_code == 201
    assert Charge.objects.filter(customer=payer, amount=Decimal("2.00")).count() == 1
