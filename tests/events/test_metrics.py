"""`/metrics` after a scenario: the business series, with the values the scenario produced."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from balance_gateway.models import BalanceNotification
from disbalance.models import OutboxOperation
from disbalance.services import service_create
from disbalance.webhooks import webhook_emit
from payments.services import charge_create
from reconciliation.models import Mismatch
from tests.webhook_receiver import receiver  # noqa: F401 - the fixture
from wallets.services import wallet_credit_topup


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.django_db(transaction=True)
def test_metrics_show_the_business_series_after_a_scenario(active_customer, products, receiver):  # noqa: F811
    before = scrape()
    service = service_create(slug="autoru", name="Auto.ru", balance_service_id=7, webhook_url=receiver.url,
                             webhook_secret="s").service
    with transaction.atomic():
        wallet_credit_topup(customer=active_customer, payer_agency=None, amount=Decimal("100.00"))
    charge_create(customer=active_customer, product=products["placement"], amount=Decimal("30.00"))
    receiver.script(500)
    with transaction.atomic():
        webhook_emit(service=service, type="customer.updated", data={"customer": "x"})  # refused once
    old = timezone.now() - timedelta(seconds=120)
    OutboxOperation.objects.create(kind="customer.sync", subject="customer:999", created_at=old,
                                   next_attempt_at=timezone.now() + timedelta(hours=1))
    OutboxOperation.objects.create(kind="topup.request", subject="customer:998", status="failed")
    BalanceNotification.objects.create(kind="order", object_key="7:1", tid=1, received_at=old)
    Mismatch.objects.create(kind="money_in", severity="critical", key="money_in:order:1", summary="differs")
    Mismatch.objects.create(kind="money_in", severity="critical", key="money_in:order:2", summary="differs")

    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Counted where it happened (this process).
    assert delta("disbalance_money_operations_total", type="money.received") == 1
    assert delta("disbalance_money_operations_total", type="charge.succeeded") == 1
    assert delta("disbalance_webhook_deliveries_total", outcome="delivered") >= 1  # the money events went out
    assert delta("disbalance_webhook_deliveries_total", outcome="refused") == 1
    assert value(after, "disbalance_balance_calls_total", method="CreateClient", outcome="ok") >= 1
    assert value(after, "disbalance_balance_call_seconds_count", method="CreateClient") >= 1
    # Read from the database at scrape time.
    assert value(after, "disbalance_outbox_backlog", kind="customer.sync") == 1
    assert 119 <= value(after, "disbalance_outbox_oldest_age_seconds", kind="customer.sync") < 600
    assert value(after, "disbalance_outbox_failed", kind="topup.request") == 1
    assert value(after, "disbalance_notifications_waiting", kind="order") == 1
    assert value(after, "disbalance_notifications_waiting", kind="client") == 0
    assert value(after, "disbalance_notifications_lag_seconds", kind="order") >= 119
    assert value(after, "disbalance_mismatches_open", kind="money_in", severity="critical") == 2
    assert value(after, "disbalance_webhook_events", status="pending") == 1  # the refused one waits
    assert value(after, "disbalance_webhook_oldest_pending_age_seconds") >= 0
    assert value(after, "disbalance_webhook_endpoints_disabled") == 0
