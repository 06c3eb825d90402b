"""Every write to the ledger: locking helpers, account helpers, `ledger_post`, and the wallet operations.

Locking scheme (style.md: customer -> wallet -> hold): every write to a customer's money runs inside
`transaction.atomic` and takes, in this order,
  1. the customer row (`customers.locks.lock_customer`),
  2. the customer's cached accounts, ordered by id, in one statement by key (`lock_accounts_by_key`; the generic
     `ledger_post` locks by id with `lock_accounts`; re-locking a row is free inside the same transaction),
  3. the caller's own rows (Hold, Charge, ...), after the customer.
It re-reads every figure under the lock and validates it there. Service-wide accounts (`clearing`,
`adjustments`) are never locked nor updated: their balances are not cached, so they are no hot row.
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
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.events import MoneyEvent, event_emit_money
from disbalance.exceptions import InsufficientFunds, InvalidState, ValidationFailed
from disbalance.locking import TransactionRequired, for_update, require_atomic
from disbalance.models import ConsumerService
from disbalance.money import CENT, ZERO, MoneyField, format_amount
from disbalance.reasons import required_reason
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


# --- wallet operations ----------------------------------------------------------------------------------------

def _positive(amount: Decimal, field: str = "amount") -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount != amount.quantize(CENT) or amount <= 0:
        raise ValidationFailed(f"{field} must be a positive amount with at most 2 places",
                               errors={field: ["Must be a positive amount with at most 2 decimal places."]})
    return amount.quantize(CENT)


def _lock(customer: Customer, payer_agency: Agency | None, customer_locked: bool = False) -> Customer:
    if customer_locked:
        # The caller (a payments service) locked the customer in this transaction and passes that fresh row.
        _require_atomic("a wallet operation on a locked customer")
        locked = customer
    else:
        locked = lock_customer(customer.pk)
    if payer_agency is not None and payer_agency.service_id != locked.service_id:
        raise LedgerInvalidPosting("the payer agency belongs to another service")
    return locked


def _funds_check(wallet: Account, amount: Decimal, overdraft_limit: Decimal) -> None:
    available = wallet.balance + overdraft_limit
    if amount > available:
        raise InsufficientFunds(f"{format_amount(amount)} exceeds the available {format_amount(available)}")


def _post(customer: Customer, payer_agency: Agency | None, type: str, entries: list[tuple[Account, Decimal]],
          locked: list[Account], reference_kind: str, reference_id: str, description: str) -> LedgerTransaction:
    """Post on accounts the operation has just locked (`_customer_accounts`): no second lock, no duplicate
    SELECT (the reference's unique constraint answers that)."""
    service = customer.service
    amounts, given = _checked_entries(service=service, type=type, entries=entries, customer=customer, reason="")
    return _post_locked(
        service=service, type=type, amounts=amounts, given=given,
        locked={account.pk: account for account in locked if account.cached}, customer=customer,
        payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id, description=description,
    )


def _announce(customer: Customer, payer_agency: Agency | None, event: MoneyEvent, amount: Decimal, wallet: Account,
              holds: Account | None, change: Decimal, extra: dict | None = None) -> None:
    """The operation's event, in its transaction: the payer's balance (wallet + held) right after it."""
    held = holds.balance if holds is not None else ZERO
    event_emit_money(customer=customer, payer=payer_agency, event=event, amount=amount, balance=wallet.balance + held,
                     held=held, balance_change=change, extra=extra)


def _event(event: MoneyEvent | None, default: str) -> MoneyEvent:
    return event if event is not None else MoneyEvent(type=default, data={})


# Every operation announces itself with one event (`event` gives its type and fields; a default type otherwise):
# a consumer applying the events follows every ledger movement of a customer's wallets.
# Each operation below locks the customer (unless the caller passes `customer_locked=True` with the row it locked
# in this transaction: then there is no second lock and no savepoint), then its accounts in one statement.

def wallet_credit_topup(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, reference_kind: str = "",
    reference_id: str = "", description: str = "", customer_locked: bool = False, event: MoneyEvent | None = None,
) -> LedgerTransaction:
    """Money received from Balance for this customer under this payer: wallet +X / clearing -X."""
    with transaction.atomic(savepoint=not customer_locked):
        amount = _positive(amount)
        customer = _lock(customer, payer_agency, customer_locked)
        wallet, holds = _customer_accounts(customer, payer_agency, [(Kind.WALLET, None)], read_holds=True)
        clearing = clearing_account_get_or_create(service=customer.service)
        txn = _post(customer, payer_agency, TxType.TOPUP, [(wallet, amount), (clearing, -amount)], [wallet],
                    reference_kind, reference_id, description)
        _announce(customer, payer_agency, _event(event, "money.received"), amount, wallet, holds, amount)
        return txn


def wallet_credit_opening_balance(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, reference_id: str, description: str = "",
) -> LedgerTransaction:
    """An opening balance: free money of an order the consumer had in Balance before billing, adopted into this
    payer's wallet (wallet +X / clearing -X, type `migration`, reference `legacy_order` + the order's key), so that
    each legacy order's money enters the ledger once. Announced as `money.received` (paid in Balance, not through
    a top-up) with the legacy order, so a consumer applying events follows it."""
    with transaction.atomic():
        amount = _positive(amount)
        customer = _lock(customer, payer_agency, False)
        wallet, holds = _customer_accounts(customer, payer_agency, [(Kind.WALLET, None)], read_holds=True)
        clearing = clearing_account_get_or_create(service=customer.service)
        txn = _post(customer, payer_agency, TxType.MIGRATION, [(wallet, amount), (clearing, -amount)], [wallet],
                    "legacy_order", reference_id, description)
        event = MoneyEvent(type="money.received", data={"legacy_order": reference_id, "migration": True})
        _announce(customer, payer_agency, event, amount, wallet, holds, amount)
        return txn


def wallet_charge(
    *, customer: Customer, payer_agency: Agency | None, product_code: str, amount: Decimal,
    overdraft_limit: Decimal = ZERO, reference_kind: str = "", reference_id: str = "", description: str = "",
    customer_locked: bool = False, event: MoneyEvent | None = None,
) -> LedgerTransaction:
    """An immediate charge: wallet -X / spend +X. `InsufficientFunds` (writing nothing) if X > wallet + overdraft."""
    with transaction.atomic(savepoint=not customer_locked):
        amount = _positive(amount)
        customer = _lock(customer, payer_agency, customer_locked)
        wallet, spend, holds = _customer_accounts(customer, payer_agency,
                                                  [(Kind.WALLET, None), (Kind.SPEND, product_code)], read_holds=True)
        _funds_check(wallet, amount, overdraft_limit)
        txn = _post(customer, payer_agency, TxType.CHARGE, [(wallet, -amount), (spend, amount)], [wallet, spend],
                    reference_kind, reference_id, description)
        _announce(customer, payer_agency, _event(event, "charge.succeeded"), amount, wallet, holds, -amount,
                  {"product": product_code})
        return txn


def wallet_hold(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, overdraft_limit: Decimal = ZERO,
    reference_kind: str = "", reference_id: str = "", description: str = "", customer_locked: bool = False,
    event: MoneyEvent | None = None,
) -> LedgerTransaction:
    """Reserve money: wallet -X / holds +X. Same funds check as a charge."""
    with transaction.atomic(savepoint=not customer_locked):
        amount = _positive(amount)
        customer = _lock(customer, payer_agency, customer_locked)
        wallet, holds = _customer_accounts(customer, payer_agency, [(Kind.WALLET, None), (Kind.HOLDS, None)])
        _funds_check(wallet, amount, overdraft_limit)
        txn = _post(customer, payer_agency, TxType.HOLD, [(wallet, -amount), (holds, amount)], [wallet, holds],
                    reference_kind, reference_id, description)
        _announce(customer, payer_agency, _event(event, "hold.created"), amount, wallet, holds, ZERO)
        return txn


def _holds_check(holds: Account, hold_amount: Decimal) -> None:
    if hold_amount > holds.balance:
        raise InvalidState(f"{format_amount(hold_amount)} is more than the {format_amount(holds.balance)} held")


def wallet_release(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, reference_kind: str = "",
    reference_id: str = "", description: str = "", customer_locked: bool = False, event: MoneyEvent | None = None,
) -> LedgerTransaction:
    """Give held money back: holds -X / wallet +X."""
    with transaction.atomic(savepoint=not customer_locked):
        amount = _positive(amount)
        customer = _lock(customer, payer_agency, customer_locked)
        wallet, holds = _customer_accounts(customer, payer_agency, [(Kind.WALLET, None), (Kind.HOLDS, None)])
        _holds_check(holds, amount)
        txn = _post(customer, payer_agency, TxType.RELEASE, [(holds, -amount), (wallet, amount)], [wallet, holds],
                    reference_kind, reference_id, description)
        _announce(customer, payer_agency, _event(event, "hold.released"), amount, wallet, holds, ZERO)
        return txn


def wallet_capture(
    *, customer: Customer, payer_agency: Agency | None, product_code: str, hold_amount: Decimal,
    captured: Decimal, reference_kind: str = "", reference_id: str = "", description: str = "",
    customer_locked: bool = False, event: MoneyEvent | None = None,
) -> LedgerTransaction:
    """Capture `captured` of a hold of `hold_amount`, releasing the rest: holds -h / spend +c / wallet +(h-c)."""
    with transaction.atomic(savepoint=not customer_locked):
        hold_amount = _positive(hold_amount, "hold_amount")
        if not isinstance(captured, Decimal) or not captured.is_finite() or captured != captured.quantize(CENT) \
                or not ZERO <= captured <= hold_amount:
            raise ValidationFailed("captured must be between 0 and the held amount",
                                   errors={"amount": ["Must be between 0 and the held amount."]})
        customer = _lock(customer, payer_agency, customer_locked)
        wanted: list[tuple[str, str | None]] = [(Kind.WALLET, None), (Kind.HOLDS, None)]
        if captured > 0:
            wanted.append((Kind.SPEND, product_code))
        wallet, holds, *spend = _customer_accounts(customer, payer_agency, wanted)
        _holds_check(holds, hold_amount)
        entries: list[tuple[Account, Decimal]] = [(holds, -hold_amount)]
        if captured > 0:
            entries.append((spend[0], captured))
        if hold_amount - captured > 0:
            entries.append((wallet, hold_amount - captured))
        txn = _post(customer, payer_agency, TxType.CAPTURE, entries, [account for account, _ in entries],
                    reference_kind, reference_id, description)
        _announce(customer, payer_agency, _event(event, "hold.captured"), captured, wallet, holds, -captured,
                  {"product": product_code, "captured": format_amount(captured),
                   "released": format_amount(hold_amount - captured)})
        return txn


def wallet_refund(
    *, customer: Customer, payer_agency: Agency | None, product_code: str, amount: Decimal,
    reference_kind: str = "", reference_id: str = "", description: str = "", customer_locked: bool = False,
    event: MoneyEvent | None = None,
) -> LedgerTransaction:
    """Give spent money back: spend -X / wallet +X; never takes the spend account below zero.

    The per-charge limit (refunds never exceed what that charge took) is the caller's check, on its Charge row.
    """
    with transaction.atomic(savepoint=not customer_locked):
        amount = _positive(amount)
        customer = _lock(customer, payer_agency, customer_locked)
        wallet, spend, holds = _customer_accounts(customer, payer_agency,
                                                  [(Kind.WALLET, None), (Kind.SPEND, product_code)], read_holds=True)
        if amount > spend.balance:
            raise InvalidState(f"refund {format_amount(amount)} is more than the {format_amount(spend.balance)}"
                               f" spent on {product_code}")
        txn = _post(customer, payer_agency, TxType.REFUND, [(spend, -amount), (wallet, amount)], [wallet, spend],
                    reference_kind, reference_id, description)
        _announce(customer, payer_agency, _event(event, "refund.succeeded"), amount, wallet, holds, amount,
                  {"product": product_code})
        return txn


def _holds_account(customer: Customer, payer_agency: Agency | None) -> Account | None:
    return Account.objects.filter(key=account_key(
        kind=Kind.HOLDS, service_id=customer.service_id, customer_id=customer.pk,
        payer_agency_id=payer_agency.pk if payer_agency else None)).first()


@transaction.atomic
def wallet_adjust(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, reason: str,
    created_by: AbstractBaseUser | None, reference_kind: str = "", reference_id: str = "", description: str = "",
    event: MoneyEvent | None = None,
) -> LedgerTransaction:
    """A support correction of the wallet by a signed amount: wallet +X / adjustments -X (or the reverse).

    No funds check: a correction may take the wallet below zero (e.g. reversing money credited twice).
    """
    reason = required_reason(reason)
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount != amount.quantize(CENT) or amount == 0:
        raise ValidationFailed("amount must be a non-zero amount with at most 2 places",
                               errors={"amount": ["Must be a non-zero amount with at most 2 decimal places."]})
    customer = _lock(customer, payer_agency)
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=payer_agency)
    adjustments = adjustments_account_get_or_create(service=customer.service)
    lock_accounts([wallet])
    txn = ledger_post(
        service=customer.service, type=TxType.ADJUSTMENT, entries=[(wallet, amount), (adjustments, -amount)],
        customer=customer, payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id,
        description=description, reason=reason, created_by=created_by,
    )
    _announce(customer, payer_agency, _event(event, "wallet.adjusted"), amount, wallet,
              _holds_account(customer, payer_agency), amount, {"reason": reason, "transaction": str(txn.public_id)})
    return txn


