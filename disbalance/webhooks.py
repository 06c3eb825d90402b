"""Webhooks to consumer services: events written with the domain change, POSTed after commit by the outbox.

- `webhook_emit(...)` is called by domain code inside its transaction and only writes rows: the
  `WebhookEvent` and an outbox operation of kind `webhook.deliver` (nothing when the service has no URL).
- The outbox handler POSTs `{"id", "type", "created_at", "data"}` (compact UTF-8 JSON) to the service's
  current webhook URL, signed with its `webhook_secret`:
  `X-Disbalance-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
- Delivery is at-least-once: a 2xx is delivered; any other answer (redirects are not followed), a timeout or
  a connection error is retried by the outbox with capped exponential backoff and jitter until its
  `OUTBOX_MAX_ATTEMPTS`, then the event is `failed` and support may re-send it. `410 Gone` means the consumer
  asked us to stop: it fails at once. Consumers de-duplicate by the event `id`.
- Consumers verify a request as `webhook_verify` does: recompute the HMAC over the raw body bytes exactly as
  received, compare in constant time, and reject timestamps outside a tolerance (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from disbalance.exceptions import InvalidState
from disbalance.models import ConsumerService, OutboxOperation, WebhookEvent
from disbalance.outbox import (
    OutboxFinalError,
    OutboxRetry,
    outbox_enqueue,
    outbox_handler,
    outbox_on_failure,
    outbox_retry,
)

logger = logging.getLogger(__name__)

DELIVER_KIND = "webhook.deliver"
SIGNATURE_HEADER = "X-Disbalance-Signature"
USER_AGENT = "Disbalance-Webhooks/1"
ALLOWED_SCHEMES = frozenset({"http", "https"})
# Only a little of the consumer's answer is read: enough to show support why it refused.
RESPONSE_SNIPPET_BYTES = 500
_ERROR_LIMIT = 2000


class WebhookNotConfigured(InvalidState):
    title = "The service has no webhook URL"


# --- Signing ------------------------------------------------------------------------------------------------


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `"<timestamp>.<body>"` with the service's secret (the `v1` of the header)."""
    signed = str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def webhook_signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={int(timestamp)},v1={webhook_signature(secret, timestamp, body)}"


def webhook_verify(
    secret: str, header: str, body: bytes, tolerance_seconds: int = 300, *, now: float | None = None
) -> bool:
    """Whether `header` (the `X-Disbalance-Signature` value) signs `body` with `secret`. What a consumer does.

    1. Split the header on `,` into `key=value` pairs; take `t` (unix seconds) and every `v1`.
    2. Reject when `t` is further than `tolerance_seconds` from now (a replayed request).
    3. Compute `hex(HMAC-SHA256(secret, "<t>." + body))` over the raw body bytes as received (before any
       JSON parsing) and compare it with each `v1` in constant time (`hmac.compare_digest`).
    """
    if not secret or not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = webhook_signature(secret, timestamp, body)
    matched = False
    for candidate in candidates:
        # Compare every candidate (no early exit) so timing does not tell which one matched.
        matched |= hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii", "replace"))
    return matched


def webhook_body(event: WebhookEvent) -> bytes:
    """The request body: compact UTF-8 JSON, `created_at` in UTC with `Z` (like the API's times)."""
    created_at = event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    document = {"id": str(event.id), "type": event.type, "created_at": created_at, "data": event.data}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- Writes -------------------------------------------------------------------------------------------------


@transaction.atomic
def webhook_emit(
    *, service: ConsumerService, type: str, data: dict[str, Any], dedup_key: str = ""
) -> WebhookEvent:
    """Record an event for `service` and its delivery, in the caller's transaction (nothing is sent here).

    With no webhook URL the event is stored as `skipped` and nothing is queued. With a `dedup_key` the event
    is emitted once per key: a repeat returns the first event and adds nothing. `data` must be JSON-able
    (Decimal, UUID and datetimes are stored as strings).
    """
    if type not in WebhookEvent.Type.values:
        raise ValueError(f"unknown webhook event type {type!r}")
    if not isinstance(data, dict):
        raise TypeError("webhook event data must be a dict")
    if dedup_key:
        existing = WebhookEvent.objects.filter(dedup_key=dedup_key).first()
        if existing is not None:
            return existing
    status = WebhookEvent.Status.PENDING if service.webhook_url else WebhookEvent.Status.SKIPPED
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.create(
                service=service, type=type, data=data, dedup_key=dedup_key, status=status
            )
    except IntegrityError:
        if not dedup_key:
            raise
        # Another transaction emitted the same fact first (it committed while we waited on the key).
        return WebhookEvent.objects.get(dedup_key=dedup_key)
    if status == WebhookEvent.Status.PENDING:
        event.operation = _enqueue_delivery(event)
        event.save(update_fields=["operation"])
    return event


def _enqueue_delivery(event: WebhookEvent, **payload: Any) -> OutboxOperation:
    return outbox_enqueue(
        kind=DELIVER_KIND, subject=f"webhook:{event.id}", payload={"event_id": str(event.id), **payload},
        service=event.service, dedup_key=f"webhook:{event.id}",
    )


