"""NotifyOrder2: duplicates, reordering and stale Tids never credit twice or lose a credit."""

import xmlrpc.client
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from balance_gateway.models import BalanceNotification
from payments.models import BalanceOrder, TopUp
from payments.services import orders_ensure
from tests.payments.conftest import post
from wallets.models import Account, LedgerTransaction

CUSTOMER = "/api/v1/customers/dealer:20101"


def notify(client, settings, method, payload, secret=None):
    body = xmlrpc.client.dumps((payload,), methodname=method)
    url = f"/balance/notify?secret={secret if secret is not None else settings.BALANCE_NOTIFY_SECRET}"
    return client.post(url, body, content_type="text/xml")


def order_payload(order, consume, tid, completion="0.00"):
    return {"ServiceID": str(order.service.balance_service_id), "ServiceOrderID": str(order.pk),
            "ConsumeQty": consume, "ConsumeSum": consume, "ConsumeAmount": consume, "TotalConsumeQty": consume,
            "CompletionQty": completion, "ConsumeCurrency": "RUB",
            "Tid": str(tid), "Signal": 1, "SignalDescription": "order"}


def wallet_balance(customer):
    account = Account.objects.filter(kind="wallet", customer=customer, payer_agency=None).first()
    return account.balance if account else Decimal("0.00")


@pytest.fixture
def wallet_order(active_customer):
    with transaction.atomic():
        return orders_ensure(customer=active_customer, payer=None)


@pytest.mark.django_db
def test_notification_credits_the_difference_once(settings, active_customer, wallet_order):
    client = Client()
    assert b"SUCCESS" in notify(client, settings, "BalanceClient.NotifyOrder2",
                                order_payload(wallet_order, "100.00", 10)).content
    notify(client, settings, "BalanceClient.NotifyOrder2", order_payload(wallet_order, "100.00", 10))  # duplicate
    notify(client, settings, "BalanceClient.NotifyOrder2", order_payload(wallet_order, "250.00", 12))
    response = notify(client, settings, "BalanceClient.NotifyOrder2", order_payload(wallet_order, "180.00", 11))
    assert b"SUCCESS" in response.content  # stale: answered, ignored
    assert wallet_balance(active_customer) == Decimal("250.00")
    assert LedgerTransaction.objects.filter(type="topup").count() == 2
    outcomes = sorted(BalanceNotification.objects.values_list("tid", "outcome"))
    assert outcomes == [(10, "applied"), (11, "stale"), (12, "applied")]
    call_command("verify_ledger")


@pytest.mark.django_db
def test_unknown_order_is_not_found_and_not_stored(settings, active_customer):
    response = notify(Client(), settings, "BalanceClient.NotifyOrder2",
                      {"ServiceID": "7", "ServiceOrderID": "999999", "ConsumeQty": "1.00", "Tid": "5"})
    assert b"NOT_FOUND" in response.content
    assert not BalanceNotification.objects.exists()


@pytest.mark.django_db
def test_notify_needs_the_secret(settings, active_customer, wallet_order):
    response = notify(Client(), settings, "BalanceClient.NotifyOrder2", order_payload(wallet_order, "1.00", 1),
                      secret="wrong")
    assert response.status_code == 403
    assert notify(Client(), settings, "BalanceClient.NotifyOrder2", order_payload(wallet_order, "1.00", 1),
                  secret="").status_code == 403
    settings.BALANCE_NOTIFY_ALLOWED_IPS = ["127.0.0.1"]
    body = xmlrpc.client.dumps((order_payload(wallet_order, "1.00", 1),), methodname="BalanceClient.NotifyOrder2")
    assert Client().post("/balance/notify", body, content_type="text/xml", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert wallet_balance(active_customer) == Decimal("1.00")


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    b"<methodCall><methodName>&b;</methodName></methodCall>",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><methodCall><methodName>&e;'
    b"</methodName></methodCall>",
    b"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName><params>",
    b"not xml at all",
    b"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName><params><param><value><int>1</int>"
    b"</value></param></params></methodCall>",
])
def test_hostile_or_malformed_xml_is_refused_without_harm(settings, body, active_customer):
    response = Client().post(f"/balance/notify?secret={settings.BALANCE_NOTIFY_SECRET}", body,
                             content_type="text/xml")
    assert response.status_code in (200, 400) and b"INVALID_PARAM" in response.content
    assert not BalanceNotification.objects.exists()


