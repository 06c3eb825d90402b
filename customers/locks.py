"""Locks on customer rows: the first lock of every write to a customer's money (customer -> wallet -> hold)."""

from __future__ import annotations

from typing import Any

from django.db.models import Subquery

from customers.models import Customer
from disbalance.locking import for_update, require_atomic


def lock_customer(customer_id: int | Subquery, **annotations: Any) -> Customer:
    """Lock the customer row (first lock of every money write) and return it fresh from the database, with its
    service and agency. `customer_id` may be a subquery giving it from a row that names the customer and never
    changes it (a wallet order): the lock then costs no statement of its own to learn whom to lock.

    `annotations` are read in the same statement (e.g. whether the customer uses an overdraft at all). On
    PostgreSQL a subquery among them sees the database as of the statement's start, which may be before the lock
    was granted: the row itself is fresh, a subquery's answer may miss what the previous lock holder committed.
    Use them only where a stale answer errs on the safe side.
    """
    require_atomic("lock_customer")
    return for_update(Customer.objects.select_related("service", "agency").annotate(**annotations)).get(
        pk=customer_id
    )
