"""`stale_operation`: outbox operations `failed`, or pending / in progress for longer than
RECONCILE_STALE_OPERATION_MINUTES. Fix: retry the operation (not when it failed with a final error: the data
must be fixed first)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from agencies.models import Agency
from customers.models import Customer
from disbalance.models import OutboxOperation
from disbalance.outbox import outbox_retry
from reconciliation.findings import Checks, Finding, Severity, setting
from reconciliation.registry import STAGE_OPERATIONS, Check, FixContext, FixNotes, register
from reconciliation.stages import OperationBatch

STALE_OPERATION = "stale_operation"
FIX_RETRY = "retry"  # retry the outbox operation


def operation_key(operation_id: int) -> str:
    return f"{STALE_OPERATION}:operation:{operation_id}"


def _subject_customer_id(subject: str) -> int | None:
    kind, _, pk = subject.partition(":")
    return int(pk) if kind == "customer" and pk.isdigit() else None


def _subject_agency_id(subject: str) -> int | None:
    kind, _, pk = subject.partition(":")
    return int(pk) if kind == "agency" and pk.isdigit() else None


def operation_finding(operation: OutboxOperation, now: datetime) -> Finding | None:
    stale_after = timedelta(minutes=setting("RECONCILE_STALE_OPERATION_MINUTES", 60))
    Status = OutboxOperation.Status
    error = operation.last_error.strip()
    if operation.status == Status.FAILED:
        final = operation.failure_kind == OutboxOperation.FailureKind.FINAL
        state = f"failed after {operation.attempts} attempt(s)"
        severity = Severity.WARNING
        fix = None if final else FIX_RETRY
        note = ("Balance refused it (a final error): retrying the same call cannot help. Fix the data (see the "
                "error), then retry it from the outbox, or resolve with a comment." if final else
                "It gave up after retryable errors (Balance unreachable or busy): retrying sends it again.")
    elif operation.status in (Status.PENDING, Status.IN_PROGRESS) and operation.created_at < now - stale_after:
        age = now - operation.created_at
        state = f"{operation.status} for {age.days * 24 + age.seconds // 3600}h{age.seconds % 3600 // 60:02d}m"
        backing_off = operation.status == Status.PENDING and operation.next_attempt_at > now
        severity = Severity.INFO if backing_off else Severity.WARNING
        fix = FIX_RETRY if operation.status == Status.PENDING else None
        note = ("Still retrying with backoff; retrying sends it now." if backing_off else
                "Stuck: no worker has finished it. Retrying sends it now (the sweep should have: are workers up?)."
                if operation.status == Status.PENDING else
                "In progress with a lease: a worker is on it or crashed (the sweep re-sends it once the lease ends).")
    else:
        return None
    customer_id = _subject_customer_id(operation.subject)
    return Finding(
        kind=STALE_OPERATION, key=operation_key(operation.pk), severity=severity, fix=fix,
        summary=f"Operation {operation.pk} {operation.kind} ({operation.subject}) {state}"
                + (f": {error[:120]}" if error else ""),
        rows=[[gettext_noop("status"), operation.status, ""],
              [gettext_noop("attempts"), f"{operation.attempts} of {operation.max_attempts}", ""],
              ["created", f"{operation.created_at:%Y-%m-%d %H:%M:%S}", ""],
              ["last error", error[:300], ""]],
        note=note, service_id=operation.service_id, customer_id=customer_id,
        agency_id=_subject_agency_id(operation.subject), operation_id=operation.pk,
    )


def compare(run: Any, batch: OperationBatch, checks: Checks) -> None:
    findings = [f for f in (operation_finding(operation, run.now) for operation in batch.operations)
                if f is not None]
    # Subjects name rows by id; link only the ones that exist.
    customers = set(Customer.objects.filter(pk__in={f.customer_id for f in findings if f.customer_id})
                    .values_list("pk", flat=True))
    agencies = set(Agency.objects.filter(pk__in={f.agency_id for f in findings if f.agency_id})
                   .values_list("pk", flat=True))
    for finding in findings:
        finding.customer_id = finding.customer_id if finding.customer_id in customers else None
        finding.agency_id = finding.agency_id if finding.agency_id in agencies else None
        checks.differ(finding)


def fix(context: FixContext, mismatches: list) -> FixNotes:
    notes: FixNotes = {}
    for mismatch in mismatches:
        if mismatch.operation is None:
            notes[mismatch.pk] = (False, "the operation no longer exists")
            continue
        operation = outbox_retry(operation=mismatch.operation)
        notes[mismatch.pk] = (True, f"operation {operation.pk} queued again ({operation.status})")
    return notes


register(Check(kind=STALE_OPERATION, label=_("stale operation"), stages=(STAGE_OPERATIONS,), compare=compare,
               autofix=True, fix=fix, always_fixable=True))
