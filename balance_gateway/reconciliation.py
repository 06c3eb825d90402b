"""Reconciliation: compare billing with Balance and record each difference as a `Mismatch`.

`reconcile()` walks the customers in batches (by id), reads Balance in batches (GetOrdersInfo for up to
`batch_size` orders per call, GetClientByIdBatch for the clients, GetClientPersons per client only when needed),
then the agencies, then the outbox, and records what differs:

- `order_ownership`: an order's ClientID / AgencyID (also ProductID, GroupServiceOrderID) in Balance differ from
  what billing sends for it (the customer's client, the order's payer agency or 0), or a synced order is missing;
- `money_in`: the order's ConsumeQty differs from billing's `credited_qty` (usually a lost notification);
- `money_out`: the order's CompletionQty differs from billing's cumulative spend (the spend account; 0 for wallet
  orders). Spend newer than the last accepted report is the reporting job's lag, not a mismatch, unless it has
  waited longer than RECONCILE_REPORT_LAG_MINUTES;
- `unpaid_completion`: per (customer, payer) pot, i.e. the wallet order and its children. Balance's view:
  sum(CompletionQty) - sum(ConsumeQty) beyond the payer's overdraft/credit limit; billing's view: the payer's
  wallet account below minus that limit. The limit is billing's (`overdrafts.services.spend_limit`), computed
  from GetOrdersInfo figures, so it works against a real Balance too; the emulator's `UnpaidQty`
  (`Emulator.State`) is the same figure when billing's limit equals Balance's;
- `customer_data`: the Balance client's name or agency flag, or the person's type, name or INN, differ from
  billing's (or the client/person is gone). Persons cost one call per client, so they are read only when needed:
  parties changed within RECONCILE_PERSONS_WINDOW_MINUTES, parties with an open person mismatch or a client
  difference, every party of a one-customer run, or all with `persons="all"`;
- `stale_operation`: outbox operations `failed`, or pending / in progress for longer than
  RECONCILE_STALE_OPERATION_MINUTES.

A re-run updates the open mismatch of the same key instead of adding one; an open mismatch whose subject was
checked again and found equal is closed by the system (`resolution="system: no longer seen"`). Safe kinds are fixed
at once when `autofix` (at most RECONCILE_AUTOFIX_MAX_ATTEMPTS times per mismatch): money_out is re-reported,
money_in re-pulled, order_ownership re-sent (except an order with money in Balance: Balance refuses to change its
ClientID/AgencyID, so it waits for support), retryable stale operations retried. The next run confirms the fix
and closes the mismatch. Support uses `mismatch_fix` and `mismatch_resolve` (comment required).

A difference that support resolved with a comment is acknowledged: the same figures found again open nothing;
different figures open a new mismatch.

Balance is called outside transactions; mismatches are written in short transactions per batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from agencies.models import Agency
from balance_gateway.client import BalanceClient, ClientInfo, CompletionReport, OrderInfo, PersonInfo
from balance_gateway.exceptions import BalanceError, BalanceRetryableError
from balance_gateway.models import BalanceParty, Mismatch, OutboxOperation
from balance_gateway.outbox import outbox_retry
from balance_gateway.services import client_name
from customers.models import Customer
from disbalance.exceptions import InvalidState, ValidationFailed
from disbalance.models import ConsumerService
from disbalance.money import ZERO, format_amount
from payments.models import BalanceOrder
from payments.services import REPORT_REFUSED, completion_report_for, wallet_money_from_info

logger = logging.getLogger(__name__)

Kind = Mismatch.Kind
Severity = Mismatch.Severity
T = TypeVar("T")

SYSTEM_NO_LONGER_SEEN = "system: no longer seen"

# Fixes: what `autofix` / `mismatch_fix` do for a finding.
FIX_PULL = "pull"  # re-read the order from Balance and apply it (credits lost money in)
FIX_REPORT = "report"  # re-send the cumulative completion (UpdateCampaigns)
FIX_RESEND = "resend"  # re-send the order (CreateOrUpdateOrdersBatch through the outbox)
FIX_RETRY = "retry"  # retry the outbox operation
FIX_PUSH_DATA = "push_data"  # send billing's client/person data to Balance (support only)
FIX_REFRESH = "refresh"  # re-pull the wallet and re-report the children (support only: unpaid completion)
AUTOFIXES = frozenset({FIX_PULL, FIX_REPORT, FIX_RESEND, FIX_RETRY})

_FINAL_ERROR_PREFIXES = ("BalanceFinalError", "OutboxFinalError")


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def batch_size_default() -> int:
    return _setting("RECONCILE_BATCH_SIZE", 500)


# --- results ----------------------------------------------------------------------------------------------------

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
        """(kind, found, new, fixed, fix_failed, closed) for every kind, in the model's order."""
        return [(kind, self.found[kind], self.new[kind], self.fixed[kind], self.fix_failed[kind], self.closed[kind])
                for kind in Kind.values]

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


