"""The soak's checker: after the workload and the drain, compare what the clients were told, what billing holds and
what Balance (the emulator) holds, and list every difference as a violation.

What the clients were told comes from their JSONL logs (`soak.workload`). The pure part (`analyze_ops`) reads
them: final answer per idempotency key, replays, concurrent doubles, 5xx answers. The rest reads the soak database
with the ORM (run inside Django, after `django.setup()`) and `Emulator.State()`:

- every operation answered 2xx is in billing exactly once and in the ledger exactly once, with its amount
  (charges `charge`/charge id, holds `hold`/hold id, captures `capture` and releases `release` per hold, refunds
  `refund`/refund id, top-ups `topup`/top-up id once paid); nothing answered 4xx (or never answered) is;
- what the server stored for every idempotency key is what the client was told;
- `verify_ledger` is clean and the sum of all entries is zero;
- every billing order agrees with the emulator (ConsumeQty = credited, CompletionQty = spend, ClientID /
  AgencyID / ProductID / group = billing's); paid requests are credited exactly once; no unpaid completion;
- reconciliation (`manage.py reconcile`, twice) leaves zero open mismatches;
- no 5xx except `503 upstream_unavailable` (a 5xx while gunicorn restarts counts as a connection error); no
  outbox operation failed or still waiting; no notification given up.
"""

# ruff: noqa: T201

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

KEYED_KINDS = ("register", "topup", "charge", "hold", "capture", "release", "refund", "agency_change")
MAX_LISTED = 15  # violations of one check printed in full; the rest are counted


# --- the report ---------------------------------------------------------------------------------------------------

@dataclass
class Report:
    seed: int
    duration: float
    clients: int
    replay: str
    violations: list[tuple[str, str]] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    ops: dict[str, Counter] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, Any] = field(default_factory=dict)
    chaos: list[str] = field(default_factory=list)
    supervisor: list[str] = field(default_factory=list)
    ledger: dict[str, Any] = field(default_factory=dict)
    reconcile: list[str] = field(default_factory=list)
    drain_notes: list[str] = field(default_factory=list)
    final_jobs: dict[str, Any] = field(default_factory=dict)
    client_exit_codes: list[int | None] = field(default_factory=list)
    converge_seconds: float | None = None
    total_seconds: float = 0.0
    timeline: dict[str, float] = field(default_factory=dict)

    def violation(self, check: str, detail: str) -> None:
        self.violations.append((check, detail))

    def passed(self, check: str) -> None:
        self.checks.append(check)

    def check(self, name: str, problems: Iterable[str]) -> None:
        """Record one named check: each problem is a violation; none means it passed."""
        problems = list(problems)
        if not problems:
            self.passed(name)
        for problem in problems:
            self.violation(name, problem)

    def as_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items()}

    def print(self) -> None:
        out = []
        out.append("")
        out.append(f"==== soak summary: seed {self.seed}, {self.duration:g}s, {self.clients} clients")
        out.append("operations (final answer per request; 'none' = no answer before the finish budget):")
        header = f"  {'kind':<16}{'total':>7}{'2xx':>7}  4xx by code"
        out.append(header)
        for kind in sorted(self.ops):
            counts = self.ops[kind]
            total = sum(counts.values())
            ok = sum(v for k, v in counts.items() if k.startswith("2"))
            rest = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if not k.startswith("2"))
            out.append(f"  {kind:<16}{total:>7}{ok:>7}  {rest}")
        h = self.http
        if h:
            out.append(f"HTTP: {h.get('attempts', 0)} attempts, {h.get('retried', 0)} requests retried; connection "
                       f"errors {h.get('conn', 0)}; 5xx {h.get('5xx', 0)} (503 upstream_unavailable "
                       f"{h.get('503_upstream', 0)}, during gunicorn restarts {h.get('5xx_restart', 0)}); "
                       f"replays {h.get('replays', 0)}; concurrent doubles {h.get('concurrent', 0)}")
        f = self.faults
        if f:
            out.append(f"faults injected by the emulator: {fmt_counts(f.get('injected', {}))}")
            out.append(f"Balance calls by outcome (billing's log): {fmt_counts(f.get('calls', {}))}")
            out.append(f"notifications (emulator): {fmt_counts(f.get('notifications', {}))}; billing stored "
                       f"{fmt_counts(f.get('received', {}))}")
            out.append(f"outbox operations: {fmt_counts(f.get('outbox', {}))}; attempts {f.get('outbox_attempts')}")
        out.append("chaos: " + ("; ".join(self.chaos) if self.chaos else "none"))
        out.append("unplanned exits, restarted as a supervisor would: " + ("; ".join(self.supervisor) or "none"))
        if self.final_jobs:
            out.append(f"final jobs: {self.final_jobs}")
        conv = f"{self.converge_seconds:.1f}s" if self.converge_seconds is not None else "NOT CONVERGED"
        out.append(f"time to converge after faults off: {conv}")
        for line in self.drain_notes:
            out.append(f"  {line}")
        for line in self.reconcile:
            out.append(f"reconcile: {line}")
        if self.ledger:
            out.append(f"ledger: {fmt_counts(self.ledger)}")
        out.append(f"timeline (s from start): {self.timeline}; total {self.total_seconds:.0f}s")
        out.append(f"checks passed ({len(self.checks)}): {', '.join(self.checks)}")
        if self.violations:
            out.append(f"VIOLATIONS ({len(self.violations)}):")
            shown: Counter = Counter()
            for check, detail in self.violations:
                shown[check] += 1
                if shown[check] <= MAX_LISTED:
                    out.append(f"  [{check}] {detail}")
            for check, count in shown.items():
                if count > MAX_LISTED:
                    out.append(f"  [{check}] ... and {count - MAX_LISTED} more")
            out.append(f"FAIL (seed {self.seed}). Replay: {self.replay}")
        else:
            out.append(f"PASS (seed {self.seed})")
        print("\n".join(out), flush=True)


