"""`/balance/notify`: only with the configured secret or from an allowed address (403 otherwise, nothing stored), and
hostile XML (entity expansion, external entities, DTDs, deep nesting, huge documents, malformed values) refused
quickly, with a fault and without storing anything."""

from __future__ import annotations

import time
import xmlrpc.client
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import Client

from balance_gateway.models import BalanceNotification
from payments.models import BalanceOrder
from payments.services import orders_ensure
from tests.factories import CustomerFactory
from wallets.models import Account, LedgerEntry, LedgerTransaction

pytestmark = pytest.mark.django_db

NOTIFY = "/balance/notify"
# Seconds. An unprotected parser needs minutes and gigabytes for these documents; a protected one answers in
# milliseconds. The bound is wide so that a loaded CI machine never fails it while an expansion still would.
FAST = 10.0


@pytest.fixture
def order(service):
    customer = CustomerFactory(service=service, external_id="dealer:1")
    with transaction.atomic():
        return orders_ensure(customer=customer, payer=None)


def order_call(order: BalanceOrder, consume: str = "100.00", tid: int = 10, **extra: object) -> bytes:
    payload = {"ServiceID": str(order.service.balance_service_id), "ServiceOrderID": str(order.pk),
               "ConsumeQty": consume, "ConsumeSum": consume, "CompletionQty": "0.00", "ConsumeCurrency": "RUB",
               "Tid": str(tid), "Signal": 1, "SignalDescription": "order", **extra}
    return xmlrpc.client.dumps((payload,), methodname="BalanceClient.NotifyOrder2").encode()


def state() -> tuple:
    """Everything a notification could leave behind."""
    return (BalanceNotification.objects.count(), LedgerTransaction.objects.count(), LedgerEntry.objects.count(),
            sorted(Account.objects.values_list("key", "balance")),
            sorted(BalanceOrder.objects.values_list("pk", "credited_qty", "last_tid")))


def send(body: bytes, *, query: str = "", **extra: object):
    started = time.perf_counter()
    response = Client().post(NOTIFY + query, body, content_type="text/xml", **extra)
    return response, time.perf_counter() - started


# --- who may notify ----------------------------------------------------------------------------------------------

def test_the_secret_or_an_allowed_address_is_accepted(settings, order):
    settings.BALANCE_NOTIFY_ALLOWED_IPS = ["10.1.2.3"]
    response, _ = send(order_call(order, "10.00", 1), query=f"?secret={settings.BALANCE_NOTIFY_SECRET}")
    assert response.status_code == 200 and b"SUCCESS" in response.content
    response, _ = send(order_call(order, "20.00", 2), HTTP_X_BALANCE_SECRET=settings.BALANCE_NOTIFY_SECRET)
    assert response.status_code == 200 and b"SUCCESS" in response.content
    response, _ = send(order_call(order, "30.00", 3), REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200 and b"SUCCESS" in response.content
    order.refresh_from_db()
    assert (order.credited_qty, order.last_tid) == (Decimal("30.00"), 3)
    assert BalanceNotification.objects.count() == 3


@pytest.mark.parametrize(("query", "headers", "why"), [
    ("", {}, "no secret"),
    ("?secret=", {}, "empty secret"),
    ("?secret=wrong", {}, "wrong secret"),
    ("?secret={upper}", {}, "secret in another case"),
    ("?secret={prefix}", {}, "a prefix of the secret"),
    ("?secret={secret}x", {}, "the secret and more"),
    ("?token={secret}", {}, "the secret under another name"),
    ("", {"HTTP_X_BALANCE_SECRET": "wrong"}, "wrong secret header"),
    ("", {"HTTP_AUTHORIZATION": "Bearer {secret}"}, "the secret as a bearer token"),
    ("", {"REMOTE_ADDR": "10.9.9.9"}, "an address not allowed"),
    ("", {"HTTP_X_FORWARDED_FOR": "10.1.2.3"}, "a forged X-Forwarded-For"),
    ("", {"HTTP_X_REAL_IP": "10.1.2.3"}, "a forged X-Real-IP"),
])
def test_anyone_else_is_403_and_nothing_is_stored(settings, order, query, headers, why):
    settings.BALANCE_NOTIFY_ALLOWED_IPS = ["10.1.2.3"]
    secret = settings.BALANCE_NOTIFY_SECRET
    fill = {"secret": secret, "upper": secret.upper(), "prefix": secret[:-1]}
    before = state()
    response, _ = send(order_call(order), query=query.format(**fill),
                       **{k: v.format(**fill) for k, v in headers.items()})
    assert response.status_code == 403, why
    assert state() == before, why


def test_an_empty_configured_secret_accepts_nothing(settings, order):
    settings.BALANCE_NOTIFY_SECRET = ""
    settings.BALANCE_NOTIFY_ALLOWED_IPS = []
    before = state()
    for query in ("", "?secret=", "?secret=%00"):
        assert send(order_call(order), query=query)[0].status_code == 403
    assert state() == before


def test_only_post(settings, order):
    for method in ("get", "put", "delete"):
        response = getattr(Client(), method)(f"{NOTIFY}?secret={settings.BALANCE_NOTIFY_SECRET}")
        assert response.status_code == 405, method


# --- hostile documents --------------------------------------------------------------------------------------------

def _laughs() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return (f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(entities)}]>'
            "<methodCall><methodName>&lol9;</methodName></methodCall>").encode()