class _CountingClient(BalanceClient):
    """The gateway client, counting calls per method for the report (every call is also in BalanceCall)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls[method] += 1
        return super()._call(method, *args, **kwargs)


def _read(function: Callable[..., T], *args: Any) -> T:
    """A read from Balance, repeated briefly after a retryable error (reads are always safe to repeat)."""
    retries = _setting("RECONCILE_CALL_RETRIES", 2)
    for attempt in range(retries + 1):
        try:
            return function(*args)
        except BalanceRetryableError:
            if attempt == retries:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _money(value: Decimal | None) -> str:
    return format_amount(value if value is not None else ZERO)


def _id_text(value: int | str | None) -> str:
    return str(value) if value not in (None, "", 0, "0") else "0"


def _payer_key(agency_id: int | None) -> str:
    return f"agency:{agency_id}" if agency_id else "self"


# --- keys -------------------------------------------------------------------------------------------------------

def order_key(kind: str, order_id: int) -> str:
    return f"{kind}:order:{order_id}"


def unpaid_key(customer_id: int, payer_agency_id: int | None) -> str:
    return f"{Kind.UNPAID_COMPLETION}:customer:{customer_id}:payer:{_payer_key(payer_agency_id)}"


def party_key(party: BalanceParty, part: str) -> str:
    what = "agency" if party.IS_AGENCY else "customer"
    return f"{Kind.CUSTOMER_DATA}:{what}:{party.pk}:{part}"


def operation_key(operation_id: int) -> str:
    return f"{Kind.STALE_OPERATION}:operation:{operation_id}"


# --- one batch of checks ----------------------------------------------------------------------------------------

class _Checks:
    """What a batch evaluated (keys found equal or different) and what differed (findings by key)."""

    def __init__(self) -> None:
        self.evaluated: set[str] = set()
        self.findings: dict[str, Finding] = {}

    def equal(self, key: str) -> None:
        self.evaluated.add(key)

    def differ(self, finding: Finding) -> None:
        self.evaluated.add(finding.key)
        self.findings[finding.key] = finding


@dataclass
class _Run:
    client: _CountingClient
    report: ReconcileReport
    batch_size: int
    autofix: bool
    persons: str  # "changed" | "all" | "none"
    now: datetime
    limits: dict[tuple[int, int | None], Decimal] = field(default_factory=dict)
    related: dict[str, dict[int, Any]] = field(default_factory=dict)


def _expected_product_id(order: BalanceOrder) -> int:
    return order.product.balance_product_id if order.product_id else int(settings.BALANCE_WALLET_PRODUCT_ID)


def _check_ownership(checks: _Checks, order: BalanceOrder, customer: Customer, info: OrderInfo | None) -> None:
    key = order_key(Kind.ORDER_OWNERSHIP, order.pk)
    base: dict[str, Any] = {"service_id": customer.service_id, "customer_id": customer.pk, "order_id": order.pk,
                            "data": {"sync_status": order.sync_status}}
    if info is None:
        if order.sync_status == BalanceOrder.SyncStatus.SYNCED:
            checks.differ(Finding(
                kind=Kind.ORDER_OWNERSHIP, key=key, severity=Severity.CRITICAL, fix=FIX_RESEND,
                summary=f"Order {order.pk} ({order.key}) is synced in billing but missing in Balance",
                rows=[["order in Balance", "synced", "missing"]],
                note="Re-sending creates it again (orders are keyed by billing's ServiceOrderID).", **base,
            ))
        return  # not in Balance yet (pending or failed): the outbox's business, see stale operations
    payer = order.payer_agency
    if payer is not None and payer.balance_client_id is None:
        return  # the agency is not in Balance yet: nothing to compare with
    # GetOrdersInfo has no ClientID or AgencyID: an order's owner and payer cannot be read back, only its
    # product and group; re-sending the whole order (CreateOrUpdateOrdersBatch) re-asserts them all.
    expected = {
        "ProductID": _id_text(_expected_product_id(order)),
        "GroupServiceOrderID": _id_text(order.parent_id),
    }
    actual = {
        "ProductID": _id_text(info.product_id),
        "GroupServiceOrderID": _id_text(info.group_service_order_id),
    }
    differing = [name for name in expected if expected[name] != actual[name]]
    if not differing:
        checks.equal(key)
        return
    rows = [[name, expected[name], actual[name]] for name in differing]
    owner_changed = "ProductID" in differing
    fix: str | None = FIX_RESEND
    note = "Re-sending the order to Balance restores billing's values."
    if owner_changed and info.consume_amount > 0:
        fix = None
        note = (f"Balance does not change the ProductID of an order that has money (consume_amount "
                f"{_money(info.consume_amount)}), so re-sending cannot fix this. Support: move the money in Balance "
                "(transfer to an order of the right payer) or correct the order there, then resolve with a comment.")
        rows.append(["money on the order", _money(order.credited_qty), _money(info.consume_amount)])
    what = ", ".join(f"{name} {actual[name]} (billing {expected[name]})" for name in differing)
    checks.differ(Finding(
        kind=Kind.ORDER_OWNERSHIP, key=key, severity=Severity.CRITICAL if owner_changed else Severity.WARNING,
        summary=f"Order {order.pk} ({order.key}) in Balance has {what}", rows=rows, note=note, fix=fix, **base,
    ))


def _check_money_in(checks: _Checks, order: BalanceOrder, info: OrderInfo, children: list[OrderInfo]) -> None:
    """A wallet order's money in Balance (its money fields, never a *Qty) against what billing credited. A
    child's consume is what covers it, not wallet money: not compared."""
    key = order_key(Kind.MONEY_IN, order.pk)
    if order.kind != BalanceOrder.Kind.WALLET:
        checks.equal(key)
        return
    balance_money = wallet_money_from_info(info, children)
    if balance_money == order.credited_qty:
        checks.equal(key)
        return
    more_in_balance = balance_money > order.credited_qty
    if more_in_balance:
        fix: str | None = FIX_PULL
        note = ("Balance has money billing has not credited (a lost notification?): re-pulling the order credits "
                "the difference.")
    else:
        fix = None
        note = ("Balance shows less money on the order than billing credited (taken off in Balance, or a "
                "notification billing has not received yet): a pull never takes money back, so support must check "
                "the order in Balance.")
    checks.differ(Finding(
        kind=Kind.MONEY_IN, key=key, severity=Severity.WARNING if more_in_balance else Severity.CRITICAL,
        summary=f"Order {order.pk} ({order.key}): money in Balance {_money(balance_money)}, billing "
                f"credited {_money(order.credited_qty)}",
        rows=[["money on the order (consume_amount)", _money(order.credited_qty), _money(balance_money)]],
        note=note, fix=fix, service_id=order.service_id, customer_id=order.customer_id, order_id=order.pk,
        data={"consume_amount": _money(balance_money), "completion_qty": str(info.completion_qty)},
    ))


def _expected_completion(order: BalanceOrder, money: Decimal) -> Decimal:
    """Billing's spend as Balance counts it: in the child's product unit (the wallet order completes nothing)."""
    if order.product is None:
        return Decimal(0)
    return order.product.units_for(money)


