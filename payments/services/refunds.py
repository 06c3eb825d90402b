"""Refunds of charges, to the payer the charge was made under."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import F

from customers.locks import lock_customer
from disbalance.money import ZERO, format_amount
from overdrafts import services as overdrafts
from payments.exceptions import RefundTooLarge
from payments.models import Charge, Refund
from wallets import services as ledger


@transaction.atomic
def refund_create(*, charge: Charge, amount: Decimal | None, reason: str) -> Refund:
    """Refund all or part of a charge to the payer it was charged to; refunds never exceed the charge."""
    lock_customer(charge.customer_id)
    charge = Charge.objects.select_for_update(of=("self",)).select_related("product", "payer_agency", "customer").get(
        pk=charge.pk
    )
    left = charge.amount - charge.refunded_amount
    amount = left if amount is None else amount
    if amount <= ZERO or amount > left:
        raise RefundTooLarge(f"Refund {format_amount(amount)} exceeds what is left to refund "
                             f"({format_amount(left)}) of charge {charge.id}.")
    refund = Refund(charge=charge, amount=amount, reason=reason)
    ledger.wallet_refund(
        customer=charge.customer, payer_agency=charge.payer_agency, product_code=charge.product.code, amount=amount,
        reference_kind="refund", reference_id=str(refund.id), description=f"Refund of charge {charge.id}: {reason}",
    )
    overdrafts.after_money_in(customer=charge.customer, payer=charge.payer_agency)
    refund.save(force_insert=True)
    Charge.objects.filter(pk=charge.pk).update(refunded_amount=F("refunded_amount") + amount)
    return refund