@transaction.atomic
def webhook_resend(*, event: WebhookEvent, user: Any = None) -> OutboxOperation:
    """Support's "re-send": deliver the event again through the outbox, even if it was delivered before.

    A delivery still waiting for its backoff is sent now (with a fresh attempt budget) instead of adding a
    second one; one running now is left alone. Who asked is appended to the event's `note` and logged.
    """
    event = WebhookEvent.objects.select_for_update().select_related("service").get(pk=event.pk)
    if not event.service.webhook_url:
        raise WebhookNotConfigured(f"Service {event.service.slug} has no webhook URL; set one, then re-send.")
    who = str(user) if user is not None and getattr(user, "is_authenticated", True) else "system"
    current = (
        OutboxOperation.objects.select_for_update().filter(pk=event.operation_id).first()
        if event.operation_id else None
    )
    if current is not None and current.status == OutboxOperation.Status.IN_PROGRESS:
        operation = current
        action = "already being delivered"
    elif current is not None and current.status == OutboxOperation.Status.PENDING:
        operation = outbox_retry(operation=current, reset_attempts=True)
        action = "sent now"
    else:
        operation = _enqueue_delivery(event, requested_by=who)
        action = "queued again"
    event.operation = operation
    event.status = WebhookEvent.Status.PENDING
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%SZ")
    event.note = (event.note + "\n" if event.note else "") + f"{stamp} re-send by {who}: {action}"
    event.save(update_fields=["operation", "status", "note"])
    logger.info("webhook re-send", extra={"event": str(event.pk), "by": who, "operation": operation.pk,
                                          "action": action})
    return operation


# --- Delivery (the outbox handler) --------------------------------------------------------------------------


def _record_attempt(event: WebhookEvent, *, status_code: int | None, error: str) -> None:
    WebhookEvent.objects.filter(pk=event.pk).update(
        attempts=F("attempts") + 1, last_status_code=status_code, last_error=error[:_ERROR_LIMIT]
    )


def _response_snippet(response: requests.Response) -> str:
    try:
        chunk = next(response.iter_content(RESPONSE_SNIPPET_BYTES), b"")
    except (requests.RequestException, StopIteration):
        return ""
    return chunk[:RESPONSE_SNIPPET_BYTES].decode("utf-8", "replace").strip()


@outbox_handler(DELIVER_KIND)
def webhook_deliver(operation: OutboxOperation) -> dict[str, Any]:
    """POST the event to the service's current webhook URL. Safe to repeat: consumers dedup by event id."""
    event = WebhookEvent.objects.select_related("service").filter(pk=operation.payload.get("event_id")).first()
    if event is None:
        raise OutboxFinalError(f"webhook event {operation.payload.get('event_id')} does not exist")
    service = event.service
    url = service.webhook_url
    if not url:
        # The service turned webhooks off after the event was written.
        WebhookEvent.objects.filter(pk=event.pk).update(
            status=WebhookEvent.Status.SKIPPED, last_error="no webhook URL when delivering"
        )
        return {"skipped": "no webhook URL"}
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        error = f"webhook URL scheme {scheme!r} is not http or https"
        WebhookEvent.objects.filter(pk=event.pk).update(last_error=error)
        raise OutboxFinalError(error)
    if not service.webhook_secret:
        error = "the service has no webhook secret: refusing to send unsigned"
        WebhookEvent.objects.filter(pk=event.pk).update(last_error=error)
        raise OutboxFinalError(error)

    body = webhook_body(event)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Disbalance-Event-Id": str(event.id),
        "X-Disbalance-Event-Type": event.type,
        SIGNATURE_HEADER: webhook_signature_header(service.webhook_secret, timestamp, body),
    }
    timeout = (getattr(settings, "WEBHOOK_CONNECT_TIMEOUT", 3.0), getattr(settings, "WEBHOOK_READ_TIMEOUT", 10.0))
    log_extra = {"event": str(event.id), "type": event.type, "service": service.slug, "operation": operation.pk}
    started = time.monotonic()
    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                                 stream=True)
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
        _record_attempt(event, status_code=None, error=error)
        logger.info("webhook not delivered", extra={**log_extra, "error": error})
        raise OutboxRetry(error) from exc
    with response:
        status_code = response.status_code
        duration_ms = int((time.monotonic() - started) * 1000)
        if 200 <= status_code < 300:
            WebhookEvent.objects.filter(pk=event.pk).update(
                attempts=F("attempts") + 1, last_status_code=status_code, last_error="",
                status=WebhookEvent.Status.DELIVERED, delivered_at=timezone.now(),
            )
            logger.info("webhook delivered", extra={**log_extra, "status_code": status_code,
                                                    "duration_ms": duration_ms})
            return {"status_code": status_code, "duration_ms": duration_ms}
        snippet = _response_snippet(response)
    error = f"HTTP {status_code}" + (f": {snippet}" if snippet else "")
    if 300 <= status_code < 400:
        error += f" (redirects are not followed; Location: {response.headers.get('Location', '')})"
    _record_attempt(event, status_code=status_code, error=error)
    logger.info("webhook refused", extra={**log_extra, "status_code": status_code, "duration_ms": duration_ms})
    if status_code == 410:
        raise OutboxFinalError(f"{error} (the consumer asked to stop)")
    raise OutboxRetry(error)


@outbox_on_failure(DELIVER_KIND)
def _webhook_delivery_failed(operation: OutboxOperation, error: str, final: bool) -> None:
    """When the outbox gives up, the event is `failed` (unless another delivery of it got through)."""
    if final:
        WebhookEvent.objects.filter(pk=operation.payload.get("event_id"), status=WebhookEvent.Status.PENDING).update(
            status=WebhookEvent.Status.FAILED
        )
