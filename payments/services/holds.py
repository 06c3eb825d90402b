"""Holds: money reserved under the payer of the moment, then captured, released or expired."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from customers.locks import lock_customer
from customers.models import Customer
from disbalance.events import MoneyEvent
from disbalance.exceptions import ValidationFailed
from disbalance.idempotency import atomic_service
from disbalance.money import ZERO, format_amount
from overdrafts import services as overdrafts
from payments.exceptions import HoldNotHeld
from payments.models import Charge, Hold, Product
from payments.services.orders import orders_ensure
from payments.services.rules import _spend_checks, lock_for_spend, spend_limit_or_none
from wallets import services as ledger


@atomic_service
def hold_create(*, customer: Customer, product: Product, amount: Decimal, expires_at: datetime | None = None,
                description: str = "", metadata: dict[str, str] | None = None) -> Hold:
    """Reserve money under the current payer until captured, released or expired (default 7 days, max 90)."""
    now = timezone.now()
    expires_at = expires_at or now + timedelta(days=settings.HOLD_DEFAULT_DAYS)
    if expires_at <= now or expires_at > now + timedelta(days=settings.HOLD_MAX_DAYS):
        raise ValidationFailed(f"expires_at must be in the future and at most {settings.HOLD_MAX_DAYS} days away.",
                               errors={"expires_at": ["Out of range."]})
    customer = lock_for_spend(customer.pk, product=product, payer_id=customer.agency_id)
    _spend_checks(customer)
    payer = customer.agency
    hold = Hold(service=customer.service, customer=customer, payer_agency=payer, product=product, amount=amount,
                expires_at=expires_at, description=description, metadata=metadata or {})
    limit = spend_limit_or_none(customer, payer)
    ledger.wallet_hold(
        customer=customer, payer_agency=payer, amount=amount, overdraft_limit=limit or ZERO, reference_kind="hold",
        reference_id=str(hold.id), description=description or f"Hold for {product.name}", customer_locked=True,
        event=MoneyEvent(type="hold.created", data={"hold": str(hold.id), "product": product.code,
                                                    "expires_at": expires_at.isoformat()}),
    )
    if limit is not None:
        overdrafts.after_spend(customer=customer, payer=payer)
    hold.save(force_insert=True)
    if not customer.child_order_exists:  # type: ignore[attr-defined]
        orders_ensure(customer=customer, payer=payer, product=product)
    return hold


def _lock_hold(hold: Hold, customer: Customer | None = None) -> Hold:
    """Lock the hold's customer (unless the caller passes the row it locked), then the hold; it must be held."""
    customer = customer or lock_customer(hold.customer_id)
    locked = (Hold.objects.select_for_update(of=("self",)).select_related("product", "payer_agency")
              .get(pk=hold.pk))
    if locked.status != Hold.Status.HELD:
        raise HoldNotHeld(f"Hold {hold.id} is {locked.status}.")
    locked.customer = customer
    return locked


@atomic_service
def hold_capture(*, hold: Hold, amount: Decimal | None = None) -> Hold:
    """Capture all or part of a hold (the rest is released) under the payer it was made under; at most once."""
    # A hold's customer, product and payer never change: the order check rides on the customer's lock.
    customer = lock_for_spend(hold.customer_id, product=hold.product, payer_id=hold.payer_agency_id,
                              current_payer=False, limit=False)
    hold = _lock_hold(hold, customer)
    captured = hold.amount if amount is None else amount
    if captured > hold.amount:
        raise ValidationFailed(f"Cannot capture {format_amount(captured)} of a {format_amount(hold.amount)} hold.",
                               errors={"amount": ["Must not exceed the held amount."]})
    charge = Charge(service_id=hold.service_id, customer=customer, payer_agency=hold.payer_agency,
                    product=hold.product, amount=captured, description=hold.description, metadata=hold.metadata,
                    hold=hold)
    ledger.wallet_capture(
        customer=customer, payer_agency=hold.payer_agency, product_code=hold.product.code,
        hold_amount=hold.amount, captured=captured, reference_kind="hold", reference_id=str(hold.id),
        description=f"Capture of hold {hold.id}", customer_locked=True,
        event=MoneyEvent(type="hold.captured", data={"hold": str(hold.id), "charge": str(charge.id)}),
    )
    overdrafts.after_money_in(customer=customer, payer=hold.payer_agency)
    hold.status = Hold.Status.CAPTURED
    hold.captured_amount = captured
    hold.closed_at = timezone.now()
    hold.save(update_fields=["status", "captured_amount", "closed_at"])
    charge.save(force_insert=True)
    if not customer.child_order_exists:  # type: ignore[attr-defined]
        orders_ensure(customer=customer, payer=hold.payer_agency, product=hold.product)
    return hold


def _release(hold: Hold, status: str) -> Hold:
    hold = _lock_hold(hold)
    ledger.wallet_release(
        customer=hold.customer, payer_agency=hold.payer_agency, amount=hold.amount, reference_kind="hold",
        reference_id=str(hold.id), description=f"{'Expiry' if status == Hold.Status.EXPIRED else 'Release'} "
                                               f"of hold {hold.id}", customer_locked=True,
        event=MoneyEvent(type="hold.expired" if status == Hold.Status.EXPIRED else "hold.released",
                         data={"hold": str(hold.id), "product": hold.product.code}),
    )
    overdrafts.after_money_in(customer=hold.customer, payer=hold.payer_agency)
    hold.status = status
    hold.closed_at = timezone.now()
    hold.save(update_fields=["status", "closed_at"])
    return hold


@atomic_service
def hold_release(*, hold: Hold) -> Hold:
    """Give the held money back; at most once (the loser of a race gets `409 invalid_state`)."""
    return _release(hold, Hold.Status.RELEASED)


def holds_expire(*, now: datetime | None = None) -> int:
    """Release every hold past its expiry (status `expired`), each in its own transaction."""
    now = now or timezone.now()
    expired = 0
    for hold in Hold.objects.filter(status=Hold.Status.HELD, expires_at__lte=now).only("pk", "customer_id"):
        try:
            with transaction.atomic():
                _release(hold, Hold.Status.EXPIRED)  # announces `hold.expired`
                expired += 1
        except HoldNotHeld:
            continue  # captured or released in between
    return expired
