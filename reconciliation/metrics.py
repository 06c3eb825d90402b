"""Scrape-time gauge of open mismatches between billing and Balance, by kind and severity."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count

from disbalance.metrics import Gauge, gauge_source
from reconciliation.models import Mismatch


@gauge_source("mismatches")
def open_mismatches() -> Iterable[Gauge]:
    gauge = Gauge("disbalance_mismatches_open", "Open mismatches with Balance by kind and severity",
                  ["kind", "severity"])
    for row in (Mismatch.objects.filter(status=Mismatch.Status.OPEN).values("kind", "severity")
                .annotate(n=Count("id")).order_by("kind", "severity")):
        gauge.samples.append(((row["kind"], row["severity"]), row["n"]))
    return [gauge]
