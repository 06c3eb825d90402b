"""Every money-moving path (API, Balance notifications, support actions, periodic jobs) announces itself with
exactly one event of the right type and figures, and a consumer applying only the events ends where
`GET /wallet` is."""

from __future__ import annotations

import xmlrpc.client
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import transaction
from django.test import Client
from django.utils import timezone

from agencies.models import Agency
from disbalance.models import WebhookEvent
from overdrafts.services import BalanceOverdraft, overdraft_apply_balance_params
from overdrafts.services.support import overdraft_override_set
from payments.models import Hold, TopUp
from payments.services import hold_release, holds_expire, orders_ensure, topups_expire
from tests.payments.conftest import post
from wallets.services import wallet_adjust, wallet_transfer

CUSTOMER = "/api/v1/customers/dealer:20101"
D = Decimal


class Feed:
    """What a test has not looked at yet among the customer's events."""

    def __init__(self) -> None:
        self.seen = set(WebhookEvent.objects.values_list("pk", flat=True))

    def new(self) -> list[WebhookEvent]:
        fresh = list(WebhookEvent.objects.exclude(pk__in=self.seen).order_by("sequence", "created_at"))
        self.seen |= {event.pk for event in fresh}
        return fresh


def figures(events: list[WebhookEvent]) -> list[tuple]:
    return [(e.type, e.data.get("amount"), e.data.get("balance"), e.data.get("held"), e.data.get("payer"))
            for e in events]


def notify_order(order, consume: str, tid: int):
    payload = {"ServiceID": str(order.service.balance_service_id), "ServiceOrderID": str(order.pk),
               "ConsumeQty": consume, "ConsumeSum": consume, "CompletionQty": "0.00", "ConsumeCurrency": "RUB",
               "Tid": str(tid), "Signal": 1, "SignalDescription": "order"}
    if settings.BALANCE_GROUP_REPORTING == "enqueue":  # the group's money is then TotalConsumeQty on the parent
        payload["TotalConsumeQty"] = consume
    body = xmlrpc.client.dumps((payload,), methodname="BalanceClient.NotifyOrder2")
    response = Client().post(f"/balance/notify?secret={settings.BALANCE_NOTIFY_SECRET}", body,
                             content_type="text/xml")
    assert b"SUCCESS" in response.content


class Consumer:
    """A consumer's own view of the money, built from events only (in `sequence` order per customer)."""

    def __init__(self) -> None:
        self.balances: dict[tuple[str, str | None], Decimal] = {}
        self.last_sequence: dict[str, int] = {}

    def apply(self, body: dict) -> None:
        data, customer = body["data"], body["data"]["customer"]
        assert body["sequence"] == self.last_sequence.get(customer, 0) + 1, "a gap or a reordering"
        self.last_sequence[customer] = body["sequence"]
        if "balance" in data:
            self.balances[(customer, data["payer"])] = D(data["balance"])
        if body["type"] == "wallet.transferred":
            self.balances[(customer, data["to_payer"])] = D(data["to_balance"])

    def wallet(self, customer: str, current_payer: str | None) -> dict:
        others = sorted(((payer, balance) for (c, payer), balance in self.balances.items()
                         if c == customer and payer != current_payer and balance != 0), key=lambda p: p[0] or "")
        return {"balance": f"{self.balances.get((customer, current_payer), D('0.00')):.2f}",
                "other_payers": [{"payer": payer, "balance": f"{balance:.2f}"} for payer, balance in others]}


