"""The wallet operations (credit, opening balance, charge, hold, release, capture, refund, adjustment, transfer,
alerts): each locks the customer and its accounts in the ledger's order, posts one transaction and announces it
with one event. The locking scheme is in `wallets.services.ledger`."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from agencies.models import Agency
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.events import MoneyEvent, event_emit_money
from disbalance.exceptions import InsufficientFunds, InvalidState, ValidationFailed
from disbalance.money import CENT, ZERO, format_amount
from disbalance.reasons import required_reason
from wallets.exceptions import LedgerInvalidPosting
from wallets.models import Account, LedgerTransaction
from wallets.services.ledger import (
    Kind,
    TxType,
    _checked_entries,
    _customer_accounts,
    _post_locked,
    _require_atomic,
    account_key,
    adjustments_account_get_or_create,
    clearing_account_get_or_create,
    ledger_post,
    lock_accounts,
    wallet_account_get_or_create,
)


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
    funds_checked: bool = False,
) -> LedgerTransaction:
    """Move free money between two payer wallets of one customer: from -X / to +X (never held money).

    The transaction's `payer_agency` is `from_payer` (whose money moves); the statement shows both sides.
    `funds_checked`: the move mirrors one Balance has already made (billing checked the money before asking), so
    it is posted even if the source was spent meanwhile and goes below zero.
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
    if not funds_checked:
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
