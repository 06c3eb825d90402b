"""Business metrics on `/metrics` (Prometheus), next to django-prometheus's generic ones.

Two kinds:
- Counters and a histogram incremented where the thing happens (Balance calls, webhook deliveries, money
  operations). They live in the process that did the work: the web process for API money operations, the
  Celery worker for Balance calls and deliveries. Run workers with `PROMETHEUS_MULTIPROC_DIR` (prometheus_client's
  multiprocess mode) or scrape each process, as for any prometheus_client counter.
- Gauges read from the database at scrape time by one collector (`BusinessCollector`), never per request: the
  outbox backlog by kind and its oldest age, failed operations, webhook events by status and the oldest waiting.
  Apps above the core add their own (notifications waiting and lag, open mismatches) with `@gauge_source`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from disbalance.models import ConsumerService, OutboxOperation, WebhookEvent

BALANCE_CALLS = Counter(
    "disbalance_balance_calls_total", "Calls to Balance by method and outcome", ["method", "outcome"])
BALANCE_CALL_SECONDS = Histogram(
    "disbalance_balance_call_seconds", "Latency of calls to Balance by method", ["method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
WEBHOOK_DELIVERIES = Counter(
    "disbalance_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"])
MONEY_OPERATIONS = Counter(
    "disbalance_money_operations_total", "Committed money operations by event type", ["type"])


@dataclass
class Gauge:
    """One gauge family read at scrape time: a name, help, label names and (labels..., value) samples."""

    name: str
    documentation: str
    labels: list[str] = field(default_factory=list)
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


GaugeSource = Callable[[], Iterable[Gauge]]
_SOURCES: dict[str, GaugeSource] = {}


def gauge_source(name: str) -> Callable[[GaugeSource], GaugeSource]:
    """Register a function yielding `Gauge`s at scrape time; a name is registered once."""
    def register(func: GaugeSource) -> GaugeSource:
        if name in _SOURCES and _SOURCES[name] is not func:
            raise RuntimeError(f"gauge source {name!r} registered twice")
        _SOURCES[name] = func
        return func

    return register


def age_seconds(oldest: object) -> float:
    return max(0.0, (timezone.now() - oldest).total_seconds()) if oldest is not None else 0.0  # type: ignore[operator]


class BusinessCollector(Collector):
    def describe(self) -> list[GaugeMetricFamily]:
        # Nothing to describe up front: registering must not query the database (it happens at start-up).
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, source in sorted(_SOURCES.items()):
            try:
                gauges = list(source())
            except DatabaseError:
                # A scrape must answer even when the database does not: the generic metrics still tell why.
                yield _down(name)
                continue
            for gauge in gauges:
                family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=gauge.labels)
                for labels, value in gauge.samples:
                    family.add_metric(list(labels), value)
                yield family


def _down(name: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily("disbalance_metrics_source_up", "Whether a gauge source could be read",
                               labels=["source"])
    family.add_metric([name], 0)
    return family


_collector: BusinessCollector | None = None


def install() -> None:
    """Register the scrape-time collector with the default registry (once per process)."""
    global _collector
    if _collector is None:
        _collector = BusinessCollector()
        REGISTRY.register(_collector)


@gauge_source("outbox")
def _outbox() -> Iterable[Gauge]:
    waiting = Gauge("disbalance_outbox_backlog", "Outbox operations not yet done (pending or in progress) by kind",
                    ["kind"])
    oldest = Gauge("disbalance_outbox_oldest_age_seconds", "Age of the oldest outbox operation not yet done, by kind",
                   ["kind"])
    failed = Gauge("disbalance_outbox_failed", "Outbox operations that failed and wait for support, by kind",
                   ["kind"])
    rows = (OutboxOperation.objects.filter(status__in=[OutboxOperation.Status.PENDING,
                                                       OutboxOperation.Status.IN_PROGRESS])
            .values("kind").annotate(n=Count("id"), oldest=Min("created_at")).order_by("kind"))
    for row in rows:
        waiting.samples.append(((row["kind"],), row["n"]))
        oldest.samples.append(((row["kind"],), age_seconds(row["oldest"])))
    for row in (OutboxOperation.objects.filter(status=OutboxOperation.Status.FAILED).values("kind")
                .annotate(n=Count("id")).order_by("kind")):
        failed.samples.append(((row["kind"],), row["n"]))
    return [waiting, oldest, failed]


@gauge_source("webhooks")
def _webhooks() -> Iterable[Gauge]:
    events = Gauge("disbalance_webhook_events", "Events by delivery status", ["status"])
    for row in WebhookEvent.objects.values("status").annotate(n=Count("id")).order_by("status"):
        events.samples.append(((row["status"],), row["n"]))
    oldest = WebhookEvent.objects.filter(status=WebhookEvent.Status.PENDING).aggregate(o=Min("created_at"))["o"]
    lag = Gauge("disbalance_webhook_oldest_pending_age_seconds", "Age of the oldest event waiting for delivery",
                samples=[((), age_seconds(oldest))])
    disabled = Gauge("disbalance_webhook_endpoints_disabled", "Services whose webhook endpoint is disabled",
                     samples=[((), ConsumerService.objects.filter(webhook_disabled_at__isnull=False).count())])
    return [events, lag, disabled]
