"""Support's "Move money between payers" through Balance, end to end: the console, the emulator over HTTP with its
notifications delivered to billing, the ledger, and reconciliation afterwards (issue 11, item 6).

The suite runs in both group reporting types (`BALANCE_EMULATOR_OPTIONS='{"group_type": "enqueue"}'`); the
notifications Balance sends after a transfer (new money on both wallet orders) must not count the move twice."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from balance_gateway.models import BalanceCall
from disbalance.models import OutboxOperation
from payments.models import BalanceOrder, PayerTransfer
from payments.services import payer_transfer_start, spend_report
from reconciliation.models import Mismatch
from reconciliation.run import reconcile
from tests.agencies.test_agency_change import make_agency_with_contract
from tests.customers.test_api import COMPANY
from tests.overdrafts.conftest import pay_topup
from tests.payments.conftest import post
from wallets.models import Account, LedgerTransaction
from wallets.services import wallet_adjust

CUSTOMER = "/api/v1/customers/dealer:20101"


def messages_of(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def wallet(customer, payer) -> Decimal:
    account = Account.objects.filter(customer=customer, kind="wallet", payer_agency=payer).first()
    return account.balance if account is not None else Decimal("0.00")


def wallet_order(customer, payer) -> BalanceOrder:
    return BalanceOrder.objects.get(customer=customer, kind="wallet", payer_agency=payer)


def balance_money(emulator, order: BalanceOrder) -> Decimal:
    """The wallet's money in the emulator: the group's money (on the wallet order in the "parent" type; spread over
    the wallet order and its children in the "enqueue" type)."""
    orders = emulator.state()["orders"]
    group = [o for o in orders if str(o["ServiceOrderID"]) == str(order.pk)
             or str(o.get("GroupServiceOrderID") or "") == str(order.pk)]
    if emulator.group_type == "enqueue":
        return sum((Decimal(o["ConsumeSum"]) for o in group), Decimal(0))
    return next(Decimal(o["ConsumeSum"]) for o in group if str(o["ServiceOrderID"]) == str(order.pk))


def unpaid(emulator) -> Decimal:
    return sum((Decimal(o.get("UnpaidQty", "0")) for o in emulator.state()["orders"]), Decimal(0))


def move_url(customer) -> str:
    return reverse("admin:customers_customer_move_money", args=[customer.pk])


@pytest.fixture
def two_payers(api, emulator, run_outbox, balance_live, products, settings):
    """A customer that paid 1,000.00 under agency A and spent 100.00 there (reported), then moved to agency B."""
    emulator.group_type = balance_live.options.group_type
    agency_a = make_agency_with_contract(api, emulator, run_outbox, "agency:a", "7700000001")
    agency_b = make_agency_with_contract(api, emulator, run_outbox, "agency:b", "7700000002")
    assert api.post("/api/v1/customers", {**COMPANY, "agency": "agency:a"}, format="json").status_code == 201
    run_outbox()
    from customers.models import Customer

    customer = Customer.objects.get(external_id=COMPANY["external_id"])
    pay_topup(api, emulator, run_outbox, balance_live, "1000.00")
    assert post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "100.00"}).status_code == 201
    run_outbox()
    spend_report()
    changed = api.put(f"{CUSTOMER}/agency", {"agency": "agency:b", "reason": "moved to B"}, format="json")
    assert changed.status_code == 200, changed.content
    run_outbox()
    assert balance_live.wait_notifications_idle(timeout=10)
    assert wallet_order(customer, agency_b).sync_status == "synced"
    return customer, agency_a, agency_b


def settle(balance_live, run_outbox):
    for _ in range(3):
        assert balance_live.wait_notifications_idle(timeout=15)
        run_outbox()


@pytest.mark.django_db(transaction=True)
def test_a_move_is_made_in_balance_and_counted_once(billing_client, billing_admin, emulator, run_outbox, balance_live,
                                                    two_payers, api):
    customer, agency_a, agency_b = two_payers
    emulator.set_options({"transfer_across_agencies": True})
    source, target = wallet_order(customer, agency_a), wallet_order(customer, agency_b)
    assert balance_money(emulator, source) == Decimal("1000.00") and source.credited_qty == Decimal("1000.00")

    response = billing_client.post(move_url(customer), {
        "from_payer": agency_a.pk, "to_payer": agency_b.pk, "amount": "300.00", "reason": "Back to B, SUP-31"},
        follow=True)
    assert any("in Balance and in the ledger" in m for m in messages_of(response)), messages_of(response)
    transfer = PayerTransfer.objects.get()
    assert transfer.status == "done" and transfer.created_by == billing_admin
    # QtyOld is Balance's consume of the wallet order: the group's 1,000 ("parent"), or what is left on the wallet
    # order once 100 moved onto the spent child ("enqueue").
    qty_old = Decimal("900") if emulator.group_type == "enqueue" else Decimal("1000")
    assert (transfer.qty_old, transfer.qty_new) == (qty_old, qty_old - 300)
    listed = billing_client.get(reverse("admin:payments_payertransfer_changelist")).content.decode()
    assert "agency:a" in listed and "agency:b" in listed and "300.00" in listed
    settle(balance_live, run_outbox)

    # Balance moved it: 700.00 left under A (100.00 of it spent), 300.00 under B.
    assert balance_money(emulator, source) == Decimal("700.00")
    assert balance_money(emulator, target) == Decimal("300.00")
    # Billing counted it once: the transfer, and no cut or top-up from the notifications that followed.
    assert (wallet(customer, agency_a), wallet(customer, agency_b)) == (Decimal("600.00"), Decimal("300.00"))
    assert LedgerTransaction.objects.filter(type="transfer").count() == 1
    assert not LedgerTransaction.objects.filter(type="adjustment").exists()
    assert LedgerTransaction.objects.filter(type="topup").count() == 1
    source.refresh_from_db()
    target.refresh_from_db()
    assert (source.credited_qty, target.credited_qty) == (Decimal("700.00"), Decimal("300.00"))

    # The moved money is spent under B and paid in Balance: no unpaid completion.
    assert post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "250.00"}).status_code == 201
    run_outbox()
    spend_report()
    settle(balance_live, run_outbox)
    assert unpaid(emulator) == 0
    report = reconcile(autofix=False)
    assert sum(report.found.values()) == 0, list(Mismatch.objects.filter(status="open").values_list("summary",
                                                                                                   flat=True))


@pytest.mark.django_db(transaction=True)
def test_balance_refusing_a_move_across_agencies_changes_nothing(billing_client, emulator, run_outbox, balance_live,
                                                                 two_payers):
    customer, agency_a, agency_b = two_payers
    emulator.set_options({"transfer_across_agencies": False})
    before = LedgerTransaction.objects.count()

    response = billing_client.post(move_url(customer), {
        "from_payer": agency_a.pk, "to_payer": agency_b.pk, "amount": "300.00", "reason": "Back to B"})
    assert response.status_code == 200  # the form again, with Balance's reason
    [message] = [m for m in messages_of(response) if m.startswith("Nothing was changed")]
    assert "NOT_EQUIVALENT_CLIENTS" in message and "stays under agency:a" in message
    transfer = PayerTransfer.objects.get()
    assert transfer.status == "refused" and "NOT_EQUIVALENT_CLIENTS" in transfer.balance_error
    settle(balance_live, run_outbox)
    assert LedgerTransaction.objects.count() == before
    assert (wallet(customer, agency_a), wallet(customer, agency_b)) == (Decimal("900.00"), Decimal("0.00"))
    assert balance_money(emulator, wallet_order(customer, agency_a)) == Decimal("1000.00")
    assert wallet_order(customer, agency_a).credited_qty == Decimal("1000.00")
    assert LogEntry.objects.count() == 2  # asked, and Balance's refusal
    assert sum(reconcile(autofix=False).found.values()) == 0


@pytest.mark.django_db(transaction=True)
def test_billing_refuses_itself_when_the_setting_says_balance_will(billing_client, emulator, run_outbox,
                                                                  balance_live, two_payers, settings):
    customer, agency_a, agency_b = two_payers
    settings.BALANCE_TRANSFER_ACROSS_AGENCIES = False
    calls = emulator.state()
    response = billing_client.post(move_url(customer), {
        "from_payer": agency_a.pk, "to_payer": agency_b.pk, "amount": "300.00", "reason": "Back to B"})
    assert any("BALANCE_TRANSFER_ACROSS_AGENCIES" in m for m in messages_of(response))
    assert not PayerTransfer.objects.exists() and not LogEntry.objects.exists()
    assert emulator.state()["orders"] == calls["orders"]


@pytest.mark.django_db(transaction=True)
def test_money_only_in_the_ledger_is_refused_by_balance(billing_client, emulator, run_outbox, balance_live,
                                                       two_payers):
    """A ledger-only upward adjustment is not in Balance: moving it is NOT_ENOUGH_FUNDS there, nothing changes."""
    customer, agency_a, agency_b = two_payers
    emulator.set_options({"transfer_across_agencies": True})
    # Money that never came through Balance (the service call: the console refuses an upward ledger-only one).
    wallet_adjust(customer=customer, payer_agency=agency_a, amount=Decimal("500.00"), reason="legacy import",
                  created_by=None)
    assert wallet(customer, agency_a) == Decimal("1400.00")
    before = LedgerTransaction.objects.count()

    response = billing_client.post(move_url(customer), {
        "from_payer": agency_a.pk, "to_payer": agency_b.pk, "amount": "950.00", "reason": "all of it"})
    [message] = [m for m in messages_of(response) if m.startswith("Nothing was changed")]
    # NOT_ENOUGH_FUNDS from Balance ("parent"), or billing seeing less than that on the wallet order ("enqueue").
    assert "Balance has less free money on the source order than asked" in message
    settle(balance_live, run_outbox)
    assert LedgerTransaction.objects.count() == before
    assert balance_money(emulator, wallet_order(customer, agency_a)) == Decimal("1000.00")


@pytest.mark.django_db(transaction=True)
def test_a_lost_answer_is_settled_from_balances_figures(billing_client, emulator, run_outbox, balance_live,
                                                       two_payers):
    """CreateTransferMultiple applied but its answer lost: the next attempt reads QtyNew in Balance and posts the
    move once, without asking Balance again (a second ask would be ORDERS_NOT_SYNCHRONIZED anyway)."""
    customer, agency_a, agency_b = two_payers
    emulator.set_options({"transfer_across_agencies": True})
    emulator.set_faults({"CreateTransferMultiple": {"lost_response_rate": 1.0}})
    response = billing_client.post(move_url(customer), {
        "from_payer": agency_a.pk, "to_payer": agency_b.pk, "amount": "200.00", "reason": "Back to B"}, follow=True)
    emulator.set_faults({})
    run_outbox()
    transfer = PayerTransfer.objects.get()
    assert transfer.status == "done", (transfer.status, transfer.balance_error, messages_of(response))
    assert transfer.qty_new == transfer.qty_old - 200
    operation = OutboxOperation.objects.get(kind="payments.payer_transfer")
    assert operation.result == {"status": "done", "settled": "after an unknown outcome"}
    assert BalanceCall.objects.filter(method="CreateTransferMultiple").count() == 1
    settle(balance_live, run_outbox)
    assert balance_money(emulator, wallet_order(customer, agency_a)) == Decimal("800.00")
    assert balance_money(emulator, wallet_order(customer, agency_b)) == Decimal("200.00")
    assert (wallet(customer, agency_a), wallet(customer, agency_b)) == (Decimal("700.00"), Decimal("200.00"))
    assert LedgerTransaction.objects.filter(type="transfer").count() == 1
    assert not LedgerTransaction.objects.filter(type="adjustment").exists()
    assert sum(reconcile(autofix=False).found.values()) == 0


@pytest.mark.django_db(transaction=True)
def test_notifications_wait_while_a_move_is_unsettled(billing_client, emulator, run_outbox, balance_live,
                                                     two_payers):
    """Balance's answer late after the transfer was applied: the row stays `sending`, the orders' notifications
    are answered "not found" (nothing counted twice meanwhile), and once Balance answers the move is posted."""
    customer, agency_a, agency_b = two_payers
    emulator.set_options({"transfer_across_agencies": True})
    emulator.set_faults({"CreateTransferMultiple": {"timeout_rate": 1.0}})  # applied, answered too late
    # The service itself (the console asks again at once, which settles it: see the test above): one attempt, by
    # the worker after commit.
    payer_transfer_start(customer=customer, from_payer=agency_a, to_payer=agency_b, amount=Decimal("200.00"),
                         reason="Back to B", by=None)
    transfer = PayerTransfer.objects.get()
    assert transfer.status == "sending" and transfer.qty_new == transfer.qty_old - 200
    assert balance_money(emulator, wallet_order(customer, agency_a)) == Decimal("800.00")  # Balance did move it
    balance_live.wait_notifications_idle(timeout=2)
    assert wallet(customer, agency_a) == Decimal("900.00") and wallet(customer, agency_b) == Decimal("0.00")
    assert wallet_order(customer, agency_a).credited_qty == Decimal("1000.00")
    assert not LedgerTransaction.objects.filter(type__in=["adjustment", "transfer"]).exists()

    emulator.set_faults({})
    run_outbox()
    transfer.refresh_from_db()
    assert transfer.status == "done"
    assert BalanceCall.objects.filter(method="CreateTransferMultiple").count() == 1  # never asked twice
    settle(balance_live, run_outbox)
    assert (wallet(customer, agency_a), wallet(customer, agency_b)) == (Decimal("700.00"), Decimal("200.00"))
    assert not LedgerTransaction.objects.filter(type="adjustment").exists()
    assert LedgerTransaction.objects.filter(type="topup").count() == 1
    assert sum(reconcile(autofix=False).found.values()) == 0


@pytest.mark.django_db(transaction=True)
def test_adjustments_say_balance_is_not_changed_and_reconciliation_stays_clean(billing_client, emulator, run_outbox,
                                                                             balance_live, two_payers):
    customer, agency_a, _agency_b = two_payers
    adjust = reverse("admin:customers_customer_adjust_wallet", args=[customer.pk])
    before = {o["ServiceOrderID"]: o for o in emulator.state()["orders"]}

    refused = billing_client.post(adjust, {"payer": agency_a.pk, "amount": "50.00", "reason": "goodwill",
                                           "balance_effect": "ledger_only"})
    assert any("unpaid completion in Balance" in m for m in messages_of(refused))
    taken = billing_client.post(adjust, {"payer": agency_a.pk, "amount": "-40.00", "reason": "credited twice, SUP-4",
                                         "balance_effect": "ledger_only"}, follow=True)
    assert any("Balance is not changed: its money on the payer's order stays as it is" in m
               for m in messages_of(taken)), messages_of(taken)
    mirrored = billing_client.post(adjust, {"payer": agency_a.pk, "amount": "15.00", "reason": "Balance refund "
                                            "reversed, BT-9", "balance_effect": "mirrors_balance"}, follow=True)
    assert any("mirrors a change already made in Balance" in m for m in messages_of(mirrored))
    assert wallet(customer, agency_a) == Decimal("875.00")
    settle(balance_live, run_outbox)

    # Balance was not told anything, and said nothing back.
    assert {o["ServiceOrderID"]: o for o in emulator.state()["orders"]} == before
    assert wallet_order(customer, agency_a).credited_qty == Decimal("1000.00")
    # Where the adjustment is listed, it says what it did to Balance.
    statement = billing_client.get(reverse("admin:customers_customer_statement", args=[customer.pk]),
                                   {"payer": "agency:a"}).content.decode()
    assert "credited twice, SUP-4 · Balance not changed: a correction of billing&#x27;s ledger only" in statement
    report = reconcile(autofix=False)
    assert sum(report.found.values()) == 0, list(Mismatch.objects.filter(status="open").values_list("summary",
                                                                                                   flat=True))
