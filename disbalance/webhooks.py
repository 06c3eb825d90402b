"""Webhooks to consumer services: the events (`disbalance.events`) POSTed after commit, in order per customer.

- Every event row is a delivery: `pending` until the consumer answers 2xx (`delivered`). Delivery is its own
  machinery, not the Balance outbox: a dispatcher per service (`webhooks_deliver`, kicked after the commit that
  wrote the event and swept every WEBHOOK_SWEEP_SECONDS) sends due events in order of `sequence` per customer;
  an event waiting for a retry holds back the later events of the same customer (never other customers').
- Retry schedule: exponential from WEBHOOK_BACKOFF_BASE_SECONDS (30 s) doubling to a cap of
  WEBHOOK_BACKOFF_CAP_SECONDS (6 h), with equal jitter, for WEBHOOK_RETRY_DAYS (4 days) from the event's
  creation; then the event is `failed` (support may re-send; `GET /events` has it anyway). `410 Gone` fails it
  at once. Every HTTP attempt is a `WebhookAttempt` row (status, latency, response excerpt) shown in the admin.
- An endpoint that has failed for WEBHOOK_DISABLE_AFTER_DAYS (3 days) with no success in between is disabled:
  deliveries stop, its events wait (none fails while it is disabled), a `webhook.endpoint_disabled` event goes
  into the feed and the log, and support re-enables it with a button (waiting events are then sent at once, in
  order).
- Body: `{"id", "type", "created_at", "sequence", "data"}` (compact UTF-8 JSON). Headers: Standard Webhooks
  (`webhook-id` = the event id, `webhook-timestamp`, `webhook-signature: v1,<base64>`; the key is the service's
  secret as UTF-8 bytes, i.e. `whsec_` + base64 of it for the standard libraries) and our own
  `X-Disbalance-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
- Secret rotation (`webhook_secret_rotate`) keeps the previous secret signing next to the new one (a second
  `v1` in both headers) until the end of the overlap period, so consumers switch without losing a request.
- Consumers de-duplicate by the event `id` and order by `sequence` per customer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from disbalance import metrics
from disbalance.events import event_emit, on_pending_event
from disbalance.exceptions import InvalidState
from disbalance.logging import request_id_var
from disbalance.models import ConsumerService, ServiceToken, WebhookAttempt, WebhookEvent

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Disbalance-Signature"
USER_AGENT = "Disbalance-Webhooks/2"
ALLOWED_SCHEMES = frozenset({"http", "https"})
# Only a little of the consumer's answer is read: enough to show support why it refused.
RESPONSE_SNIPPET_BYTES = 500
_ERROR_LIMIT = 2000
# Stop a round early after this many unreachable attempts in a row: the endpoint is down, not one event.
_UNREACHABLE_STREAK = 3
_ROUNDS = 20
_BATCH = 500
Status = WebhookEvent.Status


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


# --- Standard Webhooks ---------------------------------------------------------------------------------------


def standard_secret(secret: str) -> str:
    """The secret as the Standard Webhooks libraries take it: `whsec_` + base64 of its UTF-8 bytes."""
    return "whsec_" + base64.b64encode(secret.encode("utf-8")).decode("ascii")


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64>` signed with the `standardwebhooks` library (the key is the secret's UTF-8 bytes)."""
    return Webhook(secret.encode("utf-8")).sign(
        msg_id=msg_id, timestamp=datetime.fromtimestamp(timestamp, tz=UTC), data=body.decode("utf-8"))


def signing_secrets(service: ConsumerService, now: datetime | None = None) -> list[str]:
    """The current secret and, during a rotation's overlap period, the previous one."""
    now = now or timezone.now()
    secrets = [service.webhook_secret] if service.webhook_secret else []
    if service.webhook_secret_previous and service.webhook_secret_previous_until \
            and service.webhook_secret_previous_until > now:
        secrets.append(service.webhook_secret_previous)
    return secrets


def webhook_headers(event: WebhookEvent, body: bytes, secrets: list[str], timestamp: int) -> dict[str, str]:
    msg_id = str(event.id)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(standard_signature(s, msg_id, timestamp, body) for s in secrets),
        SIGNATURE_HEADER: f"t={timestamp}," + ",".join(f"v1={webhook_signature(s, timestamp, body)}" for s in secrets),
        "X-Disbalance-Event-Id": msg_id,
        "X-Disbalance-Event-Type": event.type,
        "X-Request-ID": event.request_id or "",
    }


