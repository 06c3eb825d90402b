"""Notifications from Balance (NotifyOrder2, NotifyClient2): parsed once into typed objects, stored first, then
applied if their Tid is new.

Parsing (`parse_notification`) refuses a struct that is not version 2's: ids, Tid (13-17 digits in practice, any
positive integer accepted), quantities exact to 6 places, money to 2. Each kind has one applier, registered by the
app that owns the object (orders: payments; clients: overdrafts): `exists(notification)` and
`apply(notification) -> "applied" | "stale" | "received"`. The stored row and the application commit together; a
duplicate Tid is refused by the database and answered as success. A second applier for a kind is refused at start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.utils import timezone

from balance_gateway import wire
from balance_gateway.models import BalanceNotification
from disbalance.money import MAX_AMOUNT

logger = logging.getLogger(__name__)

ORDER = "order"
CLIENT = "client"
METHOD_KINDS = {"NotifyOrder2": ORDER, "NotifyClient2": CLIENT}


class InvalidNotification(ValueError):
    """Not a version-2 notification: answered INVALID_PARAM, nothing stored."""


@dataclass(frozen=True, slots=True)
class OrderNotification:
    """NotifyOrder2: an order's totals (never deltas). `consume_sum`/`consume_amount` are money; `*_qty` are in
    the product's unit. On a grouped child, `consume_amount` is what covers it, not new money."""

    service_id: int
    service_order_id: str
    tid: int
    consume_qty: Decimal
    consume_sum: Decimal
    consume_amount: Decimal
    completion_qty: Decimal
    consume_currency: str
    signal: int | None = None
    signal_description: str = ""
    product_currency: str = ""
    total_consume_qty: Decimal | None = None
    overdraft_limit: Decimal | None = None
    overdraft_spent_qty: Decimal | None = None

    kind = ORDER

    @property
    def object_key(self) -> str:
        return f"{self.service_id}:{self.service_order_id}"


@dataclass(frozen=True, slots=True)
class ClientNotification:
    """NotifyClient2: a client's overdraft. A client may get one per (firm, service) with different limits, and the
    struct names neither: `service_id` is the service whose notification URL Balance called
    (`/balance/notify/<ServiceID>`, the URL configured for that service in Balance), None when the URL does not
    say. The Tid rule is kept per (client, service)."""

    client_id: int
    tid: int
    currency: str
    overdraft_limit: Decimal
    overdraft_spent: Decimal
    min_payment_term: date | None
    overdraft_ban: bool
    business_unit: bool = False
    non_resident: bool = False
    migrate_to_currency_done: bool = False
    can_be_force_currency_converted: bool = False
    has_equivalent_or_brand_clients: bool = False
    service_id: int | None = None

    kind = CLIENT

    @property
    def object_key(self) -> str:
        return str(self.client_id) if self.service_id is None else f"{self.client_id}@{self.service_id}"


Notification = OrderNotification | ClientNotification


def _tid(value: Any) -> int:
    result = wire.id_(value)
    if result <= 0 or result >= 10**18:
        raise ValueError("Tid must be a positive integer")
    return result


def _positive_id(value: Any, name: str) -> int:
    result = wire.id_(value)
    if result <= 0 or result >= 10**18:
        raise ValueError(f"{name} must be a positive integer")
    return result


def _total(value: Any, name: str, reader: Any = wire.money) -> Decimal:
    amount = reader(value)
    if amount < 0 or amount > MAX_AMOUNT:
        raise ValueError(f"{name} must be from 0 to {MAX_AMOUNT}")
    return amount


def _optional(data: dict[str, Any], key: str, reader: Any) -> Any:
    value = data.get(key)
    return None if value is None or value == "" else reader(value)


def _signal(value: Any) -> int:
    """`Signal`: the page gives no type; an int, a digit string or an XML-RPC boolean."""
    return int(value) if isinstance(value, bool) else wire.id_(value)


def _informational(data: dict[str, Any], key: str, reader: Any, default: Any) -> Any:
    """`wire.informational` of a member (the raw value stays in the stored payload)."""
    return wire.informational(data.get(key), reader, default)


