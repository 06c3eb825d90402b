"""The one fix dispatcher: autofix after a batch, and support's "Fix", both through the check's registered `fix`."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.utils import timezone

from balance_gateway.client import OrderInfo
from balance_gateway.exceptions import BalanceError
from reconciliation.findings import Finding, setting
from reconciliation.models import Mismatch
from reconciliation.reading import Run
from reconciliation.registry import CHECKS, NO_FIX, FixContext


def save_mismatch(mismatch: Mismatch, *, user: Any = None, reason: str = "",
                  update_fields: list[str] | None = None) -> None:
    """Save with the history row attributed to `user` (None: the system), whatever request is around."""
    mismatch._history_user = user  # type: ignore[attr-defined]
    mismatch._change_reason = reason[:100]  # type: ignore[attr-defined]
    mismatch.save(update_fields=update_fields)


def note_fix(mismatch: Mismatch, *, user: Any, ok: bool, note: str) -> None:
    mismatch.fix_attempts += 1
    mismatch.last_fix_at = timezone.now()
    mismatch.last_fix_by = user
    mismatch.last_fix_note = note[:500]
    who = "support" if user is not None else "autofix"
    save_mismatch(mismatch, user=user, reason=f"{who}: {'fix applied' if ok else 'fix failed'}",
          update_fields=["fix_attempts", "last_fix_at", "last_fix_by", "last_fix_note"])


def autofix(run: Run, recorded: list[tuple[Finding, Mismatch]], infos: dict[int, OrderInfo | None]) -> None:
    """Apply the safe fixes of what a batch recorded: the check's fix is safe, the finding has one, and the
    mismatch has not used up RECONCILE_AUTOFIX_MAX_ATTEMPTS. One call per kind, for all its mismatches."""
    max_attempts = setting("RECONCILE_AUTOFIX_MAX_ATTEMPTS", 3)
    groups: dict[str, list[tuple[Finding, Mismatch]]] = defaultdict(list)
    for finding, mismatch in recorded:
        check = CHECKS.get(finding.kind)
        if (check is not None and check.autofix and check.fix is not None and finding.fix
                and not finding.autofix_blocked and mismatch.fix_attempts < max_attempts):
            groups[finding.kind].append((finding, mismatch))
    context = FixContext(client=run.client, infos=infos, by_support=False)
    for kind, group in groups.items():
        fix = CHECKS[kind].fix
        assert fix is not None
        try:
            notes = fix(context, [m for _, m in group])
        except BalanceError as exc:
            run.report.errors.append(f"autofix {kind}: {exc}")
            notes = {m.pk: (False, f"fix failed: {exc}") for _, m in group}
        for finding, mismatch in group:
            ok, note = notes.get(mismatch.pk, (False, "not fixed"))
            note_fix(mismatch, user=None, ok=ok, note=note)
            (run.report.fixed if ok else run.report.fix_failed)[finding.kind] += 1


def support_fix(mismatch: Mismatch) -> tuple[bool, str]:
    """Support's "Fix" of one mismatch: the check's fix, told that support asked (it may re-read and refuse)."""
    check = CHECKS.get(mismatch.kind)
    if check is None or check.fix is None:
        return False, NO_FIX
    return check.fix(FixContext(by_support=True), [mismatch]).get(mismatch.pk, (False, NO_FIX))
