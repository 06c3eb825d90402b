"""Reads of overdraft limits. Until overdrafts are built (limits from Balance, support overrides), every
customer's effective limit is zero, which is what charges and holds see."""

from __future__ import annotations

from decimal import Decimal

from customers.models import Customer
from disbalance.money import ZERO


def effective_overdraft_limit(*, customer: Customer) -> Decimal:
    """The overdraft limit charges and holds may use for the customer's current payer (0 for now)."""
    return ZERO