@transaction.atomic
def wallet_transfer(
    *, customer: Customer, from_payer: Agency | None, to_payer: Agency | None, amount: Decimal, reason: str,
    created_by: AbstractBaseUser | None, reference_kind: str = "", reference_id: str = "", description: str = "",
) -> LedgerTransaction:
    """Move free money between two payer wallets of one customer: from -X / to +X (never held money).

    The transaction's `payer_agency` is `from_payer` (whose money moves); the statement shows both sides.
    """
    reason = required_reason(reason)
    amount = _positive(amount)
    from_id = from_payer.pk if from_payer else None
    to_id = to_payer.pk if to_payer else None
    if from_id == to_id:
        raise ValidationFailed("from and to payer are the same", errors={"to_payer": ["Must differ from from_payer."]})
    customer = _lock(customer, from_payer)
    if to_payer is not None and to_payer.service_id != customer.service_id:
        raise LedgerInvalidPosting("the payer agency belongs to another service")
    source = wallet_account_get_or_create(customer=customer, payer_agency=from_payer)
    target = wallet_account_get_or_create(customer=customer, payer_agency=to_payer)
    locked = lock_accounts([source, target])
    _funds_check(locked[source.pk], amount, ZERO)
    txn = ledger_post(
        service=customer.service, type=TxType.TRANSFER, entries=[(source, -amount), (target, amount)],
        customer=customer, payer_agency=from_payer, reference_kind=reference_kind, reference_id=reference_id,
        description=description, reason=reason, created_by=created_by,
    )
    target_holds = _holds_account(customer, to_payer)
    to_balance = target.balance + (target_holds.balance if target_holds is not None else ZERO)
    _announce(customer, from_payer, MoneyEvent(type="wallet.transferred", data={}), amount, source,
              _holds_account(customer, from_payer), -amount,
              {"reason": reason, "transaction": str(txn.public_id),
               "to_payer": to_payer.external_id if to_payer else None, "to_balance": format_amount(to_balance)})
    return txn


@transaction.atomic
def wallet_alerts_set(*, customer: Customer, low_balance: Decimal | None) -> Customer:
    """The customer's `wallet.low_balance` threshold (None: the service's default applies)."""
    if low_balance is not None and (not isinstance(low_balance, Decimal) or not low_balance.is_finite()
                                    or low_balance != low_balance.quantize(CENT)):
        raise ValidationFailed("low_balance must be an amount with at most 2 places",
                               errors={"low_balance": ["Must be an amount with at most 2 decimal places."]})
    customer = lock_customer(customer.pk)
    if customer.low_balance_threshold != low_balance:
        customer.low_balance_threshold = low_balance
        customer.save(update_fields=["low_balance_threshold"])
    return customer
