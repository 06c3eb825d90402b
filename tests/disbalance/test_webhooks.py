"""Webhooks to consumer services, delivered over real HTTP to a local receiver by the webhook dispatcher."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from disbalance.models import ConsumerService, WebhookAttempt, WebhookEvent
from disbalance.services import service_create
from disbalance.webhooks import (
    WebhookNotConfigured,
    backoff_seconds,
    standard_secret,
    webhook_emit,
    webhook_resend,
    webhook_secret_rotate,
    webhook_signature,
    webhook_verify,
    webhooks_deliver,
    webhooks_sweep,
)
from tests.webhook_receiver import receiver  # noqa: F401 - the fixture

SECRET = "test-secret-of-the-service"
Status = WebhookEvent.Status


@pytest.fixture
def hooked_service(service, receiver):  # noqa: F811
    """The `autoru` service with its webhook pointed at the receiver."""
    return service_create(
        slug=service.slug, name=service.name, balance_service_id=service.balance_service_id,
        webhook_url=receiver.url, webhook_secret=SECRET,
    ).service


def emit(service, type: str = "topup.succeeded", data: dict | None = None, **kwargs) -> WebhookEvent:
    return webhook_emit(service=service, type=type, data=data or {"topup": "t-1"}, **kwargs)


def deliver(service, now: datetime | None = None) -> dict[str, int]:
    return webhooks_deliver(service_id=service.pk, now=now)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def refresh(event: WebhookEvent) -> WebhookEvent:
    event.refresh_from_db()
    return event


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


# --- Body, signatures, headers ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_delivers_signed_compact_utf8_body_with_both_signatures(hooked_service, receiver):  # noqa: F811
    data = {"customer": "c-42", "name": "Иван", "amount": Decimal("1500.00")}
    event = emit(hooked_service, data=data)
    assert event.status == Status.PENDING
    assert receiver.requests == []  # nothing is sent before the dispatcher runs

    assert deliver(hooked_service)["delivered"] == 1

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks/billing"
    body = json.loads(request.body)
    assert set(body) == {"id", "type", "created_at", "sequence", "data"}
    assert body["id"] == str(event.id)
    assert body["type"] == "topup.succeeded"
    assert body["sequence"] is None  # a service-wide event (no customer)
    assert body["data"] == {"customer": "c-42", "name": "Иван", "amount": "1500.00"}
    assert datetime.fromisoformat(body["created_at"]) == event.created_at
    assert request.body == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    headers = lower(request.headers)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == str(event.id)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    # Our own signature, recomputed independently of the code under test.
    parts = dict(item.split("=", 1) for item in headers["x-disbalance-signature"].split(","))
    assert parts["t"] == headers["webhook-timestamp"]
    assert parts["v1"] == hmac.new(SECRET.encode(), parts["t"].encode() + b"." + request.body,
                                   hashlib.sha256).hexdigest()
    assert webhook_verify(SECRET, headers["x-disbalance-signature"], request.body)
    # Standard Webhooks, verified with the official library as a consumer would (secret in `whsec_` form).
    consumer = Webhook(standard_secret(SECRET))
    assert consumer.verify(request.body, request.headers) == body
    tampered = request.body.replace(b"1500.00", b"9500.00")
    with pytest.raises(WebhookVerificationError):
        consumer.verify(tampered, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(standard_secret("another secret")).verify(request.body, request.headers)

    event = refresh(event)
    assert (event.status, event.attempts, event.last_status_code) == (Status.DELIVERED, 1, 200)
    assert event.delivered_at is not None and event.next_attempt_at is None
    attempt = WebhookAttempt.objects.get(event=event)
    assert (attempt.outcome, attempt.status_code, attempt.response_excerpt) == ("delivered", 200, "ok")
    assert attempt.latency_ms >= 0 and attempt.url == receiver.url


def test_verify_rejects_tampering_wrong_secret_stale_and_garbage():
    body = b'{"id":"x"}'
    now = 1_700_000_000
    header = f"t={now},v1={webhook_signature(SECRET, now, body)}"
    assert webhook_verify(SECRET, header, body, now=now + 299)
    assert not webhook_verify(SECRET, header, body + b" ", now=now)
    assert not webhook_verify("other-secret", header, body, now=now)
    assert not webhook_verify(SECRET, header, body, now=now + 301)  # replayed later
    assert not webhook_verify(SECRET, f"t={now}", body, now=now)
    assert not webhook_verify(SECRET, "t=abc,v1=00", body, now=now)
    assert not webhook_verify("", header, body, now=now)
    assert webhook_verify(SECRET, f"t={now},v1=deadbeef,v1={webhook_signature(SECRET, now, body)}", body, now=now)


@pytest.mark.django_db
def test_rotation_signs_with_both_secrets_during_the_overlap_then_only_the_new(hooked_service, receiver):  # noqa: F811
    rotated = webhook_secret_rotate(service=hooked_service, overlap=timedelta(hours=1), new_secret="the-new-secret")
    assert rotated.webhook_secret == "the-new-secret" and rotated.webhook_secret_previous == SECRET
    emit(hooked_service)
    deliver(hooked_service)
    request = receiver.requests[-1]
    headers = lower(request.headers)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, "the-new-secret"):  # a consumer on either secret accepts it
        Webhook(standard_secret(secret)).verify(request.body, request.headers)
        assert webhook_verify(secret, headers["x-disbalance-signature"], request.body)

    # The overlap is over: only the new secret signs.
    ConsumerService.objects.filter(pk=hooked_service.pk).update(
        webhook_secret_previous_until=timezone.now() - timedelta(seconds=1))
    emit(hooked_service)
    deliver(hooked_service)
    request = receiver.requests[-1]
    Webhook(standard_secret("the-new-secret")).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(standard_secret(SECRET)).verify(request.body, request.headers)


# --- Retries: the webhooks' own schedule --------------------------------------------------------------------


def test_backoff_is_exponential_with_jitter_and_capped(settings):
    settings.WEBHOOK_BACKOFF_BASE_SECONDS = 30
    settings.WEBHOOK_BACKOFF_CAP_SECONDS = 6 * 3600
    for attempts, full in ((1, 30), (2, 60), (5, 480), (30, 6 * 3600)):
        delays = {backoff_seconds(attempts) for _ in range(20)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jitter


@pytest.mark.django_db
def test_failures_are_retried_on_schedule_for_days_then_failed(hooked_service, receiver, settings):  # noqa: F811
    """An event the endpoint keeps refusing (while it takes others: the endpoint is not disabled)."""
    settings.WEBHOOK_DISABLE_AFTER_DAYS = 30
    window = timedelta(days=settings.WEBHOOK_RETRY_DAYS)
    assert window >= timedelta(days=3)
    receiver.default = 500
    event = emit(hooked_service)
    start = event.created_at

    deliver(hooked_service, now=start)
    event = refresh(event)
    assert (event.status, event.attempts, event.last_status_code) == (Status.PENDING, 1, 500)
    assert start + timedelta(seconds=15) <= event.next_attempt_at <= start + timedelta(seconds=30)
    assert deliver(hooked_service, now=start + timedelta(seconds=5))["failed"] == 0  # not due yet: not sent
    assert len(receiver.requests) == 1

    # Every due retry is made; the event is still pending until the window ends...
    moment = start
    while True:
        moment = refresh(event).next_attempt_at
        if moment - start > window:
            break
        deliver(hooked_service, now=moment)
    event = refresh(event)
    assert event.status == Status.PENDING
    attempts = event.attempts
    assert 12 <= attempts <= 40  # exponential to the 6-hour cap: far fewer than a fixed schedule
    # ...and gives up on the first failure after it.
    deliver(hooked_service, now=moment)
    event = refresh(event)
    assert (event.status, event.attempts) == (Status.FAILED, attempts + 1)
    assert WebhookAttempt.objects.filter(event=event, outcome="refused").count() == attempts + 1
    assert len(receiver.requests) == attempts + 1


@pytest.mark.django_db
def test_gone_stops_at_once(hooked_service, receiver):  # noqa: F811
    receiver.script(410)
    event = emit(hooked_service)
    deliver(hooked_service)
    event = refresh(event)
    assert (event.status, event.last_status_code) == (Status.FAILED, 410)
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_redirects_are_not_followed(hooked_service, receiver):  # noqa: F811
    receiver.script(302, headers={"Location": receiver.url + "/elsewhere"})
    event = emit(hooked_service)
    deliver(hooked_service)
    assert [r.path for r in receiver.requests] == ["/hooks/billing"]
    event = refresh(event)
    assert event.status == Status.PENDING and event.last_status_code == 302
    assert "not followed" in event.last_error


@pytest.mark.django_db
def test_unreachable_is_recorded_and_the_current_url_is_used(hooked_service, receiver):  # noqa: F811
    ConsumerService.objects.filter(pk=hooked_service.pk).update(webhook_url=closed_port_url())
    event = emit(hooked_service)
    deliver(hooked_service)
    event = refresh(event)
    assert event.status == Status.PENDING and event.last_status_code is None
    assert "ConnectionError" in event.last_error
    assert WebhookAttempt.objects.get(event=event).outcome == "unreachable"

    ConsumerService.objects.filter(pk=hooked_service.pk).update(webhook_url=receiver.url)
    deliver(hooked_service, now=event.next_attempt_at)
    assert refresh(event).status == Status.DELIVERED
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_non_http_scheme_is_refused_without_sending(hooked_service):
    ConsumerService.objects.filter(pk=hooked_service.pk).update(webhook_url="ftp://127.0.0.1/hooks")
    event = emit(hooked_service)
    deliver(hooked_service)
    event = refresh(event)
    assert event.status == Status.PENDING and event.attempts == 0
    assert "scheme" in event.last_error


# --- Order per customer -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_waiting_event_holds_back_its_customer_only(hooked_service, receiver):  # noqa: F811
    from customers.models import Customer

    mine = Customer.objects.create(service=hooked_service, external_id="dealer:1", kind="company", name="Mine")
    other = Customer.objects.create(service=hooked_service, external_id="dealer:2", kind="company", name="Other")
    receiver.script(500)  # the first event of the first customer is refused once
    first = webhook_emit(service=hooked_service, type="customer.updated", data={}, customer=mine)
    second = webhook_emit(service=hooked_service, type="customer.updated", data={}, customer=mine)
    theirs = webhook_emit(service=hooked_service, type="customer.updated", data={}, customer=other)
    assert [refresh(e).sequence for e in (first, second, theirs)] == [1, 2, 1]
    assert refresh(first).data["customer"] == "dealer:1"

    deliver(hooked_service)

    assert [json.loads(r.body)["id"] for r in receiver.accepted()] == [str(theirs.id)]
    assert refresh(second).attempts == 0  # never sent ahead of the first
    deliver(hooked_service, now=refresh(first).next_attempt_at)
    assert [json.loads(r.body)["id"] for r in receiver.accepted()] == [str(theirs.id), str(first.id), str(second.id)]


# --- Endpoint disabled after days of failure, re-enabled by support -----------------------------------------


@pytest.mark.django_db
def test_endpoint_disabled_after_days_of_failure_with_an_alert_then_reenabled(hooked_service, receiver,  # noqa: F811
                                                                              settings, admin_client):
    settings.WEBHOOK_DISABLE_AFTER_DAYS = 3
    receiver.default = 503
    event = emit(hooked_service)
    start = event.created_at
    deliver(hooked_service, now=start)
    assert ConsumerService.objects.get(pk=hooked_service.pk).webhook_failing_since == start
    moment = start
    while ConsumerService.objects.get(pk=hooked_service.pk).webhook_disabled_at is None:
        moment = refresh(event).next_attempt_at
        assert moment - start < timedelta(days=4)
        deliver(hooked_service, now=moment)

    service = ConsumerService.objects.get(pk=hooked_service.pk)
    assert service.webhook_disabled_at - start >= timedelta(days=3)
    alert = WebhookEvent.objects.get(type="webhook.endpoint_disabled")
    assert alert.data["url"] == receiver.url and alert.status == Status.SKIPPED
    sent = len(receiver.requests)
    deliver(hooked_service, now=moment + timedelta(days=1))
    assert len(receiver.requests) == sent  # disabled: nothing is sent

    # Support's button in the admin.
    receiver.default = 200
    response = admin_client.post("/admin/disbalance/consumerservice/", {
        "action": "webhooks_enable", "_selected_action": [str(hooked_service.pk)]})
    assert response.status_code == 302
    service.refresh_from_db()
    assert service.webhook_disabled_at is None and service.webhook_failing_since is None
    deliver(hooked_service)
    assert refresh(event).status == Status.DELIVERED


# --- Emitting -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_webhook_url_is_skipped(service, receiver):  # noqa: F811
    event = emit(service)
    assert event.status == Status.SKIPPED
    assert webhooks_sweep()["services"] == 0
    assert receiver.requests == []
    with pytest.raises(WebhookNotConfigured):
        webhook_resend(event=event)


@pytest.mark.django_db
def test_same_dedup_key_emits_once(hooked_service):
    first = emit(hooked_service, dedup_key="topup.succeeded:t-1")
    second = emit(hooked_service, data={"other": "data"}, dedup_key="topup.succeeded:t-1")
    assert second.pk == first.pk
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
def test_unknown_type_is_refused(hooked_service):
    with pytest.raises(ValueError, match="unknown event type"):
        emit(hooked_service, type="topup.maybe")
    assert WebhookEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_sent_after_commit_and_never_after_rollback(hooked_service, receiver):  # noqa: F811
    with pytest.raises(RuntimeError), transaction.atomic():
        emit(hooked_service, data={"n": 1})
        raise RuntimeError("domain change refused")
    assert receiver.requests == []
    assert WebhookEvent.objects.count() == 0

    with transaction.atomic():
        event = emit(hooked_service, data={"n": 2})
        assert receiver.requests == []  # not inside the transaction

    assert len(receiver.requests) == 1  # sent by the task kicked after commit (in-process Celery)
    assert json.loads(receiver.requests[0].body)["data"] == {"n": 2}
    assert refresh(event).status == Status.DELIVERED


# --- Re-send and the admin ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_resend_delivers_again_with_the_same_id(hooked_service, receiver, admin_user):  # noqa: F811
    event = emit(hooked_service)
    deliver(hooked_service)
    webhook_resend(event=event, user=admin_user)
    event = refresh(event)
    assert event.status == Status.PENDING and "re-send by admin" in event.note
    deliver(hooked_service)
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert refresh(event).attempts == 2


@pytest.mark.django_db
def test_admin_shows_attempts_and_resends(hooked_service, receiver, admin_client):  # noqa: F811
    receiver.script(500)
    receiver.default = 200
    event = emit(hooked_service, data={"customer": "c-1", "note": "<script>alert(1)</script>"})
    deliver(hooked_service)
    assert refresh(event).status == Status.PENDING

    page = admin_client.get("/admin/disbalance/webhookevent/").content.decode()
    assert "topup.succeeded" in page and 'value="resend"' in page and 'value="delete_selected"' not in page
    detail = admin_client.get(f"/admin/disbalance/webhookevent/{event.id}/change/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "refused" in html and "500" in html  # the attempt history: outcome and status
    assert 'name="_save"' not in html

    response = admin_client.post(
        "/admin/disbalance/webhookevent/", {"action": "resend", "_selected_action": [str(event.id)]})
    assert response.status_code == 302
    deliver(hooked_service)
    assert refresh(event).status == Status.DELIVERED
    assert WebhookAttempt.objects.filter(event=event).count() == 2