@pytest.mark.django_db
def test_huge_document_is_refused(settings, active_customer):
    body = b"<methodCall>" + b" " * (settings.MAX_REQUEST_BODY_BYTES + 10) + b"</methodCall>"
    response = Client().post(f"/balance/notify?secret={settings.BALANCE_NOTIFY_SECRET}", body,
                             content_type="text/xml")
    assert response.status_code == 413


@pytest.mark.django_db
@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    increments=st.lists(st.integers(min_value=0, max_value=50_000), min_size=1, max_size=6),
    deliveries=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=15),
)
def test_any_order_of_duplicated_notifications_credits_exactly_the_latest_total(
    settings, active_customer, increments, deliveries
):
    """Balance sends totals with growing Tids; deliver them in any order, any number of times (each at least
    once): billing must end with exactly the latest total credited, never more."""
    BalanceNotification.objects.all().delete()
    with transaction.atomic():
        order = orders_ensure(customer=active_customer, payer=None)
    start_credited = BalanceOrder.objects.get(pk=order.pk).credited_qty
    start_tid = BalanceOrder.objects.get(pk=order.pk).last_tid
    start_balance = wallet_balance(active_customer)
    totals, running = [], start_credited
    for inc in increments:
        running += Decimal(inc) / 100
        totals.append(running)
    sends = [i % len(totals) for i in deliveries] + list(range(len(totals)))
    client = Client()
    for index in sends:
        notify(client, settings, "BalanceClient.NotifyOrder2",
               order_payload(order, f"{totals[index]:.2f}", start_tid + 1 + index))
    assert BalanceOrder.objects.get(pk=order.pk).credited_qty == totals[-1] or \
        BalanceOrder.objects.get(pk=order.pk).last_tid > start_tid + 1 + max(sends) - 1
    latest_applied = BalanceOrder.objects.get(pk=order.pk)
    # Whatever the order, the credited total is the total of the highest Tid seen (all Tids were sent).
    assert latest_applied.last_tid == start_tid + len(totals)
    assert latest_applied.credited_qty == totals[-1]
    assert wallet_balance(active_customer) - start_balance == totals[-1] - start_credited
    call_command("verify_ledger")


@pytest.mark.django_db(transaction=True)
def test_emulator_duplicates_reorders_and_delays_notifications(api, emulator, run_outbox, balance_live,
                                                               active_customer):
    emulator.set_faults({"seed": 3, "notify": {"duplicate_rate": 0.5, "reorder": True, "delay_ms": 20,
                                               "fail_rate": 0.3}})
    amounts = ["100.00", "250.50", "7.25", "1000.00", "42.00"]
    ids = [post(api, f"{CUSTOMER}/topups", {"amount": a}).json()["id"] for a in amounts]
    run_outbox()
    for topup_id in ids:
        url = TopUp.objects.get(pk=topup_id).payment_url
        emulator.pay_request(int(url.rstrip("/").rsplit("/", 1)[1]))
    assert balance_live.wait_notifications_idle(timeout=30)
    state = emulator.state()["notifications"]
    assert state["duplicated"] > 0, state
    call_command("run_periodic", "orders_pull")  # the reordered last one may have been held back
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == f"{sum(Decimal(a) for a in amounts):.2f}"
    assert sorted(TopUp.objects.values_list("status", flat=True)) == ["succeeded"] * 5
    assert LedgerTransaction.objects.filter(type="topup").count() == 5
    call_command("verify_ledger")


@pytest.mark.django_db(transaction=True)
def test_lost_notification_is_caught_up_by_the_pull_job(api, emulator, run_outbox, balance_live, active_customer):
    topup_id = post(api, f"{CUSTOMER}/topups", {"amount": "300.00"}).json()["id"]
    run_outbox()
    emulator.drop_next_notifications(10)
    url = TopUp.objects.get(pk=topup_id).payment_url
    emulator.pay_request(int(url.rstrip("/").rsplit("/", 1)[1]))
    balance_live.wait_notifications_idle(timeout=10)
    assert TopUp.objects.get(pk=topup_id).status == "awaiting_payment"
    call_command("run_periodic", "orders_pull")
    assert TopUp.objects.get(pk=topup_id).status == "succeeded"
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == "300.00"
    call_command("verify_ledger")


