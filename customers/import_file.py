"""The import file of `import_customers`: its columns, reading it, checking each row with the API's rules,
and writing the report of skipped rows. The run that checks Balance and links is `customers.importing`."""

from __future__ import annotations

import csv
import enum
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# The API's serializers are the one place where the rules for a customer's and an agency's data live.
from agencies.apis import AgencyCreateSerializer
from customers.apis import CustomerCreateSerializer
from customers.models import Customer

COLUMNS = (
    "external_id", "kind", "balance_client_id", "agency_external_id", "name", "email", "phone", "inn", "kpp",
    "legal_address", "lname", "fname", "mname", "balance_person_id", "long_name", "postal_address", "postcode",
)
REQUIRED_COLUMNS = ("external_id", "kind", "balance_client_id", "name")
KIND_AGENCY = "agency"
KINDS = (Customer.Kind.COMPANY.value, Customer.Kind.INDIVIDUAL.value, KIND_AGENCY)
VALUE_FIELDS = ("name", "email", "phone", "inn", "kpp", "legal_address", "lname", "fname", "mname", "long_name",
                "postal_address", "postcode")
MAX_ID = 2**63 - 1
CHANGED_BY = "command:import_customers"
# Balance reads are safe to repeat: a transient failure is retried after these pauses before the run stops.
READ_RETRY_DELAYS: tuple[float, ...] = (0.2, 1.0)

T = TypeVar("T")


class ImportFileError(Exception):
    """The file cannot be read as an import file (missing, not UTF-8, not CSV, wrong header)."""


class Outcome(enum.StrEnum):
    LINKED = "linked"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    WOULD_LINK = "would_link"


@dataclass(frozen=True)
class RawRow:
    """One data row of the file as read: `line` is the line it starts on (the header is line 1)."""

    line: int
    values: dict[str, str]
    error: str = ""  # set when the row itself is malformed (wrong number of fields)


@dataclass(frozen=True)
class ImportRow:
    """A validated row."""

    line: int
    kind: str
    external_id: str
    balance_client_id: int
    balance_person_id: int | None
    agency_external_id: str | None
    values: dict[str, str]

    @property
    def is_agency(self) -> bool:
        return self.kind == KIND_AGENCY

    @property
    def person_type(self) -> str:
        return "ph" if self.kind == Customer.Kind.INDIVIDUAL else "ur"

    @property
    def label(self) -> str:
        return f"{'agency' if self.is_agency else 'customer'} {self.external_id}"


@dataclass(frozen=True)
class RowResult:
    line: int
    external_id: str
    kind: str
    balance_client_id: str
    outcome: Outcome
    reason: str = ""
    note: str = ""  # something the operator should know about a row that was linked anyway


