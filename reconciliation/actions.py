"""Support's actions on a mismatch: "Fix" (the check's re-sync, then a re-check) and "Resolve" (a comment)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from agencies.models import Agency
from balance_gateway.exceptions import BalanceError
from disbalance.exceptions import InvalidState, ValidationFailed
from disbalance.models import OutboxOperation
from reconciliation.checks.stale_operations import STALE_OPERATION, operation_finding
from reconciliation.findings import SYSTEM_NO_LONGER_SEEN, FixResult, ReconcileReport, batch_size_default
from reconciliation.fixing import note_fix, save_mismatch, support_fix
from reconciliation.models import Mismatch
from reconciliation.reading import CountingClient, Run
from reconciliation.recording import close
from reconciliation.run import reconcile
from reconciliation.stages import reconcile_agencies


def mismatch_fix(*, mismatch: Mismatch, user: Any, recheck: bool = True) -> FixResult:
    """Support's "fix": the right re-sync for the mismatch's kind, recorded with the user.

    order_ownership: re-send the order (refused when Balance holds money on it: see the mismatch's note);
    money_in: re-pull the order; money_out: re-report its cumulative spend; unpaid_completion: re-pull the wallet
    order and re-report its children; customer_data: send billing's client and person data to Balance;
    stale_operation: retry the operation. With `recheck`, the mismatch's customer (or agency, or operation) is
    checked again at once, which closes the mismatch if the fix took effect (with Celery workers the re-send may
    still be queued: the next run closes it then).
    """
    mismatch = Mismatch.objects.select_related("order", "customer", "agency", "operation").get(pk=mismatch.pk)
    if mismatch.status != Mismatch.Status.OPEN:
        raise InvalidState(f"Mismatch {mismatch.pk} is already resolved.")
    try:
        ok, note = support_fix(mismatch)
    except BalanceError as exc:
        ok, note = False, f"Balance: {exc}"
    note_fix(mismatch, user=user, ok=ok, note=note)
    if ok and recheck:
        try:
            _recheck(mismatch)
        except BalanceError as exc:
            note += f"; re-check postponed to the next run (Balance: {exc})"
    mismatch.refresh_from_db()
    return FixResult(mismatch, ok, note)


def _recheck(mismatch: Mismatch) -> None:
    if mismatch.kind == STALE_OPERATION:
        if mismatch.operation is None:
            return
        operation = OutboxOperation.objects.get(pk=mismatch.operation_id)
        if operation_finding(operation, timezone.now()) is None:
            close(mismatch, SYSTEM_NO_LONGER_SEEN)
        return
    if mismatch.customer is not None:
        reconcile(customer=mismatch.customer, autofix=False)
    elif mismatch.agency is not None:
        run = Run(client=CountingClient(), report=ReconcileReport(), batch_size=batch_size_default(),
                   autofix=False, persons="all", now=timezone.now())
        reconcile_agencies(run, [Agency.objects.select_related("service").get(pk=mismatch.agency_id)])


@transaction.atomic
def mismatch_resolve(*, mismatch: Mismatch, user: Any, comment: str) -> Mismatch:
    """Support's "resolve": close the mismatch with a comment (required), recorded with the user.

    The same difference found again with the same figures stays acknowledged; other figures open a new mismatch.
    """
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed("A comment is required to resolve a mismatch.",
                               errors={"comment": ["This field is required."]})
    locked = Mismatch.objects.select_for_update().get(pk=mismatch.pk)
    if locked.status != Mismatch.Status.OPEN:
        raise InvalidState(f"Mismatch {locked.pk} is already resolved.")
    locked.status = Mismatch.Status.RESOLVED
    locked.resolved_at = timezone.now()
    locked.resolved_by = user
    locked.resolution = comment
    save_mismatch(locked, user=user, reason="resolved by support")
    return locked
