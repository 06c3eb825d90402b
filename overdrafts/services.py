"""Writes for overdrafts and agency credit.

Hooks called by payments inside the money transaction, with the customer row already locked:
- `spend_limit(customer=, payer=)`: how far below zero this spend may take the payer's wallet. Refuses at once
  (`409 customer_blocked`) a customer whose own debt is past due, even before the periodic check blocked it.
  Direct customer: its effective overdraft limit (`selectors.overdraft_limit`). Under an agency: the room left
  on the agency's postpaid credit, with the agency's `AgencyCredit` row locked (`lock_agency_credit`) until the
  transaction ends, so that all the agency's customers spend against the shared limit one at a time.
- `after_spend(customer=, payer=)` / `after_money_in(customer=, payer=)`: after any money movement. Both
  re-derive the state from the ledger (a capture, for instance, is both), so they are the same function:
  for the customer itself as payer, the debt clock and the overdue block (repayment unblocks at once); for an
  agency, the credit `used` figure.

Locking: customer (payments) -> AgencyCredit -> Overdraft / Block rows. No transaction locks two customers,
and the credit pull locks an AgencyCredit alone, so the order never inverts. Under the credit lock, what the
agency's *other* customers use is re-read from the ledger: every spend that lowers a wallet under the agency
holds that lock until it commits, so the figure read cannot grow behind our back (money coming in only lowers
it). Only a Balance-side correction (`wallet_adjust` downwards) lowers a wallet without it.

Blocks (`Block` rows, kinds kept apart): `overdue` is set when the due date has passed with debt left (by the
periodic `overdrafts_check`, and by every money movement of the customer) and lifted by repayment; `manual` is
set and lifted by support only. `customer.blocked` mirrors "has an open block"; each flip emits the
`customer.blocked` / `customer.unblocked` webhook in the same transaction.

Limits from Balance: `NotifyClient2` (the `client` notification applier; Tid rule per customer) and the
periodic `overdrafts_pull` (GetOverdraftParams; NOT_FOUND = no overdraft; no Tid, so it overwrites without
moving `last_tid`). Credit limits: `agency_credits_pull` (GetClientCreditLimits).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from agencies.models import Agency, Contract
from balance_gateway.client import BalanceClient
from balance_gateway.exceptions import BalanceError
from balance_gateway.models import BalanceNotification, RegistrationStatus
from balance_gateway.notifications import ClientNotification, notification_applier
from customers.models import Customer
from disbalance.exceptions import CustomerBlocked, ValidationFailed
from disbalance.money import CENT, MAX_AMOUNT, ZERO, format_amount
from disbalance.webhooks import webhook_emit
from overdrafts import selectors
from overdrafts.exceptions import NoOverdraftForAgencyCustomer, NotBlocked
from overdrafts.models import AgencyCredit, Block, LimitOverride, Overdraft
from wallets.services import lock_customer

logger = logging.getLogger(__name__)

# Set to False only by the concurrency experiment that shows the agency-credit test fails without the lock.
_credit_lock_enabled = True


def _require_atomic(what: str) -> None:
    if not connection.in_atomic_block:
        raise RuntimeError(f"{what} must run inside transaction.atomic")


# --- locks ----------------------------------------------------------------------------------------------------

def lock_agency_credit(agency: Agency) -> AgencyCredit:
    """Lock (creating it if needed) the agency's credit row; taken after the customer, before anything else."""
    _require_atomic("lock_agency_credit")
    qs = AgencyCredit.objects.select_for_update() if _credit_lock_enabled else AgencyCredit.objects.all()
    credit = qs.filter(agency=agency).first()
    if credit is None:
        try:
            with transaction.atomic():
                AgencyCredit.objects.create(agency=agency)
        except IntegrityError:
            pass  # created by a concurrent transaction, which has committed by now
        credit = qs.get(agency=agency)
    return credit


def _lock_overdraft(customer_id: int) -> Overdraft | None:
    return Overdraft.objects.select_for_update().filter(customer_id=customer_id).first()


# --- the hooks called by payments -----------------------------------------------------------------------------