def _check_money_out(checks: _Checks, order: BalanceOrder, info: OrderInfo, spend: Decimal,
                     spend_changed_at: Callable[[], datetime | None], now: datetime) -> None:
    key = order_key(Kind.MONEY_OUT, order.pk)
    expected = _expected_completion(order, spend)
    if order.report_refused_at is not None:
        checks.differ(Finding(
            kind=Kind.MONEY_OUT, key=key, severity=Severity.CRITICAL,
            summary=f"Order {order.pk} ({order.key}): Balance refused its completion report "
                    f"({order.report_refused_at:%Y-%m-%d %H:%M} UTC)",
            rows=[["completion (cumulative)", str(expected), str(info.completion_qty)],
                  ["last accepted report (money)", _money(order.reported_qty), ""]],
            note=(f"{order.report_error or 'UpdateCampaigns answered 0.'} Check the order in Balance (blocked or "
                  "stopped?), then re-report (the Fix button): it sends the cumulative spend again and clears "
                  "the refusal. Never re-sent automatically."),
            fix=None, service_id=order.service_id, customer_id=order.customer_id, order_id=order.pk,
        ))
        return
    if info.completion_qty == expected:
        checks.equal(key)
        return
    if order.kind == BalanceOrder.Kind.CHILD and info.completion_qty == _expected_completion(order, order.reported_qty):
        # Balance has what billing last reported; newer spend waits for the reporting job (every minute).
        changed_at = spend_changed_at()
        lag = timedelta(minutes=_setting("RECONCILE_REPORT_LAG_MINUTES", 30))
        if changed_at is None or changed_at > now - lag:
            checks.equal(key)
            return
        note = (f"Spend changed at {changed_at:%Y-%m-%d %H:%M} UTC and is still not reported: is the spend_report "
                "job running? Re-reporting sends the cumulative spend now.")
    elif order.kind == BalanceOrder.Kind.WALLET:
        note = "Billing never reports completions on a wallet order: re-reporting sets it back to 0."
    else:
        note = ("Balance's completion differs from what billing reported (changed in Balance, or a report was "
                "lost, or Balance has not processed it yet): re-reporting sends billing's cumulative spend, which "
                "Balance applies as a correction.")
    checks.differ(Finding(
        kind=Kind.MONEY_OUT, key=key, severity=Severity.CRITICAL,
        summary=f"Order {order.pk} ({order.key}): completion in Balance {info.completion_qty}, "
                f"billing's spend {expected} ({_money(spend)})",
        rows=[["completion (cumulative, product units)", str(expected), str(info.completion_qty)],
              ["last accepted report (money)", _money(order.reported_qty), ""]],
        note=note, fix=FIX_REPORT, service_id=order.service_id, customer_id=order.customer_id, order_id=order.pk,
    ))


def _spend_limit(run: _Run, customer: Customer, payer: Agency | None) -> Decimal:
    """The overdraft or credit that covers the pot's spend beyond its money (billing's view, cached per run).

    Read-only, and not `overdrafts.services.spend_limit`: that one guards *new* spending, so it answers 0 for the
    customer's own pot once the customer has moved to an agency (the debt made before the move is still covered
    by its overdraft in Balance) and raises `CustomerBlocked` for an overdue customer, the very ones to reconcile
    (both found by the soak, seed 4).
    """
    cache_key = (customer.pk, payer.pk if payer else None)
    if cache_key not in run.limits:
        from overdrafts import selectors as overdrafts
        from overdrafts.models import Overdraft

        if payer is not None:
            limit = overdrafts.agency_credit_room(customer=customer, agency=payer)
        else:
            overdraft = Overdraft.objects.filter(customer_id=customer.pk).first()
            limit = (overdrafts.overdraft_limit(customer=customer, overdraft=overdraft) if customer.agency_id is None
                     else overdrafts.granted_limit(overdraft=overdraft))
        run.limits[cache_key] = limit
    return run.limits[cache_key]


def _check_unpaid(run: _Run, checks: _Checks, customer: Customer, wallet: BalanceOrder,
                  members: list[tuple[BalanceOrder, OrderInfo | None]], wallet_balance: Decimal | None,
                  billing_spend: Decimal) -> None:
    key = unpaid_key(customer.pk, wallet.payer_agency_id)
    known = [(order, info) for order, info in members if info is not None]
    balance_money = sum((info.consume_amount for order, info in known if order.kind == BalanceOrder.Kind.WALLET
                         or settings.BALANCE_GROUP_REPORTING == "enqueue"), ZERO)
    balance_spent = sum((info.completion_amount for _, info in known), ZERO)
    balance_excess = max(ZERO, balance_spent - balance_money)
    billing_excess = max(ZERO, -wallet_balance) if wallet_balance is not None else ZERO
    if not known and wallet_balance is None:
        return
    if balance_excess == 0 and billing_excess == 0:
        checks.equal(key)
        return
    limit = _spend_limit(run, customer, wallet.payer_agency)
    balance_unpaid = max(ZERO, balance_excess - limit)
    billing_unpaid = max(ZERO, billing_excess - limit)
    if balance_unpaid == 0 and billing_unpaid == 0:
        checks.equal(key)
        return
    payer = wallet.payer_agency.external_id if wallet.payer_agency else "self"
    credited = sum((order.credited_qty for order, _ in members), ZERO)
    worst = max(balance_unpaid, billing_unpaid)
    where = "Balance" if balance_unpaid >= billing_unpaid else "billing"
    checks.differ(Finding(
        kind=Kind.UNPAID_COMPLETION, key=key, severity=Severity.CRITICAL,
        summary=f"{customer.external_id} (payer {payer}): {_money(worst)} spent beyond money and overdraft "
                f"({where})",
        rows=[["money in (consume_amount)", _money(credited), _money(balance_money)],
              ["spent (completion_amount)", _money(billing_spend), _money(balance_spent)],
              ["wallet", _money(wallet_balance), _money(balance_money - balance_spent)],
              ["overdraft / credit limit (billing's)", _money(limit), ""],
              ["unpaid completion", _money(billing_unpaid), _money(balance_unpaid)]],
        note=("Spend beyond the payer's money and overdraft is money the company loses. If a money_out or money_in "
              "mismatch of the same orders is open, fixing it may clear this one; otherwise the payer owes it: "
              "arrange payment, then resolve with a comment."),
        fix=None, service_id=customer.service_id, customer_id=customer.pk, order_id=wallet.pk,
        data={"wallet_order_id": wallet.pk},
    ))


