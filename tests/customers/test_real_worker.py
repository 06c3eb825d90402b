"""200 registrations through a real Celery worker on PostgreSQL and Redis, with faults on every Balance method:
all end `active`, and the emulator holds exactly 200 clients and 200 persons."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from customers.models import Customer
from disbalance.celery import app as celery_app
from disbalance.outbox import outbox_sweep
from tests.conftest import requires_postgres, requires_redis
from tests.customers.test_api import COMPANY, PERSON

ROOT = Path(__file__).resolve().parents[2]
COUNT = 200


@pytest.fixture
def real_worker(balance, settings, tmp_path):
    """A `celery worker` process on the test database and Redis; tasks leave this process through the broker."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "BALANCE_URL": balance.url,
        "BALANCE_READ_TIMEOUT": "0.5",
        "BALANCE_CONNECT_TIMEOUT": "1",
        "OUTBOX_BACKOFF_BASE_SECONDS": "0.05",
        "OUTBOX_BACKOFF_CAP_SECONDS": "1",
        "OUTBOX_MAX_ATTEMPTS": "100",
        # The quick-retry pauses as the balance fixture sets them in this process (production's only make it wait).
        "BALANCE_RETRY_BACKOFF_SECONDS": str(django_settings.BALANCE_RETRY_BACKOFF_SECONDS),
        "OUTBOX_INLINE_RETRY_PAUSE_SECONDS": str(django_settings.OUTBOX_INLINE_RETRY_PAUSE_SECONDS),
        "LOG_LEVEL": "WARNING",
    }
    celery_app.control.purge()
    log = (tmp_path / "worker.log").open("wb")  # a file, not a pipe: a full pipe would block the worker
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "disbalance", "worker", "--pool=threads", "--concurrency=8",
         "--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    settings.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.conf.task_always_eager = False
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 0.05
    settings.OUTBOX_BACKOFF_CAP_SECONDS = 1
    try:
        yield worker
    finally:
        celery_app.conf.task_always_eager = True
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()


@requires_postgres
@requires_redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_hundred_registrations_through_a_real_worker_under_faults(api, emulator, real_worker):
    emulator.set_faults({"seed": 5, "*": {"error_rate": 0.3, "timeout_rate": 0.2, "lost_response_rate": 0.1}})
    for i in range(COUNT):
        body = {**(COMPANY if i % 2 else PERSON), "external_id": f"c:{i}", "user_uids": [70000 + i]}
        assert api.post("/api/v1/customers", body, format="json").status_code == 201
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if not Customer.objects.exclude(status="active").exists():
            break
        assert real_worker.poll() is None, "the worker died"
        outbox_sweep()  # what beat does every few seconds
        time.sleep(2)
    emulator.set_faults({})
    not_active = list(Customer.objects.exclude(status="active").values_list("external_id", "status", "status_reason"))
    assert not_active == []
    state = emulator.state()
    assert len(state["clients"]) == COUNT
    assert len(state["persons"]) == COUNT
    assert sorted(int(c["CLIENT_ID"]) for c in state["clients"]) == sorted(
        Customer.objects.values_list("balance_client_id", flat=True))
    assert sorted(int(p["ID"]) for p in state["persons"]) == sorted(
        Customer.objects.values_list("balance_person_id", flat=True))
