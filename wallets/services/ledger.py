"""The ledger's machinery: account locks, account helpers and `ledger_post` (one balanced transaction).

Locking scheme (style.md: customer -> wallet -> hold): every write to a customer's money runs inside
`transaction.atomic` and takes, in this order,
  1. the customer row (`customers.locks.lock_customer`),
  2. the customer's cached accounts, ordered by id, in one statement by key (`lock_accounts_by_key`; the generic
     `ledger_post` locks by id with `lock_accounts`; re-locking a row is free inside the same transaction),
  3. the caller's own rows (Hold, Charge, ...), after the customer.
It re-reads every figure under the lock and validates it there. Service-wide accounts (`clearing`,
`adjustments`) are never locked nor updated: their balances are not cached, so they are no hot row.
On PostgreSQL the lean charge takes the same locks in the same order inside the database function
`payments_charge_create` (migration `payments.0004`), and posts the same rows as `_post_locked`.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Case, F, OuterRef, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.db.models.lookups import Exact

from agencies.models import Agency
from customers.models import Customer
from disbalance.exceptions import ValidationFailed
from disbalance.locking import TransactionRequired, for_update, require_atomic
from disbalance.models import ConsumerService
from disbalance.money import CENT, ZERO, MoneyField, format_amount
from wallets.exceptions import LedgerCorrupted, LedgerDuplicate, LedgerImbalanced, LedgerInvalidPosting
from wallets.models import Account, LedgerEntry, LedgerTransaction

Kind = Account.Kind
TxType = LedgerTransaction.Type


def _require_atomic(what: str) -> None:
    """`disbalance.locking.require_atomic`, as the ledger's own error (a posting without its locks is invalid)."""
    try:
        require_atomic(what)
    except TransactionRequired as exc:
        raise LedgerInvalidPosting(str(exc)) from exc


# --- locks ----------------------------------------------------------------------------------------------------

def lock_accounts(accounts: Iterable[Account]) -> dict[int, Account]:
    """Lock the accounts (after the customer), in id order, and return fresh rows by id."""
    _require_atomic("lock_accounts")
    ids = sorted({account.pk for account in accounts})
    locked = {account.pk: account for account in for_update(Account.objects.filter(pk__in=ids).order_by("id"))}
    if len(locked) != len(ids):
        raise LedgerInvalidPosting("an account to lock does not exist")
    return locked


def lock_accounts_by_key(keys: Iterable[str]) -> dict[str, Account]:
    """Lock the accounts with these keys (after the customer), in id order, in one statement; return fresh rows
    by key. A key without an account is simply absent (the caller creates it and locks it then)."""
    _require_atomic("lock_accounts_by_key")
    return {account.key: account for account in for_update(Account.objects.filter(key__in=sorted(set(keys)))
                                                              .order_by("id"))}


def _customer_accounts(customer: Customer, payer_agency: Agency | None,
                       wanted: list[tuple[str, str | None]], *, read_holds: bool = False) -> list[Account]:
    """The customer's accounts of these (kind, product code) under the payer, locked (id order) and fresh.

    One statement once the accounts exist; an account's first use creates it (unique key, race-safe) and locks it
    with a second statement. The customer must be locked already. With `read_holds` the payer's holds account
    is read (and locked) in the same statement and appended (None if it does not exist): the event's balance is
    wallet + held, and reading it here costs no statement.
    """
    keys = [account_key(kind=kind, service_id=customer.service_id, customer_id=customer.pk,
                        payer_agency_id=payer_agency.pk if payer_agency else None, product_code=code)
            for kind, code in wanted]
    holds_key = account_key(kind=Kind.HOLDS, service_id=customer.service_id, customer_id=customer.pk,
                            payer_agency_id=payer_agency.pk if payer_agency else None)
    extra = [holds_key] if read_holds else []
    locked = lock_accounts_by_key(keys + extra)
    missing = [(key, kind, code) for key, (kind, code) in zip(keys, wanted, strict=True) if key not in locked]
    if missing:
        for _, kind, code in missing:
            account_get_or_create(service=customer.service, kind=kind, customer=customer, payer_agency=payer_agency,
                                  product_code=code)
        locked = lock_accounts_by_key(keys + extra)
    return [locked[key] for key in keys] + [locked.get(key) for key in extra]  # type: ignore[misc]