def spend_limit(*, customer: Customer, payer: Agency | None) -> Decimal:
    """How far below zero this spend may take the payer's wallet (overdraft or agency credit).

    Raises `CustomerBlocked` when the customer's own debt is past due (the block itself is written by the
    periodic check or the next money movement: this transaction is about to roll back).
    """
    _require_atomic("spend_limit")
    overdraft = Overdraft.objects.filter(customer_id=customer.pk).first()
    _refuse_if_overdue(customer, overdraft)
    if payer is None:
        if customer.agency_id is not None:
            return ZERO
        return selectors.overdraft_limit(customer=customer, overdraft=overdraft)
    contract = selectors.postpaid_contract(agency=payer)
    if contract is None:
        return ZERO
    credit = lock_agency_credit(payer)
    limit = selectors.agency_credit_limit(contract=contract, credit=credit)
    if credit.contract_id != contract.balance_contract_id or credit.credit_limit != limit:
        credit.contract_id, credit.credit_limit, credit.updated_at = contract.balance_contract_id, limit, timezone.now()
        credit.save(update_fields=["contract_id", "credit_limit", "updated_at"])
    others = selectors.agency_credit_used(agency=payer, exclude_customer_id=customer.pk)
    return max(ZERO, limit - others)


def after_spend(*, customer: Customer, payer: Agency | None) -> None:
    """Money left the payer's wallet of the customer (a debt may have started)."""
    _after_money_movement(customer, payer)


def after_money_in(*, customer: Customer, payer: Agency | None) -> None:
    """Money came into (or back to) the payer's wallet of the customer (a debt may be repaid: unblock)."""
    _after_money_movement(customer, payer)


def _after_money_movement(customer: Customer, payer: Agency | None) -> None:
    _require_atomic("overdraft hooks")
    if payer is None:
        _debt_refresh(customer)
    else:
        _credit_used_refresh(payer)


def _refuse_if_overdue(customer: Customer, overdraft: Overdraft | None) -> None:
    if overdraft is None or overdraft.due_at is None or overdraft.due_at > timezone.now():
        return
    debt = selectors.own_debt(customer_id=customer.pk)
    if debt > 0:
        raise CustomerBlocked(f"Customer {customer.external_id!r} has an overdue debt of {format_amount(debt)} "
                              f"(due {overdraft.due_at:%Y-%m-%d %H:%M} UTC): spending is refused until repaid.")


def _credit_used_refresh(agency: Agency) -> None:
    credit = (AgencyCredit.objects.select_for_update() if _credit_lock_enabled else AgencyCredit.objects
              ).filter(agency=agency).first()
    if credit is None:
        return  # no postpaid credit was ever used under this agency
    used = selectors.agency_credit_used(agency=agency)
    if credit.used != used:
        credit.used, credit.updated_at = used, timezone.now()
        credit.save(update_fields=["used", "updated_at"])


# --- debt, due date and the overdue block ---------------------------------------------------------------------

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
    debt = selectors.own_debt(customer_id=customer.pk)
    overdraft = _lock_overdraft(customer.pk)
    if debt == 0 and overdraft is None:
        # No debt and never a due date: no overdue block can be open (one needs a due date first).
        return DebtRefresh(debt=debt, due_at=None, blocked=False, unblocked=False)
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
        webhook_emit(service=fresh.service, type="customer.blocked", data={**data, "reason": cause.reason},
                     dedup_key=f"customer.blocked:{cause.pk}")
    else:
        webhook_emit(service=fresh.service, type="customer.unblocked",
                     data={**data, "reason": cause.lift_reason}, dedup_key=f"customer.unblocked:{cause.pk}")
    logger.info("customer block changed", extra={"customer": fresh.pk, "blocked": blocked, "kind": cause.kind})


def overdrafts_check() -> dict[str, int]:
    """The periodic re-check: open or lift overdue blocks of every customer with debt, a debt clock or an open
    overdue block (also catches a debt started by a movement without hooks, e.g. a support adjustment)."""
    from wallets.models import Account

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


# --- limits from Balance ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BalanceOverdraft:
    """An overdraft as Balance reports it (NotifyClient2 or GetOverdraftParams)."""

    limit: Decimal
    spent: Decimal
    min_payment_term: date | None
    banned: bool
    currency: str


def balance_overdraft_from_notification(notification: ClientNotification) -> BalanceOverdraft:
    """NotifyClient2, already parsed and checked by the gateway."""
    return BalanceOverdraft(limit=notification.overdraft_limit, spent=notification.overdraft_spent,
                            min_payment_term=notification.min_payment_term, banned=notification.overdraft_ban,
                            currency=notification.currency[:3])


