"""Spend reported to Balance: each child order's cumulative spend, in the product's unit, sent with UpdateCampaigns;
a completion Balance refuses is flagged on the order for support, never retried on its own."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Replace
from django.utils import timezone

from balance_gateway.client import BalanceClient, CompletionReport
from disbalance.money import ZERO
from payments.models import BalanceOrder
from wallets.models import Account

logger = logging.getLogger(__name__)

REPORT_REFUSED = ("Balance refused the completion (UpdateCampaigns answered 0): the order is blocked or stopped "
                  "in Balance, or Balance saw the report's dt as future. Not sent again until support re-reports "
                  "it (reconciliation shows it as a money-out mismatch).")


def spend_account_key(order: BalanceOrder) -> str:
    """The key of a child order's spend account: `child:c<customer>:p<payer>:<product>` -> `spend:...`."""
    return "spend:" + order.key.removeprefix("child:")


def orders_with_unreported_spend() -> QuerySet[BalanceOrder]:
    """Synced child orders whose cumulative spend in the ledger differs from what Balance last accepted, and
    whose last report Balance did not refuse (a refused one waits for support: `report_refused_at`).

    A child order `child:c<customer>:p<payer>:<product>` and its spend account `spend:c<customer>:p<payer>:<product>`
    share the key's tail, which joins them without a second foreign key.
    """
    spend = Account.objects.filter(kind=Account.Kind.SPEND, key=OuterRef("spend_key")).values("balance")[:1]
    return (
        BalanceOrder.objects.filter(kind=BalanceOrder.Kind.CHILD, sync_status=BalanceOrder.SyncStatus.SYNCED,
                                    report_refused_at__isnull=True)
        .annotate(spend_key=Replace(F("key"), Value("child:"), Value("spend:")))
        .annotate(spend=Subquery(spend))
        .exclude(spend__isnull=True)
        .exclude(spend=F("reported_qty"))
        .select_related("service", "product")
        .order_by("id")
    )


def completion_report_for(order: BalanceOrder, money: Decimal, now: datetime) -> CompletionReport:
    """An order's cumulative spend as Balance counts it: in the product's unit, exact to 6 places (a wallet order
    completes nothing)."""
    product = order.product
    if product is None:
        return CompletionReport(service_id=order.service.balance_service_id, service_order_id=order.pk,
                                unit="Money", qty=Decimal(0), dt=now)
    return CompletionReport(service_id=order.service.balance_service_id, service_order_id=order.pk,
                            unit=product.balance_unit, qty=product.units_for(money), dt=now)


def _report_completions(client: BalanceClient, orders: list[BalanceOrder], money: dict[int, Decimal]
                        ) -> dict[int, bool | None]:
    """The one reporter: send these orders' cumulative completions in one UpdateCampaigns call. For each child
    order Balance accepted, move `reported_qty` to the figure sent (and clear an earlier refusal); one Balance
    refused (0) is flagged with the reason; one it did not answer for stays as it was. Returns {order id: True
    (accepted), False (refused) or None (not answered)}."""
    now = timezone.now()
    results = client.update_campaigns([completion_report_for(o, money[o.pk], now) for o in orders])
    accepted: dict[int, bool | None] = {}
    for order, ok in zip(orders, results, strict=True):
        accepted[order.pk] = ok
        if ok and order.kind == BalanceOrder.Kind.CHILD:
            BalanceOrder.objects.filter(pk=order.pk).update(reported_qty=money[order.pk], reported_at=now,
                                                            report_refused_at=None, report_error="")
        elif ok is False:
            BalanceOrder.objects.filter(pk=order.pk).update(report_refused_at=now, report_error=REPORT_REFUSED)
            logger.warning("completion refused by Balance", extra={"order": order.pk, "spend": str(money[order.pk])})
    return accepted


def spend_report(*, client: BalanceClient | None = None, batch_size: int | None = None) -> dict[str, int]:
    """Send each changed child order's cumulative spend with UpdateCampaigns, many orders per call.

    Safe to repeat and to crash mid-way: figures are cumulative, and `reported_qty` moves only after Balance
    accepted the value sent. An order Balance refuses (0) is flagged with the reason and left alone: never
    endless retries. One Balance does not answer for is sent again next time.
    """
    client = client or BalanceClient()
    batch_size = batch_size or settings.SPEND_REPORT_BATCH
    totals = {"orders": 0, "calls": 0, "rejected": 0, "unanswered": 0}
    last_id = 0
    while True:
        chunk = list(orders_with_unreported_spend().filter(id__gt=last_id)[:batch_size])
        if not chunk:
            break
        last_id = chunk[-1].pk
        accepted = _report_completions(client, chunk, {o.pk: o.spend for o in chunk})
        totals["calls"] += 1
        for order in chunk:
            outcome = accepted[order.pk]
            key = "orders" if outcome else "unanswered" if outcome is None else "rejected"
            totals[key] += 1
    return totals


def orders_rereport(*, orders: list[BalanceOrder], client: BalanceClient | None = None,
                    batch_size: int | None = None) -> dict[int, bool]:
    """Report the cumulative completion of these orders again, whatever was reported before (UpdateCampaigns).

    `spend_report` sends only orders whose spend changed since the last accepted report (and never one Balance
    refused); a figure changed in Balance behind billing's back, or support's re-report after a refusal, needs
    this. Child orders get their spend account's balance (read now), wallet orders 0. Returns {order id: accepted}.
    """
    if not orders:
        return {}
    client = client or BalanceClient()
    orders = list(BalanceOrder.objects.filter(pk__in=[o.pk for o in orders]).select_related("service", "product"))
    spend_keys = {o.pk: spend_account_key(o) for o in orders if o.kind == BalanceOrder.Kind.CHILD}
    balances = dict(Account.objects.filter(key__in=spend_keys.values()).values_list("key", "balance"))
    accepted: dict[int, bool] = {}
    batch_size = batch_size or settings.RECONCILE_BATCH_SIZE
    for start in range(0, len(orders), batch_size):
        chunk = orders[start:start + batch_size]
        money = {o.pk: balances.get(spend_keys[o.pk], ZERO) if o.pk in spend_keys else ZERO for o in chunk}
        accepted.update({pk: bool(ok) for pk, ok in _report_completions(client, chunk, money).items()})
    return accepted