@pytest.mark.django_db(transaction=True)
def test_money_paid_outside_a_topup_is_credited(api, emulator, run_outbox, balance_live, active_customer):
    with transaction.atomic():
        order = orders_ensure(customer=active_customer, payer=None)
    run_outbox()
    emulator.update_order(7, order.pk, {"ConsumeQty": "75.00"})  # silent: no notification
    call_command("run_periodic", "orders_pull")  # nothing is awaiting: not pulled
    pulled = __import__("payments.services", fromlist=["x"]).orders_pull(orders=[order])
    assert pulled["applied"] == 1
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == "75.00"
    statement = api.get(f"{CUSTOMER}/wallet/transactions").json()["results"]
    assert statement[0]["type"] == "topup" and statement[0]["reference"]["kind"] == "balance_order"


@pytest.mark.django_db
def test_a_notification_older_than_a_pull_waits_instead_of_taking_the_pulled_money_back(settings, active_customer,
                                                                                         wallet_order):
    """The soak's seed 202: a pull credits paid money, then a NotifyOrder2 sent before that payment arrives late.
    Applied, it would take the money back and the next notification would credit it again (money without its
    top-up). It is answered NOT_FOUND (Balance re-sends it) until the notification of the pulled money comes; then
    the old one is stale and a newer one showing less is a real cut."""
    from payments.services import OrderState, order_apply_balance_state

    client = Client()
    assert b"SUCCESS" in notify(client, settings, "BalanceClient.NotifyOrder2",
                                order_payload(wallet_order, "100.00", 10)).content
    assert order_apply_balance_state(order_id=wallet_order.pk, state=OrderState(
        consume_money=Decimal("300.00"), completion_qty=Decimal("0"), tid=None)) == "applied"  # the pull
    late = order_payload(wallet_order, "100.00", 11)  # sent before the 200.00 came, delivered after the pull
    assert b"NOT_FOUND" in notify(client, settings, "BalanceClient.NotifyOrder2", late).content
    assert wallet_balance(active_customer) == Decimal("300.00")
    assert b"SUCCESS" in notify(client, settings, "BalanceClient.NotifyOrder2",
                                order_payload(wallet_order, "300.00", 12)).content  # the payment's own
    assert b"SUCCESS" in notify(client, settings, "BalanceClient.NotifyOrder2", late).content  # re-sent: stale
    assert wallet_balance(active_customer) == Decimal("300.00")
    assert not LedgerTransaction.objects.filter(type="adjustment").exists()
    assert b"SUCCESS" in notify(client, settings, "BalanceClient.NotifyOrder2",
                                order_payload(wallet_order, "250.00", 13)).content  # a real cut, after catching up
    assert wallet_balance(active_customer) == Decimal("250.00")
    assert sorted(BalanceNotification.objects.values_list("tid", "outcome")) == [
        (10, "applied"), (11, "stale"), (12, "applied"), (13, "applied")]
    call_command("verify_ledger")


@pytest.mark.django_db
def test_the_pull_guard_lapses(settings, active_customer, wallet_order):
    """Notifications that never catch up (lost for good) do not block a real cut for longer than the guard."""
    from datetime import timedelta

    from django.utils import timezone

    from payments.services import OrderState, order_apply_balance_state

    order_apply_balance_state(order_id=wallet_order.pk, state=OrderState(
        consume_money=Decimal("300.00"), completion_qty=Decimal("0"), tid=None))
    BalanceOrder.objects.filter(pk=wallet_order.pk).update(
        pulled_at=timezone.now() - timedelta(seconds=settings.BALANCE_PULL_GUARD_SECONDS + 1))
    assert b"SUCCESS" in notify(Client(), settings, "BalanceClient.NotifyOrder2",
                                order_payload(wallet_order, "200.00", 20)).content
    assert wallet_balance(active_customer) == Decimal("200.00")
    assert BalanceOrder.objects.get(pk=wallet_order.pk).pulled_money is None
