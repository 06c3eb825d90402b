"""Reads of overdrafts, agency credit, debt and blocks (no locks; the services re-read under their locks).

Limits:
- `overdraft_limit(customer)`: a direct customer's overdraft. 0 for a customer served by an agency, whatever
  Balance sent for it. Otherwise Balance's granted limit (0 when Balance has none, or bans the overdraft),
  adjusted by support's open override: a lowering override caps it (min), a raising one lifts it (max) until
  it expires. A ban wins over any override: Balance says the client is overdue there.
- `agency_credit_room(customer, agency)`: how far the customer's wallet under the agency may go below zero: the
  credit limit of the agency's active postpaid contract for the service, minus what the agency's other
  customers use (max(0, -wallet) each). 0 without such a contract.
- `effective_overdraft_limit(customer)`: what the customer's *current* payer may go below zero (the overdraft,
  or the agency credit room): the `overdraft_limit` of the wallet API, so that its `available` is what a charge
  may take.

Debt: the customer's own debt is max(0, -(wallet + held)) under itself as payer (held money is not spent yet;
a capture turns it into debt). Money spent on an agency's credit is the agency's debt to Balance, invoiced under
its contract: it has no due date and never blocks the customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef, Subquery, Sum
from django.utils import timezone

from agencies.models import Agency, Contract
from customers.models import Customer
from disbalance.money import ZERO, MoneyField
from overdrafts.models import AgencyCredit, Block, LimitOverride, Overdraft
from wallets.models import Account

BALANCE_KINDS = (Account.Kind.WALLET, Account.Kind.HOLDS)


# --- the ledger, as overdrafts see it ---------------------------------------------------------------------

def payer_balance(*, customer_id: int, payer_id: int | None) -> Decimal:
    """wallet + held of the customer under the payer (None: itself), from the cached balances."""
    total = Account.objects.filter(customer_id=customer_id, payer_agency_id=payer_id, kind__in=BALANCE_KINDS
                                   ).aggregate(total=Sum("balance"))["total"]
    return total if total is not None else ZERO


def own_debt(*, customer_id: int) -> Decimal:
    """The customer's own (overdraft) debt: max(0, -(wallet + held)) under itself as payer."""
    return max(ZERO, -payer_balance(customer_id=customer_id, payer_id=None))


def own_debt_and_overdraft(*, customer_id: int) -> tuple[Decimal, bool]:
    """`own_debt` and whether the customer has an Overdraft row, in one statement (the debt hook's first read)."""
    balance = (Account.objects.filter(customer_id=OuterRef("pk"), payer_agency__isnull=True, kind__in=BALANCE_KINDS)
               .order_by().values("customer_id").annotate(total=Sum("balance")).values("total"))
    total, has_overdraft = Customer.objects.filter(pk=customer_id).annotate(
        balance=Subquery(balance, output_field=MoneyField()),
        has_overdraft=Exists(Overdraft.objects.filter(customer_id=OuterRef("pk"))),
    ).values_list("balance", "has_overdraft").get()
    return max(ZERO, -(total if total is not None else ZERO)), has_overdraft


def agency_credit_used(*, agency: Agency, exclude_customer_id: int | None = None) -> Decimal:
    """Credit of the agency in use: the sum over its customers of max(0, -wallet under the agency)."""
    qs = Account.objects.filter(kind=Account.Kind.WALLET, payer_agency=agency, balance__lt=0)
    if exclude_customer_id is not None:
        qs = qs.exclude(customer_id=exclude_customer_id)
    total = qs.aggregate(total=Sum("balance"))["total"]
    return -total if total is not None else ZERO


# --- limits ---------------------------------------------------------------------------------------------------

def active_override(*, customer: Customer, now: datetime | None = None) -> LimitOverride | None:
    now = now or timezone.now()
    override = LimitOverride.objects.filter(customer=customer, ended_at__isnull=True).first()
    return override if override is not None and override.active_at(now) else None


def granted_limit(*, overdraft: Overdraft | None) -> Decimal:
    """What Balance grants and allows now: 0 without an overdraft in Balance or under a ban."""
    if overdraft is None or not overdraft.in_balance or overdraft.banned:
        return ZERO
    return overdraft.granted_limit


_UNREAD = object()


