"""Adoption of a consumer's existing Balance orders (`manage.py adopt_orders`): read a CSV, check each order in
Balance, move its free money into billing's wallet order and post it as an opening balance.

One row per legacy order: the consumer's customer external id, the order's ServiceOrderID, billing's product code
for it, and the payer agency's external id when an agency pays. Customers and agencies must be linked first
(`manage.py import_customers`). For each order:

1. Billing: the customer (active, with its Balance client), the agency and the product are known; the
   ServiceOrderID is not one of billing's own orders (billing's ServiceOrderIDs are its order row ids).
2. Balance (GetOrdersInfo, batched): the order exists, is of the row's product, in no group, in the service's
   currency, and its money (money fields) is not over-completed. Free money = consume_amount - completion_amount.
3. Nothing free: adopted as it is (reconciliation watches it). Free money: the payer's wallet order of the customer
   is made sure of (created and synced in Balance), the row is marked `transferring`, then
   `CreateTransferMultiple` moves exactly the free money (`QtyOld` = the order's consume now, `QtyNew` = its
   completion) into the wallet order, and `payments.services.adoption.adoption_post_opening_balance` posts it.
   Balance checks the owner and the payer: it refuses a transfer between orders of different clients or agencies,
   and such an order is refused with Balance's reason. Nothing is guessed.

Idempotent and resumable: an adopted order is `already_adopted` (no Balance call); a row left `transferring` by a
killed run is settled from what Balance shows (the transfer is asked again only if the order's consume is still
the recorded `QtyOld`; if it already moved, the money is posted; anything else is refused with the figures).
Balance being unreachable stops the run (`AdoptAborted`); what was done stays, and a re-run continues.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import transaction

from agencies.models import Agency
from balance_gateway.client import BalanceClient, OrderInfo, TransferDestination, TransferSource
from balance_gateway.exceptions import BalanceError, BalanceFinalError
from balance_gateway.models import RegistrationStatus
from balance_gateway.retry import read_with_retry
from customers.models import Customer
from disbalance.models import ConsumerService
from disbalance.money import ZERO, format_amount
from payments.models import BalanceOrder, OrderAdoption, Product
from payments.services.adoption import (
    LegacyFigures,
    adoption_abandon_transfer,
    adoption_post_opening_balance,
    adoption_record_empty,
    adoption_refuse,
    adoption_start_transfer,
)
from payments.services.orders import order_spec, orders_ensure

COLUMNS = ("customer_external_id", "service_order_id", "product", "agency_external_id")
REQUIRED_COLUMNS = ("customer_external_id", "service_order_id", "product")
MAX_ORDER_ID = 2**63 - 1
TRANSFER_REFUSED = "Balance refused to move the money"
# Reads (GetOrdersInfo) are safe to repeat: a transient failure is retried after these pauses before the run stops.
# The transfer is not repeated blindly: after an unknown outcome the next run settles it from Balance's figures.
READ_RETRY_DELAYS: tuple[float, ...] = (0.2, 1.0)


class AdoptFileError(Exception):
    """The file cannot be read as an adoption file."""


class Outcome(enum.StrEnum):
    ADOPTED = "adopted"
    ALREADY_ADOPTED = "already_adopted"
    REFUSED = "refused"
    WOULD_ADOPT = "would_adopt"


@dataclass(frozen=True)
class AdoptRow:
    line: int
    customer_external_id: str
    service_order_id: str
    product: str
    agency_external_id: str
    error: str = ""


@dataclass(frozen=True)
class RowResult:
    line: int
    service_order_id: str
    customer_external_id: str
    outcome: Outcome
    amount: Decimal = ZERO
    reason: str = ""


@dataclass
class AdoptReport:
    dry_run: bool = False
    results: list[RowResult] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        counts = {outcome.value: 0 for outcome in Outcome}
        for result in self.results:
            counts[result.outcome.value] += 1
        return counts

    def refused(self) -> list[RowResult]:
        return sorted((r for r in self.results if r.outcome == Outcome.REFUSED), key=lambda r: r.line)

    def money(self, outcome: Outcome = Outcome.ADOPTED) -> Decimal:
        return sum((r.amount for r in self.results if r.outcome == outcome), ZERO)


class AdoptAborted(Exception):
    """Balance failed in a way a repeat may fix: the run stopped. `report` holds what was done."""

    def __init__(self, message: str, report: AdoptReport) -> None:
        super().__init__(message)
        self.report = report


# --- Reading the file ---------------------------------------------------------------------------------------


def adopt_file_read(path: str | Path) -> list[AdoptRow]:
    """Read and check the whole file before anything is done, so an unreadable file changes nothing."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise AdoptFileError("no such file") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise AdoptFileError(str(exc)) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise AdoptFileError("the file is empty (a header line is expected)")
        columns = [name.strip().lower() for name in header]
        unknown = [name for name in columns if name not in COLUMNS]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if unknown or missing or len(set(columns)) != len(columns):
            raise AdoptFileError(f"bad header {header!r}; columns are: {', '.join(COLUMNS)} "
                                 f"(required: {', '.join(REQUIRED_COLUMNS)})")
        rows = []
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields:
                continue
            values = {name: value.strip() for name, value in zip(columns, fields, strict=False)}
            error = "" if len(fields) == len(columns) else f"{len(fields)} fields where the header has {len(columns)}"
            rows.append(AdoptRow(line=line, customer_external_id=values.get("customer_external_id", ""),
                                 service_order_id=values.get("service_order_id", ""),
                                 product=values.get("product", ""),
                                 agency_external_id=values.get("agency_external_id", ""), error=error))
    except csv.Error as exc:
        raise AdoptFileError(f"line {reader.line_num}: {exc}") from exc
    return rows