def _check_client(checks: _Checks, party: BalanceParty, info: ClientInfo | None) -> bool:
    """The party's Balance client: exists, same name, right agency flag. True when something differs."""
    key = party_key(party, "client")
    ids = _party_ids(party)
    label = party.external_id  # type: ignore[attr-defined]
    if info is None:
        checks.differ(Finding(
            kind=Kind.CUSTOMER_DATA, key=key, severity=Severity.CRITICAL, fix=None,
            summary=f"{label}: Balance client {party.balance_client_id} not found",
            rows=[["Balance client", str(party.balance_client_id), "missing"]],
            note="The client billing links to does not exist in Balance: support must link the right client.", **ids,
        ))
        return True
    rows = []
    if info.name not in (client_name(party), party.name):  # billing's marked name, or an adopted client's own
        rows.append(["name", client_name(party), info.name])
    if info.is_agency != party.IS_AGENCY:
        rows.append(["agency flag", "yes" if party.IS_AGENCY else "no", "yes" if info.is_agency else "no"])
    if not rows:
        checks.equal(key)
        return False
    flag = len(rows) > 1 or rows[0][0] == "agency flag"
    note = "Fix sends billing's data to Balance (CreateClient with CLIENT_ID)."
    if flag:
        note = ("Balance never changes a client's agency flag: the client billing links to is the wrong kind. "
                "Support must link the right client; " + note)
    checks.differ(Finding(
        kind=Kind.CUSTOMER_DATA, key=key, severity=Severity.CRITICAL if flag else Severity.WARNING,
        summary=f"{label}: Balance client {info.client_id} differs ({', '.join(r[0] for r in rows)})",
        rows=rows, note=note, fix=FIX_PUSH_DATA, **ids,
    ))
    return True


def _check_person(checks: _Checks, party: BalanceParty, persons: list[PersonInfo]) -> None:
    key = party_key(party, "person")
    ids = _party_ids(party)
    label = party.external_id  # type: ignore[attr-defined]
    person = next((p for p in persons if p.person_id == party.balance_person_id), None)
    if person is None or person.hidden:
        state = "hidden" if person is not None else "missing"
        checks.differ(Finding(
            kind=Kind.CUSTOMER_DATA, key=key, severity=Severity.WARNING, fix=None,
            summary=f"{label}: Balance person {party.balance_person_id} is {state}",
            rows=[["person", str(party.balance_person_id), state]],
            note="Invoices need the payer's person: support must link or re-create it.", **ids,
        ))
        return
    rows = []
    if person.type != party.person_type:
        rows.append(["person type", party.person_type, person.type])
    if person.name != party.name:
        rows.append(["person name", party.name, person.name])
    if (person.inn or "") != party.inn:
        rows.append(["INN", party.inn, person.inn or ""])
    if not rows:
        checks.equal(key)
        return
    checks.differ(Finding(
        kind=Kind.CUSTOMER_DATA, key=key, severity=Severity.WARNING,
        summary=f"{label}: Balance person {person.person_id} differs ({', '.join(r[0] for r in rows)})",
        rows=rows, note="Fix sends billing's data to Balance (CreatePerson with person_id).", fix=FIX_PUSH_DATA,
        **ids,
    ))


def _party_ids(party: BalanceParty) -> dict[str, int | None]:
    if party.IS_AGENCY:
        return {"service_id": party.service_id, "agency_id": party.pk}  # type: ignore[attr-defined]
    return {"service_id": party.service_id, "customer_id": party.pk}  # type: ignore[attr-defined]


def _needs_persons(run: _Run, party: BalanceParty, open_keys: set[str], client_differs: bool) -> bool:
    if party.balance_person_id is None or run.persons == "none":
        return False
    if run.persons == "all" or client_differs or party_key(party, "person") in open_keys:
        return True
    window = timedelta(minutes=_setting("RECONCILE_PERSONS_WINDOW_MINUTES", 180))
    return party.updated_at >= run.now - window or party.created_at >= run.now - window


def _check_persons(run: _Run, checks: _Checks, parties: Iterable[BalanceParty], open_keys: set[str],
                   client_differs: set[int]) -> None:
    for party in parties:
        if not _needs_persons(run, party, open_keys, party.pk in client_differs):
            continue
        try:
            persons = _read(run.client.get_client_persons, party.balance_client_id)
        except BalanceError as exc:
            if exc.retryable:
                raise
            persons = []  # NOT_FOUND: the client is gone (reported by the client check)
        run.report.persons_checked += 1
        _check_person(checks, party, persons)


# --- customers, agencies, operations ----------------------------------------------------------------------------

def _orders_info(run: _Run, orders: list[BalanceOrder]) -> dict[tuple[int, int], OrderInfo]:
    found: dict[tuple[int, int], OrderInfo] = {}
    keys = [(order.service.balance_service_id, order.pk) for order in orders]
    for chunk in _chunks(keys, run.batch_size):
        for info in _read(run.client.get_orders_info, list(chunk)):
            found[(info.service_id, int(info.service_order_id))] = info
    return found


def _clients_info(run: _Run, client_ids: list[int]) -> dict[int, ClientInfo]:
    found: dict[int, ClientInfo] = {}
    for chunk in _chunks(sorted(set(client_ids)), run.batch_size):
        for info in _read(run.client.get_client_by_id_batch, list(chunk)):
            found[info.client_id] = info
    return found


def _spend_key(order: BalanceOrder) -> str:
    return "spend:" + order.key.removeprefix("child:")


def _spend_changed_at(account_id: int | None) -> datetime | None:
    if account_id is None:
        return None
    from wallets.models import LedgerEntry

    return LedgerEntry.objects.filter(account_id=account_id).aggregate(at=Max("transaction__created_at"))["at"]


def _attach_related(run: _Run, orders: list[BalanceOrder]) -> None:
    """Set each order's service, product and payer agency from per-run caches (few rows, many orders): cheaper
    than joining them into every order row."""
    from payments.models import Product

    for model, field_name in ((ConsumerService, "service"), (Product, "product"), (Agency, "payer_agency")):
        cache = run.related.setdefault(field_name, {})
        missing = {getattr(o, f"{field_name}_id") for o in orders} - set(cache) - {None}
        if missing:
            cache.update(model.objects.in_bulk(missing))  # type: ignore[attr-defined]
        for order in orders:
            related_id = getattr(order, f"{field_name}_id")
            if related_id is not None:
                setattr(order, field_name, cache[related_id])


