"""The events feed (`GET /events`), low-balance alerts, and delivery through a 30-hour consumer outage."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from customers.models import Customer
from disbalance.events import events_purge
from disbalance.models import ConsumerService, WebhookEvent
from disbalance.services import service_create
from disbalance.webhooks import webhooks_sweep
from payments.services import charge_create
from tests.webhook_receiver import receiver  # noqa: F401 - the fixture
from wallets.services import wallet_credit_topup

D = Decimal


def credit(customer: Customer, amount: str) -> None:
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=None, amount=D(amount))


def low_balance_events(customer: Customer) -> list[dict]:
    return [e.data for e in WebhookEvent.objects.filter(customer_pk=customer.pk, type="wallet.low_balance")
            .order_by("sequence")]


# --- Low balance ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_one_low_balance_event_per_downward_crossing(api, active_customer, products):
    path = "/api/v1/customers/dealer:20101/wallet/alerts"
    assert api.get(path).json() == {"low_balance": None, "effective": None}
    response = api.put(path, {"low_balance": "500.00"}, format="json")
    assert response.status_code == 200 and response.json() == {"low_balance": "500.00", "effective": "500.00"}
    customer = Customer.objects.get(pk=active_customer.pk)

    def charge(amount: str) -> None:
        charge_create(customer=customer, product=products["placement"], amount=D(amount))

    credit(customer, "1000.00")        # 1000: above, nothing
    charge("400.00")                   # 600: still above
    charge("100.00")                   # 500: at the threshold is not below it
    assert low_balance_events(customer) == []
    charge("50.00")                    # 450: crossed down -> one
    charge("100.00")                   # 350: stays below -> none
    credit(customer, "100.00")         # 450: still below, not re-armed
    charge("10.00")                    # 440: none
    assert [e["balance"] for e in low_balance_events(customer)] == ["450.00"]
    credit(customer, "200.00")         # 640: above -> re-armed
    charge("300.00")                   # 340: crossed down again -> one
    credit(customer, "700.00")         # 1040
    charge("1040.00")                  # 0.00: crossed down in one go -> one
    events = low_balance_events(customer)
    assert [(e["balance"], e["threshold"], e["payer"]) for e in events] == [
        ("450.00", "500.00", None), ("340.00", "500.00", None), ("0.00", "500.00", None)]
    assert events[0]["cause"]["type"] == "charge.succeeded"

    # null: back to the service's default (none here: no more alerts).
    assert api.put(path, {"low_balance": None}, format="json").json() == {"low_balance": None, "effective": None}
    credit(customer, "1000.00")
    charge("900.00")
    assert len(low_balance_events(Customer.objects.get(pk=customer.pk))) == 3


@pytest.mark.django_db
def test_service_default_threshold_applies_when_the_customer_sets_none(api, active_customer, products):
    ConsumerService.objects.filter(pk=active_customer.service_id).update(low_balance_default=D("100.00"))
    customer = Customer.objects.select_related("service").get(pk=active_customer.pk)
    assert api.get("/api/v1/customers/dealer:20101/wallet/alerts").json()["effective"] == "100.00"
    credit(customer, "150.00")
    charge_create(customer=customer, product=products["placement"], amount=D("60.00"))
    assert [e["threshold"] for e in low_balance_events(customer)] == ["100.00"]


@pytest.mark.django_db
def test_alerts_refuse_bad_amounts_and_other_services_customers(api, other_api, active_customer):
    path = "/api/v1/customers/dealer:20101/wallet/alerts"
    for bad in ("1.234", "-5.00", "NaN", 1.5, "abc"):
        assert api.put(path, {"low_balance": bad}, format="json").status_code == 400, bad
    assert other_api.put(path, {"low_balance": "5.00"}, format="json").status_code == 404
    assert Customer.objects.get(pk=active_customer.pk).low_balance_threshold is None


# --- The feed -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_feed_is_newest_first_paginated_filtered_and_scoped(api, other_api, active_customer, products):
    for amount in ("100.00", "200.00", "300.00"):
        credit(active_customer, amount)
    charge_create(customer=active_customer, product=products["placement"], amount=D("50.00"))
    ours = list(WebhookEvent.objects.filter(service=active_customer.service).order_by("-created_at"))

    page = api.get("/api/v1/events?limit=2").json()
    assert [e["id"] for e in page["results"]] == [str(e.id) for e in ours[:2]]
    assert set(page["results"][0]) == {"id", "type", "created_at", "sequence", "data"}
    ids = [e["id"] for e in page["results"]]
    while page["next"]:
        page = api.get(page["next"]).json()
        ids += [e["id"] for e in page["results"]]
    assert ids == [str(e.id) for e in ours]

    money = api.get("/api/v1/events?type=money.received").json()["results"]
    assert [e["data"]["amount"] for e in money] == ["300.00", "200.00", "100.00"]
    assert [e["sequence"] for e in money] == sorted((e["sequence"] for e in money), reverse=True)
    assert api.get("/api/v1/events?customer=dealer:20101&type=charge.succeeded").json()["results"][0]["data"][
        "balance"] == "550.00"
    assert api.get("/api/v1/events?customer=nobody").json()["results"] == []
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert api.get("/api/v1/events", {"since": later}).json()["results"] == []
    assert api.get("/api/v1/events?type=no.such").status_code == 400
    assert api.get("/api/v1/events?since=yesterday").status_code == 400
    assert other_api.get("/api/v1/events").json()["results"] == []  # another service sees none of them


@pytest.mark.django_db
def test_events_are_kept_thirty_days_then_purged(active_customer, settings):
    settings.EVENTS_RETENTION_DAYS = 1  # never below 30
    credit(active_customer, "10.00")
    total = WebhookEvent.objects.count()
    assert events_purge(now=timezone.now() + timedelta(days=29)) == 0
    assert events_purge(now=timezone.now() + timedelta(days=31)) == total
    assert WebhookEvent.objects.count() == 0


# --- A consumer down for 30 hours -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_consumer_down_for_30_hours_receives_every_event_in_order_and_the_feed_has_the_same_ids(
        api, service, receiver, products, emulator, run_outbox):  # noqa: F811
    from tests.customers.test_api import COMPANY

    service_create(slug=service.slug, name=service.name, balance_service_id=service.balance_service_id,
                   webhook_url=receiver.url, webhook_secret="s3cret")
    customers = []
    for n in range(3):
        body = {**COMPANY, "external_id": f"dealer:{n}"}
        assert api.post("/api/v1/customers", body, format="json").status_code == 201
    run_outbox()
    customers = list(Customer.objects.select_related("service").order_by("external_id"))
    assert [c.status for c in customers] == ["active"] * 3

    receiver.default = 503  # the consumer goes down
    start = timezone.now()
    for round_ in range(4):
        for customer in customers:
            credit(customer, f"{100 + round_}.00")
            charge_create(customer=customer, product=products["placement"], amount=D("10.00"))
    expected = list(WebhookEvent.objects.filter(service=service).order_by("created_at"))
    assert len(expected) >= 3 * 8

    # Thirty simulated hours of sweeps every 10 minutes: everything is retried on its schedule, nothing is lost.
    moment = start
    while moment < start + timedelta(hours=30):
        moment += timedelta(minutes=10)
        webhooks_sweep(now=moment)
    assert receiver.accepted() == []
    assert len(receiver.requests) > len(customers)  # it kept trying
    assert not WebhookEvent.objects.exclude(status="pending").filter(service=service).exists()
    assert ConsumerService.objects.get(pk=service.pk).webhook_disabled_at is None

    receiver.default = 200  # back up
    while WebhookEvent.objects.filter(service=service, status="pending").exists():
        moment += timedelta(minutes=10)
        assert moment < start + timedelta(hours=40), "not delivered within 10 hours of the consumer's return"
        webhooks_sweep(now=moment)

    bodies = [json.loads(r.body) for r in receiver.accepted()]
    assert sorted(b["id"] for b in bodies) == sorted(str(e.id) for e in expected)  # every event, once
    for customer in customers:
        sequences = [b["sequence"] for b in bodies if b["data"]["customer"] == customer.external_id]
        assert sequences == list(range(1, len(sequences) + 1))  # in order per customer, no gap
    feed, page = [], api.get("/api/v1/events?limit=500").json()
    feed += [e["id"] for e in page["results"]]
    assert sorted(feed) == sorted(b["id"] for b in bodies)  # the feed has the same ids
