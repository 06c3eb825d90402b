"""The acceptance scenario over HTTP with the emulator and a test clock: Balance grants 5,000.00, the customer
spends 3,000.00 from zero, the debt is due after the term, one day past it the customer is blocked, a top-up of
3,000.00 paid in Balance unblocks at once."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from customers.models import Customer
from disbalance.models import WebhookEvent
from overdrafts.models import Block, Overdraft
from tests.overdrafts.conftest import CUSTOMER, charge, pay_topup, verify_ledger_clean


def parse(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.django_db(transaction=True)
def test_grant_spend_overdue_block_repay_unblock(api, emulator, run_outbox, balance_live, active_customer, clock,
                                                 settings):
    settings.OVERDRAFT_PAYMENT_TERM_DAYS = 15
    emulator.grant_overdraft(active_customer.balance_client_id, Decimal("5000.00"), 15)
    assert balance_live.wait_notifications_idle(timeout=10)
    assert api.get(f"{CUSTOMER}/overdraft").json() == {
        "limit": "5000.00", "granted_by_balance": "5000.00", "spent": "0.00", "due_at": None, "overdue": False,
        "blocked": False,
    }
    assert Overdraft.objects.get(customer=active_customer).last_tid > 0  # came with NotifyClient2

    spent_at = clock()
    response = charge(api, "3000.00")
    assert response.status_code == 201, response.content
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert (wallet["balance"], wallet["available"], wallet["overdraft_limit"], wallet["debt"], wallet["overdue"]) \
        == ("-3000.00", "2000.00", "5000.00", "3000.00", False)
    due_at = parse(wallet["debt_due_at"])
    assert abs(due_at - (spent_at + timedelta(days=15))) < timedelta(minutes=1)
    overdraft = api.get(f"{CUSTOMER}/overdraft").json()
    assert (overdraft["spent"], parse(overdraft["due_at"]), overdraft["overdue"]) == ("3000.00", due_at, False)

    # Within the term: the daily check changes nothing.
    clock.advance(days=14)
    call_command("run_periodic", "overdrafts_check")
    assert not Customer.objects.get(pk=active_customer.pk).blocked

    # One day past the due date: refused at once, then blocked by the check, with the webhook.
    clock.advance(days=2)
    refused = charge(api, "10.00")
    assert refused.status_code == 409 and refused.json()["code"] == "customer_blocked"
    call_command("run_periodic", "overdrafts_check")
    assert Customer.objects.get(pk=active_customer.pk).blocked
    refused = charge(api, "10.00")
    assert refused.status_code == 409 and refused.json()["code"] == "customer_blocked"
    assert api.get("/api/v1/customers/dealer:20101").json()["blocked"] is True
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert (wallet["debt"], wallet["overdue"], wallet["blocked"]) == ("3000.00", True, True)
    blocked_event = WebhookEvent.objects.get(type="customer.blocked")
    assert blocked_event.data["customer"] == "dealer:20101" and blocked_event.data["debt"] == "3000.00"
    assert blocked_event.data["reasons"] == ["overdue"]
    assert not WebhookEvent.objects.filter(type="customer.unblocked").exists()
    call_command("run_periodic", "overdrafts_check")  # again: nothing new
    assert WebhookEvent.objects.filter(type="customer.blocked").count() == 1

    # A top-up of 3,000.00 paid in Balance: the debt is 0 and the customer unblocked at once (no job run).
    pay_topup(api, emulator, run_outbox, balance_live, "3000.00")
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert (wallet["balance"], wallet["debt"], wallet["debt_due_at"], wallet["overdue"], wallet["blocked"]) == \
        ("0.00", "0.00", None, False, False)
    assert api.get(f"{CUSTOMER}/overdraft").json() == {
        "limit": "5000.00", "granted_by_balance": "5000.00", "spent": "0.00", "due_at": None, "overdue": False,
        "blocked": False,
    }
    unblocked = WebhookEvent.objects.get(type="customer.unblocked")
    assert unblocked.data["customer"] == "dealer:20101" and unblocked.data["reason"] == "Debt repaid"
    block = Block.objects.get(customer=active_customer)
    assert block.kind == "overdue" and block.lifted_at is not None and block.lift_reason == "Debt repaid"
    assert charge(api, "10.00").status_code == 201  # spending again, on a fresh due date
    assert parse(api.get(f"{CUSTOMER}/wallet").json()["debt_due_at"]) > due_at
    verify_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_a_partial_repayment_keeps_the_block(api, emulator, run_outbox, balance_live, active_customer, clock):
    emulator.grant_overdraft(active_customer.balance_client_id, Decimal("5000.00"), 15)
    assert balance_live.wait_notifications_idle(timeout=10)
    assert charge(api, "3000.00").status_code == 201
    clock.advance(days=30)
    call_command("run_periodic", "overdrafts_check")
    pay_topup(api, emulator, run_outbox, balance_live, "1000.00")
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert (wallet["debt"], wallet["overdue"], wallet["blocked"]) == ("2000.00", True, True)
    assert not WebhookEvent.objects.filter(type="customer.unblocked").exists()
    pay_topup(api, emulator, run_outbox, balance_live, "2500.00")
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert (wallet["balance"], wallet["debt"], wallet["blocked"]) == ("500.00", "0.00", False)
    verify_ledger_clean()
