import io

import pytest
from django.core.management import call_command
from django.test import Client


def test_healthz():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_balance_unreachable(settings):
    settings.BALANCE_URL = "http://127.0.0.1:9/xmlrpc"
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["balance"]["status"] == "error"


@pytest.mark.django_db
def test_readyz_ok_with_emulator(settings, balance):
    response = Client().get("/readyz")
    assert response.status_code == 200, response.json()


@pytest.mark.django_db
def test_metrics_exports_prometheus_text():
    Client().get("/healthz")
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert b"django_http_requests_total_by_method" in response.content


def test_request_id_is_echoed_or_made():
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"
    made = Client().get("/healthz", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert made and " " not in made


@pytest.mark.django_db
def test_json_logs_carry_the_request_id(capsys):
    import json
    import logging

    from disbalance.logging import JsonFormatter, RequestIdFilter, request_id_var

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    token = request_id_var.set("req-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello world" and line["request_id"] == "req-1"


def test_openapi_schema_validates_and_documents_errors():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    import json

    schema = json.loads(out.getvalue())
    paths = schema["paths"]
    assert "/api/v1/customers" in paths and "/api/v1/customers/{external_id}" in paths
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "401" in responses, f"{method} {path} does not document 401"
            assert "400" in responses, f"{method} {path} does not document 400"


@pytest.mark.django_db
def test_swagger_ui_is_served_offline():
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"cdn.jsdelivr" not in response.content and b"unpkg.com" not in response.content


@pytest.mark.django_db
def test_run_periodic_lists_and_runs_jobs(balance):
    out = io.StringIO()
    call_command("run_periodic", "--list", stdout=out)
    assert "outbox_sweep" in out.getvalue() and "agency_contracts_refresh" in out.getvalue()
    out = io.StringIO()
    call_command("run_periodic", "outbox_sweep", stdout=out)
    assert out.getvalue().startswith("outbox_sweep:")
    out = io.StringIO()
    call_command("run_periodic", "--all", stdout=out)
    assert out.getvalue().count("\n") >= 3


def test_run_periodic_unknown_job_fails_clearly():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown periodic job"):
        call_command("run_periodic", "nope")


def test_beat_schedule_comes_from_the_registry():
    from disbalance.celery import app
    from disbalance.periodic import PERIODIC_JOBS

    app.loader.import_default_modules()
    schedule = app.conf.beat_schedule
    for job in PERIODIC_JOBS:
        assert schedule[job.name]["task"] == job.task
        assert job.task in app.tasks, f"{job.task} is not a registered task"