def webhook_body(event: WebhookEvent) -> bytes:
    """The request body: compact UTF-8 JSON, `created_at` in UTC with `Z` (like the API's times)."""
    created_at = event.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    document = {"id": str(event.id), "type": event.type, "created_at": created_at, "sequence": event.sequence,
                "data": event.data}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- Support's writes ----------------------------------------------------------------------------------------


def webhook_emit(*, service: ConsumerService, type: str, data: dict[str, Any], dedup_key: str = "",
                 customer: Any = None) -> WebhookEvent:
    """An event of the service (kept for callers written before `disbalance.events`): see `event_emit`."""
    return event_emit(service=service, type=type, data=data, dedup_key=dedup_key, customer=customer)


def _who(user: Any) -> str:
    return str(user) if user is not None and getattr(user, "is_authenticated", True) else "system"


@transaction.atomic
def webhook_resend(*, event: WebhookEvent, user: Any = None) -> WebhookEvent:
    """Support's "re-send": deliver the event again now, even if it was delivered before (consumers dedup by id).

    Who asked is appended to the event's `note` and logged. Delivery keeps the per-customer order.
    """
    event = WebhookEvent.objects.select_for_update().select_related("service").get(pk=event.pk)
    if not event.service.webhook_url:
        raise WebhookNotConfigured(f"Service {event.service.slug} has no webhook URL; set one, then re-send.")
    who = _who(user)
    event.status = Status.PENDING
    event.next_attempt_at = timezone.now()
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M:%SZ")
    event.note = (event.note + "\n" if event.note else "") + f"{stamp} re-send by {who}"
    event.save(update_fields=["status", "next_attempt_at", "note"])
    logger.info("webhook re-send", extra={"event": str(event.pk), "by": who})
    service_id = event.service_id
    transaction.on_commit(lambda: webhooks_kick(service_id))
    return event


@transaction.atomic
def webhook_endpoint_enable(*, service: ConsumerService, user: Any = None) -> ConsumerService:
    """Support's button: deliveries to a disabled endpoint start again, pending events first, in order."""
    service = ConsumerService.objects.select_for_update().get(pk=service.pk)
    now = timezone.now()
    service.webhook_disabled_at = None
    service.webhook_failing_since = None
    service.save(update_fields=["webhook_disabled_at", "webhook_failing_since"])
    WebhookEvent.objects.filter(service=service, status=Status.PENDING).update(next_attempt_at=now)
    logger.warning("webhook endpoint re-enabled", extra={"service": service.slug, "by": _who(user)})
    transaction.on_commit(lambda: webhooks_kick(service.pk))
    return service


@transaction.atomic
def webhook_secret_rotate(*, service: ConsumerService, overlap: timedelta | None = None,
                          new_secret: str | None = None) -> ConsumerService:
    """A new signing secret; the previous one keeps signing (a second signature) until the overlap ends."""
    service = ConsumerService.objects.select_for_update().get(pk=service.pk)
    if overlap is None:
        overlap = timedelta(hours=settings.WEBHOOK_SECRET_OVERLAP_HOURS)
    if service.webhook_secret and overlap > timedelta(0):
        service.webhook_secret_previous = service.webhook_secret
        service.webhook_secret_previous_until = timezone.now() + overlap
    else:
        service.webhook_secret_previous, service.webhook_secret_previous_until = "", None
    service.webhook_secret = new_secret or ServiceToken.generate()
    service.save(update_fields=["webhook_secret", "webhook_secret_previous", "webhook_secret_previous_until"])
    return service


# --- Delivery -----------------------------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with equal jitter (half fixed, half random), capped: the webhooks' own schedule."""
    base = settings.WEBHOOK_BACKOFF_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    delay = min(settings.WEBHOOK_BACKOFF_CAP_SECONDS, base)
    return delay / 2 + random.uniform(0, delay / 2)


def _response_snippet(response: requests.Response) -> str:
    try:
        chunk = next(response.iter_content(RESPONSE_SNIPPET_BYTES), b"")
    except (requests.RequestException, StopIteration):
        return ""
    return chunk[:RESPONSE_SNIPPET_BYTES].decode("utf-8", "replace").strip()


@dataclass(frozen=True)
class AttemptResult:
    outcome: str  # WebhookAttempt.Outcome
    status_code: int | None
    latency_ms: int
    excerpt: str
    error: str