def fmt_counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


# --- the clients' logs (pure) --------------------------------------------------------------------------------------

def load_ops(run_dir: Path) -> list[dict[str, Any]]:
    ops = []
    for path in sorted(run_dir.glob("ops-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                ops.append(json.loads(line))
    return ops


def in_windows(t: float, windows: list[tuple[float, float]], slack: float = 1.0) -> bool:
    return any(start - slack <= t <= end + slack for start, end in windows)


@dataclass
class Expected:
    """What the clients were told, per idempotency key, and what must therefore exist."""

    final: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> the record with the final answer
    unanswered: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> a record without one
    pays: list[dict[str, Any]] = field(default_factory=list)  # Emulator.PayRequest calls made by the clients
    updates: list[dict[str, Any]] = field(default_factory=list)  # PATCH /customers/{id} answered 200

    def ok(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.final.values() if r["kind"] == kind and 200 <= r["status"] < 300]

    def answered(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.final.values() if r["kind"] == kind]


def analyze_ops(ops: list[dict[str, Any]], web_restarts: list[tuple[float, float]],
                report: Report) -> Expected:
    """Final answers per key, and the checks that need only the logs: answers to one key agree (concurrent
    doubles, replays), and no 5xx but `503 upstream_unavailable` outside gunicorn restarts."""
    expected = Expected()
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    problems_5xx, problems_key, problems_replay = [], [], []
    counts: dict[str, Counter] = defaultdict(Counter)
    http = Counter()
    for op in ops:
        kind = op["kind"]
        attempts = op.get("attempts") or []
        if "method" in op:  # an HTTP request (not an emulator call)
            http["attempts"] += len(attempts)
            http["retried"] += int(len(attempts) > 1)
            if op.get("ref", {}).get("concurrent"):
                http["concurrent"] += 1
            for sent, status, code in attempts:
                if status == "conn":
                    http["conn"] += 1
                elif status >= 500:
                    http["5xx"] += 1
                    if status == 503 and code == "upstream_unavailable":
                        http["503_upstream"] += 1
                    elif in_windows(sent, web_restarts):
                        http["5xx_restart"] += 1
                    else:
                        problems_5xx.append(f"{status} {code or ''} on {op['method']} {op['path']} ({kind}, key "
                                            f"{op.get('key')}) at {time.strftime('%H:%M:%S', time.localtime(sent))}")
            label = "none" if op["status"] is None else str(op["status"]) + (f" {op['code']}" if op["code"] else "")
            counts[kind][label] += 1
        else:
            counts[kind][op.get("result", "?").split(":")[0]] += 1
        if kind == "pay":
            expected.pays.append(op)
        if kind == "update" and op["status"] == 200:
            expected.updates.append(op)
        if kind == "replay":
            http["replays"] += 1
            if op["status"] is not None and (op["status"] != op["expected_status"]
                                             or (op["expected_id"] and op["id"] != op["expected_id"])):
                problems_replay.append(f"key {op['key']}: first answer {op['expected_status']} id "
                                       f"{op['expected_id']}, replay answered {op['status']} id {op['id']}")
            continue
        if kind in KEYED_KINDS and op.get("key"):
            by_key[op["key"]].append(op)
    for key, records in by_key.items():
        answered = [r for r in records if r["status"] is not None]
        if not answered:
            expected.unanswered[key] = records[0]
            continue
        first = answered[0]
        for other in answered[1:]:
            if other["status"] != first["status"] or other["id"] != first["id"]:
                problems_key.append(f"key {key}: answered {first['status']} id {first['id']} and "
                                    f"{other['status']} id {other['id']}")
        expected.final[key] = first
    report.ops = dict(counts)
    report.http = dict(http)
    report.check("no 5xx (except 503 upstream_unavailable)", problems_5xx)
    report.check("one answer per idempotency key", problems_key)
    report.check("replays answer as the first time", problems_replay)
    report.check("every request got a final answer",
                 [f"{r['kind']} {r['method']} {r['path']} key {k}: no final answer; attempts "
                  f"{[a[1] for a in r['attempts']][-6:]}" for k, r in expected.unanswered.items()])
    return expected


# --- convergence ----------------------------------------------------------------------------------------------------

def _busy_counts(control: Any) -> dict[str, int]:
    from agencies.models import Agency
    from customers.models import Customer
    from disbalance.models import OutboxOperation
    from payments.models import BalanceOrder, TopUp
    from payments.services import orders_with_unreported_spend

    notifications = control.Emulator.State()["notifications"]
    return {
        "outbox_waiting": OutboxOperation.objects.filter(status__in=["pending", "in_progress"]).count(),
        "notifications_queued": int(notifications.get("queued", 0)),
        "orders_unsynced": BalanceOrder.objects.filter(sync_status="pending").count(),
        "spend_unreported": orders_with_unreported_spend().count(),
        "topups_pending": TopUp.objects.filter(status="pending").count(),
        "parties_registering": Customer.objects.filter(status="registering").count()
        + Agency.objects.filter(status="registering").count(),
    }


def drain(control: Any, *, timeout: float, report: Report, label: str = "after faults off") -> bool:
    """Poll until nothing is waiting (three polls in a row), or `timeout` seconds."""
    started = time.monotonic()
    deadline = started + timeout
    quiet = 0
    last: dict[str, int] = {}
    while time.monotonic() < deadline:
        last = _busy_counts(control)
        quiet = quiet + 1 if not any(last.values()) else 0
        if quiet >= 3:
            report.drain_notes.append(f"drained {label} in {time.monotonic() - started:.1f}s")
            return True
        time.sleep(1.0)
    report.violation("convergence", f"not drained {label} within {timeout:.0f}s: {last}")
    return False


def final_jobs(report: Report) -> None:
    """The periodic jobs that settle money with Balance, once more now that faults are off."""
    from payments import services

    for name, job in (("spend_report", services.spend_report), ("orders_pull", services.orders_pull)):
        try:
            report.final_jobs[name] = job()
        except Exception as exc:  # noqa: BLE001 - reported as a violation
            report.violation("final jobs", f"{name} raised {type(exc).__name__}: {exc}")


# --- the database and the emulator ---------------------------------------------------------------------------------

def dec(value: Any) -> Decimal:
    """A money value (string or number) as a 2-place Decimal."""
    return Decimal(str(value)).quantize(Decimal("0.01"))


def check_idempotency_records(expected: Expected, service: Any, report: Report) -> None:
    """What the server stored for each key is what the client was told (and, for unanswered keys, what it did)."""
    from disbalance.models import IdempotencyRecord

    records = {r.key: r for r in IdempotencyRecord.objects.filter(service=service)}
    problems = []
    for key, op in expected.final.items():
        record = records.get(key)
        if record is None:
            problems.append(f"{op['kind']} key {key}: answered {op['status']} but the server kept no record")
            continue
        body_id = (record.response_body or {}).get("id") if isinstance(record.response_body, dict) else None
        if record.status != "done" or record.response_status != op["status"] or (op["id"] and body_id != op["id"]):
            problems.append(f"{op['kind']} key {key}: client got {op['status']} id {op['id']}, server stored "
                            f"{record.status} {record.response_status} id {body_id}")
    # An unanswered key counts as whatever the server recorded for it (a crashed request recorded nothing).
    for key, op in expected.unanswered.items():
        record = records.get(key)
        if record is not None and record.status == "done":
            body = record.response_body if isinstance(record.response_body, dict) else {}
            expected.final[key] = {**op, "status": record.response_status, "id": body.get("id"),
                                   "resp": body, "resolved_from_server": True}
    report.check("idempotency records match the answers", problems)


class Ledger:
    """The ledger's transactions indexed by (type, reference_kind, reference_id), with their entries."""

    def __init__(self, service: Any) -> None:
        from wallets.models import LedgerEntry, LedgerTransaction

        self.txns: dict[int, dict[str, Any]] = {}
        self.by_ref: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for txn in LedgerTransaction.objects.filter(service=service).values("id", "type", "reference_kind",
                                                                            "reference_id"):
            txn["entries"] = []
            self.txns[txn["id"]] = txn
            self.by_ref[(txn["type"], txn["reference_kind"], txn["reference_id"])].append(txn["id"])
        for txn_id, amount, kind in LedgerEntry.objects.filter(transaction__service=service).values_list(
                "transaction_id", "amount", "account__kind"):
            self.txns[txn_id]["entries"].append((kind, amount))

    def find(self, type_: str, reference_kind: str, reference_id: str) -> list[dict[str, Any]]:
        return [self.txns[i] for i in self.by_ref.get((type_, reference_kind, str(reference_id)), [])]

    @staticmethod
    def size(txn: dict[str, Any]) -> Decimal:
        return sum((amount for _, amount in txn["entries"] if amount > 0), Decimal(0))

    @staticmethod
    def on(txn: dict[str, Any], kind: str) -> Decimal:
        return sum((amount for k, amount in txn["entries"] if k == kind), Decimal(0))

    def types(self) -> Counter:
        return Counter(t["type"] for t in self.txns.values())


def _once(ledger: Ledger, problems: list[str], what: str, type_: str, ref_kind: str, ref_id: str,
          size: Decimal | None) -> dict[str, Any] | None:
    txns = ledger.find(type_, ref_kind, ref_id)
    if len(txns) != 1:
        problems.append(f"{what}: {len(txns)} `{type_}` ledger transactions (want exactly 1)")
        return None
    if size is not None and Ledger.size(txns[0]) != size:
        problems.append(f"{what}: `{type_}` transaction moves {Ledger.size(txns[0])}, want {size}")
    return txns[0]


def _none(ledger: Ledger, problems: list[str], what: str, type_: str, ref_kind: str, ref_id: str) -> None:
    txns = ledger.find(type_, ref_kind, ref_id)
    if txns:
        problems.append(f"{what}: {len(txns)} `{type_}` ledger transaction(s), want none")


def check_customers(expected: Expected, service: Any) -> list[str]:
    """Exactly the customers registered with a 2xx exist, and every customer and agency is active."""
    from agencies.models import Agency
    from customers.models import Customer

    problems = []
    registered = {r["ref"]["customer"] for r in expected.ok("register")}
    customers = {c.external_id: c for c in Customer.objects.filter(service=service)}
    for external_id in sorted(set(customers) - registered):
        problems.append(f"customer {external_id} exists without a 2xx registration")
    for external_id in sorted(registered - set(customers)):
        problems.append(f"customer {external_id} was registered (2xx) but does not exist")
    for customer in customers.values():
        if customer.status != "active":
            problems.append(f"customer {customer.external_id} is {customer.status}: {customer.status_reason}")
    for agency in Agency.objects.filter(service=service).exclude(status="active"):
        problems.append(f"agency {agency.external_id} is {agency.status}: {agency.status_reason}")
    return problems


def check_agency_changes(expected: Expected, service: Any) -> list[str]:
    """Each customer's payer is the one its last 2xx change (or its registration) set; one history row each."""
    from customers.models import AgencyAssignment, Customer

    problems = []
    changes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in expected.ok("agency_change"):
        changes[record["ref"]["customer"]].append(record)
    registered_with = {r["ref"]["customer"]: (r.get("body") or {}).get("agency") for r in expected.ok("register")}
    history = Counter(AgencyAssignment.objects.filter(customer__service=service)
                      .values_list("customer__external_id", flat=True))
    for customer in Customer.objects.filter(service=service).select_related("agency"):
        external_id = customer.external_id
        done = sorted(changes.get(external_id, []), key=lambda r: r["t1"])
        want = done[-1]["ref"]["agency"] if done else registered_with.get(external_id)
        have = customer.agency.external_id if customer.agency else None
        if have != want:
            problems.append(f"customer {external_id}: payer {have}, but the last 2xx agency change set {want}")
        if history[external_id] != 1 + len(done):
            problems.append(f"customer {external_id}: {history[external_id]} agency history rows, want "
                            f"{1 + len(done)} (registration + {len(done)} changes answered 2xx)")
    return problems


def check_customer_data(expected: Expected, service: Any, state: dict[str, Any]) -> list[str]:
    """Each customer has the name and phone of its last PATCH, and its Balance client and person have them too."""
    from balance_gateway.services import client_name, person_spec
    from customers.models import Customer

    problems = []
    last: dict[str, dict[str, Any]] = {}
    for record in sorted(expected.updates, key=lambda r: r["t1"]):
        last[record["ref"]["customer"]] = record["body"]
    clients = {int(c["CLIENT_ID"]): c for c in state["clients"]}
    persons = {int(p["ID"]): p for p in state["persons"]}
    for customer in Customer.objects.filter(service=service):
        want = last.get(customer.external_id)
        if want and (customer.name, customer.phone) != (want["name"], want["phone"]):
            problems.append(f"customer {customer.external_id}: name/phone {customer.name!r}/{customer.phone!r}, "
                            f"last PATCH set {want['name']!r}/{want['phone']!r}")
        client = clients.get(customer.balance_client_id or 0)
        person = persons.get(customer.balance_person_id or 0)
        if client is None or person is None:
            problems.append(f"customer {customer.external_id}: client {customer.balance_client_id} or person "
                            f"{customer.balance_person_id} missing in Balance")
            continue
        # The client's NAME carries billing's marker; a person without a phone gets the configured fallback
        # (Balance requires one): what billing sends for this customer is what Balance must hold.
        spec = person_spec(customer)
        for where, data, name, phone in (("client", client, client_name(customer), customer.phone),
                                         ("person", person, spec.name, spec.phone)):
            if (data["NAME"], data["PHONE"]) != (name, phone):
                problems.append(f"customer {customer.external_id}: Balance {where} has {data['NAME']!r}/"
                                f"{data['PHONE']!r}, billing sends {name!r}/{phone!r}")
    return problems


def check_topups(expected: Expected, service: Any, ledger: Ledger, state: dict[str, Any]) -> list[str]:
    """Exactly the 2xx top-ups exist; paid in Balance <=> succeeded <=> credited once, with its amount."""
    from payments.models import TopUp

    problems = []
    paid_requests = {int(r["RequestID"]) for r in state["requests"] if r["Status"] == "paid"}
    wanted = {r["id"]: r for r in expected.ok("topup")}
    topups = {str(t.id): t for t in TopUp.objects.filter(service=service)}
    for topup_id in sorted(set(topups) - set(wanted)):
        problems.append(f"top-up {topup_id} exists without a 2xx answer")
    for topup_id in sorted(set(wanted) - set(topups)):
        problems.append(f"top-up {topup_id} was answered 2xx but does not exist")
    for topup_id, topup in topups.items():
        what = f"top-up {topup_id} ({topup.amount}, {topup.status})"
        if topup_id in wanted and dec(wanted[topup_id]["body"]["amount"]) != topup.amount:
            problems.append(f"{what}: amount differs from the request's {wanted[topup_id]['body']['amount']}")
        if topup.balance_request_id in paid_requests:
            if topup.status != "succeeded":
                problems.append(f"{what}: request {topup.balance_request_id} is paid in Balance but the top-up is "
                                f"not succeeded")
            _once(ledger, problems, what, "topup", "topup", topup_id, topup.amount)
        else:
            if topup.status == "succeeded":
                problems.append(f"{what}: succeeded, but its request {topup.balance_request_id} is not paid")
            _none(ledger, problems, what, "topup", "topup", topup_id)
    for op in expected.pays:
        if op.get("result") == "paid" and op["request_id"] not in paid_requests:
            problems.append(f"request {op['request_id']} was paid by a client but is not paid in Balance")
    for txn in ledger.txns.values():
        if txn["type"] == "topup" and txn["reference_kind"] != "topup":
            problems.append(f"money credited without its top-up: {txn['reference_kind']} {txn['reference_id']} "
                            f"{Ledger.size(txn)}")
    return problems


def check_charges(expected: Expected, service: Any, ledger: Ledger) -> list[str]:
    """Exactly the 2xx charges (not from holds) exist, each charged once with its amount."""
    from payments.models import Charge

    problems = []
    wanted = {r["id"]: r for r in expected.ok("charge")}
    charges = {str(c.id): c for c in Charge.objects.filter(service=service, hold__isnull=True)}
    for charge_id in sorted(set(charges) - set(wanted)):
        problems.append(f"charge {charge_id} ({charges[charge_id].amount}) exists without a 2xx answer")
    for charge_id in sorted(set(wanted) - set(charges)):
        problems.append(f"charge {charge_id} was answered 2xx but does not exist")
    for charge_id, charge in charges.items():
        if charge_id in wanted and dec(wanted[charge_id]["body"]["amount"]) != charge.amount:
            problems.append(f"charge {charge_id}: amount {charge.amount}, requested {wanted[charge_id]['body']}")
        txn = _once(ledger, problems, f"charge {charge_id}", "charge", "charge", charge_id, charge.amount)
        if txn is not None and Ledger.on(txn, "spend") != charge.amount:
            problems.append(f"charge {charge_id}: spend moved {Ledger.on(txn, 'spend')}, want {charge.amount}")
    return problems


def check_holds(expected: Expected, service: Any, ledger: Ledger) -> list[str]:
    """Exactly the 2xx holds exist, each held once; at most one capture or release per hold answered 2xx, and
    the ledger and the hold show exactly that one."""
    from payments.models import Charge, Hold

    problems = []
    wanted = {r["id"]: r for r in expected.ok("hold")}
    holds = {str(h.id): h for h in Hold.objects.filter(service=service)}
    capture_charges = Counter(str(c.hold_id) for c in Charge.objects.filter(service=service, hold__isnull=False))
    charge_amounts = {str(c.hold_id): c.amount for c in Charge.objects.filter(service=service, hold__isnull=False)}
    for hold_id in sorted(set(holds) - set(wanted)):
        problems.append(f"hold {hold_id} exists without a 2xx answer")
    for hold_id in sorted(set(wanted) - set(holds)):
        problems.append(f"hold {hold_id} was answered 2xx but does not exist")
    closes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in expected.ok("capture") + expected.ok("release"):
        closes[record["ref"]["hold"]].append(record)
    for hold_id, hold in holds.items():
        what = f"hold {hold_id} ({hold.amount}, {hold.status})"
        _once(ledger, problems, what, "hold", "hold", hold_id, hold.amount)
        closing = closes.get(hold_id, [])
        if len(closing) > 1:
            problems.append(f"{what}: closed {len(closing)} times with 2xx ({[r['kind'] for r in closing]})")
            continue
        kind = closing[0]["kind"] if closing else None
        if kind == "capture":
            requested = (closing[0].get("body") or {}).get("amount")
            captured = dec(requested) if requested else hold.amount
            if hold.status != "captured" or hold.captured_amount != captured:
                problems.append(f"{what}: capture of {captured} answered 2xx, hold has {hold.captured_amount}")
            txn = _once(ledger, problems, what, "capture", "hold", hold_id, hold.amount)
            if txn is not None and Ledger.on(txn, "spend") != captured:
                problems.append(f"{what}: capture moved {Ledger.on(txn, 'spend')} to spend, want {captured}")
            if capture_charges[hold_id] != 1 or charge_amounts.get(hold_id) != captured:
                problems.append(f"{what}: {capture_charges[hold_id]} charge(s) for the capture, want 1 of {captured}")
            _none(ledger, problems, what, "release", "hold", hold_id)
        elif kind == "release":
            if hold.status != "released":
                problems.append(f"{what}: release answered 2xx but the hold is {hold.status}")
            _once(ledger, problems, what, "release", "hold", hold_id, hold.amount)
            _none(ledger, problems, what, "capture", "hold", hold_id)
            if capture_charges[hold_id]:
                problems.append(f"{what}: released, yet has a capture charge")
        else:
            if hold.status != "held":
                problems.append(f"{what}: no capture or release answered 2xx, but it is {hold.status}")
            _none(ledger, problems, what, "capture", "hold", hold_id)
            _none(ledger, problems, what, "release", "hold", hold_id)
    return problems


def check_refunds(expected: Expected, service: Any, ledger: Ledger) -> list[str]:
    """Exactly the 2xx refunds exist, each refunded once; a charge's refunds add up to its `refunded_amount`,
    never above the charge."""
    from payments.models import Charge, Refund

    problems = []
    wanted = {r["id"]: r for r in expected.ok("refund")}
    refunds = {str(r.id): r for r in Refund.objects.filter(charge__service=service)}
    for refund_id in sorted(set(refunds) - set(wanted)):
        problems.append(f"refund {refund_id} exists without a 2xx answer")
    for refund_id in sorted(set(wanted) - set(refunds)):
        problems.append(f"refund {refund_id} was answered 2xx but does not exist")
    per_charge: dict[str, Decimal] = defaultdict(Decimal)
    for refund_id, refund in refunds.items():
        per_charge[str(refund.charge_id)] += refund.amount
        if refund_id in wanted and dec(wanted[refund_id]["resp"].get("amount", refund.amount)) != refund.amount:
            problems.append(f"refund {refund_id}: amount {refund.amount}, answered {wanted[refund_id]['resp']}")
        _once(ledger, problems, f"refund {refund_id}", "refund", "refund", refund_id, refund.amount)
    for charge in Charge.objects.filter(service=service):
        refunded = per_charge.get(str(charge.id), Decimal(0))
        if refunded != charge.refunded_amount or charge.refunded_amount > charge.amount:
            problems.append(f"charge {charge.id}: refunded_amount {charge.refunded_amount}, refunds sum to "
                            f"{refunded}, amount {charge.amount}")
    return problems


def check_operations(expected: Expected, service: Any, state: dict[str, Any], report: Report) -> Ledger:
    """Every 2xx operation is in billing and in the ledger exactly once; nothing else is."""
    from wallets.models import Account

    ledger = Ledger(service)
    report.check("registrations: exactly the 2xx ones, all active", check_customers(expected, service))
    report.check("agency changes: the last 2xx one is in force, 4xx ones changed nothing",
                 check_agency_changes(expected, service))
    report.check("customer data: the last PATCH, in billing and in Balance", check_customer_data(expected, service,
                                                                                                  state))
    report.check("top-ups: paid ones credited exactly once, unpaid ones never",
                 check_topups(expected, service, ledger, state))
    report.check("charges: each 2xx one charged exactly once, none other", check_charges(expected, service, ledger))
    report.check("holds: held once, captured or released at most once, each in the ledger once",
                 check_holds(expected, service, ledger))
    report.check("refunds: each 2xx one refunded exactly once, within the charge",
                 check_refunds(expected, service, ledger))
    types = ledger.types()
    report.ledger = {"transactions": len(ledger.txns), **types,
                     "wallets_in_debt": Account.objects.filter(service=service, kind="wallet", balance__lt=0).count()}
    report.check("no corrections in the ledger", [
        f"{types[t]} `{t}` transaction(s): the soak makes none" for t in ("adjustment", "transfer") if types[t]])
    return ledger


def check_ledger(report: Report) -> None:
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.db import connection

    out = io.StringIO()
    try:
        call_command("verify_ledger", stdout=out, stderr=out)
        report.passed("verify_ledger clean")
    except (CommandError, SystemExit) as exc:
        lines = [line.strip() for line in out.getvalue().splitlines() if line.strip()]
        report.violation("verify_ledger clean", f"{exc}: " + " | ".join(lines[:12])[:1500])
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM wallets_ledgerentry")
        total, entries = cursor.fetchone()
    report.ledger["entries"] = entries
    report.ledger["sum_of_all_entries"] = f"{total:.2f}"
    report.check("money conserved (sum of all entries is zero)", [] if total == 0 else [f"sum is {total}"])


def check_events(service: Any) -> list[str]:
    """A consumer applying only the events ends where the wallets are: per customer, `sequence` runs 1..n without a
    gap, and the `balance` of the latest money event per payer equals that payer's wallet + held."""
    from disbalance.models import WebhookEvent
    from wallets.models import Account

    problems: list[str] = []
    seen: dict[int, int] = {}
    applied: dict[tuple[int, str | None], Decimal] = {}
    for customer_pk, sequence, type_, data in (
        WebhookEvent.objects.filter(service=service, customer_pk__isnull=False)
        .order_by("customer_pk", "sequence").values_list("customer_pk", "sequence", "type", "data").iterator()
    ):
        if sequence != seen.get(customer_pk, 0) + 1:
            problems.append(f"customer {customer_pk}: event sequence {sequence} after {seen.get(customer_pk, 0)}")
        seen[customer_pk] = sequence
        if "balance" in data and type_ != "wallet.low_balance":
            applied[(customer_pk, data.get("payer"))] = dec(data["balance"])
        if type_ == "wallet.transferred":
            applied[(customer_pk, data.get("to_payer"))] = dec(data["to_balance"])
    actual: dict[tuple[int, str | None], Decimal] = {}
    for customer_pk, payer, balance in Account.objects.filter(
        service=service, kind__in=[Account.Kind.WALLET, Account.Kind.HOLDS]
    ).values_list("customer_id", "payer_agency__external_id", "balance"):
        actual[(customer_pk, payer)] = actual.get((customer_pk, payer), Decimal("0.00")) + balance
    for key in sorted(set(applied) | set(actual), key=str):
        if applied.get(key, Decimal("0.00")) != actual.get(key, Decimal("0.00")):
            problems.append(f"customer {key[0]} payer {key[1]}: events say {applied.get(key)}, wallet + held is "
                            f"{actual.get(key)}")
    return problems[:50]


def group_money_on_children(state: dict[str, Any], *, enqueue: bool) -> dict[tuple[int, int], Decimal]:
    """(ServiceID, wallet order id) -> money Balance moved onto the wallet's children: the "enqueue" reporting type
    moves a group's money onto each child as it completes, so the wallet's money is its own plus its children's
    (money fields: a child's product may not be priced one unit per rouble). Nothing in the "parent" type."""
    moved: dict[tuple[int, int], Decimal] = defaultdict(Decimal)
    if enqueue:
        for o in state["orders"]:
            if int(o["GroupServiceOrderID"] or 0):
                moved[(int(o["ServiceID"]), int(o["GroupServiceOrderID"]))] += dec(o["ConsumeSum"])
    return moved


def check_orders(service: Any, state: dict[str, Any], report: Report, label: str) -> None:
    """Every order agrees with the emulator: money in, money out, ownership; paid requests once; none unpaid."""
    from django.conf import settings

    from payments.models import BalanceOrder, CreditDraw, TopUp
    from wallets.models import Account

    problems = []
    emulated = {(int(o["ServiceID"]), int(o["ServiceOrderID"])): o for o in state["orders"]}
    enqueue = settings.BALANCE_GROUP_REPORTING == "enqueue"
    on_children = group_money_on_children(state, enqueue=enqueue)
    spend = dict(Account.objects.filter(service=service, kind="spend").values_list("key", "balance"))
    credited_topups: dict[int, Decimal] = defaultdict(Decimal)
    for order_id, amount in TopUp.objects.filter(service=service, status="succeeded").values_list("order_id",
                                                                                                    "amount"):
        credited_topups[order_id] += amount
    paid_per_order: dict[int, Decimal] = defaultdict(Decimal)
    for request in state["requests"]:
        if request["Status"] == "paid":
            lines = request["Orders"]
            if len(lines) == 1:
                paid_per_order[int(lines[0]["ServiceOrderID"])] += dec(request["PaidAmount"])
    # Agency credit drawn on a wallet order (credit invoices) is money on the order in Balance, never wallet money.
    credit: dict[int, Decimal] = defaultdict(Decimal)
    for order_id, amount in CreditDraw.objects.filter(order__service=service, status__in=CreditDraw.COUNTING
                                                      ).values_list("order_id", "amount"):
        credit[order_id] += amount
    orders = list(BalanceOrder.objects.filter(service=service).select_related("customer", "payer_agency", "product"))
    seen = set()
    for order in orders:
        key = (service.balance_service_id, order.pk)
        seen.add(key)
        what = f"order {order.pk} ({order.key})"
        if order.sync_status != "synced":
            problems.append(f"{what}: sync {order.sync_status} {order.sync_error}")
        info = emulated.get(key)
        if info is None:
            problems.append(f"{what}: not in Balance")
            continue
        rows = []
        # The money on the order in Balance; in the enqueue type a wallet's group money includes what was moved
        # onto its children, and a child's own money is counted there, not here.
        consume = dec(info["ConsumeQty"]) + on_children[key]
        if not (enqueue and order.kind == "child") and consume - credit[order.pk] != order.credited_qty:
            moved = f" + {on_children[key]} on its children" if on_children[key] else ""
            rows.append(f"ConsumeQty {info['ConsumeQty']}{moved} less credit drawn {credit[order.pk]} vs credited "
                        f"{order.credited_qty}")
        want_completion = spend.get(order.key.replace("child:", "spend:", 1), Decimal(0)) \
            if order.kind == "child" else Decimal(0)
        if dec(info["CompletionQty"]) != want_completion:
            rows.append(f"CompletionQty {info['CompletionQty']} vs spend {want_completion}")
        if int(info["ClientID"]) != (order.customer.balance_client_id or 0):
            rows.append(f"ClientID {info['ClientID']} vs {order.customer.balance_client_id}")
        want_agency = order.payer_agency.balance_client_id if order.payer_agency else 0
        if int(info["AgencyID"] or 0) != (want_agency or 0):
            rows.append(f"AgencyID {info['AgencyID']} vs {want_agency}")
        if int(info["GroupServiceOrderID"] or 0) != (order.parent_id or 0):
            rows.append(f"GroupServiceOrderID {info['GroupServiceOrderID']} vs {order.parent_id}")
        if order.kind == "wallet":
            if paid_per_order[order.pk] + credit[order.pk] != consume:
                rows.append(f"paid requests {paid_per_order[order.pk]} + credit drawn {credit[order.pk]} vs "
                            f"group money {consume}")
            if credited_topups[order.pk] != order.credited_qty:
                rows.append(f"succeeded top-ups {credited_topups[order.pk]} vs credited {order.credited_qty}")
        if dec(info.get("UnpaidQty", 0)) != 0:
            rows.append(f"unpaid completion {info['UnpaidQty']} in Balance")
        if rows:
            problems.append(f"{what}: " + "; ".join(rows))
    for key in sorted(set(emulated) - seen):
        problems.append(f"Balance order {key} is unknown to billing")
    report.check(f"billing and Balance agree on every order ({label})", problems)


def check_outbox(report: Report) -> None:
    from django.db.models import Sum

    from balance_gateway.models import BalanceCall, BalanceNotification
    from disbalance.models import OutboxOperation

    statuses = Counter(OutboxOperation.objects.values_list("status", flat=True))
    report.faults["outbox"] = dict(statuses)
    report.faults["outbox_attempts"] = OutboxOperation.objects.aggregate(n=Sum("attempts"))["n"]
    report.faults["calls"] = dict(Counter(BalanceCall.objects.values_list("outcome", flat=True)))
    report.faults["received"] = dict(Counter(BalanceNotification.objects.values_list("outcome", flat=True)))
    problems = [f"{op.kind} {op.subject} #{op.pk} {op.status} after {op.attempts} attempts: {op.last_error[:200]}"
                for op in OutboxOperation.objects.filter(status__in=["failed", "pending", "in_progress"])]
    report.check("no outbox operation failed or left waiting", problems)


def injected_faults(run_dir: Path) -> dict[str, int]:
    counts: Counter = Counter()
    path = run_dir / "emulator.log"
    if path.exists():
        for match in re.finditer(r"\[injected ([a-z_0-9]+)", path.read_text(errors="replace")):
            counts[match.group(1)] += 1
    return dict(counts)


def run_reconcile(stack: Any, control: Any, report: Report) -> None:
    from reconciliation.models import Mismatch

    if not (Path(__file__).resolve().parent.parent / "reconciliation/management/commands/reconcile.py").exists():
        report.reconcile.append("manage.py reconcile does not exist: skipped")
        return
    for run in (1, 2):
        result = stack.manage("reconcile", "--no-progress", check=False)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        total = next((line for line in lines if line.startswith("total")), "")
        report.reconcile.append(f"run {run}: exit {result.returncode}; {lines[0] if lines else ''} | {total.strip()}")
        if result.returncode != 0:
            tail = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()][-2:]
            report.violation("reconciliation runs", f"run {run} exited {result.returncode}: {' | '.join(tail)}")
        drain(control, timeout=60, report=report, label=f"after reconcile run {run}")
    problems = [f"{m.get_kind_display()} [{m.severity}] {m.key}: {m.summary} {json.dumps(m.details, default=str)[:300]}"
                for m in Mismatch.objects.filter(status="open")]
    report.check("zero open mismatches after reconciliation", problems)
    found = Counter(Mismatch.objects.values_list("kind", flat=True))
    if found:
        report.reconcile.append(f"mismatches ever recorded: {fmt_counts(found)}")


def check_all(report: Report, *, run_dir: Path, control: Any, stack: Any, chaos_events: list[dict[str, Any]],
              chaos_errors: list[str]) -> None:
    from disbalance.models import ConsumerService

    for event in chaos_events:
        report.chaos.append(f"{event['kind']} (+{event['t1'] - event['t0']:.1f}s)")
    report.check("chaos events ran", chaos_errors)
    report.check("client processes exited cleanly",
                 [f"client {i} exited {code}" for i, code in enumerate(report.client_exit_codes) if code != 0])
    web_restarts = [(e["t0"], e["t1"]) for e in chaos_events if e["kind"] == "restart_web"]
    ops = load_ops(run_dir)
    expected = analyze_ops(ops, web_restarts, report)
    service = ConsumerService.objects.get(slug="soak")
    check_idempotency_records(expected, service, report)
    state = control.Emulator.State()
    report.faults["notifications"] = state["notifications"]
    report.faults["injected"] = injected_faults(run_dir)
    check_operations(expected, service, state, report)
    check_ledger(report)
    check_orders(service, state, report, "before reconciliation")
    check_outbox(report)
    notifications = state["notifications"]
    report.check("every notification delivered (none given up)", [
        f"emulator notifications: {notifications}"] if notifications.get("failed") or notifications.get("queued")
        else [])
    run_reconcile(stack, control, report)
    check_orders(service, control.Emulator.State(), report, "after reconciliation")
    report.check("events applied = wallet (per customer and payer; sequences without gaps)", check_events(service))
