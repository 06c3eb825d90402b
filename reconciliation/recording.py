"""Recording what a batch found: new mismatches, refreshed open ones, closed ones no longer seen; then autofix."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from balance_gateway.client import OrderInfo
from reconciliation.findings import SYSTEM_NO_LONGER_SEEN, Checks, Finding
from reconciliation.fixing import autofix, save_mismatch
from reconciliation.models import Mismatch
from reconciliation.reading import Run


def _acknowledged(finding: Finding) -> bool:
    """Support resolved this very difference (same figures) with a comment: don't raise it again."""
    last = (Mismatch.objects.filter(key=finding.key, status=Mismatch.Status.RESOLVED)
            .order_by("-resolved_at", "-id").only("resolved_by", "details").first())
    return (last is not None and last.resolved_by_id is not None
            and last.details.get("fingerprint") == finding.fingerprint())


def _record(run: Run, finding: Finding, existing: Mismatch | None) -> Mismatch | None:
    now = timezone.now()
    details = finding.details()
    if existing is not None:
        run.report.found[finding.kind] += 1
        changed = (existing.details.get("fingerprint") != details["fingerprint"] or existing.severity !=
                   finding.severity or existing.summary != finding.summary[:300])
        if not changed:
            # Seen again as it was: bump the counters without a history row per run.
            Mismatch.objects.filter(pk=existing.pk).update(last_seen_at=now, times_seen=existing.times_seen + 1)
            existing.last_seen_at, existing.times_seen = now, existing.times_seen + 1
            return existing
        existing.details = details
        existing.severity, existing.summary = finding.severity, finding.summary[:300]
        existing.last_seen_at, existing.times_seen = now, existing.times_seen + 1
        save_mismatch(existing, reason="seen again with other figures")
        return existing
    if _acknowledged(finding):
        run.report.acknowledged[finding.kind] += 1
        return None
    run.report.found[finding.kind] += 1
    run.report.new[finding.kind] += 1
    mismatch = Mismatch(
        kind=finding.kind, key=finding.key, severity=finding.severity, summary=finding.summary[:300],
        details=details, service_id=finding.service_id, customer_id=finding.customer_id,
        agency_id=finding.agency_id, order_id=finding.order_id, operation_id=finding.operation_id,
        detected_at=now, last_seen_at=now,
    )
    try:
        with transaction.atomic():
            save_mismatch(mismatch, reason="detected")
    except IntegrityError:
        # Another run recorded it first: refresh that one instead.
        run.report.new[finding.kind] -= 1
        run.report.found[finding.kind] -= 1
        other = Mismatch.objects.filter(key=finding.key, status=Mismatch.Status.OPEN).first()
        return _record(run, finding, other) if other is not None else None
    return mismatch


def close(mismatch: Mismatch, resolution: str) -> None:
    with transaction.atomic():
        locked = Mismatch.objects.select_for_update().filter(pk=mismatch.pk, status=Mismatch.Status.OPEN).first()
        if locked is None:
            return
        locked.status = Mismatch.Status.RESOLVED
        locked.resolved_at = timezone.now()
        locked.resolved_by = None
        if locked.last_fix_at is not None:
            by = locked.last_fix_by.get_username() if locked.last_fix_by else "reconciliation"
            resolution = f"{resolution} (after the fix by {by} at {locked.last_fix_at:%Y-%m-%d %H:%M} UTC)"
        locked.resolution = resolution
        save_mismatch(locked, reason="closed by the system")


def settle(run: Run, checks: Checks, open_rows: dict[str, Mismatch],
            infos: dict[int, OrderInfo | None] | None = None) -> None:
    """Record the batch's findings, close what was checked and found equal, then apply the safe fixes."""
    recorded: list[tuple[Finding, Mismatch]] = []
    for key, finding in checks.findings.items():
        mismatch = _record(run, finding, open_rows.get(key))
        if mismatch is not None:
            recorded.append((finding, mismatch))
    for key, mismatch in open_rows.items():
        if key in checks.evaluated and key not in checks.findings:
            close(mismatch, SYSTEM_NO_LONGER_SEEN)
            run.report.closed[mismatch.kind] += 1
    if run.autofix:
        autofix(run, recorded, infos or {})