_CUSTOMER_KINDS = (Kind.ORDER_OWNERSHIP, Kind.MONEY_IN, Kind.MONEY_OUT, Kind.UNPAID_COMPLETION, Kind.CUSTOMER_DATA)


def _reconcile_customers(run: _Run, customers: list[Customer]) -> None:
    from wallets.models import Account

    ids = [c.pk for c in customers]
    by_id = {c.pk: c for c in customers}
    open_rows = {m.key: m for m in Mismatch.objects.filter(status=Mismatch.Status.OPEN, customer_id__in=ids,
                                                          kind__in=_CUSTOMER_KINDS)}
    orders = list(BalanceOrder.objects.filter(customer_id__in=ids).order_by("id"))
    _attach_related(run, orders)
    infos = _orders_info(run, orders)
    clients = _clients_info(run, [c.balance_client_id for c in customers])
    accounts = list(Account.objects.filter(customer_id__in=ids, kind__in=[Account.Kind.SPEND, Account.Kind.WALLET])
                    .values_list("id", "key", "kind", "customer_id", "payer_agency_id", "balance"))
    spend = {key: (pk, balance) for pk, key, kind, _, _, balance in accounts if kind == Account.Kind.SPEND}
    wallets = {(cid, payer): balance for _, _, kind, cid, payer, balance in accounts if kind == Account.Kind.WALLET}
    spend_by_payer: dict[tuple[int, int | None], Decimal] = defaultdict(lambda: ZERO)
    for _, _, kind, cid, payer, balance in accounts:
        if kind == Account.Kind.SPEND:
            spend_by_payer[(cid, payer)] += balance
    run.report.customers += len(customers)
    run.report.orders += len(orders)

    checks = _Checks()
    children: dict[int, list[BalanceOrder]] = defaultdict(list)
    for order in orders:
        if order.parent_id:
            children[order.parent_id].append(order)
    for order in orders:
        customer = by_id[order.customer_id]
        info = infos.get((order.service.balance_service_id, order.pk))
        _check_ownership(checks, order, customer, info)
        if info is None:
            continue
        _check_money_in(checks, order, info, [i for c in children.get(order.pk, [])
                                              if (i := infos.get((c.service.balance_service_id, c.pk)))])
        account_id, spent = spend.get(_spend_key(order), (None, ZERO)) if order.kind == "child" else (None, ZERO)
        _check_money_out(checks, order, info, spent, lambda a=account_id: _spend_changed_at(a), run.now)
    for order in orders:
        if order.kind != BalanceOrder.Kind.WALLET:
            continue
        members = [order, *children.get(order.pk, [])]
        pairs = [(m, infos.get((m.service.balance_service_id, m.pk))) for m in members]
        payer_key = (order.customer_id, order.payer_agency_id)
        _check_unpaid(run, checks, by_id[order.customer_id], order, pairs, wallets.get(payer_key),
                      spend_by_payer.get(payer_key, ZERO))
    client_differs = {c.pk for c in customers if _check_client(checks, c, clients.get(c.balance_client_id))}
    _check_persons(run, checks, customers, set(open_rows), client_differs)
    _settle(run, checks, open_rows, infos={order.pk: infos.get((order.service.balance_service_id, order.pk))
                                            for order in orders})


def _reconcile_agencies(run: _Run, agencies: list[Agency]) -> None:
    ids = [a.pk for a in agencies]
    open_rows = {m.key: m for m in Mismatch.objects.filter(status=Mismatch.Status.OPEN, agency_id__in=ids,
                                                          customer__isnull=True, kind=Kind.CUSTOMER_DATA)}
    clients = _clients_info(run, [a.balance_client_id for a in agencies])
    run.report.agencies += len(agencies)
    checks = _Checks()
    client_differs = {a.pk for a in agencies if _check_client(checks, a, clients.get(a.balance_client_id))}
    _check_persons(run, checks, agencies, set(open_rows), client_differs)
    _settle(run, checks, open_rows)


def _subject_customer_id(subject: str) -> int | None:
    kind, _, pk = subject.partition(":")
    return int(pk) if kind == "customer" and pk.isdigit() else None


def _subject_agency_id(subject: str) -> int | None:
    kind, _, pk = subject.partition(":")
    return int(pk) if kind == "agency" and pk.isdigit() else None


def _operation_finding(operation: OutboxOperation, now: datetime) -> Finding | None:
    stale_after = timedelta(minutes=_setting("RECONCILE_STALE_OPERATION_MINUTES", 60))
    Status = OutboxOperation.Status
    error = operation.last_error.strip()
    if operation.status == Status.FAILED:
        final = error.startswith(_FINAL_ERROR_PREFIXES)
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
        kind=Kind.STALE_OPERATION, key=operation_key(operation.pk), severity=severity, fix=fix,
        summary=f"Operation {operation.pk} {operation.kind} ({operation.subject}) {state}"
                + (f": {error[:120]}" if error else ""),
        rows=[["status", operation.status, ""], ["attempts", f"{operation.attempts} of {operation.max_attempts}", ""],
              ["created", f"{operation.created_at:%Y-%m-%d %H:%M:%S}", ""],
              ["last error", error[:300], ""]],
        note=note, service_id=operation.service_id, customer_id=customer_id,
        agency_id=_subject_agency_id(operation.subject), operation_id=operation.pk,
    )