# --- accounts -------------------------------------------------------------------------------------------------

def owner_key(*, customer_id: int, payer_agency_id: int | None, product_code: str | None = None) -> str:
    """`c<customer>:p<payer>` (`pself` when the customer pays itself), then `:<product>` for a per-product key.

    The one builder of the tail that customer accounts and Balance orders share (`wallet:c12:p3`,
    `spend:c12:p3:placement`, `child:c12:p3:placement`): it is what joins a child order to its spend account.
    """
    payer = f"p{payer_agency_id}" if payer_agency_id is not None else "pself"
    return f"c{customer_id}:{payer}" + (f":{product_code}" if product_code is not None else "")


def account_key(*, kind: str, service_id: int, customer_id: int | None = None, payer_agency_id: int | None = None,
                product_code: str | None = None) -> str:
    if kind in Account.SERVICE_KINDS:
        return f"{kind}:s{service_id}"
    return f"{kind}:" + owner_key(customer_id=customer_id, payer_agency_id=payer_agency_id,  # type: ignore[arg-type]
                                  product_code=product_code if kind == Kind.SPEND else None)


def account_get_or_create(*, service: ConsumerService, kind: str, customer: Customer | None = None,
                          payer_agency: Agency | None = None, product_code: str | None = None) -> Account:
    """Get or create an account; safe under races (unique `key`, IntegrityError -> read the winner's row)."""
    if kind in Account.CUSTOMER_KINDS:
        if customer is None:
            raise LedgerInvalidPosting(f"a {kind} account needs a customer")
        if customer.service_id != service.pk:
            raise LedgerInvalidPosting("the customer belongs to another service")
        if payer_agency is not None and payer_agency.service_id != service.pk:
            raise LedgerInvalidPosting("the payer agency belongs to another service")
    elif customer is not None or payer_agency is not None:
        raise LedgerInvalidPosting(f"a {kind} account is service-wide")
    if (kind == Kind.SPEND) != bool(product_code):
        raise LedgerInvalidPosting("a product code is needed for spend accounts, and only for them")
    key = account_key(kind=kind, service_id=service.pk, customer_id=customer.pk if customer else None,
                      payer_agency_id=payer_agency.pk if payer_agency else None, product_code=product_code)
    account = Account.objects.filter(key=key).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return Account.objects.create(
                key=key, service=service, kind=kind, customer=customer, payer_agency=payer_agency,
                product_code=product_code or None, currency=service.currency,
                cached=kind in Account.CACHED_KINDS,
            )
    except IntegrityError:
        # Another transaction created it first (it waited on the unique index until that one committed).
        return Account.objects.get(key=key)


def wallet_account_get_or_create(*, customer: Customer, payer_agency: Agency | None) -> Account:
    return account_get_or_create(service=customer.service, kind=Kind.WALLET, customer=customer,
                                 payer_agency=payer_agency)


def holds_account_get_or_create(*, customer: Customer, payer_agency: Agency | None) -> Account:
    return account_get_or_create(service=customer.service, kind=Kind.HOLDS, customer=customer,
                                 payer_agency=payer_agency)


def spend_account_get_or_create(*, customer: Customer, payer_agency: Agency | None, product_code: str) -> Account:
    return account_get_or_create(service=customer.service, kind=Kind.SPEND, customer=customer,
                                 payer_agency=payer_agency, product_code=product_code)


def clearing_account_get_or_create(*, service: ConsumerService) -> Account:
    return account_get_or_create(service=service, kind=Kind.CLEARING)