@pytest.mark.django_db
def test_every_money_path_announces_one_event_and_events_rebuild_the_wallet(
        api, emulator, run_outbox, active_customer, products, admin_user):
    feed = Feed()
    with transaction.atomic():
        order = orders_ensure(customer=active_customer, payer=None)
    run_outbox()

    # API + Balance notification: a top-up paid.
    topup = post(api, f"{CUSTOMER}/topups", {"amount": "1000.00"}).json()
    run_outbox()
    notify_order(order, "1000.00", 10)
    assert TopUp.objects.get(pk=topup["id"]).status == "succeeded"
    events = feed.new()
    assert figures(events) == [("topup.succeeded", "1000.00", "1000.00", "0.00", None)]
    assert events[0].data["topup"] == topup["id"]

    # Balance notification: money paid elsewhere (no top-up).
    notify_order(order, "1200.00", 11)
    assert figures(feed.new()) == [("money.received", "200.00", "1200.00", "0.00", None)]

    # API: charge, hold, capture, hold + release, refund.
    charge = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "300.00"}).json()
    events = feed.new()
    assert figures(events) == [("charge.succeeded", "300.00", "900.00", "0.00", None)]
    assert events[0].data["charge"] == charge["id"] and events[0].data["product"] == "placement"
    hold = post(api, f"{CUSTOMER}/holds", {"product": "boost", "amount": "200.00"}).json()
    assert figures(feed.new()) == [("hold.created", "200.00", "900.00", "200.00", None)]
    assert post(api, f"/api/v1/holds/{hold['id']}/capture", {"amount": "150.00"}).status_code == 200
    events = feed.new()
    assert figures(events) == [("hold.captured", "150.00", "750.00", "0.00", None)]
    assert (events[0].data["captured"], events[0].data["released"]) == ("150.00", "50.00")
    second = post(api, f"{CUSTOMER}/holds", {"product": "boost", "amount": "100.00"}).json()
    assert post(api, f"/api/v1/holds/{second['id']}/release").status_code == 200
    assert figures(feed.new()) == [("hold.created", "100.00", "750.00", "100.00", None),
                                   ("hold.released", "100.00", "750.00", "0.00", None)]
    assert post(api, f"/api/v1/charges/{charge['id']}/refunds", {"amount": "50.00", "reason": "bad photo"}
                ).status_code == 201
    events = feed.new()
    assert figures(events) == [("refund.succeeded", "50.00", "800.00", "0.00", None)]
    assert events[0].data["charge"] == charge["id"]

    # Support: an adjustment, a transfer to another payer, releasing a hold.
    wallet_adjust(customer=active_customer, payer_agency=None, amount=D("-30.00"), reason="double credit",
                  created_by=admin_user)
    events = feed.new()
    assert figures(events) == [("wallet.adjusted", "-30.00", "770.00", "0.00", None)]
    assert events[0].data["reason"] == "double credit"
    agency = Agency.objects.create(service=active_customer.service, external_id="agency:7", name="Agency 7")
    wallet_transfer(customer=active_customer, from_payer=None, to_payer=agency, amount=D("70.00"),
                    reason="moved by support", created_by=admin_user)
    events = feed.new()
    assert figures(events) == [("wallet.transferred", "70.00", "700.00", "0.00", None)]
    assert (events[0].data["to_payer"], events[0].data["to_balance"]) == ("agency:7", "70.00")
    third = post(api, f"{CUSTOMER}/holds", {"product": "boost", "amount": "40.00"}).json()
    feed.new()
    hold_release(hold=Hold.objects.get(pk=third["id"]))  # what the admin's "Release now" calls
    assert figures(feed.new()) == [("hold.released", "40.00", "700.00", "0.00", None)]

    # Periodic jobs: hold expiry, top-up expiry, Balance taking money back (pulled or notified).
    fourth = post(api, f"{CUSTOMER}/holds", {"product": "boost", "amount": "25.00"}).json()
    feed.new()
    assert holds_expire(now=timezone.now() + timedelta(days=8)) == 1
    events = feed.new()
    assert figures(events) == [("hold.expired", "25.00", "700.00", "0.00", None)]
    assert events[0].data["hold"] == fourth["id"]
    post(api, f"{CUSTOMER}/topups", {"amount": "10.00"})
    run_outbox()
    assert topups_expire(now=timezone.now() + timedelta(days=30)) == 1
    assert [e.type for e in feed.new()] == ["topup.expired"]
    notify_order(order, "1150.00", 12)  # Balance lowered ConsumeQty (a refund made in Balance)
    assert figures(feed.new()) == [("wallet.adjusted", "-50.00", "650.00", "0.00", None)]

    # Overdraft limits: granted by Balance, raised by support.
    overdraft_apply_balance_params(customer_id=active_customer.pk, tid=5, params=BalanceOverdraft(
        limit=D("300.00"), spent=D("0.00"), min_payment_term=None, banned=False, currency="RUB"))
    overdraft_override_set(customer=active_customer, limit=D("500.00"), reason="good customer", by=admin_user,
                           expires_at=timezone.now() + timedelta(days=5))
    events = feed.new()
    assert [(e.type, e.data["previous_limit"], e.data["limit"], e.data["cause"]) for e in events] == [
        ("overdraft.limit_changed", "0.00", "300.00", "balance"),
        ("overdraft.limit_changed", "300.00", "500.00", "support")]

    # A consumer that applied only the events (in order) sees what GET /wallet shows.
    consumer = Consumer()
    for event in WebhookEvent.objects.filter(customer_pk=active_customer.pk).order_by("sequence"):
        consumer.apply({"type": event.type, "sequence": event.sequence, "data": event.data})
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert consumer.wallet("dealer:20101", wallet["payer"]) == {
        "balance": wallet["balance"], "other_payers": wallet["other_payers"]}
    assert wallet["balance"] == "650.00" and wallet["other_payers"] == [{"payer": "agency:7", "balance": "70.00"}]
