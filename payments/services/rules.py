"""Who may move money: the checks every payment write makes under the customer lock."""

from __future__ import annotations

from balance_gateway.models import RegistrationStatus
from customers.models import Customer
from disbalance.exceptions import CustomerBlocked, CustomerNotActive


def _require_active(customer: Customer) -> None:
    if customer.status != RegistrationStatus.ACTIVE:
        raise CustomerNotActive(f"Customer {customer.external_id!r} is {customer.status}, not active.")


def _require_not_blocked(customer: Customer) -> None:
    if customer.blocked:
        raise CustomerBlocked(f"Customer {customer.external_id!r} is blocked: spending is refused until repaid.")


def _spend_checks(customer: Customer) -> None:
    _require_active(customer)
    _require_not_blocked(customer)
