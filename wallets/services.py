"""Every write to the ledger: locking helpers, account helpers, `ledger_post`, and the wallet operations.

Locking scheme (style.md: customer -> wallet -> hold): every write to a customer's money runs inside
`transaction.atomic` and takes, in this order,
  1. the customer row (`customers.locks.lock_customer`),
  2. the customer's cached accounts, ordered by id (`lock_accounts`; `ledger_post` re-locks the same rows,
     which is free inside the same transaction),
  3. the caller's own rows (Hold, Charge, ...), after the customer.
It re-reads every figure under the lock and validates it there. Service-wide accounts (`clearing`,
`adjustments`) are never locked nor updated: their balances are not cached, so they are no hot row.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery, Sum

from agencies.models import Agency
from customers.locks import lock_customer
from customers.models import Customer
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
    if reference_id and LedgerTransaction.objects.filter(
        service=service, type=type, reference_kind=reference_kind, reference_id=reference_id
    ).exists():
        raise LedgerDuplicate(f"{type} for {reference_kind} {reference_id} is already in the ledger")

    cached = [account for account in given.values() if account.cached]
    locked = lock_accounts(cached) if cached else {}
    _check_last_balance_after(locked)

    txn = LedgerTransaction.objects.create(
        service=service, type=type, customer=customer, payer_agency=payer_agency, reference_kind=reference_kind,
        reference_id=reference_id, description=description[:500], reason=reason[:500], created_by=created_by,
    )
    new_balances = {pk: account.balance + amounts[pk] for pk, account in locked.items()}
    LedgerEntry.objects.bulk_create(
        LedgerEntry(transaction=txn, account_id=pk, amount=amount, balance_after=new_balances.get(pk))
        for pk, amount in amounts.items()
    )
    for pk in sorted(new_balances):
        Account.objects.filter(pk=pk).update(balance=new_balances[pk])
        given[pk].balance = new_balances[pk]
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


def _lock(customer: Customer, payer_agency: Agency | None) -> Customer:
    locked = lock_customer(customer.pk)
    if payer_agency is not None and payer_agency.service_id != locked.service_id:
        raise LedgerInvalidPosting("the payer agency belongs to another service")
    return locked


def _funds_check(wallet: Account, amount: Decimal, overdraft_limit: Decimal) -> None:
    available = wallet.balance + overdraft_limit
    if amount > available:
        raise InsufficientFunds(f"{format_amount(amount)} exceeds the available {format_amount(available)}")


@transaction.atomic
def wallet_credit_topup(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, reference_kind: str = "",
    reference_id: str = "", description: str = "",
) -> LedgerTransaction:
    """Money received from Balance for this customer under this payer: wallet +X / clearing -X."""
    amount = _positive(amount)
    customer = _lock(customer, payer_agency)
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=payer_agency)
    clearing = clearing_account_get_or_create(service=customer.service)
    lock_accounts([wallet])
    return ledger_post(
        service=customer.service, type=TxType.TOPUP, entries=[(wallet, amount), (clearing, -amount)],
        customer=customer, payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id,
        description=description,
    )


@transaction.atomic
def wallet_credit_opening_balance(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, reference_id: str, description: str = "",
) -> LedgerTransaction:
    """An opening balance: free money of an order the consumer had in Balance before billing, adopted into this
    payer's wallet (wallet +X / clearing -X, type `migration`, reference `legacy_order` + the order's key), so that
    each legacy order's money enters the ledger once."""
    amount = _positive(amount)
    customer = _lock(customer, payer_agency)
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=payer_agency)
    clearing = clearing_account_get_or_create(service=customer.service)
    lock_accounts([wallet])
    return ledger_post(
        service=customer.service, type=TxType.MIGRATION, entries=[(wallet, amount), (clearing, -amount)],
        customer=customer, payer_agency=payer_agency, reference_kind="legacy_order", reference_id=reference_id,
        description=description,
    )


@transaction.atomic
def wallet_charge(
    *, customer: Customer, payer_agency: Agency | None, product_code: str, amount: Decimal,
    overdraft_limit: Decimal = ZERO, reference_kind: str = "", reference_id: str = "", description: str = "",
) -> LedgerTransaction:
    """An immediate charge: wallet -X / spend +X. `InsufficientFunds` (writing nothing) if X > wallet + overdraft."""
    amount = _positive(amount)
    customer = _lock(customer, payer_agency)
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=payer_agency)
    wallet = lock_accounts([wallet])[wallet.pk]
    _funds_check(wallet, amount, overdraft_limit)
    spend = spend_account_get_or_create(customer=customer, payer_agency=payer_agency, product_code=product_code)
    return ledger_post(
        service=customer.service, type=TxType.CHARGE, entries=[(wallet, -amount), (spend, amount)],
        customer=customer, payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id,
        description=description,
    )


