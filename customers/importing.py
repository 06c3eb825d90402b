"""Import of customers and agencies that already exist in Balance: read a CSV, validate, check in Balance, link.

An import never creates anything in Balance: it only reads (GetClientByIdBatch, GetClientPersons,
GetClientContracts) and then writes billing's rows, already `active`, pointing at the existing client and person.

- Agencies are imported first (whatever their position in the file), so customers can name them.
- Rows are handled in batches: the Balance reads of a batch come first, then its rows are written in one
  transaction. When Balance fails, the run stops with `ImportAborted`; earlier batches stay committed and a
  re-run of the same file continues (linked rows come back as `unchanged`).
- Idempotent: an external id already linked to the same Balance client is `unchanged`; linked to another client,
  or a Balance client linked to another external id, is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import IntegrityError, transaction

# The API's serializers are the one place where the rules for a customer's and an agency's data live.
from agencies.models import Agency
from agencies.services import agency_contracts_store
from balance_gateway.client import BalanceClient, ClientInfo, ContractInfo, PersonInfo
from balance_gateway.exceptions import BalanceError, BalanceFinalError
from balance_gateway.models import RegistrationStatus
from balance_gateway.retry import read_with_retry
from customers.import_file import (
    CHANGED_BY,
    KIND_AGENCY,
    READ_RETRY_DELAYS,
    ImportAborted,
    ImportReport,
    ImportRow,
    LinkConflict,
    Outcome,
    RawRow,
    RowResult,
    import_row_validate,
)
from customers.models import AgencyAssignment, Customer
from disbalance.models import ConsumerService

T = TypeVar("T")


# --- Writes ---------------------------------------------------------------------------------------------------


def _check_client_free(service: ConsumerService, model: type[Agency | Customer], client_id: int) -> None:
    """The run checked this before reading Balance; check again in the write transaction. (The external id needs
    no second look: its unique constraint answers with IntegrityError. The other model needs none either: Balance's
    agency flag keeps agency clients and customer clients apart.)"""
    holder = model.objects.filter(service=service, balance_client_id=client_id).values_list("external_id",
                                                                                           flat=True).first()
    if holder is not None:
        raise LinkConflict(f"Balance client {client_id} linked meanwhile to {model.__name__.lower()} {holder}")


@transaction.atomic
def agency_link_existing(*, service: ConsumerService, row: ImportRow, person_id: int,
                         contracts: list[ContractInfo]) -> Agency:
    """An agency for an existing Balance agency client: `active` at once, with its contracts as Balance has them."""
    _check_client_free(service, Agency, row.balance_client_id)
    values = {name: row.values[name] for name in ("name", "email", "phone", "inn", "kpp", "legal_address",
                                                  "long_name", "postal_address", "postcode")}
    agency = Agency(service=service, external_id=row.external_id, status=RegistrationStatus.ACTIVE,
                    balance_client_id=row.balance_client_id, balance_person_id=person_id, **values)
    agency._change_reason = f"imported: Balance client {row.balance_client_id}"  # type: ignore[attr-defined]
    agency.save()
    agency_contracts_store(agency=agency, contracts=contracts)
    return agency


@transaction.atomic
def customer_link_existing(*, service: ConsumerService, row: ImportRow, person_id: int,
                           agency: Agency | None) -> Customer:
    """A customer for an existing Balance client and person: `active` at once, nothing queued for Balance.

    Its first agency assignment (the payer in force) is recorded as registration does.
    """
    _check_client_free(service, Customer, row.balance_client_id)
    customer = Customer(service=service, external_id=row.external_id, kind=row.kind, agency=agency,
                        status=RegistrationStatus.ACTIVE, balance_client_id=row.balance_client_id,
                        balance_person_id=person_id, **row.values)
    customer._change_reason = f"imported: Balance client {row.balance_client_id}"  # type: ignore[attr-defined]
    customer.save()
    AgencyAssignment.objects.create(customer=customer, agency=agency, since=customer.created_at,
                                    changed_by=CHANGED_BY,
                                    reason=f"import of existing Balance client {row.balance_client_id}")
    return customer


# --- The run --------------------------------------------------------------------------------------------------


def _client_holders(service: ConsumerService, client_ids: Sequence[int]) -> dict[int, str]:
    """Which billing party of the service each Balance client is already linked to."""
    holders: dict[int, str] = {}
    for model, label in ((Agency, "agency"), (Customer, "customer")):
        for client_id, external_id in model.objects.filter(
            service=service, balance_client_id__in=list(client_ids)
        ).values_list("balance_client_id", "external_id"):
            holders.setdefault(client_id, f"{label} {external_id}")
    return holders


def _read(call: Callable[..., T], *args: Any) -> T:
    return read_with_retry(call, *args, pauses=READ_RETRY_DELAYS)


def _pick_person(persons: list[PersonInfo], row: ImportRow) -> tuple[PersonInfo | None, str]:
    """The given person if it is a usable one of the client, else the first visible person of the right type."""
    note = ""
    if row.balance_person_id is not None:
        given = next((p for p in persons if p.person_id == row.balance_person_id), None)
        if given is not None and given.type == row.person_type and not given.hidden:
            return given, ""
        if given is None:
            why = f"not a person of client {row.balance_client_id}"
        elif given.type != row.person_type:
            why = f"of type {given.type}, not {row.person_type}"
        else:
            why = "hidden in Balance"
        note = f"given person {row.balance_person_id} is {why}"
    person = next((p for p in persons if p.type == row.person_type and not p.hidden), None)
    if person is not None and note:
        note = f"{note}; using person {person.person_id}"
    return person, note


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class _Checked:
    row: ImportRow
    person_id: int
    note: str = ""
    agency: Agency | None = None
    contracts: list[ContractInfo] = field(default_factory=list)


class _Run:
    def __init__(self, *, service: ConsumerService, client: BalanceClient, dry_run: bool, batch_size: int,
                 progress: Callable[[int], Any]) -> None:
        self.service = service
        self.client = client
        self.dry_run = dry_run
        self.batch_size = batch_size
        self.progress = progress
        self.report = ImportReport(dry_run=dry_run)
        self.agency_rows: dict[str, RowResult] = {}  # the file's agency rows by external id, once decided

    def done(self, row: ImportRow | RawRow, outcome: Outcome, reason: str = "", note: str = "") -> None:
        if isinstance(row, ImportRow):
            result = RowResult(line=row.line, external_id=row.external_id, kind=row.kind,
                               balance_client_id=str(row.balance_client_id), outcome=outcome, reason=reason,
                               note=note)
            if row.is_agency:
                self.agency_rows[row.external_id] = result
        else:  # refused by validation
            result = RowResult(line=row.line, external_id=row.values.get("external_id", "")[:128],
                               kind=row.values.get("kind", "")[:20],
                               balance_client_id=row.values.get("balance_client_id", "")[:30],
                               outcome=outcome, reason=reason)
            if result.kind.lower() == KIND_AGENCY and result.external_id:
                # Its customers are then told the agency was skipped, not that it is unknown.
                self.agency_rows.setdefault(result.external_id, result)
        self.report.results.append(result)
        self.progress(1)

    def validate(self, raw_rows: Sequence[RawRow]) -> list[ImportRow]:
        """Valid rows, first occurrences only: a repeated external id or Balance client is skipped."""
        valid: list[ImportRow] = []
        first_by_external_id: dict[tuple[bool, str], int] = {}
        first_by_client: dict[int, int] = {}
        for raw in raw_rows:
            row = import_row_validate(raw)
            if isinstance(row, str):
                self.done(raw, Outcome.SKIPPED, row)
                continue
            key = (row.is_agency, row.external_id)
            if key in first_by_external_id:
                self.done(row, Outcome.SKIPPED,
                          f"external id repeated in the file (first on line {first_by_external_id[key]})")
                continue
            if row.balance_client_id in first_by_client:
                self.done(row, Outcome.SKIPPED, f"Balance client {row.balance_client_id} repeated in the file "
                                                f"(first on line {first_by_client[row.balance_client_id]})")
                continue
            first_by_external_id[key] = row.line
            first_by_client[row.balance_client_id] = row.line
            valid.append(row)
        return valid

    def run(self, raw_rows: Sequence[RawRow]) -> ImportReport:
        rows = self.validate(raw_rows)
        agencies = [row for row in rows if row.is_agency]
        customers = [row for row in rows if not row.is_agency]
        try:
            for batch in _chunks(agencies, self.batch_size):
                self.batch(batch)
            for batch in _chunks(customers, self.batch_size):
                self.batch(batch)
        except BalanceError as exc:
            what = "Balance is unreachable" if exc.retryable else "Balance refused a read"
            raise ImportAborted(f"{what} ({exc}).", self.report) from exc
        self.report.results.sort(key=lambda r: r.line)
        return self.report

    # --- one batch ---

    def batch(self, rows: Sequence[ImportRow]) -> None:
        pending = self.check_billing(rows)
        checked = self.check_balance(pending)
        if self.dry_run:
            for item in checked:
                self.done(item.row, Outcome.WOULD_LINK, note=item.note)
            return
        with transaction.atomic():
            for item in checked:
                try:
                    if item.row.is_agency:
                        agency_link_existing(service=self.service, row=item.row, person_id=item.person_id,
                                             contracts=item.contracts)
                    else:
                        customer_link_existing(service=self.service, row=item.row, person_id=item.person_id,
                                               agency=item.agency)
                except LinkConflict as exc:
                    self.done(item.row, Outcome.SKIPPED, str(exc))
                except IntegrityError:
                    self.done(item.row, Outcome.SKIPPED, "external id registered meanwhile by someone else")
                else:
                    self.done(item.row, Outcome.LINKED, note=item.note)

    def check_billing(self, rows: Sequence[ImportRow]) -> list[_Checked]:
        """What billing already has: unchanged rows, conflicts, and the customers' agencies."""
        model: type[Agency | Customer] = Agency if rows[0].is_agency else Customer
        existing = {
            party.external_id: party
            for party in model.objects.filter(service=self.service, external_id__in=[r.external_id for r in rows])
        }
        holders = _client_holders(self.service, [r.balance_client_id for r in rows])
        agencies = {
            agency.external_id: agency
            for agency in Agency.objects.filter(
                service=self.service, external_id__in={r.agency_external_id for r in rows if r.agency_external_id}
            )
        }
        pending = []
        for row in rows:
            party = existing.get(row.external_id)
            if party is not None:
                if party.balance_client_id == row.balance_client_id:
                    self.done(row, Outcome.UNCHANGED)
                elif party.balance_client_id is not None:
                    self.done(row, Outcome.SKIPPED, f"external id already linked to client {party.balance_client_id}")
                else:
                    self.done(row, Outcome.SKIPPED, f"external id already registered in billing without a Balance "
                                                    f"client yet (status {party.status})")
                continue
            holder = holders.get(row.balance_client_id)
            if holder is not None:
                self.done(row, Outcome.SKIPPED, f"Balance client {row.balance_client_id} already linked to {holder}")
                continue
            agency = None
            if row.agency_external_id:
                agency = agencies.get(row.agency_external_id)
                in_file = self.agency_rows.get(row.agency_external_id)
                if agency is None and not (in_file and in_file.outcome == Outcome.WOULD_LINK):
                    if in_file is not None:
                        reason = f"agency {row.agency_external_id} was skipped (line {in_file.line})"
                    else:
                        reason = f"unknown agency {row.agency_external_id} (not in this file, not in billing)"
                    self.done(row, Outcome.SKIPPED, reason)
                    continue
            pending.append(_Checked(row=row, person_id=0, agency=agency))
        return pending

    def check_balance(self, pending: list[_Checked]) -> list[_Checked]:
        """The client exists with the right agency flag and has a usable person. Reads only."""
        if not pending:
            return []
        infos: dict[int, ClientInfo] = {
            info.client_id: info
            for info in _read(self.client.get_client_by_id_batch, [item.row.balance_client_id for item in pending])
        }
        checked = []
        for item in pending:
            row = item.row
            info = infos.get(row.balance_client_id)
            if info is None:
                self.done(row, Outcome.SKIPPED, f"Balance client {row.balance_client_id} not found")
                continue
            if info.is_agency != row.is_agency:
                what = "an agency" if info.is_agency else "not an agency"
                self.done(row, Outcome.SKIPPED, f"Balance client {row.balance_client_id} is {what}, "
                                                f"the row's kind is {row.kind}")
                continue
            try:
                persons = _read(self.client.get_client_persons, row.balance_client_id)
                if row.is_agency:
                    item.contracts = _read(self.client.get_client_contracts, row.balance_client_id)
            except BalanceFinalError as exc:
                self.done(row, Outcome.SKIPPED, f"Balance refused to read client {row.balance_client_id}: {exc}")
                continue
            person, item.note = _pick_person(persons, row)
            if person is None:
                reason = f"Balance client {row.balance_client_id} has no {row.person_type} person"
                self.done(row, Outcome.SKIPPED, f"{reason} ({item.note})" if item.note else reason)
                continue
            item.person_id = person.person_id
            checked.append(item)
        return checked


def customers_import(*, service: ConsumerService, rows: Sequence[RawRow], dry_run: bool = False,
                     batch_size: int = 100, client: BalanceClient | None = None,
                     progress: Callable[[int], Any] | None = None) -> ImportReport:
    """Link the file's existing Balance clients to billing (agencies first). With `dry_run`, check everything,
    Balance included, and write nothing. Raises `ImportAborted` when Balance fails; committed batches stay."""
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
