"""What a reconciliation run produces: findings (one per difference), the collector a batch of checks fills,
the run's report, and a fix's result."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from disbalance.money import ZERO, format_amount
from reconciliation.models import Mismatch
from reconciliation.registry import kinds

SYSTEM_NO_LONGER_SEEN = "system: no longer seen"
Severity = Mismatch.Severity


def setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def batch_size_default() -> int:
    return setting("RECONCILE_BATCH_SIZE", 500)


@dataclass
class ReconcileReport:
    """What one run checked, found, fixed and closed (counters by mismatch kind) and the Balance calls it made."""

    customers: int = 0
    agencies: int = 0
    orders: int = 0
    operations: int = 0
    persons_checked: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    found: Counter[str] = field(default_factory=Counter)  # differences seen in this run (new or still open)
    new: Counter[str] = field(default_factory=Counter)
    fixed: Counter[str] = field(default_factory=Counter)  # safe fixes applied (confirmed by the next run)
    fix_failed: Counter[str] = field(default_factory=Counter)
    closed: Counter[str] = field(default_factory=Counter)
    acknowledged: Counter[str] = field(default_factory=Counter)  # same figures as a difference support resolved
    errors: list[str] = field(default_factory=list)
    started_at: datetime = field(default_factory=timezone.now)
    duration: float = 0.0

    @property
    def calls_total(self) -> int:
        return sum(self.calls.values())

    def rows(self) -> list[tuple[str, int, int, int, int, int]]:
        """(kind, found, new, fixed, fix_failed, closed) for every registered kind, in registration order."""
        return [(kind, self.found[kind], self.new[kind], self.fixed[kind], self.fix_failed[kind], self.closed[kind])
                for kind in kinds()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "customers": self.customers, "agencies": self.agencies, "orders": self.orders,
            "operations": self.operations, "persons_checked": self.persons_checked,
            "calls": dict(self.calls), "found": dict(self.found), "new": dict(self.new), "fixed": dict(self.fixed),
            "fix_failed": dict(self.fix_failed), "closed": dict(self.closed), "errors": self.errors[:20],
            "duration": round(self.duration, 3),
        }


@dataclass
class Finding:
    """One difference found in this run; becomes (or refreshes) an open `Mismatch` with the same key."""

    kind: str
    key: str
    severity: str
    summary: str
    rows: list[list[str]]  # [what, billing, Balance]
    note: str = ""
    fix: str | None = None
    service_id: int | None = None
    customer_id: int | None = None
    agency_id: int | None = None
    order_id: int | None = None
    operation_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)  # kept for the fix (figures read from Balance)
    # Fixable, but not by autofix now (e.g. the order is still on its way to Balance through the outbox).
    autofix_blocked: bool = False

    def details(self) -> dict[str, Any]:
        return {"rows": self.rows, "note": self.note, "fix": self.fix, "fingerprint": self.fingerprint(),
                **({"data": self.data} if self.data else {})}

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.rows, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FixResult:
    mismatch: Mismatch
    ok: bool
    note: str


class Checks:
    """What a batch evaluated (keys found equal or different) and what differed (findings by key)."""

    def __init__(self) -> None:
        self.evaluated: set[str] = set()
        self.findings: dict[str, Finding] = {}

    def equal(self, key: str) -> None:
        self.evaluated.add(key)

    def differ(self, finding: Finding) -> None:
        self.evaluated.add(finding.key)
        self.findings[finding.key] = finding


def money(value: Decimal | None) -> str:
    return format_amount(value if value is not None else ZERO)


def id_text(value: int | str | None) -> str:
    return str(value) if value not in (None, "", 0, "0") else "0"


def payer_key(agency_id: int | None) -> str:
    return f"agency:{agency_id}" if agency_id else "self"


def order_key(kind: str, order_id: int) -> str:
    return f"{kind}:order:{order_id}"
