"""Shared fixtures: consumer services and tokens, API clients, and the Balance emulator over real HTTP."""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from tests.emulator_fixtures import *  # noqa: F403 - the balance_emulator fixture and helpers

requires_postgres = pytest.mark.skipif(
    not settings.IS_POSTGRES, reason="needs PostgreSQL row locks (set DATABASE_URL to a PostgreSQL database)"
)
requires_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs a Redis broker (set REDIS_URL)")


_previous_test: list[str] = ["(none)"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Refuse to start a test on a database connection that an earlier test left inside a transaction.

    Such a connection turns the next test's `transaction.atomic()` into a savepoint, so its after-commit work
    (outbox dispatch, webhooks) never runs and the test fails far from the cause. Failing here names the culprit.
    """
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block or conn.run_on_commit:
            raise RuntimeError(
                f"database connection {conn.alias!r} was left inside a transaction by {_previous_test[0]}"
                f" (in_atomic_block={conn.in_atomic_block}, {len(conn.run_on_commit)} after-commit callbacks)"
            )


def pytest_runtest_teardown(item: pytest.Item) -> None:
    _previous_test[0] = item.nodeid


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Print the random order's seed last, even with -q, so a failing order can be replayed."""
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int) and config.pluginmanager.has_plugin("randomly"):
        terminalreporter.write_line(f"Tests ran in random order: replay with PYTEST_ARGS=\"--randomly-seed={seed}\"")


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    from disbalance.auth import token_cache_clear

    cache.clear()
    token_cache_clear()  # tokens remembered by this process (the test database is new for every test)
    yield


@pytest.fixture
def admin_client(db, admin_user):
    """pytest-django's signed-in superuser, with a browser asking for English: admin tests read the console's
    English texts and figures (the console is Russian by default: tests/support/test_i18n.py)."""
    from django.test import Client

    client = Client(headers={"Accept-Language": "en"})
    client.force_login(admin_user)
    return client


@pytest.fixture
def service(db):
    from disbalance.services import service_create

    return service_create(slug="autoru", name="Auto.ru", balance_service_id=7).service


@pytest.fixture
def other_service(db):
    from disbalance.services import service_create

    return service_create(slug="realty", name="Realty", balance_service_id=8).service


@pytest.fixture
def token(service):
    from disbalance.services import service_token_issue

    return service_token_issue(service=service).raw_token


@pytest.fixture
def api(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def other_api(other_service) -> APIClient:
    from disbalance.services import service_token_issue

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {service_token_issue(service=other_service).raw_token}")
    return client


@pytest.fixture(autouse=True, scope="session")
def _celery_in_process():
    """Tests run Celery tasks in-process (after commit); the real-worker tests switch this off themselves."""
    from disbalance.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    yield


@pytest.fixture
def balance(balance_emulator, settings):
    """The emulator over real HTTP, with billing pointed at it (short timeouts keep fault tests quick)."""
    settings.BALANCE_URL = balance_emulator.url
    settings.BALANCE_CONNECT_TIMEOUT = 1.0
    settings.BALANCE_READ_TIMEOUT = 1.0
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 0.01
    settings.OUTBOX_BACKOFF_CAP_SECONDS = 0.05
    # The pauses before a quick retry (the transport's repeat of a read, the outbox's inline retry): tenths of a
    # second in production, where they let a flaky Balance recover; here they only make fault tests wait.
    settings.BALANCE_RETRY_BACKOFF_SECONDS = 0.01
    settings.OUTBOX_INLINE_RETRY_PAUSE_SECONDS = 0.005
    # Billing is told how Balance is set up for the service, as it would be in production: the unified-account
    # reporting type, and a TVM ticket when the emulator requires one (the suite runs in each variant).
    settings.BALANCE_GROUP_REPORTING = balance_emulator.options.group_type
    if balance_emulator.options.required_ticket:
        settings.BALANCE_TVM_PROVIDER = "tests.tvm_tickets.StaticTickets"
        settings.TEST_SERVICE_TICKET = balance_emulator.options.required_ticket
    return balance_emulator


@pytest.fixture
def emulator(balance):
    """Control of the emulator (`Emulator.*` calls) over HTTP."""
    from balance_gateway.emulator.remote import EmulatorControl

    return EmulatorControl(balance.url, ticket=balance.options.required_ticket)


@pytest.fixture
def run_outbox():
    """Run every pending outbox operation now (skipping backoff waits), as workers and the sweep would."""
    from disbalance.outbox import outbox_drain

    return outbox_drain


@pytest.fixture
def balance_live(balance, live_server, settings):
    """The emulator with notifications delivered to billing's /balance/notify on a live server thread."""
    balance.notify_url = f"{live_server.url}/balance/notify?secret={settings.BALANCE_NOTIFY_SECRET}"
    return balance


@pytest.fixture
def products(service):
    from payments.services import product_create

    placement = product_create(service=service, code="placement", name="Placement", kind="placement",
                               balance_product_id=503162).product
    boost = product_create(service=service, code="boost", name="Boost", kind="vas", balance_product_id=503163).product
    return {"placement": placement, "boost": boost}


@pytest.fixture
def active_customer(api, emulator, run_outbox, products):
    """A customer registered in the emulator (status active)."""
    from customers.models import Customer
    from tests.customers.test_api import COMPANY

    assert api.post("/api/v1/customers", COMPANY, format="json").status_code == 201
    run_outbox()
    customer = Customer.objects.get(external_id=COMPANY["external_id"])
    assert customer.status == "active", customer.status_reason
    return customer
