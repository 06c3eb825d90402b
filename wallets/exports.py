"""The reconciliation statement as CSV (django-import-export, export only): one producer for the API and the
console, so both files agree to the kopeck.

One row per figure and per line, told apart by `section`: `opening_balance`, then each `line` (a ledger
transaction, with its id), then `money_in`, one `spend` row per product, `refunds`, `corrections` and
`closing_balance`. Amounts are plain decimals with a dot (`1500.00`), dates ISO 8601 in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from import_export import fields, resources

from disbalance.money import format_amount
from wallets.selectors import ReconciliationStatement


@dataclass(frozen=True)
class StatementCsvRow:
    section: str
    amount: Decimal
    date: datetime | None = None
    type: str = ""
    product: str = ""
    balance_after: Decimal | None = None
    reference_kind: str = ""
    reference_id: str = ""
    transaction_id: str = ""
    description: str = ""


def _amount(value: Decimal | None) -> str:
    return "" if value is None else format_amount(value)


class StatementResource(resources.Resource):
    section = fields.Field(attribute="section", column_name="section")
    date = fields.Field(column_name="date")
    type = fields.Field(attribute="type", column_name="type")
    product = fields.Field(attribute="product", column_name="product")
    amount = fields.Field(column_name="amount")
    balance_after = fields.Field(column_name="balance_after")
    reference_kind = fields.Field(attribute="reference_kind", column_name="reference_kind")
    reference_id = fields.Field(attribute="reference_id", column_name="reference_id")
    transaction_id = fields.Field(attribute="transaction_id", column_name="transaction_id")
    description = fields.Field(attribute="description", column_name="description")

    class Meta:
        fields = ("section", "date", "type", "product", "amount", "balance_after", "reference_kind",
                  "reference_id", "transaction_id", "description")

    def dehydrate_date(self, row: StatementCsvRow) -> str:
        return row.date.astimezone(UTC).isoformat().replace("+00:00", "Z") if row.date else ""

    def dehydrate_amount(self, row: StatementCsvRow) -> str:
        return _amount(row.amount)

    def dehydrate_balance_after(self, row: StatementCsvRow) -> str:
        return _amount(row.balance_after)


def statement_csv_rows(statement: ReconciliationStatement) -> list[StatementCsvRow]:
    rows = [StatementCsvRow(section="opening_balance", amount=statement.opening_balance)]
    rows += [StatementCsvRow(
        section="line", date=line.date, type=line.type, product=line.product, amount=line.amount,
        balance_after=line.balance_after, reference_kind=line.reference_kind, reference_id=line.reference_id,
        transaction_id=str(line.transaction_id), description=line.description,
    ) for line in statement.lines]
    rows.append(StatementCsvRow(section="money_in", amount=statement.money_in))
    rows += [StatementCsvRow(section="spend", product=product, amount=amount)
             for product, amount in statement.spend.items()]
    rows += [StatementCsvRow(section="refunds", amount=statement.refunds),
             StatementCsvRow(section="corrections", amount=statement.corrections),
             StatementCsvRow(section="closing_balance", amount=statement.closing_balance)]
    return rows


def statement_csv(statement: ReconciliationStatement) -> str:
    """The statement as CSV text (header row first)."""
    return StatementResource().export(statement_csv_rows(statement)).csv


def statement_csv_filename(statement: ReconciliationStatement) -> str:
    return (f"statement-{statement.customer.external_id}-{statement.payer_label}-"
            f"{statement.date_from:%Y-%m-%d}-{statement.date_to:%Y-%m-%d}.csv").replace(":", "_").replace("/", "_")
