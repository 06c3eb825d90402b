"""Debt, due date and the overdue block of a customer paying for itself."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from customers.locks import lock_customer
from customers.models import Customer
from disbalance.money import format_amount
from disbalance.webhooks import webhook_emit
from overdrafts import selectors
from overdrafts.locks import _lock_overdraft
from overdrafts.models import Block, Overdraft
from overdrafts.services.auto_overdraft import auto_overdraft_enqueue_if_changed
from wallets.models import Account

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DebtRefresh:
    debt: Decimal
    due_at: datetime | None
    blocked: bool  # an overdue block was opened
    unblocked: bool  # an overdue block was lifted


def payment_term() -> timedelta:
    return timedelta(days=settings.OVERDRAFT_PAYMENT_TERM_DAYS)


def _debt_refresh(customer: Customer) -> DebtRefresh:
    """Re-derive the customer's own debt clock and overdue block from the ledger (customer locked).

    The due date is set when the balance first goes below zero (now + the payment term) and cleared when it is
    back at zero or above; past it with debt left, an `overdue` block opens; when that is no longer true
    (repaid, or support moved the due date), the block is lifted.
    """
    now = timezone.now()
    debt, has_overdraft = selectors.own_debt_and_overdraft(customer_id=customer.pk)
    if debt == 0 and not has_overdraft:
        # No debt and never a due date: no overdue block can be open (one needs a due date first). "No Overdraft
        # row" is exact: every writer of one holds the customer's lock, held here since before this read's
        # snapshot; and a row that does not exist is nothing to lock. One statement for a customer that pays.
        return DebtRefresh(debt=debt, due_at=None, blocked=False, unblocked=False)
    overdraft = _lock_overdraft(customer.pk)
    if debt > 0:
        if overdraft is None:
            overdraft = Overdraft(customer_id=customer.pk)
        if overdraft.debt_since is None:
            overdraft.debt_since, overdraft.due_at, overdraft.updated_at = now, now + payment_term(), now
            overdraft.save()
    elif overdraft is not None and overdraft.debt_since is not None:
        overdraft.debt_since = overdraft.due_at = None
        overdraft.updated_at = now
        overdraft.save()
    due_at = overdraft.due_at if overdraft is not None and debt > 0 else None
    overdue = due_at is not None and due_at <= now
    open_block = Block.objects.select_for_update().filter(
        customer_id=customer.pk, kind=Block.Kind.OVERDUE, lifted_at__isnull=True).first()
    blocked = unblocked = False
    if overdue and open_block is None:
        block = Block.objects.create(
            customer_id=customer.pk, kind=Block.Kind.OVERDUE, created_at=now,
            reason=f"Debt of {format_amount(debt)} was due at {due_at:%Y-%m-%d %H:%M} UTC",
        )
        _sync_blocked_flag(customer, cause=block)
        blocked = True
    elif not overdue and open_block is not None:
        open_block.lifted_at = now
        open_block.lift_reason = "Debt repaid" if debt == 0 else f"Due date moved to {due_at:%Y-%m-%d %H:%M} UTC"
        open_block.save(update_fields=["lifted_at", "lift_reason"])
        _sync_blocked_flag(customer, cause=open_block)
        unblocked = True
    if overdraft is not None and overdraft.in_balance:
        # Balance's auto-overdraft must cover at least the debt made (a lowered limit must not uncover it).
        auto_overdraft_enqueue_if_changed(customer=customer, overdraft=overdraft, debt=debt, retry_refused=False)
    return DebtRefresh(debt=debt, due_at=due_at, blocked=blocked, unblocked=unblocked)


def _sync_blocked_flag(customer: Customer, *, cause: Block) -> None:
    """Make `customer.blocked` say whether an open block exists; on a flip, emit the webhook (same transaction).

    Saved through the model (not a queryset update) so that the customer's history records the change.
    """
    fresh = Customer.objects.select_related("service").get(pk=customer.pk)  # locked by this transaction
    open_kinds = sorted(Block.objects.filter(customer_id=customer.pk, lifted_at__isnull=True)
                        .values_list("kind", flat=True))
    blocked = bool(open_kinds)
    customer.blocked = blocked
    if fresh.blocked == blocked:
        return
    fresh.blocked, fresh.updated_at = blocked, timezone.now()
    fresh.save(update_fields=["blocked", "updated_at"])
    status = selectors.debt_status(customer=fresh)
    data: dict[str, Any] = {
        "customer": fresh.external_id, "blocked": blocked, "reasons": open_kinds,
        "debt": format_amount(status.debt), "debt_due_at": status.due_at.isoformat() if status.due_at else None,
    }
    if blocked:
        webhook_emit(service=fresh.service, customer=fresh, type="customer.blocked",
                     data={**data, "reason": cause.reason},
                     dedup_key=f"customer.blocked:{cause.pk}")
    else:
        webhook_emit(service=fresh.service, customer=fresh, type="customer.unblocked",
                     data={**data, "reason": cause.lift_reason}, dedup_key=f"customer.unblocked:{cause.pk}")
    logger.info("customer block changed", extra={"customer": fresh.pk, "blocked": blocked, "kind": cause.kind})


def overdrafts_check() -> dict[str, int]:
    """The periodic re-check: open or lift overdue blocks of every customer with debt, a debt clock or an open
    overdue block (also catches a debt started by a movement without hooks, e.g. a support adjustment)."""
    ids = set(Overdraft.objects.filter(debt_since__isnull=False).values_list("customer_id", flat=True))
    ids |= set(Block.objects.filter(kind=Block.Kind.OVERDUE, lifted_at__isnull=True)
               .values_list("customer_id", flat=True))
    # wallet + held < 0 needs wallet < 0 (held is never negative): a cheap filter, re-checked under the lock.
    ids |= set(Account.objects.filter(kind=Account.Kind.WALLET, payer_agency__isnull=True, balance__lt=0)
               .values_list("customer_id", flat=True))
    totals = {"checked": 0, "blocked": 0, "unblocked": 0}
    for customer_id in sorted(ids):
        with transaction.atomic():
            result = _debt_refresh(lock_customer(customer_id))
        totals["checked"] += 1
        totals["blocked"] += int(result.blocked)
        totals["unblocked"] += int(result.unblocked)
    return totals
