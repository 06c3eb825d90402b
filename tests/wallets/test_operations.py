"""Wallet operations: their ledger effect, the wallet summary and statement figures, and the failure paths."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from disbalance.exceptions import InsufficientFunds, InvalidState, ValidationFailed
from tests.factories import AgencyFactory, ConsumerServiceFactory, CustomerFactory
from wallets.exceptions import LedgerDuplicate, LedgerInvalidPosting
from wallets.models import Account, LedgerEntry, LedgerTransaction
from wallets.selectors import PayerBalance, spend_by_order, statement, statement_rows, wallet_summary
from wallets.services import (
    wallet_adjust,
    wallet_capture,
    wallet_charge,
    wallet_credit_topup,
    wallet_hold,
    wallet_refund,
    wallet_release,
    wallet_transfer,
)

D = Decimal
BOOST = "vas:boost"
PLACEMENT = "placement:cars"


def ledger_state() -> tuple[int, int, list[tuple[str, Decimal]]]:
    """Everything a failed operation must leave untouched."""
    return (
        LedgerTransaction.objects.count(),
        LedgerEntry.objects.count(),
        list(Account.objects.order_by("key").values_list("key", "balance")),
    )


def effect(txn: LedgerTransaction) -> dict[str, Decimal]:
    """The transaction's entries as {account kind[:product]: amount}."""
    out = {}
    for entry in txn.entries.select_related("account"):
        name = entry.account.kind + (f":{entry.account.product_code}" if entry.account.product_code else "")
        out[name] = entry.amount
    return out


def summary(customer, overdraft=D("0.00")):
    customer.refresh_from_db()
    s = wallet_summary(customer, overdraft)
    return s.balance, s.held, s.available


def topup(customer, amount, payer=None, ref=None):
    return wallet_credit_topup(customer=customer, payer_agency=payer, amount=D(amount), reference_kind="topup",
                               reference_id=ref or str(uuid.uuid4()), description="top-up")


def test_the_whole_story_topup_charge_hold_capture_refund(customer):
    t1 = topup(customer, "1000.00", ref="top-1")
    assert effect(t1) == {"wallet": D("1000.00"), "clearing": D("-1000.00")}
    assert summary(customer) == (D("1000.00"), D("0.00"), D("1000.00"))

    t2 = wallet_charge(customer=customer, payer_agency=None, product_code=PLACEMENT, amount=D("300.00"),
                       reference_kind="charge", reference_id="ch-1", description="placement")
    assert effect(t2) == {"wallet": D("-300.00"), f"spend:{PLACEMENT}": D("300.00")}
    assert summary(customer) == (D("700.00"), D("0.00"), D("700.00"))

    t3 = wallet_hold(customer=customer, payer_agency=None, amount=D("200.00"), reference_kind="hold",
                     reference_id="h-1")
    assert effect(t3) == {"wallet": D("-200.00"), "holds": D("200.00")}
    assert summary(customer) == (D("700.00"), D("200.00"), D("500.00"))

    t4 = wallet_capture(customer=customer, payer_agency=None, product_code=BOOST, hold_amount=D("200.00"),
                        captured=D("150.00"), reference_kind="hold", reference_id="h-1")
    assert effect(t4) == {"holds": D("-200.00"), f"spend:{BOOST}": D("150.00"), "wallet": D("50.00")}
    assert summary(customer) == (D("550.00"), D("0.00"), D("550.00"))

    t5 = wallet_refund(customer=customer, payer_agency=None, product_code=PLACEMENT, amount=D("50.00"),
                       reference_kind="refund", reference_id="rf-1")
    assert effect(t5) == {f"spend:{PLACEMENT}": D("-50.00"), "wallet": D("50.00")}
    assert summary(customer) == (D("600.00"), D("0.00"), D("600.00"))

    rows = statement_rows(customer)
    assert [(r.type, r.amount, r.balance_after, r.held_change, r.held_after) for r in rows] == [
        ("refund", D("50.00"), D("600.00"), D("0.00"), D("0.00")),
        ("capture", D("-150.00"), D("550.00"), D("-200.00"), D("0.00")),
        ("hold", D("0.00"), D("700.00"), D("200.00"), D("200.00")),
        ("charge", D("-300.00"), D("700.00"), D("0.00"), D("0.00")),
        ("topup", D("1000.00"), D("1000.00"), D("0.00"), D("0.00")),
    ]
    assert [r.id for r in rows] == [t.public_id for t in (t5, t4, t3, t2, t1)]
    assert rows[3].reference == {"kind": "charge", "id": "ch-1"}
    assert rows[3].description == "placement"
    assert {r.payer for r in rows} == {None}
    assert rows[0].created_at >= rows[-1].created_at

    spend = {(a.customer, a.payer_agency, a.product_code): a.balance for a in spend_by_order(service=customer.service)}
    assert spend == {(customer, None, PLACEMENT): D("250.00"), (customer, None, BOOST): D("150.00")}