def _reconcile_operations(run: _Run, *, customer: Customer | None, service: ConsumerService | None) -> None:
    Status = OutboxOperation.Status
    stale_after = timedelta(minutes=_setting("RECONCILE_STALE_OPERATION_MINUTES", 60))
    stuck = Q(status__in=[Status.PENDING, Status.IN_PROGRESS], created_at__lt=run.now - stale_after)
    operations = OutboxOperation.objects.filter(Q(status=Status.FAILED) | stuck)
    open_rows_qs = Mismatch.objects.filter(status=Mismatch.Status.OPEN, kind=Kind.STALE_OPERATION)
    if customer is not None:
        operations = operations.filter(subject=f"customer:{customer.pk}")
        open_rows_qs = open_rows_qs.filter(customer=customer)
    elif service is not None:
        operations = operations.filter(service=service)
        open_rows_qs = open_rows_qs.filter(service=service)
    open_rows = {m.key: m for m in open_rows_qs}
    checks = _Checks()
    for key in open_rows:
        checks.equal(key)  # every open one is evaluated: still stale (found below), or closed
    last_id = 0
    while True:
        chunk = list(operations.filter(id__gt=last_id).order_by("id")[:run.batch_size])
        if not chunk:
            break
        last_id = chunk[-1].pk
        run.report.operations += len(chunk)
        findings = [f for f in (_operation_finding(operation, run.now) for operation in chunk) if f is not None]
        # Subjects name rows by id; link only the ones that exist.
        customers = set(Customer.objects.filter(pk__in={f.customer_id for f in findings if f.customer_id})
                        .values_list("pk", flat=True))
        agencies = set(Agency.objects.filter(pk__in={f.agency_id for f in findings if f.agency_id})
                       .values_list("pk", flat=True))
        for finding in findings:
            finding.customer_id = finding.customer_id if finding.customer_id in customers else None
            finding.agency_id = finding.agency_id if finding.agency_id in agencies else None
            checks.differ(finding)
    _settle(run, checks, open_rows)


# --- recording and fixing ---------------------------------------------------------------------------------------

def _save(mismatch: Mismatch, *, user: Any = None, reason: str = "", update_fields: list[str] | None = None) -> None:
    """Save with the history row attributed to `user` (None: the system), whatever request is around."""
    mismatch._history_user = user  # type: ignore[attr-defined]
    mismatch._change_reason = reason[:100]  # type: ignore[attr-defined]
    mismatch.save(update_fields=update_fields)


def _acknowledged(finding: Finding) -> bool:
    """Support resolved this very difference (same figures) with a comment: don't raise it again."""
    last = (Mismatch.objects.filter(key=finding.key, status=Mismatch.Status.RESOLVED)
            .order_by("-resolved_at", "-id").only("resolved_by", "details").first())
    return (last is not None and last.resolved_by_id is not None
            and last.details.get("fingerprint") == finding.fingerprint())


def _record(run: _Run, finding: Finding, existing: Mismatch | None) -> Mismatch | None:
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
        _save(existing, reason="seen again with other figures")
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
            _save(mismatch, reason="detected")
    except IntegrityError:
        # Another run recorded it first: refresh that one instead.
        run.report.new[finding.kind] -= 1
        run.report.found[finding.kind] -= 1
        other = Mismatch.objects.filter(key=finding.key, status=Mismatch.Status.OPEN).first()
        return _record(run, finding, other) if other is not None else None
    return mismatch


def _close(mismatch: Mismatch, resolution: str) -> None:
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
        _save(locked, reason="closed by the system")


def _settle(run: _Run, checks: _Checks, open_rows: dict[str, Mismatch],
            infos: dict[int, OrderInfo | None] | None = None) -> None:
    """Record the batch's findings, close what was checked and found equal, then apply the safe fixes."""
    recorded: list[tuple[Finding, Mismatch]] = []
    for key, finding in checks.findings.items():
        mismatch = _record(run, finding, open_rows.get(key))
        if mismatch is not None:
            recorded.append((finding, mismatch))
    for key, mismatch in open_rows.items():
        if key in checks.evaluated and key not in checks.findings:
            _close(mismatch, SYSTEM_NO_LONGER_SEEN)
            run.report.closed[mismatch.kind] += 1
    if not run.autofix:
        return
    max_attempts = _setting("RECONCILE_AUTOFIX_MAX_ATTEMPTS", 3)
    todo = [(f, m) for f, m in recorded if f.fix in AUTOFIXES and m.fix_attempts < max_attempts
            and not (f.fix == FIX_RESEND and f.data.get("sync_status") == BalanceOrder.SyncStatus.PENDING)]
    for fix, group in _by_fix(todo).items():
        try:
            notes = _apply_fix(run, fix, [m for _, m in group], infos or {})
        except BalanceError as exc:
            run.report.errors.append(f"autofix {fix}: {exc}")
            notes = {m.pk: (False, f"fix failed: {exc}") for _, m in group}
        for finding, mismatch in group:
            ok, note = notes.get(mismatch.pk, (False, "not fixed"))
            _note_fix(mismatch, user=None, ok=ok, note=note)
            (run.report.fixed if ok else run.report.fix_failed)[finding.kind] += 1


def _by_fix(items: list[tuple[Finding, Mismatch]]) -> dict[str, list[tuple[Finding, Mismatch]]]:
    groups: dict[str, list[tuple[Finding, Mismatch]]] = defaultdict(list)
    for finding, mismatch in items:
        groups[finding.fix or ""].append((finding, mismatch))
    return groups


def _note_fix(mismatch: Mismatch, *, user: Any, ok: bool, note: str) -> None:
    mismatch.fix_attempts += 1
    mismatch.last_fix_at = timezone.now()
    mismatch.last_fix_by = user
    mismatch.last_fix_note = note[:500]
    who = "support" if user is not None else "autofix"
    _save(mismatch, user=user, reason=f"{who}: {'fix applied' if ok else 'fix failed'}",
          update_fields=["fix_attempts", "last_fix_at", "last_fix_by", "last_fix_note"])


def _apply_fix(run: _Run, fix: str, mismatches: list[Mismatch],
               infos: dict[int, OrderInfo | None]) -> dict[int, tuple[bool, str]]:
    """Apply one kind of safe fix to mismatches; returns {mismatch id: (applied, note)}."""
    client = run.client
    if fix == FIX_PULL:
        return _fix_pull(client, mismatches, infos)
    if fix == FIX_REPORT:
        orders = [m.order for m in mismatches if m.order is not None]
        accepted = orders_rereport(orders=orders, client=client)
        return {m.pk: (accepted.get(m.order_id, False),  # type: ignore[arg-type]
                       "re-reported the cumulative spend" if accepted.get(m.order_id) else  # type: ignore[arg-type]
                       "Balance refused the completion report") for m in mismatches}
    if fix == FIX_RESEND:
        return _fix_resend(mismatches)
    if fix == FIX_RETRY:
        notes = {}
        for mismatch in mismatches:
            if mismatch.operation is None:
                notes[mismatch.pk] = (False, "the operation no longer exists")
                continue
            operation = outbox_retry(operation=mismatch.operation)
            notes[mismatch.pk] = (True, f"operation {operation.pk} queued again ({operation.status})")
        return notes
    raise ValueError(f"unknown fix {fix!r}")