def _quadratic() -> bytes:
    blob = "a" * 50_000
    return (f'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "{blob}">]><methodCall><methodName>'
            f'{"&a;" * 20_000}</methodName></methodCall>').encode()


def _nested(depth: int) -> bytes:
    value = "<value><array><data>" * depth + "</data></array></value>" * depth
    return (f"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName><params><param><value><struct>"
            f"<member><name>Tid</name>{value}</member></struct></value></param></params></methodCall>").encode()


def _struct_with(members: int) -> bytes:
    body = "".join(f"<member><name>k{i}</name><value><string>v</string></value></member>" for i in range(members))
    return (f"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName><params><param><value><struct>{body}"
            "</struct></value></param></params></methodCall>").encode()


HOSTILE = {
    "billion laughs": _laughs(),
    "quadratic blowup": _quadratic(),
    "external entity (file)": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                              b"<methodCall><methodName>&e;</methodName></methodCall>",
    "external entity (http)": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]>'
                              b"<methodCall><methodName>&e;</methodName></methodCall>",
    "parameter entity": b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
                        b"<methodCall><methodName>x</methodName></methodCall>",
    "external DTD": b'<?xml version="1.0"?><!DOCTYPE methodCall SYSTEM "http://127.0.0.1:9/evil.dtd">'
                    b"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName></methodCall>",
    "internal DTD only": b'<?xml version="1.0"?><!DOCTYPE methodCall [<!ELEMENT methodCall ANY>]>'
                         b"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName></methodCall>",
    "xinclude": b'<methodCall xmlns:xi="http://www.w3.org/2001/XInclude"><methodName>BalanceClient.NotifyOrder2'
                b'</methodName><params><param><value><xi:include href="file:///etc/passwd" parse="text"/>'
                b"</value></param></params></methodCall>",
    "deep nesting": _nested(20_000),
    "many members": _struct_with(10_000),
    "huge integer": b"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName><params><param><value>"
                    b"<int>" + b"9" * 500_000 + b"</int></value></param></params></methodCall>",
    "bad base64": b"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName><params><param><value>"
                  b"<base64>!!!</base64></value></param></params></methodCall>",
    "bad date": b"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName><params><param><value>"
                b"<dateTime.iso8601>yesterday</dateTime.iso8601></value></param></params></methodCall>",
    "not UTF-8": b'<?xml version="1.0" encoding="utf-8"?><methodCall><methodName>\xff\xfe</methodName>'
                 b"</methodCall>",
    "truncated": b"<methodCall><methodName>BalanceClient.NotifyOrder2</methodName><params>",
    "not xml": b"not xml at all",
    "empty": b"",
    "a response, not a call": xmlrpc.client.dumps(([0, "SUCCESS"],), methodresponse=True).encode(),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_documents_are_refused_quickly_without_harm(settings, order, name):
    before = state()
    response, elapsed = send(HOSTILE[name], query=f"?secret={settings.BALANCE_NOTIFY_SECRET}")
    assert response.status_code in (200, 400), (name, response.status_code)
    assert b"<fault>" in response.content and b"SUCCESS" not in response.content, name
    assert b"root:" not in response.content  # no file content echoed
    assert elapsed < FAST, f"{name} took {elapsed:.2f}s"
    assert state() == before, name


