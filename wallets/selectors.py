"""Reads of the ledger: the wallet summary, the statement, and the spend per Balance order for reporting.

A customer's *balance* under a payer is wallet + holds of that payer (held money is still the customer's);
`available = balance + overdraft_limit - held`, i.e. wallet + overdraft_limit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Exists, F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from agencies.models import Agency
from customers.models import Customer
from disbalance.exceptions import ValidationFailed
from disbalance.models import ConsumerService
from disbalance.money import ZERO, MoneyField
from wallets.exceptions import PayerNotFound
from wallets.models import Account, LedgerEntry, LedgerTransaction

BALANCE_KINDS = (Account.Kind.WALLET, Account.Kind.HOLDS)


@dataclass(frozen=True)
class PayerBalance:
    payer: str | None  # the agency's external_id; None: the customer itself
    balance: Decimal


@dataclass(frozen=True)
class WalletSummary:
    currency: str
    balance: Decimal
    held: Decimal
    overdraft_limit: Decimal
    available: Decimal
    payer: str | None
    other_payers: list[PayerBalance] = field(default_factory=list)


def wallet_summary(customer: Customer, overdraft_limit: Decimal = ZERO) -> WalletSummary:
    """The customer's money under its current payer (`customer.agency`), and non-zero money under other payers.

    One query over the cached balances, so wallet and holds come from the same snapshot.
    """
    per_payer: dict[int | None, dict[str, Decimal]] = {}
    payer_ids: dict[int | None, str | None] = {None: None}
    rows = Account.objects.filter(customer=customer, kind__in=BALANCE_KINDS).values_list(
        "payer_agency_id", "payer_agency__external_id", "kind", "balance"
    )
    for payer_id, payer_external_id, kind, balance in rows:
        per_payer.setdefault(payer_id, {})[kind] = balance
        payer_ids[payer_id] = payer_external_id
    current = per_payer.get(customer.agency_id, {})
    wallet = current.get(Account.Kind.WALLET, ZERO)
    held = current.get(Account.Kind.HOLDS, ZERO)
    others = []
    for payer_id, kinds in sorted(per_payer.items(), key=lambda item: (item[0] is not None, item[0] or 0)):
        if payer_id == customer.agency_id:
            continue
        total = sum(kinds.values(), ZERO)
        if total != 0:
            others.append(PayerBalance(payer=payer_ids[payer_id], balance=total))
    return WalletSummary(
        currency=customer.service.currency,
        balance=wallet + held,
        held=held,
        overdraft_limit=overdraft_limit,
        available=wallet + overdraft_limit,
        payer=customer.agency.external_id if customer.agency_id else None,
        other_payers=others,
    )


@dataclass(frozen=True)
class StatementRow:
    """One statement line: a ledger transaction's effect on the customer's balance under one payer.

    `amount` is the signed change of wallet + holds (so holds and releases are 0.00, a capture is -captured);
    `held_change`/`held_after` show the holds side. A transfer between payers yields two rows with the same id.
    """

    id: uuid.UUID
    type: str
    amount: Decimal
    balance_after: Decimal
    held_change: Decimal
    held_after: Decimal
    payer: str | None
    reference: dict[str, str]
    created_at: datetime
    description: str
    reason: str


def _customer_lines(customer_id: int) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(account__customer_id=customer_id, account__kind__in=BALANCE_KINDS).annotate(
        payer_key=Coalesce("account__payer_agency_id", Value(0))
    )


def statement(customer: Customer, type: str | None = None, since: datetime | None = None,
              until: datetime | None = None) -> QuerySet[LedgerEntry]:
    """The statement as a queryset, newest first (`-id`, cursor-paginatable): one row per (transaction, payer).

    Each row is the last entry of that transaction on the customer's wallet/holds under that payer, annotated
    with `line_amount`, `line_held_change`, `line_wallet_after`, `line_held_after` and `line_balance_after`;
    turn rows into `StatementRow` with `statement_row`. `since` is inclusive, `until` exclusive.
    """
    same_line = _customer_lines(customer.pk).filter(
        transaction_id=OuterRef("transaction_id"), payer_key=OuterRef("payer_key")
    )

    def line_sum(qs: QuerySet[LedgerEntry]) -> Coalesce:
        total = qs.order_by().values("transaction_id").annotate(total=Sum("amount")).values("total")[:1]
        return Coalesce(Subquery(total, output_field=MoneyField()), Value(ZERO), output_field=MoneyField())

    def after(kind: str) -> Coalesce:
        last = (
            _customer_lines(customer.pk)
            .filter(account__kind=kind, payer_key=OuterRef("payer_key"), id__lte=OuterRef("id"))
            .order_by("-id").values("balance_after")[:1]
        )
        return Coalesce(Subquery(last, output_field=MoneyField()), Value(ZERO), output_field=MoneyField())

    qs = (
        _customer_lines(customer.pk)
        .filter(~Exists(same_line.filter(id__gt=OuterRef("id"))))
        .annotate(
            line_amount=line_sum(same_line),
            line_held_change=line_sum(same_line.filter(account__kind=Account.Kind.HOLDS)),
            line_wallet_after=after(Account.Kind.WALLET),
            line_held_after=after(Account.Kind.HOLDS),
        )
        .annotate(line_balance_after=F("line_wallet_after") + F("line_held_after"))
        .select_related("transaction", "account__payer_agency")
        .order_by("-id")
    )
    if type:
        qs = qs.filter(transaction__type=type)
    if since is not None:
        qs = qs.filter(transaction__created_at__gte=since)
    if until is not None:
        qs = qs.filter(transaction__created_at__lt=until)
    return qs


def statement_row(entry: LedgerEntry) -> StatementRow:
    txn = entry.transaction
    payer = entry.account.payer_agency
    return StatementRow(
        id=txn.public_id,
        type=txn.type,
        amount=entry.line_amount,  # type: ignore[attr-defined]
        balance_after=entry.line_balance_after,  # type: ignore[attr-defined]
        held_change=entry.line_held_change,  # type: ignore[attr-defined]
        held_after=entry.line_held_after,  # type: ignore[attr-defined]
        payer=payer.external_id if payer else None,
        reference={"kind": txn.reference_kind, "id": txn.reference_id},
        created_at=txn.created_at,
        description=txn.description,
        reason=txn.reason,
    )


def statement_rows(customer: Customer, **filters: object) -> list[StatementRow]:
    """The whole statement as rows (tests, admin, small customers); the API paginates `statement()` instead."""
    return [statement_row(entry) for entry in statement(customer, **filters)]  # type: ignore[arg-type]


def spend_by_order(*, service: ConsumerService | None = None, customer: Customer | None = None) -> QuerySet[Account]:
    """Cumulative spend per (customer, payer, product) = the completion of that Balance child order.

    Each spend account's `balance` is the cumulative total to report with UpdateCampaigns. The reporting job
    should compare it with what it last reported per order (not track entry ids: ids of concurrent transactions
    commit out of order, so "entries after id N" can miss one that committed late).
    """
    qs = Account.objects.filter(kind=Account.Kind.SPEND)
    if service is not None:
        qs = qs.filter(service=service)
    if customer is not None:
        qs = qs.filter(customer=customer)
    return qs.select_related("customer", "payer_agency").order_by("id")


# --- The reconciliation statement (акт сверки) ---------------------------------------------------------------


@dataclass(frozen=True)
class ReconciliationLine:
    """One ledger transaction's effect on the balance (wallet + held) under the statement's payer.

    `transaction_id` is the ledger transaction's public id (what the wallet statement calls `id`); `product` is
    the product whose spend account the transaction moved (charges, captures, refunds), "" otherwise.
    """

    transaction_id: uuid.UUID
    date: datetime
    type: str
    product: str
    amount: Decimal
    balance_after: Decimal
    reference_kind: str
    reference_id: str
    description: str


@dataclass(frozen=True)
class ReconciliationStatement:
    """The reconciliation statement of one customer, one payer and a period of days `[date_from, date_to]`.

    Invariant: `closing_balance == opening_balance + money_in - sum(spend) + refunds + corrections`, and every
    line's `balance_after` is the running sum from `opening_balance` (holds and releases move 0.00: held money
    is still the customer's). Money in = top-ups; spend = charges and captures per product; refunds are
    positive; corrections are adjustments and transfers between payers (signed).
    """

    customer: Customer
    payer: Agency | None
    date_from: date
    date_to: date
    currency: str
    opening_balance: Decimal
    money_in: Decimal
    spend: dict[str, Decimal]
    refunds: Decimal
    corrections: Decimal
    closing_balance: Decimal
    lines: list[ReconciliationLine]

    @property
    def payer_label(self) -> str:
        return self.payer.external_id if self.payer is not None else "self"

    @property
    def spend_total(self) -> Decimal:
        return sum(self.spend.values(), ZERO)


SPEND_TYPES = (LedgerTransaction.Type.CHARGE, LedgerTransaction.Type.CAPTURE)
CORRECTION_TYPES = (LedgerTransaction.Type.ADJUSTMENT, LedgerTransaction.Type.TRANSFER)


def statement_payer(customer: Customer, payer: str | None) -> Agency | None:
    """The payer a statement is for: an agency's external id, "self" (the customer pays itself), or None / ""
    for the customer's current payer. Raises `PayerNotFound` for an agency the customer never paid through."""
    if not payer:
        return customer.agency
    if payer == "self":
        return None
    agency = Agency.objects.filter(service_id=customer.service_id, external_id=payer).first()
    if agency is None:
        raise PayerNotFound(f"No payer {payer!r} for customer {customer.external_id!r}.")
    return agency


