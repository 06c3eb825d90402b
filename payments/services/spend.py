"""Spend reported to Balance: each child order's cumulative spend, sent with UpdateCampaigns."""

from __future__ import annotations

from django.conf import settings
from django.db.models import F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Replace
from django.utils import timezone

from balance_gateway.client import BalanceClient, CompletionReport
from payments.models import BalanceOrder
from payments.services.orders import enqueue_orders_sync_by_id
from wallets.models import Account


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
        now = timezone.now()
        reports = [CompletionReport(service_id=o.service.balance_service_id, service_order_id=o.pk, money=o.spend,
                                    dt=now) for o in chunk]
        results = client.update_campaigns(reports)
        totals["calls"] += 1
        for order, accepted in zip(chunk, results, strict=True):
            if accepted:
                BalanceOrder.objects.filter(pk=order.pk).update(reported_qty=order.spend, reported_at=now)
                totals["orders"] += 1
            else:
                totals["rejected"] += 1
                BalanceOrder.objects.filter(pk=order.pk).update(sync_status=BalanceOrder.SyncStatus.PENDING)
                enqueue_orders_sync_by_id(order.customer_id)
    return totals