@pytest.mark.parametrize("consume", ["NaN", "Infinity", "-Infinity", "sNaN", "1e999", "abc", "1" * 5000,
                                     "99999999999999999999.99", "1000000000000.01"])
def test_malformed_amounts_are_a_fault_not_a_500(settings, order, consume):
    before = state()
    response, elapsed = send(order_call(order, consume), query=f"?secret={settings.BALANCE_NOTIFY_SECRET}")
    assert response.status_code in (200, 400), response.status_code
    assert b"<fault>" in response.content and b"INVALID_PARAM" in response.content
    assert elapsed < FAST
    assert state() == before


@pytest.mark.parametrize("payload", [
    {"ClientID": "1" * 19, "Tid": "1"},
    {"ClientID": "-1", "Tid": "1"},
    {"ClientID": "{client}", "Tid": "x"},
    {"ClientID": "{client}", "Tid": "1" * 100},
    {"ClientID": "{client}", "Tid": "5", "OverdraftLimit": "abc"},
    {"ClientID": "{client}", "Tid": "5", "OverdraftLimit": "NaN"},
    {"ClientID": "{client}", "Tid": "5", "OverdraftLimit": "1e999"},
    {"ClientID": "{client}", "Tid": "5", "OverdraftLimit": "-100.00"},
    {"ClientID": "{client}", "Tid": "5", "OverdraftLimit": "100.00", "OverdraftSpent": "Infinity"},
    {"ClientID": "{client}", "Tid": "5", "OverdraftLimit": "100.00", "OverdraftBan": "maybe"},
], ids=repr)
def test_malformed_client_notifications_are_a_fault(settings, order, payload):
    client = str(order.customer.balance_client_id)
    payload = {k: v.replace("{client}", client) for k, v in payload.items()}
    before = state()
    body = xmlrpc.client.dumps((payload,), methodname="BalanceClient.NotifyClient2").encode()
    response, elapsed = send(body, query=f"?secret={settings.BALANCE_NOTIFY_SECRET}")
    assert response.status_code in (200, 400), response.status_code
    assert b"<fault>" in response.content and b"SUCCESS" not in response.content
    assert elapsed < FAST and state() == before


def test_a_document_over_the_size_limit_is_413_quickly(settings, order):
    before = state()
    body = order_call(order).replace(b"<params>", b"<params>" + b" " * (settings.MAX_REQUEST_BODY_BYTES + 1))
    response, elapsed = send(body, query=f"?secret={settings.BALANCE_NOTIFY_SECRET}")
    assert response.status_code == 413 and elapsed < FAST
    assert state() == before


def test_a_document_just_under_the_limit_is_parsed_and_answered(settings, order):
    padding = settings.MAX_REQUEST_BODY_BYTES - len(order_call(order)) - 100
    body = order_call(order).replace(b"<params>", b"<params>" + b" " * padding)
    response, elapsed = send(body, query=f"?secret={settings.BALANCE_NOTIFY_SECRET}")
    assert response.status_code == 200 and b"SUCCESS" in response.content and elapsed < FAST


def test_a_notification_for_another_services_order_number_is_not_applied(settings, order, other_service):
    """ServiceID and ServiceOrderID go together: the order number under another service's id names nothing."""
    before = state()
    body = order_call(order).replace(f"<string>{order.service.balance_service_id}</string>".encode(),
                                     f"<string>{other_service.balance_service_id}</string>".encode())
    response, _ = send(body, query=f"?secret={settings.BALANCE_NOTIFY_SECRET}")
    assert b"NOT_FOUND" in response.content
    assert state() == before
