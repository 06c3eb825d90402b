"""The outbox: side-effect work (Balance calls, webhooks) written in the same transaction as the domain change.

Life of an operation: `pending` -> (claimed with a lease) `in_progress` -> `done`, or back to `pending` with
capped exponential backoff and jitter after a retryable error, or `failed` after a final error or
`max_attempts` attempts (support retries it from the admin). The task that sends it runs after commit;
the periodic sweep re-sends anything due and left behind (lost task, crash, backoff elapsed).

Handlers are registered per `kind` by the app that owns the work and must be safe to repeat: an unknown
outcome (timeout, lost response) is resolved by looking the state up, never by blindly creating again.
At most one operation per `subject` runs at a time, so two workers never race on one customer.

Failures are classified by the exception, and the class is stored on the row (`failure_kind`):
`OutboxRetry` and any error whose `retryable` attribute is true (the gateway's `BalanceRetryableError`) are
retried with backoff; `OutboxFinalError` and errors with `retryable` false (`BalanceFinalError`) fail at once;
anything else is a crash of the handler, retried like a retryable error and logged. The outbox knows no adapter:
an adapter that wants to see the operation around its calls (the gateway's call log) registers a run context.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from disbalance.logging import request_id_var
from disbalance.models import OutboxOperation
from disbalance.tracing import span

logger = logging.getLogger(__name__)

Status = OutboxOperation.Status
FailureKind = OutboxOperation.FailureKind
Handler = Callable[[OutboxOperation], dict[str, Any] | None]
RunContext = Callable[[int], AbstractContextManager[Any]]
_HANDLERS: dict[str, Handler] = {}
_RUN_CONTEXTS: list[RunContext] = []


class OutboxRetry(Exception):
    """Raised by a handler to try again later without it being an error of Balance (e.g. waiting for a
    dependency such as the agency's Balance client)."""

    retryable = True


class OutboxFinalError(Exception):
    """Raised by a handler when repeating cannot help (bad data, refused by Balance)."""

    retryable = False


def outbox_handler(kind: str) -> Callable[[Handler], Handler]:
    def register(func: Handler) -> Handler:
        if kind in _HANDLERS and _HANDLERS[kind] is not func:
            raise RuntimeError(f"outbox handler for {kind!r} registered twice")
        _HANDLERS[kind] = func
        return func

    return register


def outbox_run_context(context: RunContext) -> RunContext:
    """Register a context manager factory entered around every handler run, given the operation id."""
    if context in _RUN_CONTEXTS:
        raise RuntimeError(f"outbox run context {context!r} registered twice")
    _RUN_CONTEXTS.append(context)
    return context


def failure_kind(exc: BaseException) -> str:
    """`retryable`, `final` or `crash`, from the exception's type or its `retryable` attribute."""
    retryable = getattr(exc, "retryable", None)
    if retryable is True:
        return FailureKind.RETRYABLE
    if retryable is False:
        return FailureKind.FINAL
    return FailureKind.CRASH


def backoff_seconds(attempts: int) -> float:
    """Capped exponential backoff with equal jitter: half fixed, half random."""
    base = settings.OUTBOX_BACKOFF_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    delay = min(settings.OUTBOX_BACKOFF_CAP_SECONDS, base)
    return delay / 2 + random.uniform(0, delay / 2)


def _dispatch_after_commit(operation_id: int) -> None:
    def send() -> None:
        try:
            outbox_dispatch.delay(operation_id)
        except Exception:  # noqa: BLE001 - the broker may be down: the sweep sends it later
            logger.warning("outbox dispatch not queued; the sweep will send it", extra={"operation": operation_id})

    transaction.on_commit(send)


def outbox_enqueue(
    *, kind: str, subject: str, payload: dict[str, Any] | None = None, service: Any = None, dedup_key: str = "",
    delay_seconds: float = 0,
) -> OutboxOperation:
    """Write an operation in the caller's transaction; it is sent after commit.

    With a `dedup_key`, an operation of that key still waiting (`pending`) is reused instead of adding one:
    handlers read the current state when they run, so one waiting operation covers every change before it.
    """
    if kind not in _HANDLERS:
        raise RuntimeError(f"no outbox handler for {kind!r}")
    if dedup_key:
        existing = OutboxOperation.objects.filter(dedup_key=dedup_key, status=Status.PENDING).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            operation = OutboxOperation.objects.create(
                kind=kind, subject=subject, payload=payload or {}, service=service, dedup_key=dedup_key,
                request_id=request_id_var.get(), max_attempts=settings.OUTBOX_MAX_ATTEMPTS,
                next_attempt_at=timezone.now() + timedelta(seconds=delay_seconds),
            )
    except IntegrityError:
        # Another transaction added the waiting operation for this key first: that one covers us.
        return OutboxOperation.objects.get(dedup_key=dedup_key, status=Status.PENDING)
    if not delay_seconds:
        _dispatch_after_commit(operation.pk)
    return operation


SUBJECT_BUSY_DELAY = 2.0


class _SubjectBusy(Exception):
    """Another operation of the same subject is running: this one waits a little."""


def _claim(operation_id: int, *, ignore_schedule: bool = False) -> OutboxOperation | None:
    now = timezone.now()
    subject = OutboxOperation.objects.filter(pk=operation_id).values_list("subject", flat=True).first()
    if subject is None:
        return None
    with transaction.atomic():
        # One operation per subject at a time. The operation and its subject's active operations are locked in one
        # statement, in id order: two workers claiming two operations of one subject take the same locks in the
        # same order. (Locking the operation first and its siblings after deadlocked two such claims: each held
        # its own row and waited for the other's, about 25 times per `make soak`, each leaving an operation to
        # the sweep.)
        locked = list(
            OutboxOperation.objects.select_for_update()
            .filter(Q(pk=operation_id) | Q(subject=subject, status__in=[Status.PENDING, Status.IN_PROGRESS]))
            .order_by("id")
        )
        operation = next((o for o in locked if o.pk == operation_id), None)
        if operation is None or operation.status in (Status.DONE, Status.FAILED):
            return None
        if operation.status == Status.IN_PROGRESS and operation.leased_until and operation.leased_until > now:
            return None
        if operation.status == Status.PENDING and operation.next_attempt_at > now and not ignore_schedule:
            return None
        siblings = [o for o in locked if o.pk != operation_id]
        if any(s.status == Status.IN_PROGRESS and s.leased_until and s.leased_until > now for s in siblings):
            operation.next_attempt_at = now + timedelta(seconds=SUBJECT_BUSY_DELAY)
            operation.save(update_fields=["next_attempt_at"])
            raise _SubjectBusy
        operation.status = Status.IN_PROGRESS
        operation.attempts += 1
        operation.leased_until = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
        operation.updated_at = now
        operation.save(update_fields=["status", "attempts", "leased_until", "updated_at"])
        return operation


def _finish(operation: OutboxOperation, **fields: Any) -> None:
    fields["updated_at"] = timezone.now()
    fields["leased_until"] = None
    OutboxOperation.objects.filter(pk=operation.pk, status=Status.IN_PROGRESS).update(**fields)


def _reschedule(operation: OutboxOperation, error: str, kind: str) -> float | None:
    """Back to `pending` after a retryable error, or `failed` when attempts are used up."""
    now = timezone.now()
    if operation.attempts >= operation.max_attempts:
        _finish(operation, status=Status.FAILED, last_error=error[:4000], failure_kind=kind)
        return None
    delay = backoff_seconds(operation.attempts)
    try:
        with transaction.atomic():
            _finish(operation, status=Status.PENDING, last_error=error[:4000], failure_kind=kind,
                    next_attempt_at=now + timedelta(seconds=delay))
    except IntegrityError:
        # A newer waiting operation with the same dedup key exists and covers this one.
        _finish(operation, status=Status.DONE, done_at=now, last_error=error[:4000], failure_kind=kind,
                result={"superseded": True})
        return None
    return delay


def _retry_inline(exc: Exception) -> bool:
    """A quick retryable error of the remote side (not our own `OutboxRetry`, which waits for a dependency)."""
    return (getattr(exc, "retryable", None) is True and not isinstance(exc, OutboxRetry)
            and getattr(exc, "code", "") != "TIMEOUT")


def _run_with_quick_retries(handler: Handler, operation: OutboxOperation) -> dict[str, Any] | None:
    """Run the handler, retrying at once (briefly) after a quick retryable error of the remote side.

    Handlers are safe to repeat and keep their progress, so a flaky Balance costs a second try now rather than a
    backoff wait. Timeouts are not retried inline: a slow Balance should not hold a worker longer.
    """
    for attempt in range(settings.OUTBOX_INLINE_RETRIES + 1):
        try:
            return handler(operation)
        except Exception as exc:
            if attempt == settings.OUTBOX_INLINE_RETRIES or not _retry_inline(exc):
                raise
            time.sleep(min(settings.OUTBOX_INLINE_RETRY_PAUSE_SECONDS * (2**attempt), 0.5) * random.uniform(0.5, 1.0))
    return None  # pragma: no cover - the loop returns or raises


@dataclass(frozen=True)
class ProcessResult:
    operation_id: int
    outcome: str  # done / retry / failed / skipped
    retry_in: float | None = None
    error: str = ""


def outbox_process(*, operation_id: int, ignore_schedule: bool = False) -> ProcessResult:
    """One attempt at one operation. Safe to call from several workers at once."""
    try:
        operation = _claim(operation_id, ignore_schedule=ignore_schedule)
    except _SubjectBusy:
        return ProcessResult(operation_id, "retry", SUBJECT_BUSY_DELAY)
    if operation is None:
        return ProcessResult(operation_id, "skipped")
    handler = _HANDLERS.get(operation.kind)
    if handler is None:
        _finish(operation, status=Status.FAILED, last_error=f"no handler for kind {operation.kind!r}",
                failure_kind=FailureKind.NO_HANDLER)
        return ProcessResult(operation_id, "failed", error="no handler")
    log_extra = {"operation": operation.pk, "kind": operation.kind, "subject": operation.subject,
                 "attempt": operation.attempts}
    # The API call's request id follows the work into the task: its logs, its Balance calls, its events.
    request_token = request_id_var.set(operation.request_id or request_id_var.get())
    try:
        with span(f"outbox {operation.kind}", **{"outbox.operation": operation.pk, "outbox.kind": operation.kind,
                                                 "outbox.attempt": operation.attempts,
                                                 "request_id": operation.request_id or None}):
            return _process_claimed(operation, handler, log_extra)
    finally:
        request_id_var.reset(request_token)


def _process_claimed(operation: OutboxOperation, handler: Handler, log_extra: dict[str, Any]) -> ProcessResult:
    operation_id = operation.pk
    try:
        with ExitStack() as stack:
            for context in _RUN_CONTEXTS:
                stack.enter_context(context(operation.pk))
            result = _run_with_quick_retries(handler, operation)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        kind = failure_kind(exc)
        if kind == FailureKind.FINAL:
            _finish(operation, status=Status.FAILED, last_error=error[:4000], failure_kind=kind)
            logger.warning("outbox operation failed", extra={**log_extra, "error": error})
            _on_attempt_failed(operation, error, final=True)
            return ProcessResult(operation_id, "failed", error=error)
        if kind == FailureKind.CRASH:
            # A bug in a handler must not wedge the operation: it is retried like a Balance error and logged.
            logger.exception("outbox handler crashed", extra=log_extra)
        retry_in = _reschedule(operation, error, kind)
        if kind == FailureKind.RETRYABLE:
            logger.info("outbox operation will be retried",
                        extra={**log_extra, "error": error, "retry_in": retry_in})
        _on_attempt_failed(operation, error, final=retry_in is None)
        return ProcessResult(operation_id, "retry" if retry_in is not None else "failed", retry_in, error)
    _finish(operation, status=Status.DONE, done_at=timezone.now(), last_error="", failure_kind="", result=result)
    return ProcessResult(operation_id, "done")


_FAILURE_LISTENERS: dict[str, Callable[[OutboxOperation, str, bool], None]] = {}


def outbox_on_failure(kind: str) -> Callable:
    """Register a callback run after a failed attempt of `kind` (e.g. show the reason on the customer)."""

    def register(func: Callable[[OutboxOperation, str, bool], None]) -> Callable:
        if kind in _FAILURE_LISTENERS and _FAILURE_LISTENERS[kind] is not func:
            raise RuntimeError(f"outbox failure listener for {kind!r} registered twice")
        _FAILURE_LISTENERS[kind] = func
        return func

    return register


def _on_attempt_failed(operation: OutboxOperation, error: str, *, final: bool) -> None:
    listener = _FAILURE_LISTENERS.get(operation.kind)
    if listener is None:
        return
    try:
        listener(operation, error, final)
    except Exception:
        logger.exception("outbox failure listener crashed", extra={"operation": operation.pk})


def outbox_due_ids(*, limit: int | None = None, now: Any = None) -> list[int]:
    now = now or timezone.now()
    limit = limit or settings.OUTBOX_SWEEP_BATCH
    pending = OutboxOperation.objects.filter(status=Status.PENDING, next_attempt_at__lte=now)
    abandoned = OutboxOperation.objects.filter(status=Status.IN_PROGRESS, leased_until__lte=now)
    ids = list(pending.order_by("next_attempt_at").values_list("id", flat=True)[:limit])
    ids += list(abandoned.order_by("leased_until").values_list("id", flat=True)[:limit])
    return ids


def outbox_sweep() -> dict[str, int]:
    """Send every operation that is due. With a broker, each goes to a worker; embedded, it runs here."""
    if settings.CELERY_TASK_ALWAYS_EAGER:
        ids = outbox_due_ids()
        outcomes: dict[str, int] = {}
        for operation_id in ids:
            result = outbox_process(operation_id=operation_id)
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        return {"due": len(ids), **outcomes}
    # With workers, every operation already has a task (after commit, or a countdown retry): only what has been
    # due for a while was left behind. Re-queueing everything due would flood the queue with duplicates.
    grace = timedelta(seconds=settings.OUTBOX_SWEEP_GRACE_SECONDS)
    ids = outbox_due_ids(now=timezone.now() - grace)
    for operation_id in ids:
        outbox_dispatch.delay(operation_id)
    return {"due": len(ids), "queued": len(ids)}


def outbox_drain(*, max_rounds: int = 50, ignore_schedule: bool = True) -> dict[str, int]:
    """Run every pending operation to completion in this process, skipping backoff waits.

    For tests, the demo loader and the benchmarks: not used by the running service.
    """
    totals: dict[str, int] = {}
    for _ in range(max_rounds):
        ids = list(
            OutboxOperation.objects.filter(status__in=[Status.PENDING, Status.IN_PROGRESS])
            .order_by("id")
            .values_list("id", flat=True)
        )
        if not ids:
            break
        progressed = False
        for operation_id in ids:
            OutboxOperation.objects.filter(pk=operation_id, status=Status.IN_PROGRESS).update(leased_until=None)
            result = outbox_process(operation_id=operation_id, ignore_schedule=ignore_schedule)
            totals[result.outcome] = totals.get(result.outcome, 0) + 1
            progressed = progressed or result.outcome != "skipped"
        if not progressed:
            break
    return totals


@transaction.atomic
def outbox_retry(*, operation: OutboxOperation, reset_attempts: bool = True) -> OutboxOperation:
    """Support's "retry now": a failed (or waiting) operation is sent again at once."""
    operation = OutboxOperation.objects.select_for_update().get(pk=operation.pk)
    if operation.status in (Status.DONE, Status.IN_PROGRESS):
        return operation
    if operation.dedup_key and operation.status == Status.FAILED:
        waiting = OutboxOperation.objects.filter(dedup_key=operation.dedup_key, status=Status.PENDING).first()
        if waiting is not None:
            waiting.next_attempt_at = timezone.now()
            waiting.save(update_fields=["next_attempt_at"])
            _dispatch_after_commit(waiting.pk)
            return waiting
    operation.status = Status.PENDING
    operation.next_attempt_at = timezone.now()
    if reset_attempts:
        operation.attempts = 0
    operation.updated_at = timezone.now()
    operation.save(update_fields=["status", "next_attempt_at", "attempts", "updated_at"])
    _dispatch_after_commit(operation.pk)
    return operation


# --- tasks ------------------------------------------------------------------------------------------------------
# Here rather than in a tasks module: enqueueing schedules `outbox_dispatch` and the task runs `outbox_process`, so
# they are one unit. The names are the ones the tasks had under the gateway, so queued messages and the beat
# schedule keep working across the move.

@shared_task(name="balance_gateway.tasks.outbox_dispatch", acks_late=True, ignore_result=True)
def outbox_dispatch(operation_id: int) -> str:
    result = outbox_process(operation_id=operation_id)
    if result.outcome == "retry" and result.retry_in is not None and not settings.CELERY_TASK_ALWAYS_EAGER:
        outbox_dispatch.apply_async((operation_id,), countdown=result.retry_in)
    return result.outcome


@shared_task(name="balance_gateway.tasks.outbox_sweep", ignore_result=True)
def outbox_sweep_task() -> dict[str, int]:
    return outbox_sweep()