@transaction.atomic
def overdraft_apply_balance_params(*, customer_id: int, params: BalanceOverdraft | None,
                                   tid: int | None = None) -> str:
    """Store what Balance says about the customer's overdraft (`params` None: Balance has none).

    With a `tid` (a notification): applied only if greater than the last one applied (`stale` otherwise).
    Without (the pull): always applied, `last_tid` unchanged. Returns `applied`, `stale` or `unchanged`.
    Stored as sent even for a customer served by an agency: the selectors never use it while it has one.
    """
    customer = lock_customer(customer_id)
    overdraft = _lock_overdraft(customer.pk)
    now = timezone.now()
    if overdraft is not None and tid is not None and tid <= overdraft.last_tid:
        return "stale"
    if overdraft is None:
        if params is None and tid is None:
            return "unchanged"  # no overdraft in Balance and nothing stored: keep it that way
        overdraft = Overdraft(customer=customer)
    wanted = {
        "in_balance": params is not None,
        "granted_limit": params.limit if params else ZERO,
        "balance_spent": params.spent if params else ZERO,
        "balance_min_payment_term": params.min_payment_term if params else None,
        "banned": params.banned if params else False,
        "currency": params.currency if params else overdraft.currency,
    }
    changed = overdraft._state.adding or any(getattr(overdraft, k) != v for k, v in wanted.items())
    if tid is not None and tid != overdraft.last_tid:
        changed = True
        overdraft.last_tid = tid
    if not changed:
        Overdraft.objects.filter(pk=overdraft.pk).update(balance_refreshed_at=now)
        return "unchanged"
    for field, value in wanted.items():
        setattr(overdraft, field, value)
    overdraft.balance_refreshed_at = overdraft.updated_at = now
    overdraft.save()
    return "applied"


def _for_our_service(notification: ClientNotification, customer: Customer) -> bool:
    """A client may get one NotifyClient2 per (firm, service) with different limits: only the one for the
    customer's service (and BALANCE_OVERDRAFT_FIRM_ID when set) is the customer's limit here. A notification that
    names no service or firm is taken as the service's own (the page's struct names neither)."""
    if notification.service_id is not None and notification.service_id != customer.service.balance_service_id:
        return False
    firm = settings.BALANCE_OVERDRAFT_FIRM_ID
    return notification.firm_id is None or not firm or notification.firm_id == firm


@notification_applier("client")
class ClientNotifications:
    """NotifyClient2: a client's overdraft, keyed (and Tid-ordered) per client, firm and service.

    A customer's client: applied per customer through `overdraft_apply_balance_params` (Tid rule). An agency's
    client is known (answered success) but never has an overdraft: stored, not applied (`received`); so is a
    limit for another service or firm.
    """

    @staticmethod
    def exists(notification: ClientNotification) -> bool:
        client_id = notification.client_id
        return (Customer.objects.filter(balance_client_id=client_id).exists()
                or Agency.objects.filter(balance_client_id=client_id).exists())

    @staticmethod
    def apply(notification: ClientNotification) -> str:
        customers = [c for c in Customer.objects.filter(balance_client_id=notification.client_id)
                     .select_related("service").order_by("pk") if _for_our_service(notification, c)]
        if not customers:
            return BalanceNotification.Outcome.RECEIVED
        params = balance_overdraft_from_notification(notification)
        outcomes = [overdraft_apply_balance_params(customer_id=c.pk, params=params, tid=notification.tid)
                    for c in customers]
        return "applied" if "applied" in outcomes else "stale"


def overdrafts_pull(*, customers: list[Customer] | None = None, client: BalanceClient | None = None
                    ) -> dict[str, int]:
    """GetOverdraftParams for every direct active customer (or the given ones): the client's auto-overdraft
    settings (ClientLimit), which are not its overdraft limit. The limit comes only from NotifyClient2, so this
    never changes a stored limit; it counts who has auto-overdraft on, for support. One customer's failure does
    not stop the others."""
    client = client or BalanceClient()
    if customers is None:
        queryset = (Customer.objects.filter(agency__isnull=True, status=RegistrationStatus.ACTIVE,
                                            balance_client_id__isnull=False)
                    .select_related("service").order_by("pk"))
        customers_iter = queryset.iterator(chunk_size=settings.OVERDRAFT_PULL_BATCH)
    else:
        customers_iter = iter(customers)
    totals = {"customers": 0, "auto_overdraft": 0, "none": 0, "failed": 0, "skipped": 0}
    for customer in customers_iter:
        totals["customers"] += 1
        if customer.agency_id is not None or customer.balance_client_id is None:
            totals["skipped"] += 1
            continue
        try:
            found = client.get_overdraft_params(service_id=customer.service.balance_service_id,
                                                client_id=customer.balance_client_id)
        except BalanceError as exc:
            totals["failed"] += 1
            logger.warning("overdraft pull failed", extra={"customer": customer.pk, "error": str(exc)})
            continue
        totals["auto_overdraft" if found is not None and found.client_limit > 0 else "none"] += 1
    return totals


