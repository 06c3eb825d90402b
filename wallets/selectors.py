"""Reads of the ledger: the wallet summary, the statement, and the spend per Balance order for reporting.

A customer's *balance* under a payer is wallet + holds of that payer (held money is still the customer's);
`available = balance + overdraft_limit - held`, i.e. wallet + overdraft_limit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Exists, F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from customers.models import Customer
from disbalance.models import ConsumerService
from disbalance.money import ZERO, MoneyField
from wallets.models import Account, LedgerEntry

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