def _row_problem(row: AdoptRow) -> str:
    if row.error:
        return row.error
    problems = []
    if not row.customer_external_id:
        problems.append("customer_external_id: required")
    soid = row.service_order_id
    if not (soid.isascii() and soid.isdigit() and 0 < int(soid) <= MAX_ORDER_ID):
        problems.append(f"service_order_id: must be a positive whole number, got {soid[:40]!r}")
    if not row.product:
        problems.append("product: required")
    return "; ".join(problems)


# --- The run --------------------------------------------------------------------------------------------------


@dataclass
class _Item:
    row: AdoptRow
    customer: Customer
    agency: Agency | None
    product: Product
    adoption: OrderAdoption | None  # an earlier run's row (refused or transferring)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _Run:
    def __init__(self, *, service: ConsumerService, client: BalanceClient, dry_run: bool, batch_size: int,
                 progress: Callable[[int], Any]) -> None:
        self.service, self.client, self.dry_run = service, client, dry_run
        self.batch_size, self.progress = batch_size, progress
        self.report = AdoptReport(dry_run=dry_run)

    def done(self, row: AdoptRow, outcome: Outcome, reason: str = "", amount: Decimal = ZERO) -> None:
        self.report.results.append(RowResult(line=row.line, service_order_id=row.service_order_id[:40],
                                             customer_external_id=row.customer_external_id[:128], outcome=outcome,
                                             amount=amount, reason=reason))
        self.progress(1)

    def refuse(self, item: _Item | AdoptRow, reason: str) -> None:
        row = item.row if isinstance(item, _Item) else item
        if not self.dry_run and isinstance(item, _Item) and (
                item.adoption is None or item.adoption.status == OrderAdoption.Status.REFUSED):
            adoption_refuse(service=self.service, service_order_id=row.service_order_id, reason=reason,
                            customer=item.customer, payer_agency=item.agency, product=item.product)
        self.done(row, Outcome.REFUSED, reason)

    def run(self, rows: Sequence[AdoptRow]) -> AdoptReport:
        valid: list[AdoptRow] = []
        first_line: dict[str, int] = {}
        for row in rows:
            problem = _row_problem(row)
            if problem:
                self.done(row, Outcome.REFUSED, problem)
            elif row.service_order_id in first_line:
                self.done(row, Outcome.REFUSED, f"ServiceOrderID repeated in the file (first on line "
                                                f"{first_line[row.service_order_id]})")
            else:
                row = replace(row, service_order_id=str(int(row.service_order_id)))  # "007" is order 7
                first_line[row.service_order_id] = row.line
                valid.append(row)
        try:
            for batch in _chunks(valid, self.batch_size):
                self.batch(batch)
        except BalanceError as exc:
            raise AdoptAborted(f"Balance failed ({exc}).", self.report) from exc
        self.report.results.sort(key=lambda r: r.line)
        return self.report

    def read_orders(self, keys: list[tuple[int, int | str]]) -> list[OrderInfo]:
        return read_with_retry(self.client.get_orders_info, keys, pauses=READ_RETRY_DELAYS)

    # --- one batch ---

    def batch(self, rows: Sequence[AdoptRow]) -> None:
        items = self.check_billing(rows)
        if not items:
            return
        sid = self.service.balance_service_id
        infos = {info.service_order_id: info for info in self.read_orders(
            [(sid, item.row.service_order_id) for item in items])}
        decided: list[tuple[_Item, LegacyFigures]] = []
        for item in items:
            info = infos.get(item.row.service_order_id)
            if item.adoption is not None and item.adoption.status == OrderAdoption.Status.TRANSFERRING:
                self.resume(item, info)
                continue
            problem = self.check_balance(item, info) or self.refused_before(item, info)
            if problem:
                self.refuse(item, problem)
                continue
            assert info is not None
            figures = LegacyFigures(consume_qty=info.consume_qty, completion_qty=info.completion_qty,
                                    consume_amount=info.consume_amount, completion_amount=info.completion_amount)
            if self.dry_run:
                self.done(item.row, Outcome.WOULD_ADOPT, amount=figures.free_money)
                continue
            decided.append((item, figures))
        wallets = self.wallet_orders([item for item, figures in decided if figures.free_money > 0])
        for item, figures in decided:
            if figures.free_money == 0:
                adoption_record_empty(service=self.service, service_order_id=item.row.service_order_id,
                                      customer=item.customer, payer_agency=item.agency, product=item.product,
                                      wallet_order=None, figures=figures)
                self.done(item.row, Outcome.ADOPTED, "nothing free (fully spent): adopted without a transfer")
                continue
            wallet = wallets[(item.customer.pk, item.agency.pk if item.agency else None)]
            adoption = adoption_start_transfer(
                service=self.service, service_order_id=item.row.service_order_id, customer=item.customer,
                payer_agency=item.agency, product=item.product, wallet_order=wallet, figures=figures)
            self.transfer(item.row, adoption)

    def check_billing(self, rows: Sequence[AdoptRow]) -> list[_Item]:
        """What billing knows: earlier adoptions, the customers, agencies and products the rows name."""
        service = self.service
        adoptions = {a.service_order_id: a for a in OrderAdoption.objects.filter(
            service=service, service_order_id__in=[r.service_order_id for r in rows])}
        customers = {c.external_id: c for c in Customer.objects.filter(
            service=service, external_id__in={r.customer_external_id for r in rows})}
        agencies = {a.external_id: a for a in Agency.objects.filter(
            service=service, external_id__in={r.agency_external_id for r in rows if r.agency_external_id})}
        products = {p.code: p for p in Product.objects.filter(service=service, code__in={r.product for r in rows})}
        own_orders = set(BalanceOrder.objects.filter(
            service=service, pk__in=[int(r.service_order_id) for r in rows]).values_list("pk", flat=True))
        items = []
        for row in rows:
            adoption = adoptions.get(row.service_order_id)
            if adoption is not None and adoption.status == OrderAdoption.Status.ADOPTED:
                self.done(row, Outcome.ALREADY_ADOPTED, amount=adoption.free_money)
                continue
            customer = customers.get(row.customer_external_id)
            agency = agencies.get(row.agency_external_id) if row.agency_external_id else None
            product = products.get(row.product)
            if adoption is not None and adoption.status == OrderAdoption.Status.TRANSFERRING:
                # Settle it as it was started, whatever the file says now.
                items.append(_Item(row=row, customer=adoption.customer, agency=adoption.payer_agency,
                                   product=adoption.product, adoption=adoption))  # type: ignore[arg-type]
                continue
            if customer is None:
                self.done(row, Outcome.REFUSED, f"unknown customer {row.customer_external_id} (link it first with "
                                                f"import_customers)")
            elif customer.status != RegistrationStatus.ACTIVE or customer.balance_client_id is None:
                self.done(row, Outcome.REFUSED, f"customer {row.customer_external_id} is not active in Balance "
                                                f"(status {customer.status})")
            elif row.agency_external_id and (agency is None or agency.balance_client_id is None):
                self.done(row, Outcome.REFUSED, f"unknown agency {row.agency_external_id} (link it first with "
                                                f"import_customers)")
            elif product is None:
                self.done(row, Outcome.REFUSED, f"unknown product {row.product!r} of service {service.slug}")
            elif int(row.service_order_id) in own_orders:
                self.done(row, Outcome.REFUSED, f"ServiceOrderID {row.service_order_id} is billing's own order "
                                                f"{row.service_order_id}, not a legacy one")
            else:
                items.append(_Item(row=row, customer=customer, agency=agency, product=product, adoption=adoption))
        return items

    def check_balance(self, item: _Item, info: OrderInfo | None) -> str:
        """Why Balance's figures do not allow adopting the order, or ""."""
        soid = item.row.service_order_id
        if info is None:
            return f"order {soid} not found in Balance (service {self.service.balance_service_id})"
        if info.product_id != item.product.balance_product_id:
            return (f"product differs: Balance has product {info.product_id}, the row's {item.product.code} is "
                    f"{item.product.balance_product_id}")
        if info.is_group_root or info.group_service_order_id:
            return "the order is in a unified-account group in Balance: its money is the group's (adopt by hand)"
        if info.currency and info.currency != self.service.currency:
            return f"currency differs: the order is in {info.currency}, the service in {self.service.currency}"
        if info.consume_amount < 0 or info.completion_amount < 0:
            return "negative money on the order"
        if info.completion_amount > info.consume_amount:
            return (f"completion {format_amount(info.completion_amount)} beyond the money paid "
                    f"{format_amount(info.consume_amount)} (unpaid completion): settle it in Balance first")
        return ""

    @staticmethod
    def refused_before(item: _Item, info: OrderInfo | None) -> str:
        """Balance refused this very transfer before (same customer, payer and figures): the same answer, without
        asking again. A changed row or changed figures are tried again."""
        earlier = item.adoption
        if (earlier is None or info is None or earlier.status != OrderAdoption.Status.REFUSED
                or not earlier.reason.startswith(TRANSFER_REFUSED)):
            return ""
        same = (earlier.customer_id == item.customer.pk and earlier.product_id == item.product.pk
                and earlier.payer_agency_id == (item.agency.pk if item.agency else None)
                and earlier.qty_old == info.consume_qty and earlier.qty_new == info.completion_qty)
        return earlier.reason if same else ""

    def wallet_orders(self, items: list[_Item]) -> dict[tuple[int, int | None], BalanceOrder]:
        """The payer's wallet order of each customer, created if needed and synced in Balance now (one batch call
        for those not synced yet): a transfer needs its destination to exist."""
        wallets: dict[tuple[int, int | None], BalanceOrder] = {}
        for item in items:
            key = (item.customer.pk, item.agency.pk if item.agency else None)
            if key not in wallets:
                with transaction.atomic():
                    wallets[key] = orders_ensure(customer=item.customer, payer=item.agency)
        unsynced = list(BalanceOrder.objects.select_related("customer", "payer_agency", "product", "service").filter(
            pk__in=[w.pk for w in wallets.values()]).exclude(sync_status=BalanceOrder.SyncStatus.SYNCED))
        if unsynced:
            specs = [order_spec(order) for order in unsynced]
            for order, spec, result in zip(unsynced, specs, self.client.create_or_update_orders_batch(specs),
                                           strict=True):
                if not result.ok:
                    raise BalanceFinalError(f"wallet order {order.pk} refused by Balance: {result.message}",
                                            method="CreateOrUpdateOrdersBatch")
                BalanceOrder.objects.filter(pk=order.pk).update(
                    sync_status=BalanceOrder.SyncStatus.SYNCED, sync_error="", synced_client_id=spec.client_id,
                    synced_agency_id=spec.agency_id)
        return wallets

    def transfer(self, row: AdoptRow, adoption: OrderAdoption) -> None:
        """Ask Balance to move the free money, then post it. A refusal is the order's; the row says why."""
        sid = self.service.balance_service_id
        try:
            self.client.create_transfer_multiple(
                sources=[TransferSource(sid, adoption.service_order_id, adoption.qty_old, adoption.qty_new)],
                destinations=[TransferDestination(sid, adoption.wallet_order_id, Decimal(1))],  # type: ignore[arg-type]
            )
        except BalanceFinalError as exc:
            if exc.code == "ORDERS_NOT_SYNCHRONIZED":
                fresh = self.read_orders([(sid, adoption.service_order_id)])
                self.resume(_Item(row=row, customer=adoption.customer, agency=adoption.payer_agency,  # type: ignore[arg-type]
                                  product=adoption.product, adoption=adoption),  # type: ignore[arg-type]
                            fresh[0] if fresh else None, retry=False)
                return
            reason = (f"{TRANSFER_REFUSED} to the customer's wallet order {adoption.wallet_order_id} (owner or payer "
                      f"differ from the row?): {exc}")
            adoption_abandon_transfer(adoption_id=adoption.pk, reason=reason)
            self.done(row, Outcome.REFUSED, reason)
            return
        adoption_post_opening_balance(adoption_id=adoption.pk)
        self.done(row, Outcome.ADOPTED, amount=adoption.free_money)

    def resume(self, item: _Item, info: OrderInfo | None, *, retry: bool = True) -> None:
        """Settle a row left `transferring`: from Balance's figures, the transfer either has not happened (ask it
        again), has happened (post it), or the order changed meanwhile (refuse with the figures)."""
        adoption = item.adoption
        assert adoption is not None
        if self.dry_run:
            self.done(item.row, Outcome.WOULD_ADOPT, "an interrupted adoption: a real run settles it",
                      amount=adoption.free_money)
            return
        if info is not None and info.completion_qty == adoption.qty_new:
            if retry and info.consume_qty == adoption.qty_old:
                self.transfer(item.row, adoption)
                return
            if info.consume_amount == adoption.expected_consume_amount:
                adoption_post_opening_balance(adoption_id=adoption.pk)
                self.done(item.row, Outcome.ADOPTED, amount=adoption.free_money)
                return
        seen = ("not found" if info is None else f"consume {info.consume_qty} ({format_amount(info.consume_amount)}),"
                f" completion {info.completion_qty}")
        reason = (f"the order changed in Balance during its adoption (expected consume {adoption.qty_old} or, once "
                  f"moved, {format_amount(adoption.expected_consume_amount)}; completion {adoption.qty_new}; Balance "
                  f"shows {seen}): nothing posted; check it and run again")
        adoption_abandon_transfer(adoption_id=adoption.pk, reason=reason)
        self.done(item.row, Outcome.REFUSED, reason)


def orders_adopt(*, service: ConsumerService, rows: Sequence[AdoptRow], dry_run: bool = False,
                 batch_size: int = 100, client: BalanceClient | None = None,
                 progress: Callable[[int], Any] | None = None) -> AdoptReport:
    """Adopt the file's legacy orders (see the module's docstring). With `dry_run`, check billing and Balance and
    write nothing (owner and payer are checked by Balance only at the transfer). Raises `AdoptAborted` when Balance
    fails; what was done stays."""
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    own_client = client is None
    client = client or BalanceClient()
    try:
        return _Run(service=service, client=client, dry_run=dry_run, batch_size=batch_size,
                    progress=progress or (lambda n: None)).run(rows)
    finally:
        if own_client:
            client.close()


def adopt_report_write(report: AdoptReport, path: str | Path) -> None:
    """Every row with its outcome, amount and reason, as CSV."""
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "service_order_id", "customer_external_id", "outcome", "amount", "reason"])
        for r in sorted(report.results, key=lambda r: r.line):
            writer.writerow([r.line, r.service_order_id, r.customer_external_id, r.outcome.value,
                             format_amount(r.amount), r.reason])
