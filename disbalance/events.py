"""Events: every change a consumer may care about, one row written in the transaction of the change.

The row is at once the feed (`GET /api/v1/events`) and the webhook (`disbalance.webhooks` delivers it after
commit): the same id in both. Domain code calls `event_emit` (or `event_emit_money` for a ledger movement,
which also raises `wallet.low_balance` on a downward crossing) and never writes the model itself.

`sequence` grows by one per customer. It is assigned inside the INSERT (`MAX(sequence) + 1` over the customer's
events, a unique index guards it), so it costs no statement of its own; callers that hold the customer's row
lock (every money path) get a gapless, race-free sequence; the others pass `customer_locked=False` and a clash
with a concurrent writer is retried under a savepoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from disbalance import metrics
from disbalance.logging import request_id_var
from disbalance.models import ConsumerService, WebhookEvent
from disbalance.money import format_amount

Type = WebhookEvent.Type

# Events that move a customer's money (each carries `amount` and the payer's resulting `balance`).
MONEY_TYPES = frozenset({
    Type.TOPUP_SUCCEEDED, Type.MONEY_RECEIVED, Type.CHARGE_SUCCEEDED, Type.REFUND_SUCCEEDED, Type.HOLD_CREATED,
    Type.HOLD_CAPTURED, Type.HOLD_RELEASED, Type.HOLD_EXPIRED, Type.WALLET_ADJUSTED, Type.WALLET_TRANSFERRED,
})
_SEQUENCE_RETRIES = 5


def _next_sequence(customer_pk: int) -> Coalesce:
    last = (WebhookEvent.objects.filter(customer_pk=customer_pk).order_by()
            .values("customer_pk").annotate(last=Max("sequence")).values("last"))
    return Coalesce(Subquery(last), Value(0)) + 1


def _insert(fields: dict[str, Any]) -> WebhookEvent:
    return WebhookEvent.objects.create(**fields)


def event_emit(
    *, service: ConsumerService, type: str, data: dict[str, Any], customer: Any = None, dedup_key: str = "",
    customer_locked: bool = False,
) -> WebhookEvent:
    """Record an event in the caller's transaction; it is delivered after commit (nothing is sent here).

    `customer` (a `customers.Customer`, or None for a service-wide event) gives the event its per-customer
    `sequence`; `data["customer"]` defaults to its external id. With a `dedup_key` the event is emitted once per
    key: a repeat returns the first event and adds nothing. `data` must be JSON-able (Decimals as strings).
    """
    if type not in Type.values:
        raise ValueError(f"unknown event type {type!r}")
    if not isinstance(data, dict):
        raise TypeError("event data must be a dict")
    if dedup_key:
        existing = WebhookEvent.objects.filter(dedup_key=dedup_key).first()
        if existing is not None:
            return existing
    fields: dict[str, Any] = {
        "service": service, "type": type, "data": data, "dedup_key": dedup_key, "request_id": request_id_var.get(),
        "status": WebhookEvent.Status.PENDING if service.webhook_url else WebhookEvent.Status.SKIPPED,
    }
    if fields["status"] == WebhookEvent.Status.PENDING:
        fields["next_attempt_at"] = timezone.now()
    if customer is not None:
        data.setdefault("customer", customer.external_id)
        fields.update(customer_pk=customer.pk, customer_external_id=customer.external_id,
                      sequence=_next_sequence(customer.pk))
    if customer_locked and not dedup_key:
        event = _insert(fields)  # the customer's lock orders the writers: no savepoint, no clash
    else:
        event = _insert_retrying(fields, dedup_key)
    _after_commit(event)
    return event


def _insert_retrying(fields: dict[str, Any], dedup_key: str) -> WebhookEvent:
    for attempt in range(_SEQUENCE_RETRIES):
        try:
            with transaction.atomic():
                return _insert(fields)
        except IntegrityError:
            if dedup_key and WebhookEvent.objects.filter(dedup_key=dedup_key).exists():
                # Another transaction emitted the same fact first (it committed while we waited on the key).
                return WebhookEvent.objects.get(dedup_key=dedup_key)
            if attempt == _SEQUENCE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


_DELIVERY_KICKERS: list[Callable[[int], None]] = []


def on_pending_event(func: Callable[[int], None]) -> Callable[[int], None]:
    """Register what runs after commit when a service has a new event to deliver (given the service id): the
    webhook dispatcher. Registered once (a second registration of another function is refused)."""
    if _DELIVERY_KICKERS and func not in _DELIVERY_KICKERS:
        raise RuntimeError("a delivery kicker is registered already")
    if func not in _DELIVERY_KICKERS:
        _DELIVERY_KICKERS.append(func)
    return func


def _after_commit(event: WebhookEvent) -> None:
    event_written(service_id=event.service_id, type=event.type, pending=event.status == WebhookEvent.Status.PENDING)


def event_written(*, service_id: int, type: str, pending: bool) -> None:
    """What follows an event row after commit (the metric of a money event; the delivery kick of a pending one).

    `event_emit` calls it; so does a writer that inserted the row in SQL itself (the lean charge's database
    function, `payments.services.charges`)."""
    type_ = type

    def committed() -> None:
        if type_ in MONEY_TYPES:
            metrics.MONEY_OPERATIONS.labels(type=type_).inc()
        if pending:
            for kick in _DELIVERY_KICKERS:
                kick(service_id)

    transaction.on_commit(committed)


# --- money events -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MoneyEvent:
    """What a wallet operation announces: its type and the operation's own fields (ids, product, reason, ...)."""

    type: str
    data: dict[str, Any]


