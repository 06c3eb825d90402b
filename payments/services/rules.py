"""Who may move money: the checks every payment write makes under the customer lock."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef

from agencies.models import Agency
from balance_gateway.models import RegistrationStatus
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.exceptions import CustomerBlocked, CustomerNotActive
from overdrafts import services as overdrafts
from overdrafts.models import LimitOverride, Overdraft
from payments.models import BalanceOrder, Product
from payments.services.orders import child_order_key


def _require_active(customer: Customer) -> None:
    if customer.status != RegistrationStatus.ACTIVE:
        raise CustomerNotActive(f"Customer {customer.external_id!r} is {customer.status}, not active.")


def _require_not_blocked(customer: Customer) -> None:
    if customer.blocked:
        raise CustomerBlocked(f"Customer {customer.external_id!r} is blocked: spending is refused until repaid.")


def _spend_checks(customer: Customer) -> None:
    _require_active(customer)
    _require_not_blocked(customer)


def lock_for_spend(customer_id: int, *, product: Product, payer_id: int | None, current_payer: bool = True,
                   limit: bool = True) -> Customer:
    """Lock the customer, and learn in the same statement whether it uses an overdraft at all
    (`uses_overdraft`) and whether the product's child order of `payer_id` exists (`child_order_exists`), so that
    a charge needs no query for either. With `current_payer`, `payer_id` is the caller's idea of the customer's
    payer (read before the lock): the answer counts only if the locked row still has that payer.

    Both answers may be stale by one lock holder (see `lock_customer`), only ever in the safe direction: rows are
    never deleted, so "exists" is exact; a missed Overdraft or override gives a limit of 0 instead of the one
    granted a moment ago (the spend is refused rather than overdrawn), and a missed order is looked up again by
    `orders_ensure`.

    Without `limit` (a capture: it spends money already held, under no limit) `uses_overdraft` is not read.
    """
    key = child_order_key(customer_id=customer_id, payer_id=payer_id, product_code=product.code)
    annotations: dict[str, Any] = {"child_order_exists": Exists(BalanceOrder.objects.filter(key=key))}
    if limit:
        annotations["uses_overdraft"] = (
            Exists(Overdraft.objects.filter(customer_id=OuterRef("pk")))
            | Exists(LimitOverride.objects.filter(customer_id=OuterRef("pk"), ended_at__isnull=True)))
    customer = lock_customer(customer_id, **annotations)
    if current_payer and customer.agency_id != payer_id:
        customer.child_order_exists = False  # type: ignore[attr-defined]  # the payer changed: look it up
    return customer


def spend_limit_or_none(customer: Customer, payer: Agency | None) -> Decimal | None:
    """The overdraft or credit limit for a spend, or None for a customer that pays itself and has neither an
    Overdraft row nor an override: its limit is 0 and, as a spend within it leaves wallet and holds at or above
    zero, the overdraft hooks would change nothing, so the caller skips them. Needs `lock_for_spend`'s row."""
    if payer is None and customer.agency_id is None and not customer.uses_overdraft:  # type: ignore[attr-defined]
        return None
    return overdrafts.spend_limit(customer=customer, payer=payer)
