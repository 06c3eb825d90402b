"""Refunds of charges, to the payer the charge was made under."""

from __future__ import annotations

from decimal import Decimal

from customers.locks import lock_customer
from disbalance.events import MoneyEvent
from disbalance.idempotency import atomic_service
from disbalance.money import ZERO, format_amount
from overdrafts import services as overdrafts
from payments.exceptions import RefundTooLarge
from payments.models import Charge, Refund
from wallets import services as ledger


@atomic_service
def refund_create(*, charge: Charge, amount: Decimal | None, reason: str) -> Refund:
    """Refund all or part of a charge to the payer it was charged to; refunds never exceed the charge."""
    customer = lock_customer(charge.customer_id)
    charge = Charge.objects.select_for_update(of=("self",)).select_related("product", "payer_agency").get(pk=charge.pk)
    charge.customer = customer
    left = charge.amount - charge.refunded_amount
    amount = left if amount is None else amount
    if amount <= ZERO or amount > left:
        raise RefundTooLarge(f"Refund {format_amount(amount)} exceeds what is left to refund "
                             f"({format_amount(left)}) of charge {charge.id}.")
    refund = Refund(charge=charge, amount=amount, reason=reason)
    ledger.wallet_refund(
        customer=charge.customer, payer_agency=charge.payer_agency, product_code=charge.product.code, amount=amount,
        reference_kind="refund", reference_id=str(refund.id), description=f"Refund of charge {charge.id}: {reason}",
        customer_locked=True,
        event=MoneyEvent(type="refund.succeeded", data={"refund": str(refund.id), "charge": str(charge.id),
                                                         "reason": reason}),
    )
    overdrafts.after_money_in(customer=charge.customer, payer=charge.payer_agency)
    refund.save(force_insert=True)
    # The charge row is locked: write the exact Decimal (SQLite would add `F() + amount` in floating point and
    # could trip the refunds-within-amount CHECK on the last cent, e.g. 3.01 + 7.02 > 10.03).
    Charge.objects.filter(pk=charge.pk).update(refunded_amount=charge.refunded_amount + amount)
    return refund