@transaction.atomic
def wallet_hold(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, overdraft_limit: Decimal = ZERO,
    reference_kind: str = "", reference_id: str = "", description: str = "",
) -> LedgerTransaction:
    """Reserve money: wallet -X / holds +X. Same funds check as a charge."""
    amount = _positive(amount)
    customer = _lock(customer, payer_agency)
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=payer_agency)
    holds = holds_account_get_or_create(customer=customer, payer_agency=payer_agency)
    locked = lock_accounts([wallet, holds])
    _funds_check(locked[wallet.pk], amount, overdraft_limit)
    return ledger_post(
        service=customer.service, type=TxType.HOLD, entries=[(wallet, -amount), (holds, amount)],
        customer=customer, payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id,
        description=description,
    )


def _holds_check(holds: Account, hold_amount: Decimal) -> None:
    if hold_amount > holds.balance:
        raise InvalidState(f"{format_amount(hold_amount)} is more than the {format_amount(holds.balance)} held")


@transaction.atomic
def wallet_release(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, reference_kind: str = "",
    reference_id: str = "", description: str = "",
) -> LedgerTransaction:
    """Give held money back: holds -X / wallet +X."""
    amount = _positive(amount)
    customer = _lock(customer, payer_agency)
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=payer_agency)
    holds = holds_account_get_or_create(customer=customer, payer_agency=payer_agency)
    locked = lock_accounts([wallet, holds])
    _holds_check(locked[holds.pk], amount)
    return ledger_post(
        service=customer.service, type=TxType.RELEASE, entries=[(holds, -amount), (wallet, amount)],
        customer=customer, payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id,
        description=description,
    )


@transaction.atomic
def wallet_capture(
    *, customer: Customer, payer_agency: Agency | None, product_code: str, hold_amount: Decimal,
    captured: Decimal, reference_kind: str = "", reference_id: str = "", description: str = "",
) -> LedgerTransaction:
    """Capture `captured` of a hold of `hold_amount`, releasing the rest: holds -h / spend +c / wallet +(h-c)."""
    hold_amount = _positive(hold_amount, "hold_amount")
    if not isinstance(captured, Decimal) or not captured.is_finite() or captured != captured.quantize(CENT) \
            or not ZERO <= captured <= hold_amount:
        raise ValidationFailed("captured must be between 0 and the held amount",
                               errors={"amount": ["Must be between 0 and the held amount."]})
    customer = _lock(customer, payer_agency)
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=payer_agency)
    holds = holds_account_get_or_create(customer=customer, payer_agency=payer_agency)
    locked = lock_accounts([wallet, holds])
    _holds_check(locked[holds.pk], hold_amount)
    entries: list[tuple[Account, Decimal]] = [(holds, -hold_amount)]
    if captured > 0:
        spend = spend_account_get_or_create(customer=customer, payer_agency=payer_agency, product_code=product_code)
        entries.append((spend, captured))
    if hold_amount - captured > 0:
        entries.append((wallet, hold_amount - captured))
    return ledger_post(
        service=customer.service, type=TxType.CAPTURE, entries=entries, customer=customer,
        payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id, description=description,
    )


@transaction.atomic
def wallet_refund(
    *, customer: Customer, payer_agency: Agency | None, product_code: str, amount: Decimal,
    reference_kind: str = "", reference_id: str = "", description: str = "",
) -> LedgerTransaction:
    """Give spent money back: spend -X / wallet +X; never takes the spend account below zero.

    The per-charge limit (refunds never exceed what that charge took) is the caller's check, on its Charge row.
    """
    amount = _positive(amount)
    customer = _lock(customer, payer_agency)
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=payer_agency)
    spend = spend_account_get_or_create(customer=customer, payer_agency=payer_agency, product_code=product_code)
    locked = lock_accounts([wallet, spend])
    if amount > locked[spend.pk].balance:
        raise InvalidState(f"refund {format_amount(amount)} is more than the {format_amount(locked[spend.pk].balance)}"
                           f" spent on {product_code}")
    return ledger_post(
        service=customer.service, type=TxType.REFUND, entries=[(spend, -amount), (wallet, amount)],
        customer=customer, payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id,
        description=description,
    )


@transaction.atomic
def wallet_adjust(
    *, customer: Customer, payer_agency: Agency | None, amount: Decimal, reason: str,
    created_by: AbstractBaseUser | None, reference_kind: str = "", reference_id: str = "", description: str = "",
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
    return ledger_post(
        service=customer.service, type=TxType.ADJUSTMENT, entries=[(wallet, amount), (adjustments, -amount)],
        customer=customer, payer_agency=payer_agency, reference_kind=reference_kind, reference_id=reference_id,
        description=description, reason=reason, created_by=created_by,
    )


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
    return ledger_post(
        service=customer.service, type=TxType.TRANSFER, entries=[(source, -amount), (target, amount)],
        customer=customer, payer_agency=from_payer, reference_kind=reference_kind, reference_id=reference_id,
        description=description, reason=reason, created_by=created_by,
    )