def parse_notification(method: str, data: dict[str, Any], *, service_id: int | None = None) -> Notification:
    """The typed notification for `NotifyOrder2` / `NotifyClient2` (without the `BalanceClient.` prefix);
    `service_id`: the service whose notification URL was called, if the URL says."""
    try:
        if any(isinstance(v, list | dict) for v in data.values()):  # Balance sends scalars only
            raise ValueError("struct members must be scalar values")
        if method == "NotifyOrder2":
            return OrderNotification(
                service_id=_positive_id(data["ServiceID"], "ServiceID"),
                service_order_id=str(_positive_id(data["ServiceOrderID"], "ServiceOrderID")),
                tid=_tid(data["Tid"]),
                consume_qty=_total(data.get("ConsumeQty"), "ConsumeQty", wire.qty),
                consume_sum=_total(data.get("ConsumeSum"), "ConsumeSum"),
                consume_amount=_total(data.get("ConsumeAmount"), "ConsumeAmount"),
                completion_qty=_total(data.get("CompletionQty"), "CompletionQty", wire.qty),
                consume_currency=_informational(data, "ConsumeCurrency", wire.currency, ""),
                signal=_informational(data, "Signal", _signal, None),
                signal_description=_informational(data, "SignalDescription", wire.text, ""),
                product_currency=_informational(data, "ProductCurrency", wire.currency, ""),
                total_consume_qty=_optional(data, "TotalConsumeQty", wire.qty),
                overdraft_limit=_informational(data, "OverdraftLimit", wire.qty, None),
                overdraft_spent_qty=_informational(data, "OverdraftSpentQty", wire.qty, None),
            )
        if method == "NotifyClient2":
            return ClientNotification(
                client_id=_positive_id(data["ClientID"], "ClientID"), tid=_tid(data["Tid"]),
                currency=wire.currency(data.get("ClientCurrency")),
                overdraft_limit=_total(data.get("OverdraftLimit"), "OverdraftLimit"),
                overdraft_spent=wire.money(data.get("OverdraftSpent")),
                min_payment_term=wire.day(data.get("MinPaymentTerm")),
                overdraft_ban=wire.flag(data.get("OverdraftBan")),
                business_unit=_informational(data, "BusinessUnit", wire.flag, False),
                non_resident=_informational(data, "NonResident", wire.flag, False),
                migrate_to_currency_done=_informational(data, "MigrateToCurrencyDone", wire.flag, False),
                can_be_force_currency_converted=_informational(data, "CanBeForceCurrencyConverted", wire.flag,
                                                               False),
                has_equivalent_or_brand_clients=_informational(data, "HasEquivalentOrBrandClients", wire.flag,
                                                               False),
                service_id=service_id,
            )
    except KeyError as exc:
        raise InvalidNotification(f"{method}: {exc.args[0]} is required") from exc
    except wire.SHAPE_ERRORS as exc:
        raise InvalidNotification(f"{method}: {exc}"[:300]) from exc
    raise InvalidNotification(f"unknown notification {method[:100]}")


class Applier(Protocol):
    @staticmethod
    def exists(notification: Any) -> bool: ...

    @staticmethod
    def apply(notification: Any) -> str: ...


_APPLIERS: dict[str, type[Applier]] = {}


def notification_applier(kind: str):  # type: ignore[no-untyped-def]
    def register(cls: type[Applier]) -> type[Applier]:
        if kind in _APPLIERS and _APPLIERS[kind] is not cls:
            raise RuntimeError(f"notification applier for {kind!r} registered twice ({cls.__qualname__})")
        _APPLIERS[kind] = cls
        return cls

    return register


class UnknownObject(Exception):
    """Billing does not know the order or client: Balance is answered NOT_FOUND and retries later."""


def _json_safe(raw: dict[str, Any]) -> dict[str, Any]:
    return {str(k): (v if isinstance(v, int | str | bool) or v is None else str(v)) for k, v in raw.items()}


def notification_receive(*, notification: Notification, raw: dict[str, Any]) -> str:
    """Store and apply one notification. Returns applied / stale / duplicate / received."""
    kind, object_key, tid = notification.kind, notification.object_key, notification.tid
    applier = _APPLIERS.get(kind)
    if applier is not None and not applier.exists(notification):
        raise UnknownObject(f"unknown {kind} {object_key}")
    try:
        with transaction.atomic():
            stored = BalanceNotification.objects.create(kind=kind, object_key=object_key, tid=tid,
                                                        payload=_json_safe(raw))
            if applier is None:
                return BalanceNotification.Outcome.RECEIVED
            outcome = applier.apply(notification)
            stored.outcome = outcome
            stored.applied_at = timezone.now() if outcome == "applied" else None
            stored.save(update_fields=["outcome", "applied_at"])
    except IntegrityError:
        if BalanceNotification.objects.filter(kind=kind, object_key=object_key, tid=tid).exists():
            return "duplicate"
        raise
    logger.info("balance notification", extra={"kind": kind, "object": object_key, "tid": tid, "outcome": outcome})
    return outcome
