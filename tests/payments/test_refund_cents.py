"""Refunds add up to the charge to the cent, on SQLite too (no floating-point sum in the database)."""

from decimal import Decimal

import pytest
from django.db import transaction

from payments.models import Charge
from payments.services import charge_create, refund_create
from wallets.services import wallet_credit_topup


@pytest.mark.django_db
def test_partial_refunds_that_sum_to_the_charge_are_accepted(active_customer, products):
    with transaction.atomic():
        wallet_credit_topup(customer=active_customer, payer_agency=None, amount=Decimal("100.00"))
    charge = charge_create(customer=active_customer, product=products["placement"], amount=Decimal("0.30"))
    refund_create(charge=charge, amount=Decimal("0.10"), reason="first")
    refund_create(charge=charge, amount=Decimal("0.20"), reason="the rest")  # 0.1 + 0.2 > 0.3 in floating point
    assert Charge.objects.get(pk=charge.pk).refunded_amount == Decimal("0.30")