@dataclass
class ImportReport:
    dry_run: bool = False
    results: list[RowResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = {outcome.value: 0 for outcome in Outcome}
        for result in self.results:
            counts[result.outcome.value] += 1
        return counts

    def skipped(self) -> list[RowResult]:
        return sorted((r for r in self.results if r.outcome == Outcome.SKIPPED), key=lambda r: r.line)

    def noted(self) -> list[RowResult]:
        return sorted((r for r in self.results if r.note), key=lambda r: r.line)


class ImportAborted(Exception):
    """Balance failed (unreachable, or refused a batch read): the run stopped. `report` holds what was done."""

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


class LinkConflict(Exception):
    """Found inside the write transaction: someone linked the external id or the client meanwhile."""


# --- Reading the file ---------------------------------------------------------------------------------------


def import_file_read(path: str | Path) -> list[RawRow]:
    """Read the whole file before anything is done, so an unreadable file changes nothing."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ImportFileError("no such file") from exc
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise ImportFileError(exc.strerror or str(exc)) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise ImportFileError("the file is empty (a header line is expected)")
        columns = [name.strip().lower() for name in header]
        unknown = [name for name in columns if name not in COLUMNS]
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        duplicated = sorted({name for name in columns if columns.count(name) > 1})
        if unknown or missing or duplicated:
            problems = []
            if missing:
                problems.append(f"missing column(s): {', '.join(missing)}")
            if unknown:
                problems.append(f"unknown column(s): {', '.join(unknown)}")
            if duplicated:
                problems.append(f"repeated column(s): {', '.join(duplicated)}")
            raise ImportFileError(f"bad header ({'; '.join(problems)}); columns are: {', '.join(COLUMNS)}")
        rows = []
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields:
                continue  # a blank line
            if len(fields) != len(columns):
                rows.append(RawRow(line=line, values=dict(zip(columns, fields, strict=False)),
                                   error=f"{len(fields)} fields where the header has {len(columns)}"))
                continue
            rows.append(RawRow(line=line, values={name: value.strip() for name, value in zip(columns, fields,
                                                                                          strict=True)}))
    except csv.Error as exc:
        raise ImportFileError(f"line {reader.line_num}: {exc}") from exc
    return rows


# --- Validation (the API's rules) ---------------------------------------------------------------------------


def _flatten(errors: Any, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        return [m for key, value in errors.items() for m in _flatten(value, f"{prefix}{key}." if key else prefix)]
    if isinstance(errors, list):
        return [m for value in errors for m in _flatten(value, prefix)]
    return [f"{prefix.rstrip('.')}: {errors}" if prefix else str(errors)]


def _parse_id(value: str, name: str) -> tuple[int | None, str]:
    if not value:
        return None, ""
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_ID:
        return None, f"{name}: must be a positive whole number, got {value[:40]!r}"
    return int(value), ""


def import_row_validate(raw: RawRow) -> ImportRow | str:
    """The validated row, or the reason it is refused. Uses the API's own serializers: the same rules."""
    if raw.error:
        return raw.error
    values = raw.values
    kind = values.get("kind", "").lower()
    if kind not in KINDS:
        return f"kind: must be one of {', '.join(KINDS)}, got {values.get('kind', '')[:40]!r}"
    client_id, client_error = _parse_id(values.get("balance_client_id", ""), "balance_client_id")
    person_id, person_error = _parse_id(values.get("balance_person_id", ""), "balance_person_id")
    problems = [p for p in (client_error, person_error) if p]
    if client_id is None and not client_error:
        problems.append("balance_client_id: required")
    agency_external_id = values.get("agency_external_id") or None
    legal_fields = ("inn", "kpp", "legal_address") if kind == KIND_AGENCY else ("inn", "kpp", "legal_address",
                                                                             "lname", "fname", "mname")
    data: dict[str, Any] = {
        "external_id": values.get("external_id", ""), "name": values.get("name", ""),
        "email": values.get("email", ""), "phone": values.get("phone", ""),
        "legal": {name: values[name] for name in legal_fields if values.get(name)},
    }
    if kind == KIND_AGENCY:
        serializer: Any = AgencyCreateSerializer(data=data, context={"adopting": True})
        if agency_external_id:
            problems.append("agency_external_id: an agency cannot have an agency")
    else:
        serializer = CustomerCreateSerializer(data={**data, "kind": kind, "agency": agency_external_id},
                                              context={"adopting": True})
    if not serializer.is_valid():
        problems = _flatten(serializer.errors) + problems
    if problems:
        return "; ".join(problems)
    assert client_id is not None
    return ImportRow(
        line=raw.line, kind=kind, external_id=data["external_id"], balance_client_id=client_id,
        balance_person_id=person_id, agency_external_id=agency_external_id,
        values={name: values.get(name, "") for name in VALUE_FIELDS},
    )


def import_report_write(report: ImportReport, path: str | Path) -> None:
    """The skipped rows with their reasons, as CSV (line, external_id, kind, balance_client_id, reason)."""
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "external_id", "kind", "balance_client_id", "reason"])
        for result in report.skipped():
            writer.writerow([result.line, result.external_id, result.kind, result.balance_client_id, result.reason])