def test_statement_filters_by_type_and_time(customer):
    topup(customer, "100.00")
    wallet_charge(customer=customer, payer_agency=None, product_code=BOOST, amount=D("10.00"))
    wallet_charge(customer=customer, payer_agency=None, product_code=BOOST, amount=D("20.00"))
    assert [r.amount for r in statement_rows(customer, type="charge")] == [D("-20.00"), D("-10.00")]
    now = timezone.now()
    assert len(statement_rows(customer, since=now - timedelta(minutes=1))) == 3
    assert statement_rows(customer, since=now + timedelta(minutes=1)) == []
    assert statement_rows(customer, until=now - timedelta(minutes=1)) == []
    # The queryset is ordered by -id, so the API can cursor-paginate it.
    assert statement(customer).query.order_by == ("-id",)


def test_statement_shows_only_this_customers_rows(customer, svc):
    other = CustomerFactory(service=svc)
    topup(customer, "100.00")
    topup(other, "7.00")
    assert [r.amount for r in statement_rows(customer)] == [D("100.00")]
    assert [r.amount for r in statement_rows(other)] == [D("7.00")]


def test_insufficient_funds_writes_nothing(customer):
    topup(customer, "100.00")
    wallet_hold(customer=customer, payer_agency=None, amount=D("60.00"))
    before = ledger_state()
    with pytest.raises(InsufficientFunds, match=r"available 40\.00"):
        wallet_charge(customer=customer, payer_agency=None, product_code=BOOST, amount=D("40.01"),
                      reference_kind="charge", reference_id="too-much")
    with pytest.raises(InsufficientFunds):
        wallet_hold(customer=customer, payer_agency=None, amount=D("40.01"))
    assert ledger_state() == before
    assert not Account.objects.filter(kind="spend").exists(), "not even the spend account is created"
    assert not LedgerTransaction.objects.filter(reference_id="too-much").exists()
    # Exactly the available amount is fine.
    wallet_charge(customer=customer, payer_agency=None, product_code=BOOST, amount=D("40.00"))
    assert summary(customer) == (D("60.00"), D("60.00"), D("0.00"))


def test_overdraft_lets_the_wallet_go_below_zero_up_to_the_limit(customer):
    topup(customer, "100.00")
    wallet_charge(customer=customer, payer_agency=None, product_code=BOOST, amount=D("150.00"),
                  overdraft_limit=D("50.00"))
    assert summary(customer, D("50.00")) == (D("-50.00"), D("0.00"), D("0.00"))
    with pytest.raises(InsufficientFunds):
        wallet_hold(customer=customer, payer_agency=None, amount=D("0.01"), overdraft_limit=D("50.00"))
    topup(customer, "70.00")
    wallet_hold(customer=customer, payer_agency=None, amount=D("60.00"), overdraft_limit=D("50.00"))
    s = wallet_summary(customer, D("50.00"))
    assert (s.balance, s.held, s.overdraft_limit, s.available) == (D("20.00"), D("60.00"), D("50.00"), D("10.00"))