def _post(url: str, event: WebhookEvent, secrets: list[str]) -> AttemptResult:
    body = webhook_body(event)
    headers = webhook_headers(event, body, secrets, int(time.time()))
    timeout = (settings.WEBHOOK_CONNECT_TIMEOUT, settings.WEBHOOK_READ_TIMEOUT)
    started = time.monotonic()
    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False,
                                 stream=True)
    except requests.RequestException as exc:
        return AttemptResult(WebhookAttempt.Outcome.UNREACHABLE, None, int((time.monotonic() - started) * 1000),
                             "", f"{type(exc).__name__}: {exc}"[:_ERROR_LIMIT])
    with response:
        snippet = _response_snippet(response)
        latency_ms = int((time.monotonic() - started) * 1000)
        status_code = response.status_code
        if 200 <= status_code < 300:
            return AttemptResult(WebhookAttempt.Outcome.DELIVERED, status_code, latency_ms, snippet, "")
        error = f"HTTP {status_code}"
        if 300 <= status_code < 400:
            error += f" (redirects are not followed; Location: {response.headers.get('Location', '')})"
        return AttemptResult(WebhookAttempt.Outcome.REFUSED, status_code, latency_ms, snippet, error)


def _record(event: WebhookEvent, url: str, result: AttemptResult, now: datetime) -> bool:
    """Store the attempt and the event's new state; True when delivered."""
    WebhookAttempt.objects.create(
        event=event, attempted_at=now, url=url[:500], outcome=result.outcome, status_code=result.status_code,
        latency_ms=result.latency_ms, response_excerpt=result.excerpt, error=result.error,
        request_id=event.request_id,
    )
    metrics.WEBHOOK_DELIVERIES.labels(outcome=result.outcome).inc()
    event.attempts += 1
    event.last_status_code = result.status_code
    log_extra = {"event": str(event.id), "type": event.type, "service_id": event.service_id,
                 "status_code": result.status_code, "duration_ms": result.latency_ms}
    if result.outcome == WebhookAttempt.Outcome.DELIVERED:
        event.status, event.delivered_at, event.last_error, event.next_attempt_at = Status.DELIVERED, now, "", None
        logger.info("webhook delivered", extra=log_extra)
    else:
        event.last_error = (result.error + (f": {result.excerpt}" if result.excerpt else ""))[:_ERROR_LIMIT]
        too_old = now - event.created_at >= timedelta(days=settings.WEBHOOK_RETRY_DAYS)
        if result.status_code == 410 or too_old:
            # 410: the consumer asked us to stop; else the retry window is over. The feed still has it.
            event.status, event.next_attempt_at = Status.FAILED, None
        else:
            event.next_attempt_at = now + timedelta(seconds=backoff_seconds(event.attempts))
        logger.info("webhook not delivered", extra={**log_extra, "error": event.last_error})
    event.save(update_fields=["attempts", "last_status_code", "status", "delivered_at", "last_error",
                              "next_attempt_at"])
    return result.outcome == WebhookAttempt.Outcome.DELIVERED


def _lease(service_id: int) -> bool:
    now = timezone.now()
    until = now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    return ConsumerService.objects.filter(pk=service_id).filter(
        Q(webhook_lease_until__isnull=True) | Q(webhook_lease_until__lt=now)
    ).update(webhook_lease_until=until) == 1


def _endpoint_failed(service: ConsumerService, now: datetime) -> None:
    """Remember since when the endpoint fails; disable it (with an alert event) after days of failure."""
    if service.webhook_failing_since is None:
        service.webhook_failing_since = now
        ConsumerService.objects.filter(pk=service.pk).update(webhook_failing_since=now)
        return
    if now - service.webhook_failing_since < timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS):
        return
    with transaction.atomic():
        service.webhook_disabled_at = now
        ConsumerService.objects.filter(pk=service.pk).update(webhook_disabled_at=now)
        alert = event_emit(service=service, type=WebhookEvent.Type.WEBHOOK_ENDPOINT_DISABLED, data={
            "url": service.webhook_url, "failing_since": service.webhook_failing_since.isoformat(),
            "pending": WebhookEvent.objects.filter(service=service, status=Status.PENDING).count(),
        })
        # Nobody is listening at that URL: the alert is for the feed, the log and the operators.
        WebhookEvent.objects.filter(pk=alert.pk).update(status=Status.SKIPPED, next_attempt_at=None)
    logger.error("webhook endpoint disabled after days of failure",
                 extra={"service": service.slug, "failing_since": service.webhook_failing_since.isoformat()})


