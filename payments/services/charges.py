"""Immediate charges under the customer's current payer."""

from __future__ import annotations

from decimal import Decimal

from customers.models import Customer
from disbalance.events import MoneyEvent
from disbalance.idempotency import atomic_service
from disbalance.money import ZERO
from overdrafts import services as overdrafts
from payments.models import Charge, Product
from payments.services.orders import orders_ensure
from payments.services.rules import _spend_checks, lock_for_spend, spend_limit_or_none
from wallets import services as ledger


@atomic_service
def charge_create(*, customer: Customer, product: Product, amount: Decimal, description: str = "",
                  metadata: dict[str, str] | None = None) -> Charge:
    """An immediate charge under the customer's current payer; `402 insufficient_funds` writes nothing."""
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
