"""Support's overrides and blocks: every write checks the acting user's permission and needs a reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from customers.locks import lock_customer
from customers.models import Customer
from disbalance.exceptions import ValidationFailed
from disbalance.money import CENT, MAX_AMOUNT, ZERO, format_amount
from disbalance.reasons import required_reason
from overdrafts import selectors
from overdrafts.exceptions import NoOverdraftForAgencyCustomer, NotBlocked
from overdrafts.locks import _lock_overdraft
from overdrafts.models import Block, LimitOverride, Overdraft
from overdrafts.services.auto_overdraft import auto_overdraft_enqueue_if_changed
from overdrafts.services.debt import _sync_blocked_flag
from overdrafts.services.limits import overdraft_limit_announce

logger = logging.getLogger(__name__)


def _require_perm(user: AbstractBaseUser, perm: str, what: str) -> None:
    if user is None or not user.has_perm(perm):  # type: ignore[attr-defined]
        raise PermissionDenied(f"{what} needs the {perm} permission.")


def _limit(value: Decimal) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite() or value != value.quantize(CENT) \
            or value < 0 or value > MAX_AMOUNT:
        raise ValidationFailed("limit must be an amount of at least 0.00 with at most 2 places",
                               errors={"limit": ["Must be an amount of at least 0.00 with at most 2 places."]})
    return value.quantize(CENT)


@dataclass(frozen=True)
class OverrideCheck:
    limit: Decimal
    reason: str
    granted: Decimal
    raises: bool


def overdraft_override_validate(*, customer: Customer, limit: Decimal, reason: str, by: AbstractBaseUser,
                                expires_at: datetime | None = None) -> OverrideCheck:
    """The checks of `overdraft_override_set`, without writing (the admin form shows their errors first)."""
    reason = required_reason(reason)[:500]
    limit = _limit(limit)
    _require_perm(by, "overdrafts.add_limitoverride", "Setting an overdraft limit")
    if customer.agency_id is not None:
        raise NoOverdraftForAgencyCustomer(
            f"Customer {customer.external_id!r} is served by an agency and has no overdraft.")
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed("The expiry must be in the future.", errors={"expires_at": ["Must be in the future."]})
    overdraft = Overdraft.objects.filter(customer=customer).first()
    granted = overdraft.granted_limit if overdraft is not None and overdraft.in_balance else ZERO
    raises = limit > granted
    if raises:
        _require_perm(by, "overdrafts.raise_limit", "Raising an overdraft limit above the one Balance granted")
        if expires_at is None:
            raise ValidationFailed("Raising the limit above the granted one needs an expiry.",
                                   errors={"expires_at": ["Required when raising the limit."]})
        if expires_at > now + timedelta(days=settings.OVERDRAFT_RAISE_MAX_DAYS):
            raise ValidationFailed(f"A raised limit expires within {settings.OVERDRAFT_RAISE_MAX_DAYS} days.",
                                   errors={"expires_at": ["Too far away."]})
    return OverrideCheck(limit=limit, reason=reason, granted=granted, raises=raises)


@transaction.atomic
def overdraft_override_set(*, customer: Customer, limit: Decimal, reason: str, by: AbstractBaseUser,
                           expires_at: datetime | None = None) -> LimitOverride:
    """Support sets the customer's effective limit: at most the granted limit with `add_limitoverride`; above
    it only with `raise_limit`, a reason and an expiry (at most OVERDRAFT_RAISE_MAX_DAYS away). Replaces the
    open override, if any (ended with the new reason). `granted` is Balance's limit, ban or not."""
    customer = lock_customer(customer.pk)
    check = overdraft_override_validate(customer=customer, limit=limit, reason=reason, by=by, expires_at=expires_at)
    before = selectors.overdraft_limit(customer=customer)
    now = timezone.now()
    for previous in LimitOverride.objects.select_for_update().filter(customer=customer, ended_at__isnull=True):
        previous.ended_at, previous.ended_by, previous.end_reason = now, by, f"Replaced: {check.reason}"[:500]
        previous.save(update_fields=["ended_at", "ended_by", "end_reason"])
    override = LimitOverride.objects.create(
        customer=customer, limit=check.limit, raises=check.raises, granted_when_set=check.granted,
        reason=check.reason, expires_at=expires_at, created_by=by, created_at=now,
    )
    overdraft_limit_announce(customer=customer, before=before, cause="support", reason=check.reason)
    auto_overdraft_enqueue_if_changed(customer=customer)
    logger.info("overdraft override set", extra={"customer": customer.pk, "limit": format_amount(check.limit),
                                                 "raises": check.raises, "by": str(by)})
    return override


