"""Webhooks to consumer services, delivered over real HTTP to a local receiver through the outbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction

from disbalance.models import OutboxOperation, WebhookEvent
from disbalance.outbox import outbox_process
from disbalance.services import service_create
from disbalance.webhooks import (
    DELIVER_KIND,
    WebhookNotConfigured,
    webhook_emit,
    webhook_resend,
    webhook_signature,
    webhook_verify,
)

SECRET = "whsec_test_secret"
Status = WebhookEvent.Status


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A consumer's endpoint: records every request and answers the scripted replies in order, then 200."""

    url: str
    requests: list[ReceivedRequest] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *statuses: int, headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        with self.lock:
            self.replies.extend((status, headers or {}, delay) for status in statuses)

    def next_reply(self) -> tuple[int, dict[str, str], float]:
        with self.lock:
            return self.replies.pop(0) if self.replies else (200, {}, 0.0)


@pytest.fixture
def receiver():
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, headers, delay = state.next_reply()
            with state.lock:
                state.requests.append(ReceivedRequest(self.path, dict(self.headers.items()), body))
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (read timeout)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/billing"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def fast_outbox(settings):
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 0.01
    settings.OUTBOX_BACKOFF_CAP_SECONDS = 0.05
    settings.OUTBOX_MAX_ATTEMPTS = 3
    return settings


@pytest.fixture
def hooked_service(service, receiver, fast_outbox):
    """The `autoru` service with its webhook pointed at the receiver."""
    return service_create(
        slug=service.slug, name=service.name, balance_service_id=service.balance_service_id,
        webhook_url=receiver.url, webhook_secret=SECRET,
    ).service


def emit(service, type: str = "topup.succeeded", data: dict | None = None, **kwargs) -> WebhookEvent:
    return webhook_emit(service=service, type=type, data=data or {"topup": "t-1"}, **kwargs)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def refresh(event: WebhookEvent) -> WebhookEvent:
    event.refresh_from_db()
    return event


# --- Body, signature, headers -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_delivers_signed_compact_utf8_body_with_headers(hooked_service, receiver, run_outbox):
    data = {"customer": "c-42", "name": "Иван", "amount": Decimal("1500.00")}
    event = emit(hooked_service, data=data)
    assert event.status == Status.PENDING
    assert receiver.requests == []  # nothing is sent before the outbox runs

    run_outbox()

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks/billing"
    body = json.loads(request.body)
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["id"] == str(event.id)
    assert body["type"] == "topup.succeeded"
    assert body["data"] == {"customer": "c-42", "name": "Иван", "amount": "1500.00"}
    assert body["created_at"].endswith("Z")
    assert datetime.fromisoformat(body["created_at"]) == event.created_at
    # Compact UTF-8, not ASCII escapes.
    assert request.body == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert "Иван".encode() in request.body

    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "Disbalance-Webhooks/1"
    assert headers["x-disbalance-event-id"] == str(event.id)
    assert headers["x-disbalance-event-type"] == "topup.succeeded"

    # The signature, recomputed independently of the code under test.
    parts = dict(item.split("=", 1) for item in headers["x-disbalance-signature"].split(","))
    assert set(parts) == {"t", "v1"}
    assert abs(int(parts["t"]) - time.time()) < 60
    expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert parts["v1"] == expected
    assert webhook_verify(SECRET, headers["x-disbalance-signature"], request.body)

    event = refresh(event)
    assert event.status == Status.DELIVERED
    assert event.attempts == 1
    assert event.last_status_code == 200
    assert event.delivered_at is not None
    assert event.operation.status == OutboxOperation.Status.DONE
    assert event.operation.kind == DELIVER_KIND
    assert event.operation.subject == f"webhook:{event.id}"