def _fix_pull(client: BalanceClient, mismatches: list[Mismatch],
              infos: dict[int, OrderInfo | None]) -> dict[int, tuple[bool, str]]:
    from payments.services import OrderState, order_apply_balance_state, orders_pull

    notes: dict[int, tuple[bool, str]] = {}
    fresh = [m for m in mismatches if m.order_id not in infos or infos[m.order_id] is None]
    if fresh:
        outcome = orders_pull(orders=[m.order for m in fresh if m.order is not None], client=client)
        for m in fresh:
            notes[m.pk] = (outcome["applied"] > 0, f"re-pulled from Balance: {outcome}")
    for mismatch in mismatches:
        info = infos.get(mismatch.order_id)  # type: ignore[arg-type]
        if info is None or mismatch.pk in notes:
            continue
        # The figures were read from Balance moments ago: applying them is what orders_pull would do.
        order = mismatch.order
        if order is None or order.kind != BalanceOrder.Kind.WALLET:
            notes[mismatch.pk] = (False, "only a wallet order's money is pulled")
            continue
        children = [i for c in BalanceOrder.objects.filter(parent=order).select_related("service")
                    if (i := infos.get(c.pk)) is not None]
        outcome = order_apply_balance_state(order_id=order.pk, state=OrderState(
            consume_money=wallet_money_from_info(info, children), completion_qty=info.completion_qty, tid=None))
        notes[mismatch.pk] = (outcome == "applied", f"re-pulled from Balance: {outcome}")
    return notes


def _fix_resend(mismatches: list[Mismatch]) -> dict[int, tuple[bool, str]]:
    with_order = [m for m in mismatches if m.order is not None]
    operations = {op.subject: op for op in orders_resend(orders=[m.order for m in with_order])}  # type: ignore[misc]
    notes = {m.pk: (False, "no order") for m in mismatches if m.order is None}
    for mismatch in with_order:
        operation = operations.get(f"customer:{mismatch.order.customer_id}")  # type: ignore[union-attr]
        notes[mismatch.pk] = (True, f"order re-sent to Balance (outbox operation {operation.pk if operation else '?'})")
    return notes


def orders_resend(*, orders: list[BalanceOrder]) -> list[OutboxOperation]:
    """Send orders to Balance again although billing thinks they are synced (mark pending + orders sync)."""
    from payments.services import enqueue_orders_sync

    operations = []
    by_customer: dict[int, list[int]] = defaultdict(list)
    for order in orders:
        by_customer[order.customer_id].append(order.pk)
    for customer_id, order_ids in by_customer.items():
        with transaction.atomic():
            customer = Customer.objects.select_related("service").get(pk=customer_id)
            BalanceOrder.objects.filter(pk__in=order_ids).update(sync_status=BalanceOrder.SyncStatus.PENDING,
                                                                  sync_error="")
            operations.append(enqueue_orders_sync(customer))
    return operations


def _completion_report(order: BalanceOrder, money: Decimal, now: datetime) -> CompletionReport:
    if order.product is None:  # a wallet order: nothing is completed on it, in the wallet product's unit
        return CompletionReport(service_id=order.service.balance_service_id, service_order_id=order.pk,
                                unit="Money", qty=Decimal(0), dt=now)
    return completion_report_for(order, money, now)


def orders_rereport(*, orders: list[BalanceOrder], client: BalanceClient | None = None) -> dict[int, bool]:
    """Report the cumulative completion of these orders again, whatever was reported before (UpdateCampaigns).

    `spend_report` sends only orders whose spend changed since the last accepted report; a figure changed in
    Balance behind billing's back needs this. Child orders get their spend account's balance (read now), wallet
    orders 0.00. Returns {order id: accepted}.
    """
    from wallets.models import Account

    if not orders:
        return {}
    client = client or BalanceClient()
    orders = list(BalanceOrder.objects.filter(pk__in=[o.pk for o in orders]).select_related("service", "product"))
    spend_keys = {o.pk: _spend_key(o) for o in orders if o.kind == BalanceOrder.Kind.CHILD}
    balances = dict(Account.objects.filter(key__in=spend_keys.values()).values_list("key", "balance"))
    accepted: dict[int, bool] = {}
    for chunk in _chunks(orders, batch_size_default()):
        now = timezone.now()
        money = {o.pk: balances.get(spend_keys[o.pk], ZERO) if o.pk in spend_keys else ZERO for o in chunk}
        results = client.update_campaigns([_completion_report(o, money[o.pk], now) for o in chunk])
        for order, ok in zip(chunk, results, strict=True):
            accepted[order.pk] = bool(ok)
            if ok and order.kind == BalanceOrder.Kind.CHILD:
                BalanceOrder.objects.filter(pk=order.pk).update(reported_qty=money[order.pk], reported_at=now,
                                                                report_refused_at=None, report_error="")
            elif ok is False:
                BalanceOrder.objects.filter(pk=order.pk).update(report_refused_at=now,
                                                                report_error=REPORT_REFUSED)
    return accepted


# --- the run ----------------------------------------------------------------------------------------------------