def adjustments_account_get_or_create(*, service: ConsumerService) -> Account:
    return account_get_or_create(service=service, kind=Kind.ADJUSTMENTS)


# --- posting --------------------------------------------------------------------------------------------------

def _check_amount(amount: object) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise LedgerInvalidPosting(f"ledger amounts are finite Decimals, got {amount!r}")
    if amount != amount.quantize(CENT):
        raise LedgerInvalidPosting(f"ledger amounts have at most 2 decimal places, got {amount}")
    if amount == 0:
        raise LedgerInvalidPosting("a ledger entry cannot be zero")
    return amount.quantize(CENT)


def ledger_post(
    *, service: ConsumerService, type: str, entries: list[tuple[Account, Decimal]],
    customer: Customer | None = None, payer_agency: Agency | None = None, reference_kind: str = "",
    reference_id: str = "", description: str = "", reason: str = "",
    created_by: AbstractBaseUser | None = None, full_check: bool = False,
) -> LedgerTransaction:
    """Post one balanced transaction: insert it and its entries, and move the cached balances.

    Must run inside `transaction.atomic` with the customer already locked (`lock_customer`). Refuses fewer than
    two entries, zero or non-2-place amounts, an account twice, mixed services or currencies, and a non-zero sum.
    Cached accounts are locked here (id order) and read fresh; before posting on top of an account, its cached
    balance must equal the last entry's `balance_after` (cheap check), and with `full_check` the new balance
    must equal the re-summed entries. Any failure raises and, being inside the atomic block, writes nothing.
    """
    _require_atomic("ledger_post")
    amounts, given = _checked_entries(service=service, type=type, entries=entries, customer=customer, reason=reason)
    if reference_id and LedgerTransaction.objects.filter(
        service=service, type=type, reference_kind=reference_kind, reference_id=reference_id
    ).exists():
        raise LedgerDuplicate(f"{type} for {reference_kind} {reference_id} is already in the ledger")
    cached = [account for account in given.values() if account.cached]
    locked = lock_accounts(cached) if cached else {}
    return _post_locked(
        service=service, type=type, amounts=amounts, given=given, locked=locked, customer=customer,
        payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id,
        description=description, reason=reason, created_by=created_by, full_check=full_check,
    )


def _checked_entries(*, service: ConsumerService, type: str, entries: list[tuple[Account, Decimal]],
                     customer: Customer | None, reason: str) -> tuple[dict[int, Decimal], dict[int, Account]]:
    """The posting rules that need no database: returns the amounts and the accounts by account id."""
    if type not in TxType.values:
        raise LedgerInvalidPosting(f"unknown transaction type {type!r}")
    if type in LedgerTransaction.REASON_REQUIRED and not reason.strip():
        raise ValidationFailed("A reason is required.", errors={"reason": ["This field is required."]})
    if len(entries) < 2:
        raise LedgerImbalanced("a ledger transaction needs at least two entries")
    amounts: dict[int, Decimal] = {}
    given: dict[int, Account] = {}
    for account, amount in entries:
        if account.pk is None:
            raise LedgerInvalidPosting("post to saved accounts only")
        if account.pk in amounts:
            raise LedgerInvalidPosting(f"account {account.key} appears twice in one transaction")
        if account.service_id != service.pk:
            raise LedgerInvalidPosting(f"account {account.key} belongs to another service")
        if account.currency != service.currency:
            raise LedgerInvalidPosting(f"account {account.key} is in {account.currency}, not {service.currency}")
        # One customer per transaction: the one whose lock the caller holds.
        if account.customer_id is not None and account.customer_id != (customer.pk if customer else None):
            raise LedgerInvalidPosting(f"account {account.key} is not the transaction customer's")
        amounts[account.pk] = _check_amount(amount)
        given[account.pk] = account
    total = sum(amounts.values(), ZERO)
    if total != 0:
        raise LedgerImbalanced(f"ledger entries sum to {total}, not zero")
    return amounts, given


