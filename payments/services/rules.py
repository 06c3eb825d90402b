"""Who may move money: the checks every payment write makes under the customer lock."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Exists, OuterRef, Q

from agencies.models import Agency
from balance_gateway.models import RegistrationStatus
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.exceptions import CustomerBlocked, CustomerNotActive
from overdrafts import services as overdrafts
from overdrafts.models import LimitOverride, Overdraft
from payments.models import BalanceOrder


def _require_active(customer: Customer) -> None:
    if customer.status != RegistrationStatus.ACTIVE:
        raise CustomerNotActive(f"Customer {customer.external_id!r} is {customer.status}, not active.")


def _require_not_blocked(customer: Customer) -> None:
    if customer.blocked:
        raise CustomerBlocked(f"Customer {customer.external_id!r} is blocked: spending is refused until repaid.")


def _spend_checks(customer: Customer) -> None:
    _require_active(customer)
    _require_not_blocked(customer)


_CURRENT_PAYER = object()


def lock_for_spend(customer_id: int, product_id: int, payer_id: object = _CURRENT_PAYER) -> Customer:
    """Lock the customer, and learn in the same statement whether it uses an overdraft at all and whether the
    product's child order under the payer exists (so that a charge needs no query for either). The payer is the
    customer's current one unless `payer_id` (an agency id, or None for itself) says otherwise.

    These two answers may be stale by one lock holder (see `lock_customer`), only ever in the safe direction:
    rows are never deleted, so "exists" is exact; a missed Overdraft or override gives a limit of 0 instead of
    the one granted a moment ago (the spend is refused rather than overdrawn), and a missed order is looked up
    again by `orders_ensure`.
    """
    orders = BalanceOrder.objects.filter(customer_id=OuterRef("pk"), kind=BalanceOrder.Kind.CHILD,
                                         product_id=product_id)
    if payer_id is _CURRENT_PAYER:
        orders = orders.filter(Q(payer_agency_id=OuterRef("agency_id"))
                               | Q(payer_agency__isnull=True, customer__agency__isnull=True))
    else:
        orders = orders.filter(payer_agency_id=payer_id)
    return lock_customer(
        customer_id,
        uses_overdraft=Exists(Overdraft.objects.filter(customer_id=OuterRef("pk")))
        | Exists(LimitOverride.objects.filter(customer_id=OuterRef("pk"), ended_at__isnull=True)),
        child_order_exists=Exists(orders),
    )


def spend_limit_or_none(customer: Customer, payer: Agency | None) -> Decimal | None:
    """The overdraft or credit limit for a spend, or None for a customer that pays itself and has neither an
    Overdraft row nor an override: its limit is 0 and, as a spend within it leaves wallet and holds at or above
    zero, the overdraft hooks would change nothing, so the caller skips them. Needs `lock_for_spend`'s row."""
    if payer is None and customer.agency_id is None and not customer.uses_overdraft:  # type: ignore[attr-defined]
        return None
    return overdrafts.spend_limit(customer=customer, payer=payer)