def test_verify_rejects_tampering_wrong_secret_stale_and_garbage():
    body = b'{"id":"x"}'
    now = 1_700_000_000
    header = f"t={now},v1={webhook_signature(SECRET, now, body)}"
    assert webhook_verify(SECRET, header, body, now=now + 299)
    assert not webhook_verify(SECRET, header, body + b" ", now=now)
    assert not webhook_verify("other-secret", header, body, now=now)
    assert not webhook_verify(SECRET, header, body, now=now + 301)  # replayed later
    assert not webhook_verify(SECRET, header, body, now=now - 301)
    assert not webhook_verify(SECRET, f"t={now}", body, now=now)
    assert not webhook_verify(SECRET, "t=abc,v1=00", body, now=now)
    assert not webhook_verify(SECRET, "", body, now=now)
    assert not webhook_verify("", header, body, now=now)
    # A rotated secret: any one of several v1 values may match.
    assert webhook_verify(SECRET, f"t={now},v1=deadbeef,v1={webhook_signature(SECRET, now, body)}", body, now=now)


# --- Retries ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_server_errors_are_retried_until_delivered(hooked_service, receiver, run_outbox):
    receiver.script(500, 500)
    event = emit(hooked_service)

    run_outbox()

    assert len(receiver.requests) == 3
    assert len({r.body for r in receiver.requests}) == 1  # the same event each time (same id, same body)
    event = refresh(event)
    assert event.status == Status.DELIVERED
    assert event.attempts == 3
    assert event.last_status_code == 200
    assert event.last_error == ""
    assert event.operation.attempts == 3


@pytest.mark.django_db
def test_each_attempt_is_recorded_on_the_event(hooked_service, receiver):
    receiver.script(503)
    event = emit(hooked_service)

    result = outbox_process(operation_id=event.operation_id, ignore_schedule=True)

    assert result.outcome == "retry"
    event = refresh(event)
    assert event.status == Status.PENDING
    assert event.attempts == 1
    assert event.last_status_code == 503
    assert event.last_error.startswith("HTTP 503")
    assert event.operation.status == OutboxOperation.Status.PENDING
    assert event.operation.next_attempt_at > event.created_at


@pytest.mark.django_db
def test_always_failing_ends_failed_after_max_attempts(hooked_service, receiver, run_outbox):
    receiver.script(500, 500, 500, 500, 500)
    event = emit(hooked_service)

    run_outbox()

    assert len(receiver.requests) == 3
    event = refresh(event)
    assert event.status == Status.FAILED
    assert event.attempts == 3
    assert event.last_status_code == 500
    assert event.operation.status == OutboxOperation.Status.FAILED


@pytest.mark.django_db
def test_client_errors_are_retried_too(hooked_service, receiver, run_outbox):
    receiver.script(400, 404)
    event = emit(hooked_service)

    run_outbox()

    assert refresh(event).status == Status.DELIVERED
    assert len(receiver.requests) == 3


@pytest.mark.django_db
def test_gone_stops_at_once(hooked_service, receiver, run_outbox):
    receiver.script(410)
    event = emit(hooked_service)

    run_outbox()

    assert len(receiver.requests) == 1
    event = refresh(event)
    assert event.status == Status.FAILED
    assert event.last_status_code == 410
    assert event.operation.status == OutboxOperation.Status.FAILED


@pytest.mark.django_db
def test_redirects_are_not_followed(hooked_service, receiver):
    receiver.script(302, headers={"Location": receiver.url + "/elsewhere"})
    event = emit(hooked_service)

    result = outbox_process(operation_id=event.operation_id, ignore_schedule=True)

    assert result.outcome == "retry"
    assert [r.path for r in receiver.requests] == ["/hooks/billing"]
    event = refresh(event)
    assert event.last_status_code == 302
    assert "not followed" in event.last_error


