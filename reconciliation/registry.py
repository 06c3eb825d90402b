"""The one registry of reconciliation checks.

A check declares, in one `Check(...)`:
- `kind`: the `Mismatch.kind` it records, and `label`, how support sees it (console, queue, report);
- `stages`: which loading stage feeds it (`customers`: a batch of customers with their orders, Balance's
  figures for them, their ledger accounts and their Balance clients; `agencies`: a batch of agencies with their
  clients; `operations`: failed or stuck outbox operations). The stage loads in batches and calls `compare`;
- `compare(run, batch, checks)`: reads the batch (and, if it needs more, loads it itself through `run.client`)
  and says for each key whether billing and Balance agree (`checks.equal(key)`) or differ
  (`checks.differ(Finding(...))`);
- `autofix`: whether its fix is safe to apply without a human (a finding may still carry `fix=None` when this
  particular difference cannot be fixed by re-syncing);
- `fix(context, mismatches)`: the re-sync behind support's "Fix" button and autofix, or None; `always_fixable`
  offers support's button even on a finding without a fix of its own.

Adding a check is one module that calls `register(Check(...))` and one line in `reconciliation.checks`.
Registering the same kind twice is refused at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

STAGE_CUSTOMERS = "customers"
STAGE_AGENCIES = "agencies"
STAGE_OPERATIONS = "operations"
STAGES = (STAGE_CUSTOMERS, STAGE_AGENCIES, STAGE_OPERATIONS)

# {mismatch id: (applied, note)}
FixNotes = dict[int, tuple[bool, str]]


@dataclass(frozen=True)
class Check:
    kind: str
    label: str
    stages: tuple[str, ...]
    compare: Callable[[Any, Any, Any], None]
    autofix: bool = False
    fix: Callable[[Any, list[Any]], FixNotes] | None = None
    # Support may press "Fix" even on a finding that carried no fix of its own (the fix re-reads what it needs).
    always_fixable: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.stages) - set(STAGES)
        if unknown or not self.stages:
            raise ValueError(f"check {self.kind!r}: stages must be some of {STAGES}, not {self.stages!r}")
        if len(self.kind) > 32:
            raise ValueError(f"check {self.kind!r}: a kind has at most 32 characters (Mismatch.kind)")


CHECKS: dict[str, Check] = {}


def register(check: Check) -> Check:
    if check.kind in CHECKS and CHECKS[check.kind] != check:
        raise RuntimeError(f"reconciliation check {check.kind!r} registered twice")
    CHECKS[check.kind] = check
    return check


def checks_for(stage: str) -> list[Check]:
    return [check for check in CHECKS.values() if stage in check.stages]


def kinds() -> list[str]:
    """Every registered kind, in registration order (the order of reports and of the console)."""
    return list(CHECKS)


NO_FIX = "no fix for this mismatch: resolve it with a comment"


@dataclass(frozen=True)
class FixContext:
    """What a check's `fix` gets besides the mismatches.

    `client`: the run's Balance client (None: the fix opens its own). `infos`: Balance's figures of the batch's
    orders by order id, read moments ago by the run (empty for support). `by_support`: support pressed "Fix"
    (the check may re-read Balance first and may refuse with a reason) rather than autofix.
    """

    client: Any = None
    infos: dict[int, Any] | None = None
    by_support: bool = False