def reconcile(*, customer: Customer | None = None, service: ConsumerService | None = None,
              batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
              autofix: bool = True, persons: str = "changed") -> ReconcileReport:
    """Compare billing with Balance (everything, one service, or one customer) and record the mismatches.

    `progress(done, total)` is called after each batch (customers + agencies). A Balance that stays unreachable
    raises `BalanceError` (what was already checked is kept; nothing unchecked is closed).
    """
    if persons not in ("changed", "all", "none"):
        raise ValueError("persons must be 'changed', 'all' or 'none'")
    batch_size = max(1, batch_size or batch_size_default())
    counting = _CountingClient()
    report = ReconcileReport()
    run = _Run(client=counting, report=report, batch_size=batch_size, autofix=autofix,
               persons="all" if customer is not None and persons == "changed" else persons, now=timezone.now())
    started = time.monotonic()
    customers = Customer.objects.filter(balance_client_id__isnull=False).select_related("service")
    agencies = Agency.objects.filter(balance_client_id__isnull=False).select_related("service")
    if customer is not None:
        customers = customers.filter(pk=customer.pk)
        payer_ids = set(BalanceOrder.objects.filter(customer=customer, payer_agency__isnull=False)
                        .values_list("payer_agency_id", flat=True))
        if customer.agency_id:
            payer_ids.add(customer.agency_id)
        agencies = agencies.filter(pk__in=payer_ids)
    elif service is not None:
        customers = customers.filter(service=service)
        agencies = agencies.filter(service=service)
    total = customers.count() + agencies.count()
    done = 0
    try:
        for queryset, handler in ((customers, _reconcile_customers), (agencies, _reconcile_agencies)):
            last_id = 0
            while True:
                batch = list(queryset.filter(pk__gt=last_id).order_by("pk")[:batch_size])
                if not batch:
                    break
                last_id = batch[-1].pk
                handler(run, batch)  # type: ignore[operator]
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        _reconcile_operations(run, customer=customer, service=service)
    finally:
        report.calls = counting.calls
        report.duration = time.monotonic() - started
        counting.close()
    logger.info("reconciliation done", extra={"reconcile": report.as_dict()})
    return report


# --- support actions --------------------------------------------------------------------------------------------

_SUPPORT_FIXES = {
    Kind.ORDER_OWNERSHIP: FIX_RESEND, Kind.MONEY_IN: FIX_PULL, Kind.MONEY_OUT: FIX_REPORT,
    Kind.UNPAID_COMPLETION: FIX_REFRESH, Kind.CUSTOMER_DATA: FIX_PUSH_DATA, Kind.STALE_OPERATION: FIX_RETRY,
}


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
        ok, note = _support_fix(mismatch, _SUPPORT_FIXES[Kind(mismatch.kind)])
    except BalanceError as exc:
        ok, note = False, f"Balance: {exc}"
    _note_fix(mismatch, user=user, ok=ok, note=note)
    if ok and recheck:
        try:
            _recheck(mismatch)
        except BalanceError as exc:
            note += f"; re-check postponed to the next run (Balance: {exc})"
    mismatch.refresh_from_db()
    return FixResult(mismatch, ok, note)


def _support_fix(mismatch: Mismatch, fix: str) -> tuple[bool, str]:
    from payments.services import orders_pull

    order = mismatch.order
    if fix == FIX_RESEND and order is not None:
        refusal = _resend_refusal(order)
        if refusal:
            return False, f"not re-sent: {refusal}"
        operation = orders_resend(orders=[order])[0]
        return True, f"order re-sent to Balance (outbox operation {operation.pk})"
    if fix == FIX_PULL and order is not None:
        outcome = orders_pull(orders=[order])
        return True, f"re-pulled from Balance: {outcome['applied']} applied, {outcome['stale']} already applied"
    if fix == FIX_REPORT and order is not None:
        accepted = orders_rereport(orders=[order])
        return (True, "re-reported the cumulative spend") if accepted.get(order.pk) else (
            False, "Balance refused the completion report")
    if fix == FIX_REFRESH and order is not None:
        children = list(order.children.filter(sync_status=BalanceOrder.SyncStatus.SYNCED))
        outcome = orders_pull(orders=[order])
        accepted = orders_rereport(orders=children)
        return True, (f"re-pulled the wallet order ({outcome['applied']} applied) and re-reported "
                      f"{sum(accepted.values())} child order(s); if Balance still shows unpaid completion, the payer "
                      "owes it: resolve with a comment once handled")
    if fix == FIX_PUSH_DATA:
        return _push_party_data(mismatch)
    if fix == FIX_RETRY:
        if mismatch.operation is None:
            return False, "the operation no longer exists"
        operation = outbox_retry(operation=mismatch.operation)
        return True, f"operation {operation.pk} queued again ({operation.status})"
    return False, "no fix for this mismatch: resolve it with a comment"


def _resend_refusal(order: BalanceOrder) -> str:
    """Why re-sending cannot fix the order's owner (read fresh from Balance), or "" when it can."""
    order = BalanceOrder.objects.select_related("customer", "payer_agency", "product", "service").get(pk=order.pk)
    with BalanceClient() as client:
        infos = client.get_orders_info([(order.service.balance_service_id, order.pk)])
    checks = _Checks()
    _check_ownership(checks, order, order.customer, infos[0] if infos else None)
    finding = checks.findings.get(order_key(Kind.ORDER_OWNERSHIP, order.pk))
    if finding is not None and finding.fix is None:
        return finding.note
    return ""


def _push_party_data(mismatch: Mismatch) -> tuple[bool, str]:
    if mismatch.customer is not None:
        from customers.services import enqueue_sync as customer_sync

        with transaction.atomic():
            operation = customer_sync(mismatch.customer, update=True)
    elif mismatch.agency is not None:
        from agencies.services import enqueue_sync as agency_sync

        with transaction.atomic():
            operation = agency_sync(mismatch.agency, update=True)
    else:
        return False, "no customer or agency"
    return True, f"billing's data sent to Balance (outbox operation {operation.pk})"


def _recheck(mismatch: Mismatch) -> None:
    if mismatch.kind == Kind.STALE_OPERATION:
        if mismatch.operation is None:
            return
        operation = OutboxOperation.objects.get(pk=mismatch.operation_id)
        if _operation_finding(operation, timezone.now()) is None:
            _close(mismatch, SYSTEM_NO_LONGER_SEEN)
        return
    if mismatch.customer is not None:
        reconcile(customer=mismatch.customer, autofix=False)
    elif mismatch.agency is not None:
        run = _Run(client=_CountingClient(), report=ReconcileReport(), batch_size=batch_size_default(),
                   autofix=False, persons="all", now=timezone.now())
        _reconcile_agencies(run, [Agency.objects.select_related("service").get(pk=mismatch.agency_id)])


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
    _save(locked, user=user, reason="resolved by support")
    return locked
