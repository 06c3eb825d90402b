"""Blocks: overdue (system) and manual (support) kept apart; repayment lifts only the overdue one; support's
grace; the periodic check; webhooks on each flip of `customer.blocked`."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from customers.models import Customer
from disbalance.exceptions import CustomerBlocked, ValidationFailed
from disbalance.models import WebhookEvent
from overdrafts import selectors
from overdrafts.exceptions import NotBlocked
from overdrafts.models import Block, Overdraft
from overdrafts.services import customer_block, customer_unblock, overdrafts_check
from payments.services import charge_create, hold_capture, hold_create, hold_release, refund_create
from tests.overdrafts.conftest import fund, grant, verify_ledger_clean
from wallets.services import wallet_adjust


def blocked(customer):
    return Customer.objects.get(pk=customer.pk).blocked


def events(type_):
    return list(WebhookEvent.objects.filter(type=type_).order_by("created_at"))


@pytest.fixture
def customer(active_customer):
    grant(active_customer, "5000.00", tid=1)
    return active_customer


@pytest.mark.django_db
def test_manual_block_is_not_undone_by_repayment(customer, products, support_user, clock):
    charge_create(customer=customer, product=products["placement"], amount=Decimal("1000.00"))
    block = customer_block(customer=customer, reason="fraud check, ticket 7", by=support_user)
    assert blocked(customer) and block.created_by == support_user
    assert events("customer.blocked")[0].data["reasons"] == ["manual"]
    with pytest.raises(CustomerBlocked):
        charge_create(customer=customer, product=products["placement"], amount=Decimal("1.00"))
    with pytest.raises(CustomerBlocked):
        hold_create(customer=customer, product=products["boost"], amount=Decimal("1.00"))

    fund(customer, "1000.00")  # the debt is repaid through the ledger (no hook here) ...
    clock.advance(days=40)
    overdrafts_check()  # ... and the check runs: the manual block stays
    assert blocked(customer) and not events("customer.unblocked")

    with pytest.raises(ValidationFailed):
        customer_unblock(customer=customer, reason="", by=support_user)
    customer_unblock(customer=customer, reason="checked, all fine", by=support_user)
    assert not blocked(customer)
    block.refresh_from_db()
    assert (block.lifted_by, block.lift_reason) == (support_user, "checked, all fine")
    assert events("customer.unblocked")[0].data["reason"] == "checked, all fine"
    with pytest.raises(NotBlocked):
        customer_unblock(customer=customer, reason="again", by=support_user)
    verify_ledger_clean()


@pytest.mark.django_db
def test_overdue_and_manual_blocks_are_kept_apart(customer, products, support_user, clock):
    charge_create(customer=customer, product=products["placement"], amount=Decimal("2000.00"))
    clock.advance(days=16)
    assert overdrafts_check() == {"checked": 1, "blocked": 1, "unblocked": 0}
    customer_block(customer=customer, reason="also by hand", by=support_user)
    assert len(events("customer.blocked")) == 1  # the flag flipped once

    with transaction.atomic():  # repaid: the overdue block lifts, the manual one keeps the customer blocked
        from overdrafts.services import after_money_in
        from wallets.services import wallet_credit_topup

        wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("2000.00"))
        after_money_in(customer=customer, payer=None)
    assert blocked(customer) and not events("customer.unblocked")
    assert [b.kind for b in selectors.open_blocks(customer=customer)] == ["manual"]
    customer_unblock(customer=customer, reason="ok", by=support_user)
    assert not blocked(customer) and len(events("customer.unblocked")) == 1


@pytest.mark.django_db
def test_support_grace_moves_the_due_date_and_lifts_the_overdue_block(customer, products, support_user, clock):
    charge_create(customer=customer, product=products["placement"], amount=Decimal("500.00"))
    clock.advance(days=20)
    overdrafts_check()
    assert blocked(customer)
    with pytest.raises(NotBlocked):  # no manual block, and no new due date: the overdue block stays
        customer_unblock(customer=customer, reason="please", by=support_user)
    with pytest.raises(ValidationFailed):
        customer_unblock(customer=customer, reason="grace", by=support_user,
                         new_due_at=timezone.now() - timedelta(days=1))
    customer_unblock(customer=customer, reason="grace until Friday", by=support_user,
                     new_due_at=timezone.now() + timedelta(days=3))
    assert not blocked(customer)
    charge_create(customer=customer, product=products["placement"], amount=Decimal("1.00"))  # allowed again
    overdrafts_check()
    assert not blocked(customer)
    clock.advance(days=4)
    overdrafts_check()
    assert blocked(customer) and len(events("customer.blocked")) == 2


@pytest.mark.django_db
def test_the_check_starts_the_clock_of_a_debt_no_hook_saw_and_clears_a_repaid_one(customer, support_user, clock):
    with transaction.atomic():
        wallet_adjust(customer=customer, payer_agency=None, amount=Decimal("-300.00"), reason="double credit",
                      created_by=support_user)
    assert not Overdraft.objects.get(customer=customer).due_at
    assert overdrafts_check()["checked"] == 1
    overdraft = Overdraft.objects.get(customer=customer)
    assert overdraft.due_at is not None and overdraft.debt_since is not None
    with transaction.atomic():
        wallet_adjust(customer=customer, payer_agency=None, amount=Decimal("300.00"), reason="reversed",
                      created_by=support_user)
    overdrafts_check()
    overdraft.refresh_from_db()
    assert overdraft.due_at is None and overdraft.debt_since is None
    assert overdrafts_check()["checked"] == 0


@pytest.mark.django_db
def test_held_money_is_not_debt_until_captured_and_refunds_repay(customer, products, clock):
    hold = hold_create(customer=customer, product=products["boost"], amount=Decimal("1000.00"))
    status = selectors.debt_status(customer=customer)
    assert (status.debt, status.due_at) == (Decimal("0.00"), None)
    assert selectors.effective_overdraft_limit(customer=customer) == Decimal("5000.00")
    hold_capture(hold=hold, amount=Decimal("600.00"))  # 400 back, 600 spent: debt starts now
    status = selectors.debt_status(customer=customer)
    assert status.debt == Decimal("600.00") and status.due_at is not None
    other = hold_create(customer=customer, product=products["boost"], amount=Decimal("100.00"))
    hold_release(hold=other)
    c = charge_create(customer=customer, product=products["placement"], amount=Decimal("100.00"))
    clock.advance(days=16)
    overdrafts_check()
    assert blocked(customer)
    refund_create(charge=c, amount=None, reason="duplicate")
    assert blocked(customer)  # 600.00 left
    fund(customer, "600.00")
    overdrafts_check()
    assert not blocked(customer)
    assert Block.objects.get().lift_reason == "Debt repaid"
    verify_ledger_clean()


@pytest.mark.django_db
def test_a_blocked_customer_charge_writes_nothing(customer, products, support_user):
    customer_block(customer=customer, reason="x", by=support_user)
    from payments.models import Charge

    with pytest.raises(CustomerBlocked):
        charge_create(customer=customer, product=products["placement"], amount=Decimal("1.00"))
    assert not Charge.objects.exists()
    assert selectors.debt_status(customer=customer).debt == Decimal("0.00")
