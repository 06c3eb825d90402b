"""Scrape-time gauges of the Balance link: notifications stored but not yet applied, and how late they are."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Min

from balance_gateway.models import BalanceNotification
from disbalance.metrics import Gauge, age_seconds, gauge_source


@gauge_source("balance_notifications")
def notifications_waiting() -> Iterable[Gauge]:
    waiting = Gauge("disbalance_notifications_waiting", "Balance notifications received, not yet applied, by kind",
                    ["kind"])
    lag = Gauge("disbalance_notifications_lag_seconds",
                "Age of the oldest Balance notification not yet applied, by kind", ["kind"])
    rows = (BalanceNotification.objects.filter(outcome=BalanceNotification.Outcome.RECEIVED)
            .values("kind").annotate(n=Count("id"), oldest=Min("received_at")).order_by("kind"))
    seen = {row["kind"]: row for row in rows}
    for kind in BalanceNotification.Kind.values:
        row = seen.get(kind)
        waiting.samples.append(((kind,), row["n"] if row else 0))
        lag.samples.append(((kind,), age_seconds(row["oldest"]) if row else 0.0))
    return [waiting, lag]