def test_money_of_another_payer_is_not_available(customer, agency):
    topup(customer, "500.00", payer=agency)
    # The customer now pays itself: the agency's money is shown apart, and cannot be spent.
    s = wallet_summary(customer)
    assert (s.balance, s.available, s.payer) == (D("0.00"), D("0.00"), None)
    assert s.other_payers == [PayerBalance(payer="agency:7", balance=D("500.00"))]
    before = ledger_state()
    with pytest.raises(InsufficientFunds):
        wallet_charge(customer=customer, payer_agency=None, product_code=BOOST, amount=D("1.00"))
    assert ledger_state() == before

    # Under the agency (its current payer again) the money is there; holds count in the other payer's balance.
    customer.agency = agency
    customer.save(update_fields=["agency"])
    wallet_hold(customer=customer, payer_agency=agency, amount=D("100.00"))
    topup(customer, "5.00")  # money the customer paid itself, shown apart now
    s = wallet_summary(customer)
    assert (s.balance, s.held, s.available, s.payer) == (D("500.00"), D("100.00"), D("400.00"), "agency:7")
    assert s.other_payers == [PayerBalance(payer=None, balance=D("5.00"))]
    assert [(r.type, r.payer, r.balance_after) for r in statement_rows(customer)] == [
        ("topup", None, D("5.00")),
        ("hold", "agency:7", D("500.00")),
        ("topup", "agency:7", D("500.00")),
    ]
    assert Account.objects.get(kind="wallet", payer_agency=agency).key == f"wallet:c{customer.pk}:p{agency.pk}"


def test_release_and_full_or_zero_capture(customer):
    topup(customer, "100.00")
    wallet_hold(customer=customer, payer_agency=None, amount=D("30.00"))
    wallet_hold(customer=customer, payer_agency=None, amount=D("20.00"))
    release = wallet_release(customer=customer, payer_agency=None, amount=D("30.00"))
    assert effect(release) == {"holds": D("-30.00"), "wallet": D("30.00")}
    full = wallet_capture(customer=customer, payer_agency=None, product_code=BOOST, hold_amount=D("20.00"),
                          captured=D("20.00"))
    assert effect(full) == {"holds": D("-20.00"), f"spend:{BOOST}": D("20.00")}
    wallet_hold(customer=customer, payer_agency=None, amount=D("10.00"))
    zero = wallet_capture(customer=customer, payer_agency=None, product_code=BOOST, hold_amount=D("10.00"),
                          captured=D("0.00"))
    assert effect(zero) == {"holds": D("-10.00"), "wallet": D("10.00")}
    assert summary(customer) == (D("80.00"), D("0.00"), D("80.00"))
    rows = statement_rows(customer)
    assert [(r.type, r.amount, r.held_after) for r in rows[:3]] == [
        ("capture", D("0.00"), D("0.00")), ("hold", D("0.00"), D("10.00")), ("capture", D("-20.00"), D("0.00")),
    ]


def test_release_capture_and_refund_cannot_exceed_what_is_there(customer):
    topup(customer, "100.00")
    wallet_hold(customer=customer, payer_agency=None, amount=D("30.00"))
    wallet_charge(customer=customer, payer_agency=None, product_code=BOOST, amount=D("10.00"))
    before = ledger_state()
    with pytest.raises(InvalidState):
        wallet_release(customer=customer, payer_agency=None, amount=D("30.01"))
    with pytest.raises(InvalidState):
        wallet_capture(customer=customer, payer_agency=None, product_code=BOOST, hold_amount=D("31.00"),
                       captured=D("1.00"))
    with pytest.raises(ValidationFailed):
        wallet_capture(customer=customer, payer_agency=None, product_code=BOOST, hold_amount=D("30.00"),
                       captured=D("30.01"))
    with pytest.raises(InvalidState):
        wallet_refund(customer=customer, payer_agency=None, product_code=BOOST, amount=D("10.01"))
    with pytest.raises(InvalidState):
        wallet_refund(customer=customer, payer_agency=None, product_code=PLACEMENT, amount=D("1.00"))
    assert ledger_state()[:2] == before[:2]
    wallet_refund(customer=customer, payer_agency=None, product_code=BOOST, amount=D("10.00"))
    assert Account.objects.get(kind="spend").balance == D("0.00")


