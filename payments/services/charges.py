"""Immediate charges under the customer's current payer.

Two paths write the same rows. On PostgreSQL the lean case (a customer that pays itself, without an overdraft or a
limit override, whose accounts and Balance child order exist: what a busy customer's charges are) is one call of
the database function `payments_charge_create` (migration `payments.0004`): one round trip, and outside a
transaction one statement that is its own transaction. It does what the ORM path below does, in the same lock
order, and returns `fallback` having written nothing for anything else; then, and on SQLite, the ORM path runs.
`tests/payments/test_charge_function.py` runs the same charges through both and compares every row.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from django.db import DatabaseError, IntegrityError, connection
from django.utils import timezone

from customers.models import Customer
from disbalance.events import MoneyEvent, event_written
from disbalance.exceptions import CustomerBlocked, CustomerNotActive, InsufficientFunds
from disbalance.idempotency import atomic_service, service_atomic
from disbalance.logging import request_id_var
from disbalance.models import WebhookEvent
from disbalance.money import CENT, ZERO
from overdrafts import services as overdrafts
from payments.models import Charge, Product
from payments.services.orders import child_order_key, orders_ensure
from payments.services.rules import _spend_checks, lock_for_spend, spend_limit_or_none
from wallets import services as ledger
from wallets.exceptions import LedgerCorrupted, LedgerDuplicate
from wallets.models import Account

Kind = Account.Kind
_CHARGE_SQL = ("SELECT o_outcome, o_service_id, o_pending, o_low_balance FROM payments_charge_create("
               "%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")


def charge_create(*, customer: Customer, product: Product, amount: Decimal, description: str = "",
                  metadata: dict[str, str] | None = None) -> Charge:
    """An immediate charge under the customer's current payer; `402 insufficient_funds` writes nothing."""
    if connection.vendor == "postgresql" and _lean_amount(amount):
        charge = _charge_in_database(customer=customer, product=product, amount=amount, description=description,
                                     metadata=metadata or {})
        if charge is not None:
            return charge
    return _charge_orm(customer=customer, product=product, amount=amount, description=description,
                       metadata=metadata)


def _lean_amount(amount: object) -> bool:
    """A positive amount of at most 2 places; anything else takes the ORM path, which refuses it in its order."""
    return isinstance(amount, Decimal) and amount.is_finite() and amount == amount.quantize(CENT) and amount > 0


def _charge_in_database(*, customer: Customer, product: Product, amount: Decimal, description: str,
                        metadata: dict[str, str]) -> Charge | None:
    """The lean charge in one call of `payments_charge_create`; None (nothing written) if it is not the lean case."""
    now = timezone.now()
    charge = Charge(id=uuid.uuid4(), customer=customer, payer_agency=None, product=product,
                    amount=amount.quantize(CENT), description=description, metadata=metadata, created_at=now)
    event_id = uuid.uuid4()

    def key(kind: str, code: str | None = None) -> str:
        return ledger.account_key(kind=kind, service_id=product.service_id, customer_id=customer.pk,
                                  product_code=code)

    params = (
        customer.pk, product.pk, product.code, charge.amount, charge.id, uuid.uuid4(), event_id, uuid.uuid4(),
        description, (description or product.name)[:500], json.dumps(metadata), key(Kind.WALLET),
        key(Kind.SPEND, product.code), key(Kind.HOLDS),
        child_order_key(customer_id=customer.pk, payer_id=None, product_code=product.code), request_id_var.get(),
        now,
    )
    try:
        if connection.in_atomic_block:
            with service_atomic(), connection.cursor() as cursor:
                cursor.execute(_CHARGE_SQL, params)
                outcome, service_id, pending, low_balance = cursor.fetchone()
        else:  # one statement, its own transaction
            with connection.cursor() as cursor:
                cursor.execute(_CHARGE_SQL, params)
                outcome, service_id, pending, low_balance = cursor.fetchone()
    except DatabaseError as exc:
        raise _refusal(exc) from exc
    if outcome != "charged":
        return None
    charge.service_id = service_id
    event_written(service_id=service_id, type=WebhookEvent.Type.CHARGE_SUCCEEDED, pending=pending)
    if low_balance:
        event_written(service_id=service_id, type=WebhookEvent.Type.WALLET_LOW_BALANCE, pending=pending)
    return charge


def _refusal(exc: DatabaseError) -> Exception:
    """The ORM path's exception for the function's refusal; any other database error as it is."""
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    diag = getattr(cause, "diag", None)
    message = getattr(diag, "message_primary", None) or ""
    if sqlstate == "DBNA1":
        return CustomerNotActive(f"Customer {message!r} is {getattr(diag, 'message_detail', '')}, not active.")
    if sqlstate == "DBBL1":
        return CustomerBlocked(f"Customer {message!r} is blocked: spending is refused until repaid.")
    if sqlstate == "DBIF1":
        return InsufficientFunds(message)
    if sqlstate == "DBLC1":
        return LedgerCorrupted(message)
    if isinstance(exc, IntegrityError) and getattr(diag, "constraint_name", "") == "ledger_transaction_reference_once":
        return LedgerDuplicate(f"this charge is already in the ledger: {message}")
    return exc


@atomic_service
def _charge_orm(*, customer: Customer, product: Product, amount: Decimal, description: str = "",
                metadata: dict[str, str] | None = None) -> Charge:
    customer = lock_for_spend(customer.pk, product=product, payer_id=customer.agency_id)
    _spend_checks(customer)
    payer = customer.agency
    charge = Charge(service=customer.service, customer=customer, payer_agency=payer, product=product, amount=amount,
                    description=description, metadata=metadata or {})
    limit = spend_limit_or_none(customer, payer)
    ledger.wallet_charge(
        customer=customer, payer_agency=payer, product_code=product.code, amount=amount,
        overdraft_limit=limit or ZERO, reference_kind="charge", reference_id=str(charge.id),
        description=description or f"{product.name}", customer_locked=True,
        event=MoneyEvent(type="charge.succeeded", data={"charge": str(charge.id)}),
    )
    if limit is not None:
        overdrafts.after_spend(customer=customer, payer=payer)
    charge.save(force_insert=True)
    if not customer.child_order_exists:  # type: ignore[attr-defined]
        orders_ensure(customer=customer, payer=payer, product=product)
    return charge

