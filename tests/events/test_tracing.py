"""With `OTEL_TRACES_EXPORTER=console`, one charge is one trace: HTTP -> outbox -> task -> Balance call; and the
request id of the API call is on the outbox row, the Balance call log and the event."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from balance_gateway.models import BalanceCall
from disbalance.models import OutboxOperation, WebhookEvent
from disbalance.tracing import tracing_setup, tracing_teardown, tracing_wanted
from wallets.services import wallet_credit_topup


def spans_printed(text: str) -> list[dict]:
    decoder, spans, position = json.JSONDecoder(), [], 0
    while True:
        start = text.find("{", position)
        if start < 0:
            return spans
        try:
            document, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        if isinstance(document, dict) and "context" in document and "name" in document:
            spans.append(document)


def test_tracing_is_off_unless_the_standard_variables_ask():
    assert not tracing_wanted({})
    assert not tracing_wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert tracing_wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_wanted({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"})


@pytest.fixture
def console_tracing(monkeypatch, capsys):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "disbalance-test")
    assert tracing_setup()
    yield capsys
    tracing_teardown()


@pytest.mark.django_db(transaction=True)
def test_one_charge_is_one_trace_from_http_through_the_outbox_to_balance(active_customer, token, console_tracing):
    with transaction.atomic():
        wallet_credit_topup(customer=active_customer, payer_agency=None, amount=Decimal("100.00"))
    client = APIClient()  # a new client: its handler loads the middleware with tracing in it
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    console_tracing.readouterr()
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    response = client.post("/api/v1/customers/dealer:20101/charges", {"product": "placement", "amount": "1.00"},
                           format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()), HTTP_X_REQUEST_ID=request_id)
    assert response.status_code == 201, response.content
    spans = spans_printed(console_tracing.readouterr().out)

    by_id = {s["context"]["span_id"]: s for s in spans}
    http = [s for s in spans if s["kind"] == "SpanKind.SERVER" and "charges" in s["name"]]
    assert len(http) == 1, [s["name"] for s in spans]
    trace_id = http[0]["context"]["trace_id"]
    balance_calls = [s for s in spans if s["kind"] == "SpanKind.CLIENT" and s["context"]["trace_id"] == trace_id
                     and "xmlrpc" in json.dumps(s["attributes"])]
    assert balance_calls, [s["name"] for s in spans]

    def ancestors(span: dict) -> list[str]:
        names = []
        while span.get("parent_id") in by_id:
            span = by_id[span["parent_id"]]
            names.append(span["name"])
        return names

    chain = ancestors(balance_calls[0])
    assert chain[-1] == http[0]["name"]  # the HTTP request is the root
    assert any(name.startswith("outbox ") for name in chain), chain  # the outbox operation
    assert any("outbox_dispatch" in name for name in chain), chain  # the Celery task
    outbox_span = next(s for s in spans if s["name"].startswith("outbox ") and s["context"]["trace_id"] == trace_id)
    assert outbox_span["attributes"]["request_id"] == request_id

    # The request id is carried into the outbox row, the Balance call log and the event.
    operation = OutboxOperation.objects.filter(request_id=request_id).first()
    assert operation is not None and operation.status == "done"
    assert BalanceCall.objects.filter(operation=operation, request_id=request_id).exists()
    assert WebhookEvent.objects.get(type="charge.succeeded").request_id == request_id