@transaction.atomic
def overdraft_override_end(*, override: LimitOverride, reason: str, by: AbstractBaseUser) -> LimitOverride:
    """End an open override now: the limit Balance granted applies again."""
    reason = required_reason(reason)[:500]
    _require_perm(by, "overdrafts.change_limitoverride", "Ending an overdraft override")
    customer = lock_customer(override.customer_id)
    override = LimitOverride.objects.select_for_update().get(pk=override.pk)
    if override.ended_at is None:
        before = selectors.overdraft_limit(customer=customer)
        override.ended_at, override.ended_by, override.end_reason = timezone.now(), by, reason
        override.save(update_fields=["ended_at", "ended_by", "end_reason"])
        overdraft_limit_announce(customer=customer, before=before, cause="support", reason=reason)
        auto_overdraft_enqueue_if_changed(customer=customer)
    return override


EXPIRED_REASON = "Expired"


def overrides_expire(*, now: datetime | None = None) -> int:
    """End every open override whose expiry has passed (periodic, every minute), each in its own transaction:
    `ended_at` is its expiry, `end_reason` "Expired", no user. The limit already stopped counting at the expiry
    (`LimitOverride.active_at`); this tells the consumer (`overdraft.limit_changed`, cause `support`, previous
    limit the override's) and Balance (the auto-overdraft follows the limit down, never below the debt)."""
    now = now or timezone.now()
    ended = 0
    due = LimitOverride.objects.filter(ended_at__isnull=True, expires_at__lte=now).values_list("pk", "customer_id")
    for pk, customer_id in due:
        with transaction.atomic():
            customer = lock_customer(customer_id)  # lock order: customer first, as every override write
            override = LimitOverride.objects.select_for_update().get(pk=pk)
            if override.ended_at is not None:
                continue  # ended or replaced by support in between
            expires_at = override.expires_at
            before = selectors.overdraft_limit(customer=customer, now=expires_at - timedelta(microseconds=1))
            override.ended_at, override.end_reason = expires_at, EXPIRED_REASON
            override.save(update_fields=["ended_at", "end_reason"])
            overdraft_limit_announce(customer=customer, before=before, cause="support", reason=EXPIRED_REASON)
            auto_overdraft_enqueue_if_changed(customer=customer)
            ended += 1
    return ended


@transaction.atomic
def customer_block(*, customer: Customer, reason: str, by: AbstractBaseUser) -> Block:
    """Support blocks the customer by hand: charges and holds get `409 customer_blocked` until support
    unblocks it (a repayment does not)."""
    reason = required_reason(reason)[:500]
    _require_perm(by, "overdrafts.add_block", "Blocking a customer")
    customer = lock_customer(customer.pk)
    block = Block.objects.filter(customer=customer, kind=Block.Kind.MANUAL, lifted_at__isnull=True).first()
    if block is not None:
        return block
    block = Block.objects.create(customer=customer, kind=Block.Kind.MANUAL, reason=reason, created_by=by,
                                 created_at=timezone.now())
    _sync_blocked_flag(customer, cause=block)
    return block


@transaction.atomic
def customer_unblock(*, customer: Customer, reason: str, by: AbstractBaseUser,
                     new_due_at: datetime | None = None) -> list[Block]:
    """Support lifts the manual block; with `new_due_at` (grace) it also moves the due date of the customer's
    debt and lifts the overdue block. Without it an overdue block stays: it lifts itself on repayment."""
    reason = required_reason(reason)[:500]
    _require_perm(by, "overdrafts.change_block", "Unblocking a customer")
    customer = lock_customer(customer.pk)
    now = timezone.now()
    lifted: list[Block] = []
    manual = Block.objects.select_for_update().filter(customer=customer, kind=Block.Kind.MANUAL,
                                                      lifted_at__isnull=True).first()
    if manual is not None:
        manual.lifted_at, manual.lifted_by, manual.lift_reason = now, by, reason
        manual.save(update_fields=["lifted_at", "lifted_by", "lift_reason"])
        lifted.append(manual)
    if new_due_at is not None:
        if new_due_at <= now:
            raise ValidationFailed("The new due date must be in the future.",
                                   errors={"new_due_at": ["Must be in the future."]})
        overdraft = _lock_overdraft(customer.pk)
        if overdraft is None or overdraft.due_at is None:
            raise NotBlocked(f"Customer {customer.external_id!r} has no debt with a due date to move.")
        overdraft.due_at, overdraft.updated_at = new_due_at, now
        overdraft.save()
        overdue = Block.objects.select_for_update().filter(customer=customer, kind=Block.Kind.OVERDUE,
                                                           lifted_at__isnull=True).first()
        if overdue is not None:
            overdue.lifted_at, overdue.lifted_by = now, by
            overdue.lift_reason = f"{reason} (due date moved to {new_due_at:%Y-%m-%d %H:%M} UTC)"[:500]
            overdue.save(update_fields=["lifted_at", "lifted_by", "lift_reason"])
            lifted.append(overdue)
    if not lifted:
        if new_due_at is not None:
            return []  # only the due date moved (the overdue block was not open yet)
        raise NotBlocked(f"Customer {customer.external_id!r} has no manual block"
                         + (" (its overdue block lifts on repayment, or give a new due date)."
                            if Block.objects.filter(customer=customer, lifted_at__isnull=True).exists() else "."))
    _sync_blocked_flag(customer, cause=lifted[-1])
    return lifted
