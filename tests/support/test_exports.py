"""CSV exports of the console's lists (customers, mismatches, Balance operations, webhook events): one click, the
rows of the current filters and search only (django-import-export, export only)."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from disbalance.models import OutboxOperation, WebhookEvent
from reconciliation.models import Mismatch
from tests.factories import CustomerFactory
from tests.support.test_console import mismatch


def rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;") and ".csv" in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def test_customers_export_respects_search_and_filters(support_client, customer, service):
    CustomerFactory(service=service, external_id="dealer:other", name="Other Cars", inn="7700000001",
                    status="failed")
    url = reverse("admin:customers_customer_export")
    by_inn = rows(support_client.get(url, {"q": "7709876543"}))
    assert [row["external_id"] for row in by_inn] == ["dealer:20101"]
    failed = rows(support_client.get(url, {"status__exact": "failed"}))
    assert [row["external_id"] for row in failed] == ["dealer:other"]
    assert {row["external_id"] for row in rows(support_client.get(url))} == {"dealer:20101", "dealer:other"}
    # The changelist's Export link carries the current filters.
    page = support_client.get(reverse("admin:customers_customer_changelist"), {"status__exact": "failed"})
    assert f'href="{url}?status__exact=failed"' in page.content.decode()


def test_mismatches_export_respects_filters(support_client, customer):
    mismatch(customer, severity="critical", n=1)
    mismatch(customer, severity="warning", n=2)
    url = reverse("admin:reconciliation_mismatch_export")
    critical = rows(support_client.get(url, {"severity__exact": "critical"}))
    assert [row["severity"] for row in critical] == ["critical"]
    assert len(rows(support_client.get(url))) == Mismatch.objects.count() == 2


def test_operations_and_events_export(support_client, customer, service):
    # Rows as the outbox leaves them (written directly: nothing here should run them).
    OutboxOperation.objects.create(kind="orders.sync", subject=f"customer:{customer.pk}", service=service,
                                   status="failed", last_error="Balance said no")
    OutboxOperation.objects.create(kind="orders.sync", subject="customer:999999", service=service)
    operations = rows(support_client.get(reverse("admin:disbalance_outboxoperation_export"),
                                         {"subject": f"customer:{customer.pk}"}))
    assert {row["subject"] for row in operations} == {f"customer:{customer.pk}"}
    assert len(operations) == OutboxOperation.objects.filter(subject=f"customer:{customer.pk}").count()
    WebhookEvent.objects.create(service=service, type="topup.succeeded", data={"customer": customer.external_id},
                                status="skipped")
    WebhookEvent.objects.create(service=service, type="customer.blocked", data={"customer": customer.external_id},
                                status="skipped")
    events = rows(support_client.get(reverse("admin:disbalance_webhookevent_export"),
                                     {"type__exact": "topup.succeeded"}))
    assert [row["type"] for row in events] == ["topup.succeeded"]


@pytest.mark.parametrize("name", ["customers_customer", "reconciliation_mismatch", "disbalance_outboxoperation",
                                  "disbalance_webhookevent"])
def test_exports_need_a_signed_in_staff_user(client, name):
    response = client.get(reverse(f"admin:{name}_export"))
    assert response.status_code == 302 and "/login/" in response["Location"]
