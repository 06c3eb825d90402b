"""The hooks called by payments inside the money transaction, with the customer row already locked
(`spend_limit`, `after_spend`, `after_money_in`; see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from django.utils import timezone

from agencies.models import Agency
from customers.models import Customer
from disbalance.exceptions import CustomerBlocked
from disbalance.locking import require_atomic
from disbalance.money import ZERO, format_amount
from overdrafts import selectors
from overdrafts.locks import lock_agency_credit
from overdrafts.models import AgencyCredit, Overdraft
from overdrafts.services.debt import _debt_refresh


def spend_limit(*, customer: Customer, payer: Agency | None) -> Decimal:
    """How far below zero this spend may take the payer's wallet (overdraft or agency credit).

    Raises `CustomerBlocked` when the customer's own debt is past due (the block itself is written by the
    periodic check or the next money movement: this transaction is about to roll back).
    """
    require_atomic("spend_limit")
    overdraft = Overdraft.objects.filter(customer_id=customer.pk).first()
    _refuse_if_overdue(customer, overdraft)
    if payer is None:
        if customer.agency_id is not None:
            return ZERO
        return selectors.overdraft_limit(customer=customer, overdraft=overdraft)
    contract = selectors.postpaid_contract(agency=payer)
    if contract is None:
        return ZERO
    credit = lock_agency_credit(payer)
    limit = selectors.agency_credit_limit(contract=contract, credit=credit)
    if credit.contract_id != contract.balance_contract_id or credit.credit_limit != limit:
        credit.contract_id, credit.credit_limit, credit.updated_at = contract.balance_contract_id, limit, timezone.now()
        credit.save(update_fields=["contract_id", "credit_limit", "updated_at"])
    others = selectors.agency_credit_used(agency=payer, exclude_customer_id=customer.pk)
    return max(ZERO, limit - others)


def after_spend(*, customer: Customer, payer: Agency | None) -> None:
    """Money left the payer's wallet of the customer (a debt may have started)."""
    _after_money_movement(customer, payer)


def after_money_in(*, customer: Customer, payer: Agency | None) -> None:
    """Money came into (or back to) the payer's wallet of the customer (a debt may be repaid: unblock)."""
    _after_money_movement(customer, payer)


AgencySpendHook = Callable[[Customer, Agency], None]
_AGENCY_SPEND_HOOKS: list[AgencySpendHook] = []


def on_agency_money_movement(hook: AgencySpendHook) -> AgencySpendHook:
    """Register `hook(customer, agency)`, run inside the money transaction after every money movement of a
    customer's wallet under an agency (payments registers the credit draw in Balance: the wallet orders are
    its). A second registration of the same hook is refused."""
    if any(h.__module__ == hook.__module__ and h.__qualname__ == hook.__qualname__ for h in _AGENCY_SPEND_HOOKS):
        raise RuntimeError(f"agency money hook {hook.__module__}.{hook.__qualname__} registered twice")
    _AGENCY_SPEND_HOOKS.append(hook)
    return hook


def _after_money_movement(customer: Customer, payer: Agency | None) -> None:
    require_atomic("overdraft hooks")
    if payer is None:
        _debt_refresh(customer)
    else:
        _credit_used_refresh(payer)
        for hook in _AGENCY_SPEND_HOOKS:
            hook(customer, payer)


def _refuse_if_overdue(customer: Customer, overdraft: Overdraft | None) -> None:
    if overdraft is None or overdraft.due_at is None or overdraft.due_at > timezone.now():
        return
    debt = selectors.own_debt(customer_id=customer.pk)
    if debt > 0:
        raise CustomerBlocked(f"Customer {customer.external_id!r} has an overdue debt of {format_amount(debt)} "
                              f"(due {overdraft.due_at:%Y-%m-%d %H:%M} UTC): spending is refused until repaid.")


def _credit_used_refresh(agency: Agency) -> None:
    credit = AgencyCredit.objects.select_for_update().filter(agency=agency).first()
    if credit is None:
        return  # no postpaid credit was ever used under this agency
    used = selectors.agency_credit_used(agency=agency)
    if credit.used != used:
        credit.used, credit.updated_at = used, timezone.now()
        credit.save(update_fields=["used", "updated_at"])