@pytest.mark.django_db
def test_connection_refused_is_retried_and_the_current_url_is_used(hooked_service, receiver, run_outbox):
    hooked_service.webhook_url = closed_port_url()
    hooked_service.save(update_fields=["webhook_url"])
    event = emit(hooked_service)

    result = outbox_process(operation_id=event.operation_id, ignore_schedule=True)

    assert result.outcome == "retry"
    event = refresh(event)
    assert event.status == Status.PENDING
    assert event.attempts == 1
    assert event.last_status_code is None
    assert "ConnectionError" in event.last_error

    # Support fixes the URL; the next attempt goes to the service's current URL.
    service_create(slug=hooked_service.slug, name=hooked_service.name,
                   balance_service_id=hooked_service.balance_service_id, webhook_url=receiver.url)
    run_outbox()

    event = refresh(event)
    assert event.status == Status.DELIVERED
    assert event.attempts == 2
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_read_timeout_is_retried(hooked_service, receiver, settings):
    settings.WEBHOOK_READ_TIMEOUT = 0.2
    receiver.script(200, delay=0.6)
    event = emit(hooked_service)

    result = outbox_process(operation_id=event.operation_id, ignore_schedule=True)

    assert result.outcome == "retry"
    event = refresh(event)
    assert event.status == Status.PENDING
    assert "Timeout" in event.last_error


@pytest.mark.django_db
def test_non_http_scheme_is_refused_without_sending(hooked_service, run_outbox):
    hooked_service.webhook_url = "ftp://127.0.0.1/hooks"
    hooked_service.save(update_fields=["webhook_url"])
    event = emit(hooked_service)

    run_outbox()

    event = refresh(event)
    assert event.status == Status.FAILED
    assert event.attempts == 0
    assert "scheme" in event.last_error
    assert event.operation.attempts == 1
    assert event.operation.status == OutboxOperation.Status.FAILED


# --- Emitting -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_webhook_url_is_skipped_and_queues_nothing(service, receiver, run_outbox):
    assert service.webhook_url == ""
    event = emit(service)

    assert event.status == Status.SKIPPED
    assert event.operation is None
    assert OutboxOperation.objects.count() == 0
    run_outbox()
    assert receiver.requests == []
    with pytest.raises(WebhookNotConfigured):
        webhook_resend(event=event)
    assert OutboxOperation.objects.count() == 0


@pytest.mark.django_db
def test_same_dedup_key_emits_once(hooked_service, receiver, run_outbox):
    first = emit(hooked_service, dedup_key="topup.succeeded:t-1")
    second = emit(hooked_service, data={"other": "data"}, dedup_key="topup.succeeded:t-1")

    assert second.pk == first.pk
    assert WebhookEvent.objects.count() == 1
    assert OutboxOperation.objects.filter(kind=DELIVER_KIND).count() == 1
    run_outbox()
    assert len(receiver.requests) == 1
    # Without a key every emit is its own event.
    emit(hooked_service)
    emit(hooked_service)
    assert WebhookEvent.objects.count() == 3


@pytest.mark.django_db
def test_unknown_type_is_refused(hooked_service):
    with pytest.raises(ValueError, match="unknown webhook event type"):
        emit(hooked_service, type="topup.maybe")
    assert WebhookEvent.objects.count() == 0
    assert OutboxOperation.objects.count() == 0


@pytest.mark.django_db
def test_rolled_back_emit_sends_nothing_and_leaves_no_rows(hooked_service, receiver, run_outbox):
    class DomainFailure(Exception):
        pass

    with pytest.raises(DomainFailure), transaction.atomic():
        emit(hooked_service)
        assert WebhookEvent.objects.count() == 1
        raise DomainFailure

    assert WebhookEvent.objects.count() == 0
    assert OutboxOperation.objects.count() == 0
    run_outbox()
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_sent_after_commit_and_never_after_rollback(hooked_service, receiver):
    """With real commits: the after-commit task delivers a committed event and nothing of a rolled-back one."""
    with pytest.raises(RuntimeError), transaction.atomic():
        emit(hooked_service, data={"n": 1})
        raise RuntimeError("domain change refused")
    assert receiver.requests == []
    assert WebhookEvent.objects.count() == 0
    assert OutboxOperation.objects.count() == 0

    with transaction.atomic():
        event = emit(hooked_service, data={"n": 2})
        assert receiver.requests == []  # not inside the transaction

    assert len(receiver.requests) == 1  # sent by the task after commit (in-process Celery)
    assert json.loads(receiver.requests[0].body)["data"] == {"n": 2}
    assert refresh(event).status == Status.DELIVERED


