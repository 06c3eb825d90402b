"""The core outbox stores why an attempt failed as data (`failure_kind`), and refuses duplicate registrations."""

from __future__ import annotations

import threading

import pytest

from balance_gateway.notifications import notification_applier
from disbalance.models import OutboxOperation
from disbalance.outbox import (
    _HANDLERS,
    OutboxFinalError,
    OutboxRetry,
    outbox_enqueue,
    outbox_handler,
    outbox_on_failure,
    outbox_process,
)
from tests.conftest import requires_postgres

OUTCOMES: dict[str, Exception | None] = {}


@pytest.fixture
def test_kind(monkeypatch):
    """A handler kind that raises what the test puts in OUTCOMES (registered for this test only)."""
    monkeypatch.setitem(_HANDLERS, "test.outcome", _handler)
    OUTCOMES.clear()
    return "test.outcome"


def _handler(operation: OutboxOperation) -> dict:
    error = OUTCOMES.get(operation.subject)
    if error is not None:
        raise error
    return {"ok": True}


class _RemoteBusy(Exception):
    retryable = True  # what the gateway's BalanceRetryableError says of itself


@pytest.mark.parametrize(("error", "status", "kind"), [
    (OutboxFinalError("refused"), "failed", "final"),
    (OutboxRetry("waiting for the agency"), "pending", "retryable"),
    (_RemoteBusy("busy"), "pending", "retryable"),
    (ZeroDivisionError("bug"), "pending", "crash"),
    (None, "done", ""),
])
@pytest.mark.django_db
def test_the_failure_kind_is_stored_on_the_row(test_kind, settings, error, status, kind):
    settings.OUTBOX_INLINE_RETRIES = 0
    operation = outbox_enqueue(kind=test_kind, subject="s1", delay_seconds=60)
    OUTCOMES["s1"] = error
    outbox_process(operation_id=operation.pk, ignore_schedule=True)
    operation.refresh_from_db()
    assert (operation.status, operation.failure_kind) == (status, kind)
    assert operation.last_error == ("" if error is None else f"{type(error).__name__}: {error}")


@pytest.mark.django_db
def test_a_success_after_a_failure_clears_the_kind(test_kind, settings):
    settings.OUTBOX_INLINE_RETRIES = 0
    operation = outbox_enqueue(kind=test_kind, subject="s2", delay_seconds=60)
    OUTCOMES["s2"] = OutboxRetry("not yet")
    outbox_process(operation_id=operation.pk, ignore_schedule=True)
    OUTCOMES["s2"] = None
    outbox_process(operation_id=operation.pk, ignore_schedule=True)
    operation.refresh_from_db()
    assert (operation.status, operation.failure_kind, operation.last_error) == ("done", "", "")


def test_registries_refuse_a_second_registration_of_a_kind():
    with pytest.raises(RuntimeError, match="registered twice"):
        outbox_handler("orders.sync")(lambda operation: None)
    with pytest.raises(RuntimeError, match="registered twice"):
        outbox_on_failure("topup.request")(lambda operation, error, final: None)
    with pytest.raises(RuntimeError, match="registered twice"):
        notification_applier("order")(type("Another", (), {}))


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_one_subjects_operations_at_once_never_deadlock(test_kind):
    """Two operations of one customer, claimed by two workers at the same moment, round after round: one is claimed,
    the other waits for the subject (never both), and PostgreSQL never has to break a deadlock. Claims that locked
    their own row first and the siblings after deadlocked here (and about 25 times per `make soak`)."""
    from django.db import OperationalError, connection
    from django.utils import timezone

    from disbalance.outbox import _claim, _SubjectBusy

    ids = [outbox_enqueue(kind=test_kind, subject="customer:1", delay_seconds=60).pk for _ in range(2)]
    rounds, outcomes, errors = 40, [], []
    barrier = threading.Barrier(2)

    def claim(operation_id: int, results: list) -> None:
        try:
            barrier.wait(timeout=10)
            try:
                results.append("claimed" if _claim(operation_id, ignore_schedule=True) else "skipped")
            except _SubjectBusy:
                results.append("busy")
            except OperationalError as exc:
                errors.append(str(exc).splitlines()[0])
        finally:
            connection.close()

    for _ in range(rounds):
        OutboxOperation.objects.filter(pk__in=ids).update(status=OutboxOperation.Status.PENDING, leased_until=None,
                                                          next_attempt_at=timezone.now())
        results: list[str] = []
        threads = [threading.Thread(target=claim, args=(pk, results)) for pk in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        outcomes.append(sorted(results))
    assert errors == []
    assert all(outcome == ["busy", "claimed"] for outcome in outcomes), outcomes
