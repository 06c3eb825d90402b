"""Money reported by Balance: a wallet order's money (NotifyOrder2 or a GetOrdersInfo pull, read from the money
fields) credited to the ledger once per Tid; a child order's figures noted, never counted as wallet money; agency
credit drawn on a wallet order (credit invoices, `payments.services.credit`) never counted as wallet money."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from balance_gateway.client import BalanceClient, OrderInfo
from balance_gateway.notifications import OrderNotification, UnknownObject, notification_applier
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.events import MoneyEvent
from disbalance.money import CENT, ZERO, format_amount
from overdrafts import services as overdrafts
from payments.models import BalanceOrder, TopUp
from payments.services.credit import (
    credit_draw_in_flight,
    credit_drawn,
    credit_drawn_since,
    on_credit_drawn,
    orders_drawn_unread,
)
from payments.services.transfers import money_in_flight, money_in_flight_annotations
from wallets import services as ledger


@dataclass(frozen=True)
class OrderState:
    """Balance's view of a wallet order's money: `consume_money` is money (never a *Qty of a priced product),
    all the money Balance has on the wallet (agency credit drawn on it included: `order_apply_balance_state`
    takes that off, it is not wallet money).
    `tid` None means a pull (GetOrdersInfo, no Tid): it may only add money, never take it away, because a
    notification newer than what was read may already be applied. `read_at`: when a pull began reading (None: not
    known), so that a credit invoice counted after it is not taken off figures that may not include it yet."""

    consume_money: Decimal
    completion_qty: Decimal
    tid: int | None
    read_at: datetime | None = None


def _credit(order: BalanceOrder, customer: Customer, amount: Decimal, topup: TopUp | None, tid: int | str) -> None:
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
        TopUp.objects.select_for_update().filter(order=order, status__in=TOPUP_WAITING).order_by("created_at")
        [:MATCH_WINDOW]
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
TOPUP_WAITING = (TopUp.Status.AWAITING_PAYMENT, TopUp.Status.PENDING)  # a top-up money may still pay


@transaction.atomic
def order_apply_balance_state(*, order_id: int, state: OrderState) -> str:
    """Apply Balance's money on a wallet order: a notification if its Tid is new, a pull if it adds money. The
    difference between that money and what was already credited is credited (matching top-ups become
    `succeeded`; money without a top-up is credited too) or, from a notification only, taken back.

    Returns `applied` or `stale`. Duplicates, older Tids and pulls showing no new money change nothing.
    """
    # The order's customer never changes: its lock finds it through the order, in the same statement.
    customer = lock_customer(Subquery(BalanceOrder.objects.filter(pk=order_id).values("customer_id")))
    # The order, and in the same statement what decides how its money is applied. Read under the customer's lock,
    # which every top-up's creation takes, so `topups_waiting` is exact (a top-up only ever leaves the waiting
    # states without it: then the matching below finds fewer). Money in flight is started without either lock,
    # before Balance moves the money: money showing the move is read after that start, so after it committed.
    order = (BalanceOrder.objects.select_for_update(of=("self",)).select_related("payer_agency")
             .annotate(topups_waiting=Exists(TopUp.objects.filter(order_id=OuterRef("pk"), status__in=TOPUP_WAITING)),
                       **money_in_flight_annotations())
             .get(pk=order_id))
    if order.customer_id != customer.pk:
        raise AssertionError(f"order {order_id} changed customer")  # never: an order's customer is not changed
    if state.tid is not None and state.tid <= order.last_tid:
        return "stale"
    if order.adopting or order.moving:  # type: ignore[attr-defined]
        return "stale"  # money is being moved here or away in Balance (adoption, payer transfer): posted by that
    if order.payer_agency_id and credit_draw_in_flight(order.pk):
        return "stale"  # a credit invoice is being made: the money may or may not include it yet
    if state.tid is None and state.read_at is not None and order.payer_agency_id and credit_drawn_since(
            order_id=order.pk, since=state.read_at):
        # Read before a credit invoice was counted: taking that credit off money that may lack it would credit
        # part of a top-up as money without one (and the rest later, again without it). The next pull, or the
        # invoice's own notification, brings figures that include it.
        return "stale"
    drawn_unread = bool(order.payer_agency_id) and credit_drawn_since(order_id=order.pk, since=order.read_at)
    if state.tid is not None and drawn_unread:
        # A credit invoice was drawn after Balance was last read. A notification sent before it, delivered after,
        # lacks the credit: taking the credit off its money would credit part of a paid top-up as money without
        # one, or match the wrong top-up, and its Tid cannot tell it from the invoice's own (Balance gives no Tid
        # with an invoice). Balance re-sends it; the pull made right after every draw (`credit_draw_in_balance`,
        # and `orders_pull` for orders waiting so) reads figures that include the invoice, and from then on an
        # older notification showing less waits for the pull guard below.
        raise UnknownObject(f"order {order.pk}: a credit invoice was drawn after Balance was last read; re-send "
                            "after the next pull")
    # Agency credit drawn on the order (credit invoices) is the agency's, not money paid into the wallet.
    wallet_money = state.consume_money - credit_drawn(order_id=order.pk) if order.payer_agency_id else \
        state.consume_money
    delta = wallet_money - order.credited_qty
    if state.tid is None and delta <= 0:
        if not (drawn_unread and state.read_at is not None):
            return "stale"
        # The first read after a credit invoice: no new money, but the figures include the invoice. Noted, so that
        # the order's notifications go on, and guarded like a pull that credited money (an older notification
        # showing less waits for the invoice's own).
        order.read_at, order.balance_refreshed_at = state.read_at, timezone.now()
        order.pulled_money, order.pulled_at = (wallet_money, timezone.now()) if delta == 0 else (None, None)
        order.save(update_fields=["read_at", "balance_refreshed_at", "pulled_money", "pulled_at"])
        return "applied"
    if state.tid is not None and order.pulled_money is not None:
        if wallet_money >= order.pulled_money or order.pulled_at is None or \
                order.pulled_at < timezone.now() - timedelta(seconds=settings.BALANCE_PULL_GUARD_SECONDS):
            order.pulled_money = order.pulled_at = None  # the notifications have caught up with the pull
        else:
            # A pull credited money this notification does not show yet: it may have been sent before that money
            # came (reordered, or late). Applying it would take the money back and credit it again on the next
            # one. Balance re-sends it; by then the notification of the pulled money has set things straight (an
            # older one is then stale, a newer one showing less is a real cut and applies).
            raise UnknownObject(f"order {order.pk}: notification Tid {state.tid} shows {format_amount(wallet_money)}"
                                f", less than the {format_amount(order.pulled_money)} a pull credited; re-send later")
    reference_tid = state.tid if state.tid is not None else f"pull:{wallet_money}"
    if delta > 0:
        remaining = delta
        for topup in _match_topups(order, delta) if order.topups_waiting else []:  # type: ignore[attr-defined]
            _credit(order, customer, topup.amount, topup, reference_tid)
            remaining -= topup.amount
            topup.status = TopUp.Status.SUCCEEDED
            topup.succeeded_at = topup.updated_at = timezone.now()
            topup.save(update_fields=["status", "succeeded_at", "updated_at"])
        if remaining > 0:
            _credit(order, customer, remaining, None, reference_tid)
        if state.tid is None:
            order.pulled_money, order.pulled_at = wallet_money, timezone.now()
            order.read_at = state.read_at or order.read_at
    elif delta < 0:
        # Balance took money off the order (a refund or transfer made in Balance): mirror it, with the reason.
        ledger.wallet_adjust(
            customer=customer, payer_agency=order.payer_agency, amount=delta, created_by=None,
            reason=f"Balance lowered the money on order {order.pk} to {format_amount(wallet_money)}",
            reference_kind="balance_order", reference_id=f"{order.pk}@{state.tid}",
            event=MoneyEvent(type="wallet.adjusted", data={"order": order.pk, "tid": state.tid, "by": "balance"}),
        )
    if delta > 0:
        overdrafts.after_money_in(customer=customer, payer=order.payer_agency)
    elif delta < 0:
        overdrafts.after_spend(customer=customer, payer=order.payer_agency)
    order.credited_qty = wallet_money
    order.balance_consume_qty = state.consume_money
    order.balance_completion_qty = state.completion_qty
    if state.tid is not None:
        order.last_tid = state.tid
    order.balance_refreshed_at = timezone.now()
    order.save(update_fields=["credited_qty", "balance_consume_qty", "balance_completion_qty", "last_tid",
                              "balance_refreshed_at", "pulled_money", "pulled_at", "read_at"])
    return "applied"


@transaction.atomic
def order_note_balance_state(*, order_id: int, consume_money: Decimal, completion_qty: Decimal,
                             tid: int | None) -> str:
    """A child order's figures from Balance, kept for support and reconciliation. Never wallet money: on a
    grouped child, ConsumeAmount is what covers it, not new money."""
    order = BalanceOrder.objects.select_for_update().get(pk=order_id)
    if tid is not None and tid <= order.last_tid:
        return "stale"
    order.balance_consume_qty = consume_money
    order.balance_completion_qty = completion_qty
    if tid is not None:
        order.last_tid = tid
    order.balance_refreshed_at = timezone.now()
    order.save(update_fields=["balance_consume_qty", "balance_completion_qty", "last_tid", "balance_refreshed_at"])
    return "applied"


def _order_for_key(service_id: int, service_order_id: str) -> BalanceOrder | None:
    if not service_order_id.isdigit():
        return None
    return BalanceOrder.objects.filter(pk=int(service_order_id), service__balance_service_id=service_id).first()


def wallet_money_from_notification(notification: OrderNotification, order: BalanceOrder) -> Decimal | None:
    """The wallet's money in a NotifyOrder2 of a wallet order, by the service's group reporting type: "parent":
    ConsumeSum (the group's money); "enqueue": TotalConsumeQty (the wallet product is priced one unit per rouble),
    or ConsumeSum while no child order exists (all the group's money is still on the wallet order). None when the
    notification cannot say (enqueue without TotalConsumeQty: the pull reads the children's money instead)."""
    if settings.BALANCE_GROUP_REPORTING != "enqueue":
        return notification.consume_sum
    if notification.total_consume_qty is not None:
        return notification.total_consume_qty.quantize(CENT)
    if not BalanceOrder.objects.filter(parent=order).exists():
        return notification.consume_sum
    return None


@notification_applier("order")
class OrderNotifications:
    """NotifyOrder2: a wallet order's money through `order_apply_balance_state`; a child's figures are noted."""

    @staticmethod
    def exists(notification: OrderNotification) -> bool:
        order = _order_for_key(notification.service_id, notification.service_order_id)
        # While money is moved onto or off a wallet order (adoption, payer transfer), or a credit invoice is being
        # made on it, Balance is told "not found" and re-sends later.
        return order is not None and not money_in_flight(order.pk) and not (
            order.payer_agency_id and credit_draw_in_flight(order.pk))

    @staticmethod
    def apply(notification: OrderNotification) -> str:
        order = _order_for_key(notification.service_id, notification.service_order_id)
        assert order is not None
        money = (wallet_money_from_notification(notification, order) if order.kind == BalanceOrder.Kind.WALLET
                 else None)
        if money is None:
            return order_note_balance_state(order_id=order.pk, consume_money=notification.consume_amount,
                                            completion_qty=notification.completion_qty, tid=notification.tid)
        return order_apply_balance_state(order_id=order.pk, state=OrderState(
            consume_money=money, completion_qty=notification.completion_qty, tid=notification.tid))


def wallet_money_from_info(wallet: OrderInfo, children: list[OrderInfo]) -> Decimal:
    """The wallet's money from GetOrdersInfo: the wallet order's consume_amount ("parent" reporting), plus what
    Balance moved onto its children ("enqueue")."""
    if settings.BALANCE_GROUP_REPORTING == "enqueue":
        return wallet.consume_amount + sum((c.consume_amount for c in children), ZERO)
    return wallet.consume_amount


def orders_pull(*, orders: list[BalanceOrder] | None = None, client: BalanceClient | None = None) -> dict[str, int]:
    """Read wallet orders with top-ups still waiting, or with a credit invoice drawn since they were last read,
    from Balance (GetOrdersInfo, batched) and credit money that came in, so that a lost notification delays nothing
    for long. Money is read from the money fields."""
    if orders is None:
        waiting = TopUp.objects.filter(status__in=[TopUp.Status.AWAITING_PAYMENT]).values("order_id")
        orders = list(BalanceOrder.objects.filter(Q(pk__in=waiting) | Q(pk__in=orders_drawn_unread()),
                                                  sync_status=BalanceOrder.SyncStatus.SYNCED)
                      .select_related("service"))
    client = client or BalanceClient()
    outcomes = {"orders": len(orders), "applied": 0, "stale": 0, "missing": 0}
    batch = settings.ORDERS_PULL_BATCH
    enqueue = settings.BALANCE_GROUP_REPORTING == "enqueue"
    for start in range(0, len(orders), batch):
        chunk = [o for o in orders[start:start + batch] if o.kind == BalanceOrder.Kind.WALLET]
        outcomes["missing"] += len(orders[start:start + batch]) - len(chunk)
        children: dict[int, list[BalanceOrder]] = {}
        if enqueue:
            for child in BalanceOrder.objects.filter(parent__in=chunk, sync_status=BalanceOrder.SyncStatus.SYNCED):
                children.setdefault(child.parent_id, []).append(child)  # type: ignore[arg-type]
        keys = [(o.service.balance_service_id, o.pk) for o in chunk]
        keys += [(o.service.balance_service_id, c.pk) for o in chunk for c in children.get(o.pk, [])]
        read_at = timezone.now()
        infos = client.get_orders_info(keys)
        by_id = {int(info.service_order_id): info for info in infos}
        for order in chunk:
            info = by_id.get(order.pk)
            if info is None:
                outcomes["missing"] += 1
                continue
            child_infos = [by_id[c.pk] for c in children.get(order.pk, []) if c.pk in by_id]
            outcome = order_apply_balance_state(order_id=order.pk, state=OrderState(
                consume_money=wallet_money_from_info(info, child_infos), completion_qty=info.completion_qty,
                tid=None, read_at=read_at))
            outcomes[outcome] += 1
    return outcomes


@on_credit_drawn
def orders_read_after_draw(orders: list[BalanceOrder], client: BalanceClient) -> None:
    """Right after a credit invoice: read the orders (their notifications wait for it; `order_apply_balance_state`)."""
    orders_pull(orders=orders, client=client)
