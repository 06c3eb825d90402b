"""Auto-overdraft: Balance covers a direct customer's spend below zero (outbox `overdraft.params`).

Billing lets a direct customer's wallet go below zero up to its effective overdraft limit. Balance sees that spend
as completion beyond the money on the customer's orders, which is **unpaid completion** unless something covers it.
Of Balance's two ways (an overdraft invoice, or auto-overdraft), billing uses **auto-overdraft**: SetOverdraftParams
with a `ClientLimit` makes Balance cover completion beyond paid money up to that figure and invoice it itself.
An overdraft invoice would put money on the wallet order, which billing would then have to tell apart from a
top-up (NotifyOrder2 reports totals, not their source), and must be drawn ahead of each spend; auto-overdraft
covers completion without moving any money, so the wallet's money in Balance stays exactly what was paid in.

The ClientLimit billing asks for (`auto_overdraft_wanted`) is
    min(Balance's granted limit, max(billing's effective limit, the customer's own debt now)):
- at most the granted limit: Balance refuses more. A support override that raises the limit above the grant is
  allowed (with its own permission, reason and expiry) but Balance cannot cover it: spend beyond the grant is
  unpaid completion in Balance until the customer pays, and the console says so where the override is set;
- at least the debt already made: lowering the limit (support's lowering override, a ban) refuses *new* spending
  in billing, but must not uncover what Balance already covers.

When it is sent: whenever that figure may have changed (NotifyClient2 applied, support's override set or ended,
a money movement that leaves it different from what Balance last accepted) and when the periodic pull finds
Balance's ClientLimit different. One waiting operation per customer (dedup key) covers every change before it;
the handler reads the state when it runs, so it is safe to repeat. A refusal by Balance (an agency, no overdraft
limit, no currency...) is final: it is kept on the `Overdraft` row (`auto_error`) for support, never retried on
its own; the next change tries again.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from balance_gateway.client import BalanceClient
from balance_gateway.exceptions import BalanceFinalError
from customers.models import Customer
from disbalance.models import OutboxOperation
from disbalance.money import ZERO
from disbalance.outbox import OutboxRetry, outbox_enqueue, outbox_handler
from overdrafts import selectors
from overdrafts.models import Overdraft

logger = logging.getLogger(__name__)

OVERDRAFT_PARAMS = "overdraft.params"


def auto_overdraft_wanted(*, customer: Customer, overdraft: Overdraft | None, debt: Decimal | None = None
                          ) -> Decimal:
    """The ClientLimit billing wants Balance to cover for the customer (see the module docstring). `debt`: the
    customer's own debt if the caller has just read it."""
    if overdraft is None or not overdraft.in_balance:
        return ZERO
    effective = selectors.overdraft_limit(customer=customer, overdraft=overdraft)
    if debt is None:
        debt = selectors.own_debt(customer_id=customer.pk)
    return min(overdraft.granted_limit, max(effective, debt))


def auto_overdraft_enqueue(*, customer: Customer, force: bool = False) -> OutboxOperation:
    """Send the customer's auto-overdraft settings to Balance after commit (inside the caller's transaction)."""
    return outbox_enqueue(kind=OVERDRAFT_PARAMS, subject=f"customer:{customer.pk}",
                          payload={"customer_id": customer.pk, "force": force}, service=customer.service,
                          dedup_key=f"{OVERDRAFT_PARAMS}:{customer.pk}")


def auto_overdraft_enqueue_if_changed(*, customer: Customer, overdraft: Overdraft | None = None,
                                      debt: Decimal | None = None, retry_refused: bool = True) -> bool:
    """Enqueue when what billing wants differs from what Balance last accepted (or never was sent). With
    `retry_refused` False (a money movement), a customer whose last settings Balance refused is left to the next
    limit change or to support: no call per charge that Balance would refuse again."""
    if overdraft is None:
        overdraft = Overdraft.objects.filter(customer_id=customer.pk).first()
    if overdraft is None or (overdraft.auto_error and not retry_refused):
        return False
    wanted = auto_overdraft_wanted(customer=customer, overdraft=overdraft, debt=debt)
    if wanted == (overdraft.auto_limit if overdraft.auto_limit is not None else ZERO):
        return False
    auto_overdraft_enqueue(customer=customer)
    return True


def _currency(overdraft: Overdraft) -> str:
    currency = (overdraft.currency or settings.BALANCE_OVERDRAFT_DEFAULT_CURRENCY).upper()
    return "RUB" if currency == "RUR" else currency


@outbox_handler(OVERDRAFT_PARAMS)
def auto_overdraft_sync(operation: OutboxOperation) -> dict[str, Any]:
    """Outbox handler: SetOverdraftParams with the ClientLimit billing wants now (skipped when Balance already
    has it, unless `force`). A refusal is recorded on the row, not retried."""
    customer = Customer.objects.select_related("service").get(pk=operation.payload["customer_id"])
    overdraft = Overdraft.objects.filter(customer_id=customer.pk).first()
    if overdraft is None:
        return {"skipped": "no overdraft"}
    wanted = auto_overdraft_wanted(customer=customer, overdraft=overdraft)
    current = overdraft.auto_limit
    if not operation.payload.get("force") and current == wanted and not overdraft.auto_error:
        return {"unchanged": str(wanted)}
    if wanted == 0 and current in (None, ZERO) and not operation.payload.get("force"):
        return {"skipped": "nothing to cover"}
    if customer.balance_client_id is None or customer.balance_person_id is None:
        raise OutboxRetry(f"customer {customer.external_id} has no Balance client or person yet")
    try:
        with BalanceClient() as client:
            client.set_overdraft_params(service_id=customer.service.balance_service_id,
                                        person_id=customer.balance_person_id,
                                        payment_method=settings.BALANCE_OVERDRAFT_PAYMENT_METHOD,
                                        currency=_currency(overdraft), client_limit=wanted)
    except BalanceFinalError as exc:
        if wanted == 0:
            # Nothing to cover and Balance has no overdraft to turn off (e.g. "no overdraft limit"): settled.
            _record(customer.pk, limit=ZERO, error="")
            return {"client_limit": "0.00", "note": str(exc)[:200]}
        _record(customer.pk, limit=None, error=str(exc))
        logger.warning("auto-overdraft refused by Balance", extra={"customer": customer.pk, "error": str(exc)})
        return {"refused": str(exc)[:500]}
    _record(customer.pk, limit=wanted, error="")
    return {"client_limit": str(wanted)}


def _record(customer_id: int, *, limit: Decimal | None, error: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        overdraft = Overdraft.objects.select_for_update().get(customer_id=customer_id)
        if error:
            overdraft.auto_error, overdraft.auto_refused_at = error[:500], now
        else:
            overdraft.auto_limit, overdraft.auto_set_at = limit, now
            overdraft.auto_error, overdraft.auto_refused_at = "", None
        overdraft.save(update_fields=["auto_limit", "auto_set_at", "auto_error", "auto_refused_at"])
