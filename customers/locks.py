"""Locks on customer rows: the first lock of every write to a customer's money (customer -> wallet -> hold)."""

from __future__ import annotations

from customers.models import Customer
from disbalance.locking import for_update, require_atomic


def lock_customer(customer_id: int) -> Customer:
    """Lock the customer row (first lock of every money write) and return it fresh from the database."""
    require_atomic("lock_customer")
    return for_update(Customer.objects.select_related("service")).get(pk=customer_id)