def _post_locked(
    *, service: ConsumerService, type: str, amounts: dict[int, Decimal], given: dict[int, Account],
    locked: dict[int, Account], customer: Customer | None, payer_agency: Agency | None, reference_kind: str,
    reference_id: str, description: str, reason: str = "", created_by: AbstractBaseUser | None = None,
    full_check: bool = False,
) -> LedgerTransaction:
    """Write a checked transaction whose cached accounts are `locked` (read fresh under their row locks).

    Three statements whatever the number of accounts: the transaction row (its unique reference is the duplicate
    check: `LedgerDuplicate`), one UPDATE of the cached balances that also checks each account's chain (it only
    matches rows whose cached balance equals their last entry's `balance_after`; the UPDATE runs under the row
    locks, so its snapshot sees every earlier entry), and the entries.
    """
    try:
        txn = LedgerTransaction.objects.create(
            service=service, type=type, customer=customer, payer_agency=payer_agency, reference_kind=reference_kind,
            reference_id=reference_id, description=description[:500], reason=reason[:500], created_by=created_by,
        )
    except IntegrityError as exc:
        # Only the reference can clash (the rest is checked above). On PostgreSQL the transaction is now unusable:
        # the error propagates, and the caller's atomic block rolls back to its savepoint.
        raise LedgerDuplicate(f"{type} for {reference_kind} {reference_id} is already in the ledger") from exc
    new_balances = {pk: account.balance + amounts[pk] for pk, account in locked.items()}
    if new_balances:
        last = LedgerEntry.objects.filter(account=OuterRef("pk")).order_by("-id").values("balance_after")[:1]
        chain_intact = Exact(F("balance"), Coalesce(Subquery(last, output_field=MoneyField()),
                                                    Value(ZERO, output_field=MoneyField())))
        moved = Account.objects.filter(pk__in=sorted(new_balances)).filter(chain_intact).update(
            balance=Case(*(When(pk=pk, then=Value(balance)) for pk, balance in new_balances.items()),
                         output_field=MoneyField())
        )
        if moved != len(new_balances):
            _check_last_balance_after(locked)  # names the account and its figures
            raise LedgerCorrupted("a cached balance differs from its last entry's balance_after")
    LedgerEntry.objects.bulk_create(
        LedgerEntry(transaction=txn, account_id=pk, amount=amount, balance_after=new_balances.get(pk))
        for pk, amount in amounts.items()
    )
    for pk, balance in new_balances.items():
        given[pk].balance = locked[pk].balance = balance
    if full_check:
        _check_sums(new_balances)
    return txn


def _check_last_balance_after(locked: dict[int, Account]) -> None:
    """The cached balance read under the lock must be where the account's entry chain ended."""
    if not locked:
        return
    last = LedgerEntry.objects.filter(account=OuterRef("pk")).order_by("-id").values("balance_after")[:1]
    for pk, last_after in Account.objects.filter(pk__in=list(locked)).annotate(
        last_after=Subquery(last, output_field=MoneyField())
    ).values_list("pk", "last_after"):
        expected = last_after if last_after is not None else ZERO
        if locked[pk].balance != expected:
            raise LedgerCorrupted(
                f"account {locked[pk].key}: cached balance {format_amount(locked[pk].balance)} but its last entry"
                f" says {format_amount(expected)}"
            )


def _check_sums(new_balances: dict[int, Decimal]) -> None:
    sums = dict(
        LedgerEntry.objects.filter(account_id__in=list(new_balances)).values("account_id")
        .annotate(total=Sum("amount")).values_list("account_id", "total")
    )
    for pk, balance in new_balances.items():
        if sums.get(pk, ZERO) != balance:
            raise LedgerCorrupted(f"account {pk}: cached balance {format_amount(balance)} but its entries sum to "
                                  f"{format_amount(sums.get(pk, ZERO))}")
