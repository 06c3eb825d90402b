"""The console's new support actions: refund a charge, create a payment link, re-send a customer's webhooks for a
period. Each needs its permission and a reason, is recorded with the user, and reaches Balance or the consumer
through its service."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from disbalance.models import WebhookEvent
from payments.models import Charge, Refund, TopUp
from payments.services import charge_create
from reconciliation.actions import mismatch_fix
from tests.support.test_console import credit, messages_of
from wallets.models import LedgerTransaction


def url(customer, name: str) -> str:
    return reverse(f"admin:customers_customer_{name}", args=[customer.pk])


@pytest.fixture
def charged(customer, products):
    credit(customer, customer.agency, "1000.00")
    return charge_create(customer=customer, product=products["placement"], amount=Decimal("300.00"))


def test_refund_needs_the_permission_and_a_reason(support_client, billing_client, customer, charged):
    assert support_client.get(url(customer, "refund")).status_code == 403
    response = billing_client.post(url(customer, "refund"), {"charge": str(charged.pk), "amount": "10.00"})
    assert response.status_code == 200 and "reason" in response.context["form"].errors
    assert not Refund.objects.exists()


def test_refund_part_then_refusing_more_than_is_left(billing_client, billing_admin, customer, charged):
    response = billing_client.post(url(customer, "refund"), {"charge": str(charged.pk), "amount": "100.00",
                                                             "reason": "duplicate placement"}, follow=True)
    assert any("Refunded 100.00" in message for message in messages_of(response)), messages_of(response)
    refund = Refund.objects.get(charge=charged)
    assert (refund.amount, refund.reason) == (Decimal("100.00"), "duplicate placement")
    assert LedgerTransaction.objects.filter(type="refund", reference_id=str(refund.pk)).exists()
    assert LogEntry.objects.filter(user=billing_admin, object_id=str(customer.pk),
                                   change_message__contains="duplicate placement").exists()
    # More than what is left (200.00): refused by the service, nothing changes.
    again = billing_client.post(url(customer, "refund"), {"charge": str(charged.pk), "amount": "250.00",
                                                          "reason": "again"})
    assert again.status_code == 200
    assert any("Nothing was changed" in message for message in messages_of(again))
    assert Refund.objects.count() == 1
    charged.refresh_from_db()
    assert charged.refunded_amount == Decimal("100.00")
    # The whole rest (no amount).
    billing_client.post(url(customer, "refund"), {"charge": str(charged.pk), "reason": "rest"})
    assert Charge.objects.get(pk=charged.pk).refunded_amount == Decimal("300.00")
    choices = billing_client.get(url(customer, "refund")).context["form"].fields["charge"].choices
    assert str(charged.pk) not in {value for value, _label in choices}  # nothing left to refund


@pytest.mark.django_db(transaction=True)
def test_payment_link_is_created_in_balance(support_client, support_user, balance, run_outbox, mismatched):
    customer, _order, mismatch = mismatched
    assert mismatch_fix(mismatch=mismatch, user=support_user).ok  # the order is the customer's again in Balance
    assert support_client.post(url(customer, "payment_link"), {"amount": "2500.00"}).status_code == 200
    assert not TopUp.objects.exists()  # no reason, nothing done
    response = support_client.post(url(customer, "payment_link"), {
        "amount": "2500.00", "reason": "the dealer asked for a link by phone"}, follow=True)
    topup = TopUp.objects.get(customer=customer)
    assert any(str(topup.pk) in message for message in messages_of(response))
    run_outbox()
    topup.refresh_from_db()
    assert topup.amount == Decimal("2500.00") and topup.status == "awaiting_payment"
    assert topup.payment_url.startswith("http")
    assert LogEntry.objects.filter(user=support_user, change_message__contains="by phone").exists()
    # The customer page lists it with its payment page, and the timeline too.
    timeline = support_client.get(url(customer, "timeline")).content.decode()
    assert topup.payment_url in timeline


@pytest.mark.django_db(transaction=True)
def test_resend_webhooks_of_a_period(support_client, support_user, customer, service):
    service.webhook_url = "http://127.0.0.1:9/hooks"  # nobody listens: deliveries fail and wait for a retry
    service.save(update_fields=["webhook_url"])
    now = timezone.now()
    inside = WebhookEvent.objects.create(service=service, type="topup.succeeded", status="delivered",
                                         data={"customer": customer.external_id})
    old = WebhookEvent.objects.create(service=service, type="topup.succeeded", status="delivered",
                                      data={"customer": customer.external_id})
    WebhookEvent.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=40))
    other = WebhookEvent.objects.create(service=service, type="topup.succeeded", status="delivered",
                                        data={"customer": "dealer:other"})
    today = timezone.localdate()
    period = {"date_from": (today - timedelta(days=7)).isoformat(), "date_to": today.isoformat()}
    assert support_client.post(url(customer, "resend_webhooks"), period).status_code == 200  # no reason
    response = support_client.post(url(customer, "resend_webhooks"), {**period, "reason": "consumer lost them"},
                                   follow=True)
    assert any("Re-sent 1 webhook(s)" in message for message in messages_of(response)), messages_of(response)
    for event, resent in ((inside, True), (old, False), (other, False)):
        event.refresh_from_db()
        assert ("re-send by support" in event.note) is resent, event
    assert LogEntry.objects.filter(user=support_user, change_message__contains="consumer lost them").exists()


def test_actions_are_offered_by_permission(support_client, billing_client, customer):
    page = reverse("admin:customers_customer_change", args=[customer.pk])
    support_html = support_client.get(page).content.decode()
    assert url(customer, "payment_link") in support_html and url(customer, "resend_webhooks") in support_html
    assert url(customer, "refund") not in support_html
    assert url(customer, "refund") in billing_client.get(page).content.decode()