def low_balance_threshold(customer: Any) -> Decimal | None:
    """The customer's own threshold, else its service's default, else None (no alert)."""
    own = getattr(customer, "low_balance_threshold", None)
    return own if own is not None else customer.service.low_balance_default


def event_emit_money(
    *, customer: Any, payer: Any, event: MoneyEvent, amount: Decimal, balance: Decimal, held: Decimal,
    balance_change: Decimal, extra: dict[str, Any] | None = None,
) -> WebhookEvent:
    """A money event for a customer locked by the caller, and `wallet.low_balance` if the balance (wallet +
    held, under `payer`) just crossed the threshold downwards (none while it stays below; re-armed above it).

    `balance_change` is the operation's change of that balance (0 for a hold, -captured for a capture).
    """
    payer_id = payer.external_id if payer is not None else None
    data = {
        "customer": customer.external_id, "payer": payer_id, "amount": format_amount(amount),
        "balance": format_amount(balance), "held": format_amount(held), "currency": customer.service.currency,
        **event.data, **(extra or {}),
    }
    emitted = event_emit(service=customer.service, type=event.type, data=data, customer=customer,
                         customer_locked=True)
    threshold = low_balance_threshold(customer)
    before = balance - balance_change
    if threshold is not None and before >= threshold > balance:
        event_emit(service=customer.service, type=Type.WALLET_LOW_BALANCE, customer=customer, customer_locked=True,
                   data={"customer": customer.external_id, "payer": payer_id, "balance": format_amount(balance),
                         "threshold": format_amount(threshold), "currency": customer.service.currency,
                         "cause": {"type": event.type, "event": str(emitted.id)}})
    return emitted


# --- the feed ---------------------------------------------------------------------------------------------------

def events_for_service(*, service: ConsumerService, type: str | None = None, customer: str | None = None,
                       since: datetime | None = None) -> QuerySet[WebhookEvent]:
    """The service's events, newest first (the API paginates by `created_at`)."""
    qs = WebhookEvent.objects.filter(service=service)
    if type:
        qs = qs.filter(type=type)
    if customer:
        qs = qs.filter(customer_external_id=customer)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs.order_by("-created_at")


def events_purge(*, now: datetime | None = None) -> int:
    """Delete events older than EVENTS_RETENTION_DAYS (at least 30) that are no longer waiting for delivery."""
    days = max(30, settings.EVENTS_RETENTION_DAYS)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    old = WebhookEvent.objects.filter(created_at__lt=cutoff).exclude(status=WebhookEvent.Status.PENDING)
    deleted = 0
    while True:
        ids = list(old.values_list("pk", flat=True)[:1000])
        if not ids:
            return deleted
        WebhookEvent.objects.filter(pk__in=ids).delete()
        deleted += len(ids)


@shared_task(name="disbalance.events.purge", ignore_result=True)
def events_purge_task() -> int:
    return events_purge()