def agency_credits_pull(*, agencies: list[Agency] | None = None, client: BalanceClient | None = None
                        ) -> dict[str, int]:
    """GetClientCreditLimits for agencies with an active postpaid contract: Balance's LIMIT_TOTAL / LIMIT_SPENT of
    the contract the credit comes from, kept on `AgencyCredit` (the total is the credit limit from then on)."""
    client = client or BalanceClient()
    if agencies is None:
        agencies = list(Agency.objects.filter(
            balance_client_id__isnull=False, contracts__active=True,
            contracts__payment_type=Contract.PaymentType.POSTPAID,
        ).distinct().select_related("service").order_by("pk"))
    totals = {"agencies": 0, "refreshed": 0, "failed": 0, "skipped": 0}
    for agency in agencies:
        totals["agencies"] += 1
        contract = selectors.postpaid_contract(agency=agency)
        if contract is None or agency.balance_client_id is None:
            totals["skipped"] += 1
            continue
        try:
            limits = client.get_client_credit_limits(client_id=agency.balance_client_id,
                                                     product_id=settings.BALANCE_WALLET_PRODUCT_ID)
        except BalanceError as exc:
            totals["failed"] += 1
            logger.warning("credit limits pull failed", extra={"agency": agency.pk, "error": str(exc)})
            continue
        found = next((lim for lim in limits.limits if lim.contract_id == contract.balance_contract_id), None)
        if found is None:
            totals["skipped"] += 1
            continue
        with transaction.atomic():
            credit = lock_agency_credit(agency)
            credit.balance_limit_total, credit.balance_limit_spent = max(ZERO, found.limit_total), found.limit_spent
            credit.balance_contract_id, credit.balance_refreshed_at = found.contract_id, timezone.now()
            credit.contract_id = contract.balance_contract_id
            credit.credit_limit = selectors.agency_credit_limit(contract=contract, credit=credit)
            credit.used = selectors.agency_credit_used(agency=agency)
            credit.updated_at = timezone.now()
            credit.save()
        totals["refreshed"] += 1
    return totals


# --- support: overrides and blocks ------------------------------------------------------------------------------

def _reason(reason: str) -> str:
    if not reason or not reason.strip():
        raise ValidationFailed("A reason is required.", errors={"reason": ["This field is required."]})
    return reason.strip()[:500]


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
    reason = _reason(reason)
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
    now = timezone.now()
    for previous in LimitOverride.objects.select_for_update().filter(customer=customer, ended_at__isnull=True):
        previous.ended_at, previous.ended_by, previous.end_reason = now, by, f"Replaced: {check.reason}"[:500]
        previous.save(update_fields=["ended_at", "ended_by", "end_reason"])
    override = LimitOverride.objects.create(
        customer=customer, limit=check.limit, raises=check.raises, granted_when_set=check.granted,
        reason=check.reason, expires_at=expires_at, created_by=by, created_at=now,
    )
    logger.info("overdraft override set", extra={"customer": customer.pk, "limit": format_amount(check.limit),
                                                 "raises": check.raises, "by": str(by)})
    return override


@transaction.atomic
def overdraft_override_end(*, override: LimitOverride, reason: str, by: AbstractBaseUser) -> LimitOverride:
    """End an open override now: the limit Balance granted applies again."""
    reason = _reason(reason)
    _require_perm(by, "overdrafts.change_limitoverride", "Ending an overdraft override")
    lock_customer(override.customer_id)
    override = LimitOverride.objects.select_for_update().get(pk=override.pk)
    if override.ended_at is None:
        override.ended_at, override.ended_by, override.end_reason = timezone.now(), by, reason
        override.save(update_fields=["ended_at", "ended_by", "end_reason"])
    return override


@transaction.atomic
def customer_block(*, customer: Customer, reason: str, by: AbstractBaseUser) -> Block:
    """Support blocks the customer by hand: charges and holds get `409 customer_blocked` until support
    unblocks it (a repayment does not)."""
    reason = _reason(reason)
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
    reason = _reason(reason)
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
