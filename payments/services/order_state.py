"""Money reported by Balance: an order's totals (NotifyOrder2 or a GetOrdersInfo pull) credited to the ledger
once per Tid."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from balance_gateway.client import BalanceClient
from balance_gateway.notifications import notification_applier
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.events import MoneyEvent
from disbalance.money import ZERO, format_amount, from_balance
from overdrafts import services as overdrafts
from payments.models import BalanceOrder, TopUp
from wallets import services as ledger


@dataclass(frozen=True)
class OrderState:
    consume_qty: Decimal
    completion_qty: Decimal
    tid: int


def _credit(order: BalanceOrder, customer: Customer, amount: Decimal, topup: TopUp | None, tid: int) -> None:
    """A `topup` transaction: for the top-up it pays, or for money that came without one (paid elsewhere),
    referenced by the order and the Tid that brought it, so that each is in the ledger once."""
    description = f"Top-up {topup.id}" if topup else f"Money received on Balance order {order.pk}"
    ledger.wallet_credit_topup(
        customer=customer, payer_agency=order.payer_agency, amount=amount,
        reference_kind="topup" if topup else "balance_order",
        reference_id=str(topup.id) if topup else f"{order.pk}@{tid}", description=description, customer_locked=True,
        event=MoneyEvent(type="topup.succeeded", data={"topup": str(topup.id), "id": str(topup.id)}) if topup
        else MoneyEvent(type="money.received", data={"order": order.pk, "tid": tid}),
    )


def _match_topups(order: BalanceOrder, delta: Decimal) -> list[TopUp]:
    """The top-ups this money pays. Balance reports totals, not requests: prefer a set of waiting top-ups whose
    amounts add up exactly to the new money (fewest, oldest first), else the oldest that fit."""
    waiting = list(
        TopUp.objects.select_for_update().filter(
            order=order, status__in=[TopUp.Status.AWAITING_PAYMENT, TopUp.Status.PENDING]
        ).order_by("created_at")[:MATCH_WINDOW]
    )
    for size in range(1, min(len(waiting), MATCH_MAX_SET) + 1):
        for combo in itertools.combinations(waiting, size):
            if sum((t.amount for t in combo), ZERO) == delta:
                return list(combo)
    matched, remaining = [], delta
    for topup in waiting:
        if topup.amount <= remaining:
            matched.append(topup)
            remaining -= topup.amount
    return matched


# How many waiting top-ups of one order are considered, and the largest set tried for an exact match.
MATCH_WINDOW, MATCH_MAX_SET = 24, 4


@transaction.atomic
def order_apply_balance_state(*, order_id: int, state: OrderState) -> str:
    """Apply Balance's totals for an order if its Tid is new: credit the difference between ConsumeQty and what
    was already credited (matching top-ups become `succeeded`; money without a top-up is credited too).

    Returns `applied` or `stale`. Duplicates and older Tids change nothing.
    """
    customer_id = BalanceOrder.objects.values_list("customer_id", flat=True).get(pk=order_id)
    customer = lock_customer(customer_id)
    order = BalanceOrder.objects.select_for_update(of=("self",)).select_related("payer_agency").get(pk=order_id)
    if state.tid <= order.last_tid:
        return "stale"
    delta = state.consume_qty - order.credited_qty
    if delta > 0:
        remaining = delta
        for topup in _match_topups(order, delta):
            _credit(order, customer, topup.amount, topup, state.tid)
            remaining -= topup.amount
            topup.status = TopUp.Status.SUCCEEDED
            topup.succeeded_at = topup.updated_at = timezone.now()
            topup.save(update_fields=["status", "succeeded_at", "updated_at"])
        if remaining > 0:
            _credit(order, customer, remaining, None, state.tid)
    elif delta < 0:
        # Balance took money off the order (a refund or transfer made in Balance): mirror it, with the reason.
        ledger.wallet_adjust(
            customer=customer, payer_agency=order.payer_agency, amount=delta, created_by=None,
            reason=f"Balance lowered ConsumeQty of order {order.pk} to {format_amount(state.consume_qty)}",
            reference_kind="balance_order", reference_id=f"{order.pk}@{state.tid}",
            event=MoneyEvent(type="wallet.adjusted", data={"order": order.pk, "tid": state.tid, "by": "balance"}),
        )
    if delta > 0:
        overdrafts.after_money_in(customer=customer, payer=order.payer_agency)
    elif delta < 0:
        overdrafts.after_spend(customer=customer, payer=order.payer_agency)
    order.credited_qty = state.consume_qty
    order.balance_consume_qty = state.consume_qty
    order.balance_completion_qty = state.completion_qty
    order.last_tid = state.tid
    order.balance_refreshed_at = timezone.now()
    order.save(update_fields=["credited_qty", "balance_consume_qty", "balance_completion_qty", "last_tid",
                              "balance_refreshed_at"])
    return "applied"


def _order_for_key(object_key: str) -> BalanceOrder | None:
    service_id, _, service_order_id = object_key.partition(":")
    if not service_order_id.isdigit() or not service_id.isdigit():
        return None
    return BalanceOrder.objects.filter(pk=int(service_order_id), service__balance_service_id=int(service_id)).first()


@notification_applier("order")
class OrderNotifications:
    """NotifyOrder2: the order's totals; applied through `order_apply_balance_state`."""

    @staticmethod
    def exists(object_key: str) -> bool:
        return _order_for_key(object_key) is not None

    @staticmethod
    def apply(object_key: str, tid: int, payload: dict[str, Any]) -> str:
        order = _order_for_key(object_key)
        assert order is not None
        state = OrderState(consume_qty=from_balance(payload.get("ConsumeQty")),
                           completion_qty=from_balance(payload.get("CompletionQty")), tid=tid)
        return order_apply_balance_state(order_id=order.pk, state=state)


def orders_pull(*, orders: list[BalanceOrder] | None = None, client: BalanceClient | None = None) -> dict[str, int]:
    """Read orders with top-ups still waiting from Balance (GetOrdersInfo, batched) and apply them, so that a lost
    notification delays nothing for long."""
    if orders is None:
        waiting = TopUp.objects.filter(status__in=[TopUp.Status.AWAITING_PAYMENT]).values("order_id")
        orders = list(BalanceOrder.objects.filter(pk__in=waiting, sync_status=BalanceOrder.SyncStatus.SYNCED)
                      .select_related("service"))
    client = client or BalanceClient()
    outcomes = {"orders": len(orders), "applied": 0, "stale": 0, "missing": 0}
    batch = settings.ORDERS_PULL_BATCH
    for start in range(0, len(orders), batch):
        chunk = orders[start:start + batch]
        infos = client.get_orders_info([(o.service.balance_service_id, o.pk) for o in chunk])
        by_id = {int(info.service_order_id): info for info in infos}
        for order in chunk:
            info = by_id.get(order.pk)
            if info is None:
                outcomes["missing"] += 1
                continue
            outcome = order_apply_balance_state(order_id=order.pk, state=OrderState(
                consume_qty=info.consume_qty, completion_qty=info.completion_qty, tid=info.tid))
            outcomes[outcome] += 1
    return outcomes
