"""Immediate charges under the customer's current payer."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from customers.locks import lock_customer
from customers.models import Customer
from overdrafts import services as overdrafts
from payments.models import Charge, Product
from payments.services.orders import orders_ensure
from payments.services.rules import _spend_checks
from wallets import services as ledger


@transaction.atomic
def charge_create(*, customer: Customer, product: Product, amount: Decimal, description: str = "",
                  metadata: dict[str, str] | None = None) -> Charge:
    """An immediate charge under the customer's current payer; `402 insufficient_funds` writes nothing."""
    customer = lock_customer(customer.pk)
    _spend_checks(customer)
    payer = customer.agency
    charge = Charge(service=customer.service, customer=customer, payer_agency=payer, product=product, amount=amount,
                    description=description, metadata=metadata or {})
    ledger.wallet_charge(
        customer=customer, payer_agency=payer, product_code=product.code, amount=amount,
        overdraft_limit=overdrafts.spend_limit(customer=customer, payer=payer), reference_kind="charge",
        reference_id=str(charge.id), description=description or f"{product.name}",
    )
    overdrafts.after_spend(customer=customer, payer=payer)
    charge.save(force_insert=True)
    orders_ensure(customer=customer, payer=payer, product=product)
    return charge