# --- Re-send and the admin ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_resend_delivers_again_with_the_same_id(hooked_service, receiver, run_outbox, admin_user):
    event = emit(hooked_service)
    run_outbox()
    first_operation = refresh(event).operation_id

    operation = webhook_resend(event=event, user=admin_user)
    event = refresh(event)
    assert operation.pk != first_operation
    assert event.status == Status.PENDING
    assert event.operation_id == operation.pk
    assert "re-send by admin" in event.note
    run_outbox()

    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    event = refresh(event)
    assert event.status == Status.DELIVERED
    assert event.attempts == 2


@pytest.mark.django_db
def test_resend_of_a_waiting_delivery_sends_it_now_without_adding_one(hooked_service, receiver, run_outbox):
    receiver.script(500)
    event = emit(hooked_service)
    outbox_process(operation_id=event.operation_id, ignore_schedule=True)

    operation = webhook_resend(event=event)

    assert operation.pk == event.operation_id
    assert OutboxOperation.objects.filter(kind=DELIVER_KIND).count() == 1
    assert operation.attempts == 0  # a fresh budget
    run_outbox()
    assert refresh(event).status == Status.DELIVERED


@pytest.mark.django_db
def test_admin_lists_shows_and_resends(hooked_service, receiver, run_outbox, admin_client):
    receiver.script(500, 500, 500)
    event = emit(hooked_service, data={"customer": "c-1", "note": "<script>alert(1)</script>"})
    run_outbox()
    assert refresh(event).status == Status.FAILED

    changelist = admin_client.get("/admin/disbalance/webhookevent/")
    assert changelist.status_code == 200
    page = changelist.content.decode()
    assert "topup.succeeded" in page
    assert 'value="resend"' in page
    assert 'value="delete_selected"' not in page
    for query in (f"?q={event.id}", "?q=not-a-uuid", "?status=failed&type=topup.succeeded"):
        assert admin_client.get(f"/admin/disbalance/webhookevent/{query}").status_code == 200
    assert str(event.id) in admin_client.get(f"/admin/disbalance/webhookevent/?q={event.id}").content.decode()

    detail = admin_client.get(f"/admin/disbalance/webhookevent/{event.id}/change/")
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "<pre>{\n  &quot;customer&quot;: &quot;c-1&quot;," in html
    assert "<script>alert(1)</script>" not in html
    assert 'name="_save"' not in html  # view-only
    assert admin_client.get("/admin/disbalance/webhookevent/add/").status_code == 403

    response = admin_client.post(
        "/admin/disbalance/webhookevent/", {"action": "resend", "_selected_action": [str(event.id)]}
    )
    assert response.status_code == 302
    event = refresh(event)
    assert event.status == Status.PENDING
    assert "re-send by admin" in event.note
    run_outbox()

    assert len(receiver.requests) == 4
    assert refresh(event).status == Status.DELIVERED


@pytest.mark.django_db
def test_resend_needs_change_permission(hooked_service, run_outbox, client, django_user_model):
    from django.contrib.auth.models import Permission

    event = emit(hooked_service)
    run_outbox()
    viewer = django_user_model.objects.create_user(username="viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookevent"))
    client.force_login(viewer)

    page = client.get("/admin/disbalance/webhookevent/")
    assert page.status_code == 200
    assert 'value="resend"' not in page.content.decode()
    client.post("/admin/disbalance/webhookevent/", {"action": "resend", "_selected_action": [str(event.id)]})

    assert OutboxOperation.objects.filter(kind=DELIVER_KIND).count() == 1
    assert refresh(event).status == Status.DELIVERED
