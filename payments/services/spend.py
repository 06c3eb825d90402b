"""Spend reported to Balance: each child order's cumulative spend, sent with UpdateCampaigns."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db.models import F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Replace
from django.utils import timezone

from balance_gateway.client import BalanceClient, CompletionReport
from disbalance.money import ZERO
from payments.models import BalanceOrder
from payments.services.orders import enqueue_orders_sync_by_id
from wallets.models import Account


def spend_account_key(order: BalanceOrder) -> str:
    """The key of a child order's spend account: `child:c<customer>:p<payer>:<product>` -> `spend:...`."""
    return "spend:" + order.key.removeprefix("child:")


def orders_with_unreported_spend() -> QuerySet[BalanceOrder]:
    """Synced child orders whose cumulative spend in the ledger differs from what Balance last accepted.

    A child order `child:c<customer>:p<payer>:<product>` and its spend account `spend:c<customer>:p<payer>:<product>`
    share the key's tail, which joins them without a second foreign key.
    """
    spend = Account.objects.filter(kind=Account.Kind.SPEND, key=OuterRef("spend_key")).values("balance")[:1]
    return (
        BalanceOrder.objects.filter(kind=BalanceOrder.Kind.CHILD, sync_status=BalanceOrder.SyncStatus.SYNCED)
        .annotate(spend_key=Replace(F("key"), Value("child:"), Value("spend:")))
        .annotate(spend=Subquery(spend))
        .exclude(spend__isnull=True)
        .exclude(spend=F("reported_qty"))
        .select_related("service")
        .order_by("id")
    )


def _report_completions(client: BalanceClient, orders: list[BalanceOrder], money: dict[int, Decimal]
                        ) -> dict[int, bool]:
    """The one reporter: send these orders' cumulative completions in one UpdateCampaigns call and, for each child
    order Balance accepted, move `reported_qty` to the figure sent. Returns {order id: accepted}."""
    now = timezone.now()
    results = client.update_campaigns([
        CompletionReport(service_id=o.service.balance_service_id, service_order_id=o.pk, money=money[o.pk], dt=now)
        for o in orders
    ])
    accepted: dict[int, bool] = {}
    for order, ok in zip(orders, results, strict=True):
        accepted[order.pk] = ok
        if ok and order.kind == BalanceOrder.Kind.CHILD:
            BalanceOrder.objects.filter(pk=order.pk).update(reported_qty=money[order.pk], reported_at=now)
    return accepted


def spend_report(*, client: BalanceClient | None = None, batch_size: int | None = None) -> dict[str, int]:
    """Send each changed child order's cumulative spend with UpdateCampaigns, many orders per call.

    Safe to repeat and to crash mid-way: figures are cumulative, and `reported_qty` moves only after Balance
    accepted the value sent.
    """
    client = client or BalanceClient()
    batch_size = batch_size or settings.SPEND_REPORT_BATCH
    totals = {"orders": 0, "calls": 0, "rejected": 0}
    last_id = 0
    while True:
        chunk = list(orders_with_unreported_spend().filter(id__gt=last_id)[:batch_size])
        if not chunk:
            break
        last_id = chunk[-1].pk
        accepted = _report_completions(client, chunk, {o.pk: o.spend for o in chunk})
        totals["calls"] += 1
        for order in chunk:
            if accepted[order.pk]:
                totals["orders"] += 1
            else:
                totals["rejected"] += 1
                BalanceOrder.objects.filter(pk=order.pk).update(sync_status=BalanceOrder.SyncStatus.PENDING)
                enqueue_orders_sync_by_id(order.customer_id)
    return totals


def orders_rereport(*, orders: list[BalanceOrder], client: BalanceClient | None = None,
                    batch_size: int | None = None) -> dict[int, bool]:
    """Report the cumulative completion of these orders again, whatever was reported before (UpdateCampaigns).

    `spend_report` sends only orders whose spend changed since the last accepted report; a figure changed in
    Balance behind billing's back needs this. Child orders get their spend account's balance (read now), wallet
    orders 0.00. Returns {order id: accepted}.
    """
    if not orders:
        return {}
    client = client or BalanceClient()
    orders = list(BalanceOrder.objects.filter(pk__in=[o.pk for o in orders]).select_related("service"))
    spend_keys = {o.pk: spend_account_key(o) for o in orders if o.kind == BalanceOrder.Kind.CHILD}
    balances = dict(Account.objects.filter(key__in=spend_keys.values()).values_list("key", "balance"))
    accepted: dict[int, bool] = {}
    batch_size = batch_size or settings.RECONCILE_BATCH_SIZE
    for start in range(0, len(orders), batch_size):
        chunk = orders[start:start + batch_size]
        money = {o.pk: balances.get(spend_keys[o.pk], ZERO) if o.pk in spend_keys else ZERO for o in chunk}
        accepted.update(_report_completions(client, chunk, money))
    return accepted