def overdraft_limit(*, customer: Customer, now: datetime | None = None, overdraft: Any = _UNREAD) -> Decimal:
    """The effective overdraft limit of a direct customer (0 while it is served by an agency). `overdraft`: the
    customer's row if the caller has already read it (None: it has none)."""
    if customer.agency_id is not None:
        return ZERO
    if overdraft is _UNREAD:
        overdraft = Overdraft.objects.filter(customer=customer).first()
    granted = granted_limit(overdraft=overdraft)
    if overdraft is not None and overdraft.banned:
        return ZERO
    override = active_override(customer=customer, now=now)
    if override is None:
        return granted
    return max(override.limit, granted) if override.raises else min(override.limit, granted)


def postpaid_contract(*, agency: Agency, on: date | None = None) -> Contract | None:
    """The agency's first (lowest Balance id) active postpaid contract for its service, valid on the day."""
    on = on or timezone.localdate()
    service_id = agency.service.balance_service_id
    for contract in agency.contracts.filter(active=True, payment_type=Contract.PaymentType.POSTPAID
                                            ).order_by("balance_contract_id"):
        if contract.valid_on(day=on, balance_service_id=service_id):
            return contract
    return None


def agency_credit_limit(*, contract: Contract, credit: AgencyCredit | None) -> Decimal:
    """The contract's credit limit: Balance's LIMIT_TOTAL if read after the contract was, else CREDIT_LIMIT."""
    if (credit is not None and credit.balance_limit_total is not None
            and credit.balance_contract_id == contract.balance_contract_id
            and credit.balance_refreshed_at is not None and credit.balance_refreshed_at >= contract.refreshed_at):
        return credit.balance_limit_total
    return contract.credit_limit


def agency_credit_room(*, customer: Customer, agency: Agency) -> Decimal:
    """How far the customer's wallet under the agency may go below zero (no lock: a preview)."""
    contract = postpaid_contract(agency=agency)
    if contract is None:
        return ZERO
    limit = agency_credit_limit(contract=contract, credit=AgencyCredit.objects.filter(agency=agency).first())
    return max(ZERO, limit - agency_credit_used(agency=agency, exclude_customer_id=customer.pk))


def effective_overdraft_limit(*, customer: Customer) -> Decimal:
    """What the customer's current payer may take its wallet below zero: the overdraft, or the agency credit."""
    if customer.agency_id is None:
        return overdraft_limit(customer=customer)
    return agency_credit_room(customer=customer, agency=customer.agency)  # type: ignore[arg-type]


# --- debt and blocks ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DebtStatus:
    debt: Decimal
    due_at: datetime | None
    overdue: bool


def debt_status(*, customer: Customer, now: datetime | None = None) -> DebtStatus:
    """The customer's own debt, its due date, and whether it is past due (as the ledger and the clock say now)."""
    now = now or timezone.now()
    debt = own_debt(customer_id=customer.pk)
    overdraft = Overdraft.objects.filter(customer=customer).first()
    due_at = overdraft.due_at if overdraft is not None and debt > 0 else None
    return DebtStatus(debt=debt, due_at=due_at, overdue=due_at is not None and due_at <= now)


@dataclass(frozen=True)
class OverdraftStatus:
    limit: Decimal
    granted_by_balance: Decimal
    spent: Decimal
    due_at: datetime | None
    overdue: bool
    blocked: bool


def overdraft_status(*, customer: Customer) -> OverdraftStatus:
    """`GET /customers/{id}/overdraft`. `spent` is the customer's own debt from the ledger, up to date at once
    (Balance's OverdraftSpent lags: it follows the spend reported to it, and is shown to support only).
    `granted_by_balance` is 0 for a customer served by an agency."""
    now = timezone.now()
    debt = debt_status(customer=customer, now=now)
    overdraft = Overdraft.objects.filter(customer=customer).first()
    granted = ZERO if customer.agency_id is not None or overdraft is None or not overdraft.in_balance \
        else overdraft.granted_limit
    return OverdraftStatus(
        limit=overdraft_limit(customer=customer, now=now), granted_by_balance=granted, spent=debt.debt,
        due_at=debt.due_at, overdue=debt.overdue, blocked=customer.blocked,
    )


def open_blocks(*, customer: Customer) -> list[Block]:
    return list(Block.objects.filter(customer=customer, lifted_at__isnull=True).order_by("kind"))