def webhooks_deliver(*, service_id: int, now: datetime | None = None) -> dict[str, int]:
    """Send the service's due events, in `sequence` order per customer. One worker per service at a time (a
    lease on the service row); `now` is for tests that simulate the passing of time."""
    outcomes = {"delivered": 0, "failed": 0, "busy": 0}
    if not _lease(service_id):
        outcomes["busy"] = 1
        return outcomes
    try:
        _deliver_rounds(service_id, now, outcomes)
    finally:
        ConsumerService.objects.filter(pk=service_id).update(webhook_lease_until=None)
    return outcomes


def _deliver_rounds(service_id: int, now: datetime | None, outcomes: dict[str, int]) -> None:
    service = ConsumerService.objects.get(pk=service_id)
    pending = WebhookEvent.objects.filter(service=service, status=Status.PENDING)
    if not service.webhook_url:
        pending.update(status=Status.SKIPPED, next_attempt_at=None, last_error="no webhook URL when delivering")
        return
    if service.webhook_disabled_at is not None:
        return
    url = service.webhook_url
    scheme = urlsplit(url).scheme.lower()
    secrets = signing_secrets(service, now)
    if scheme not in ALLOWED_SCHEMES or not secrets:
        error = (f"webhook URL scheme {scheme!r} is not http or https" if scheme not in ALLOWED_SCHEMES
                 else "the service has no webhook secret: refusing to send unsigned")
        pending.update(last_error=error)
        logger.error("webhooks not sent", extra={"service": service.slug, "error": error})
        return
    held_back: set[int] = set()  # customers whose next event must wait (order per customer)
    for _ in range(_ROUNDS):
        progressed = False
        streak = 0
        for event in pending.order_by("customer_pk", "sequence", "created_at")[:_BATCH]:
            key = event.customer_pk
            if key is not None and key in held_back:
                continue
            current = now or timezone.now()
            if event.next_attempt_at is not None and event.next_attempt_at > current:
                if key is not None:
                    held_back.add(key)
                continue
            token = request_id_var.set(event.request_id or request_id_var.get())
            try:
                result = _post(url, event, secrets)
                delivered = _record(event, url, result, current)
            finally:
                request_id_var.reset(token)
            if delivered:
                outcomes["delivered"] += 1
                progressed = True
                streak = 0
                if service.webhook_failing_since is not None:
                    service.webhook_failing_since = None
                    ConsumerService.objects.filter(pk=service.pk).update(webhook_failing_since=None)
                continue
            outcomes["failed"] += 1
            if key is not None:
                held_back.add(key)
            _endpoint_failed(service, current)
            if service.webhook_disabled_at is not None:
                return
            streak = streak + 1 if result.outcome == WebhookAttempt.Outcome.UNREACHABLE else 0
            if streak >= _UNREACHABLE_STREAK:
                return
        if not progressed:
            return


def webhooks_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Deliver for every service with a due event (the periodic job; also catches events whose kick was lost)."""
    due = (WebhookEvent.objects.filter(status=Status.PENDING, next_attempt_at__lte=now or timezone.now(),
                                       service__webhook_disabled_at__isnull=True)
           .values_list("service_id", flat=True).distinct())
    totals = {"services": 0, "delivered": 0, "failed": 0}
    for service_id in sorted(set(due)):
        outcome = webhooks_deliver(service_id=service_id, now=now)
        totals["services"] += 1
        totals["delivered"] += outcome["delivered"]
        totals["failed"] += outcome["failed"]
    return totals


@shared_task(name="disbalance.webhooks.deliver", ignore_result=True)
def webhooks_deliver_task(service_id: int) -> dict[str, int]:
    return webhooks_deliver(service_id=service_id)


@shared_task(name="disbalance.webhooks.sweep", ignore_result=True)
def webhooks_sweep_task() -> dict[str, int]:
    return webhooks_sweep()


@on_pending_event
def webhooks_kick(service_id: int) -> None:
    """After the commit that wrote an event: deliver now (the sweep does it later if the broker is down)."""
    try:
        webhooks_deliver_task.delay(service_id)
    except Exception:  # noqa: BLE001 - the broker may be down: the sweep sends it later
        logger.warning("webhook delivery not queued; the sweep will send it", extra={"service_id": service_id})