@pytest.mark.parametrize("amount", [D("0.00"), D("-1.00"), D("0.001"), D("Infinity"), 5, 5.0, "5.00"])
def test_amounts_must_be_positive_two_place_decimals(customer, amount):
    with pytest.raises(ValidationFailed):
        wallet_credit_topup(customer=customer, payer_agency=None, amount=amount)
    with pytest.raises(ValidationFailed):
        wallet_charge(customer=customer, payer_agency=None, product_code=BOOST, amount=amount)
    assert LedgerTransaction.objects.count() == 0


def test_payer_of_another_service_is_refused(customer):
    foreign = AgencyFactory(service=ConsumerServiceFactory(slug="realty"))
    with pytest.raises(LedgerInvalidPosting):
        topup(customer, "1.00", payer=foreign)
    assert ledger_state() == (0, 0, [])


def test_a_reference_is_credited_once(customer):
    topup(customer, "100.00", ref="payment-1")
    with pytest.raises(LedgerDuplicate):
        topup(customer, "100.00", ref="payment-1")
    assert summary(customer)[0] == D("100.00")


def test_adjustment_needs_a_reason_and_records_who(customer):
    user = get_user_model().objects.create_user("support", password="x")
    topup(customer, "100.00")
    before = ledger_state()
    for reason in ("", "   "):
        with pytest.raises(ValidationFailed):
            wallet_adjust(customer=customer, payer_agency=None, amount=D("10.00"), reason=reason, created_by=user)
    with pytest.raises(ValidationFailed):
        wallet_adjust(customer=customer, payer_agency=None, amount=D("0.00"), reason="typo", created_by=user)
    assert ledger_state() == before

    plus = wallet_adjust(customer=customer, payer_agency=None, amount=D("25.00"), reason="compensation #123",
                         created_by=user)
    minus = wallet_adjust(customer=customer, payer_agency=None, amount=D("-140.00"), reason="double credit",
                          created_by=user)
    assert effect(plus) == {"wallet": D("25.00"), "adjustments": D("-25.00")}
    assert effect(minus) == {"wallet": D("-140.00"), "adjustments": D("140.00")}
    assert (minus.reason, minus.created_by) == ("double credit", user)
    assert summary(customer)[0] == D("-15.00"), "a correction may take the wallet below zero"
    row = statement_rows(customer, type="adjustment")[0]
    assert (row.amount, row.balance_after, row.reason) == (D("-140.00"), D("-15.00"), "double credit")


def test_transfer_moves_free_money_between_payers(customer, agency):
    user = get_user_model().objects.create_user("support", password="x")
    topup(customer, "500.00", payer=agency)
    wallet_hold(customer=customer, payer_agency=agency, amount=D("100.00"))
    before = ledger_state()
    with pytest.raises(ValidationFailed):
        wallet_transfer(customer=customer, from_payer=agency, to_payer=None, amount=D("50.00"), reason="",
                        created_by=user)
    with pytest.raises(ValidationFailed):
        wallet_transfer(customer=customer, from_payer=agency, to_payer=agency, amount=D("50.00"), reason="x",
                        created_by=user)
    with pytest.raises(InsufficientFunds):  # held money does not move
        wallet_transfer(customer=customer, from_payer=agency, to_payer=None, amount=D("400.01"),
                        reason="agency agreed", created_by=user)
    assert ledger_state() == before

    txn = wallet_transfer(customer=customer, from_payer=agency, to_payer=None, amount=D("400.00"),
                          reason="agency agreed, ticket 42", created_by=user)
    assert {e.account.key: e.amount for e in txn.entries.select_related("account")} == {
        f"wallet:c{customer.pk}:p{agency.pk}": D("-400.00"),
        f"wallet:c{customer.pk}:pself": D("400.00"),
    }
    s = wallet_summary(customer)
    assert (s.balance, s.available, s.other_payers) == (
        D("400.00"), D("400.00"), [PayerBalance(payer="agency:7", balance=D("100.00"))]
    )
    transfer_rows = [(r.id, r.payer, r.amount, r.balance_after) for r in statement_rows(customer, type="transfer")]
    assert sorted(transfer_rows, key=str) == sorted([
        (txn.public_id, "agency:7", D("-400.00"), D("100.00")),
        (txn.public_id, None, D("400.00"), D("400.00")),
    ], key=str)
