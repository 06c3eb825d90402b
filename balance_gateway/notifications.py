"""Notifications from Balance (NotifyOrder2, NotifyClient2): stored first, then applied if their Tid is new.

Each kind has one applier, registered by the app that owns the object (orders: payments; clients: overdrafts):
`exists(object_key)` and `apply(object_key, tid, payload) -> "applied" | "stale"`. The stored row and the
application commit together; a duplicate Tid is refused by the database and answered as success.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from django.db import IntegrityError, transaction
from django.utils import timezone

from balance_gateway.models import BalanceNotification

logger = logging.getLogger(__name__)


class Applier(Protocol):
    @staticmethod
    def exists(object_key: str) -> bool: ...

    @staticmethod
    def apply(object_key: str, tid: int, payload: dict[str, Any]) -> str: ...


_APPLIERS: dict[str, type[Applier]] = {}


def notification_applier(kind: str):  # type: ignore[no-untyped-def]
    def register(cls: type[Applier]) -> type[Applier]:
        if kind in _APPLIERS and _APPLIERS[kind] is not cls:
            raise RuntimeError(f"notification applier for {kind!r} registered twice")
        _APPLIERS[kind] = cls
        return cls

    return register


class UnknownObject(Exception):
    """Billing does not know the order or client: Balance is answered NOT_FOUND and retries later."""


def notification_receive(*, kind: str, object_key: str, tid: int, payload: dict[str, Any]) -> str:
    """Store and apply one notification. Returns applied / stale / duplicate / received."""
    applier = _APPLIERS.get(kind)
    if applier is not None and not applier.exists(object_key):
        raise UnknownObject(f"unknown {kind} {object_key}")
    try:
        with transaction.atomic():
            notification = BalanceNotification.objects.create(kind=kind, object_key=object_key, tid=tid,
                                                              payload=payload)
            if applier is None:
                return BalanceNotification.Outcome.RECEIVED
            outcome = applier.apply(object_key, tid, payload)
            notification.outcome = outcome
            notification.applied_at = timezone.now() if outcome == "applied" else None
            notification.save(update_fields=["outcome", "applied_at"])
    except IntegrityError:
        if BalanceNotification.objects.filter(kind=kind, object_key=object_key, tid=tid).exists():
            return "duplicate"
        raise
    logger.info("balance notification", extra={"kind": kind, "object": object_key, "tid": tid, "outcome": outcome})
    return outcome