def period_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """A period of whole days in the project's time zone: [start of `date_from`, start of the day after `date_to`)."""
    zone = timezone.get_default_timezone()
    start = datetime.combine(date_from, time.min, tzinfo=zone)
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def reconciliation_statement(*, customer: Customer, payer: Agency | None, date_from: date,
                             date_to: date) -> ReconciliationStatement:
    """The statement of `customer` under `payer` for the days `date_from`..`date_to` (both included).

    Lines are the ledger transactions of the period in ledger order (by id) whose entries touch the customer's
    wallet, holds or spend accounts under that payer; the opening balance is the sum of that payer's wallet and
    holds entries of every transaction before the period.
    """
    if date_from > date_to:
        raise ValidationFailed("`from` must not be after `to`.", errors={"from": ["Must not be after `to`."]})
    start, end = period_bounds(date_from, date_to)
    entries = LedgerEntry.objects.filter(
        account__customer=customer, account__payer_agency=payer,
        account__kind__in=(*BALANCE_KINDS, Account.Kind.SPEND),
    )
    opening = entries.filter(account__kind__in=BALANCE_KINDS, transaction__created_at__lt=start).aggregate(
        total=Sum("amount"))["total"] or ZERO
    in_period = (entries.filter(transaction__created_at__gte=start, transaction__created_at__lt=end)
                 .select_related("transaction", "account").order_by("transaction_id", "id"))
    grouped: dict[int, list[LedgerEntry]] = {}
    for entry in in_period:
        grouped.setdefault(entry.transaction_id, []).append(entry)

    balance, money_in, refunds, corrections = opening, ZERO, ZERO, ZERO
    spend: dict[str, Decimal] = {}
    lines = []
    for legs in grouped.values():
        txn = legs[0].transaction
        amount = sum((leg.amount for leg in legs if leg.account.kind in BALANCE_KINDS), ZERO)
        product = next((leg.account.product_code or "" for leg in legs if leg.account.kind == Account.Kind.SPEND), "")
        if txn.type == LedgerTransaction.Type.TOPUP:
            money_in += amount
        elif txn.type in SPEND_TYPES:
            spend[product] = spend.get(product, ZERO) - amount
        elif txn.type == LedgerTransaction.Type.REFUND:
            refunds += amount
        elif txn.type in CORRECTION_TYPES:
            corrections += amount
        balance += amount
        lines.append(ReconciliationLine(
            transaction_id=txn.public_id, date=txn.created_at, type=txn.type, product=product, amount=amount,
            balance_after=balance, reference_kind=txn.reference_kind, reference_id=txn.reference_id,
            # A correction shows its reason and what it did to Balance (its description: "Balance not changed...").
            description=(f"{txn.reason} · {txn.description}" if txn.type in CORRECTION_TYPES and txn.reason
                         and txn.description else txn.reason or txn.description),
        ))
    return ReconciliationStatement(
        customer=customer, payer=payer, date_from=date_from, date_to=date_to,
        currency=customer.service.currency,
        opening_balance=opening, money_in=money_in, spend=dict(sorted(spend.items())), refunds=refunds,
        corrections=corrections, closing_balance=balance, lines=lines,
    )
