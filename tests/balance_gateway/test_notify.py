"""Balance's notifications (version 2): parsed once into typed objects, accepted as XML-RPC and as JSON
(`POST .../BalanceClient/NotifyOrder2`), authenticated by a TVM ticket (checked through tvmtool) or the shared
secret; TVM tickets for outgoing calls come from tvmtool too."""

from __future__ import annotations

import json
import threading
import xmlrpc.client
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from django.test import Client

from balance_gateway.client import BalanceClient
from balance_gateway.models import BalanceNotification
from balance_gateway.notifications import (
    ClientNotification,
    InvalidNotification,
    OrderNotification,
    parse_notification,
)
from overdrafts.models import Overdraft
from tests.factories import ConsumerServiceFactory, CustomerFactory

pytestmark = pytest.mark.django_db

ORDER_STRUCT = {"ServiceID": 7, "ServiceOrderID": "41", "ConsumeQty": "100", "ConsumeSum": "3000.00",
                "ConsumeAmount": "3000.00", "CompletionQty": "828.333333", "ConsumeCurrency": "RUR",
                "Tid": "17064300000000123", "Signal": 1, "SignalDescription": "Order balance has been changed",
                "ProductCurrency": "RUB", "TotalConsumeQty": "3000"}
CLIENT_STRUCT = {"ClientID": "1234567", "ClientCurrency": "RUB", "OverdraftLimit": "5000.00",
                 "OverdraftSpent": "1200.50", "MinPaymentTerm": "2026-12-31", "OverdraftBan": 0, "BusinessUnit": 0,
                 "NonResident": 0, "MigrateToCurrencyDone": 1, "CanBeForceCurrencyConverted": 0,
                 "HasEquivalentOrBrandClients": 0, "Tid": "17064300000000500"}


def test_notify_order2_is_parsed_into_a_typed_object():
    n = parse_notification("NotifyOrder2", ORDER_STRUCT)
    assert isinstance(n, OrderNotification)
    assert (n.service_id, n.service_order_id, n.tid) == (7, "41", 17064300000000123)
    assert n.consume_sum == Decimal("3000.00") and n.consume_qty == Decimal("100")
    assert n.completion_qty == Decimal("828.333333") and n.consume_currency == "RUB"
    assert n.total_consume_qty == Decimal("3000") and n.object_key == "7:41"


def test_notify_client2_is_parsed_into_a_typed_object():
    n = parse_notification("NotifyClient2", CLIENT_STRUCT)
    assert isinstance(n, ClientNotification)
    assert (n.client_id, n.overdraft_limit, n.overdraft_spent, n.min_payment_term, n.overdraft_ban) == (
        1234567, Decimal("5000.00"), Decimal("1200.50"), date(2026, 12, 31), False)
    assert n.object_key == "1234567"
    per_service = parse_notification("NotifyClient2", CLIENT_STRUCT, service_id=7)
    assert per_service.object_key == "1234567@7"  # one limit per service, each with its own Tid order
    assert parse_notification("NotifyClient2", {**CLIENT_STRUCT, "MinPaymentTerm": "0000-00-00"}).min_payment_term \
        is None


def test_members_billing_does_not_act_on_never_refuse_a_notification():
    """The page names `Signal`, `BusinessUnit`, `NonResident`... without their types. Billing only keeps them, so a
    type it did not expect (an XML-RPC boolean `Signal`, a flag spelled "yes") must not refuse the notification:
    Balance would send it again and again, and the totals in it would never be applied."""
    order = parse_notification("NotifyOrder2", {**ORDER_STRUCT, "Signal": True, "ProductCurrency": 643,
                                                "OverdraftSpentQty": "n/a"})
    assert order.signal == 1 and order.product_currency == "643" and order.overdraft_spent_qty is None
    assert order.consume_sum == Decimal("3000.00") and order.tid == 17064300000000123
    assert parse_notification("NotifyOrder2", {**ORDER_STRUCT, "Signal": "balance"}).signal is None
    client = parse_notification("NotifyClient2", {**CLIENT_STRUCT, "BusinessUnit": "yes", "NonResident": 2,
                                                  "HasEquivalentOrBrandClients": True})
    assert (client.business_unit, client.non_resident, client.has_equivalent_or_brand_clients) == (False, False, True)
    assert client.overdraft_limit == Decimal("5000.00") and client.tid == 17064300000000500
    # What billing does act on stays strict.
    with pytest.raises(InvalidNotification):
        parse_notification("NotifyClient2", {**CLIENT_STRUCT, "OverdraftBan": "yes"})


@pytest.mark.parametrize(("method", "struct"), [
    ("NotifyOrder2", {k: v for k, v in ORDER_STRUCT.items() if k != "Tid"}),
    ("NotifyOrder2", {**ORDER_STRUCT, "CompletionQty": "1.1234567"}),
    ("NotifyOrder2", {**ORDER_STRUCT, "ConsumeSum": "-1.00"}),
    ("NotifyOrder2", {**ORDER_STRUCT, "ServiceOrderID": ["41"]}),
    ("NotifyClient2", {**CLIENT_STRUCT, "ClientID": "abc"}),
    ("NotifyOrder3", ORDER_STRUCT),
])
def test_malformed_notifications_are_refused(method, struct):
    with pytest.raises(InvalidNotification):
        parse_notification(method, struct)


@pytest.fixture
def customer(settings):
    settings.BALANCE_NOTIFY_SECRET = "s3cret"
    service = ConsumerServiceFactory(slug="autoru", balance_service_id=7)
    return CustomerFactory(service=service, balance_client_id=1234567)


def xmlrpc_body(method: str, struct: dict) -> bytes:
    return xmlrpc.client.dumps((struct,), methodname=f"BalanceClient.{method}").encode()


def test_xmlrpc_notification_with_the_secret(customer):
    client = Client()
    forbidden = client.post("/balance/notify", xmlrpc_body("NotifyClient2", CLIENT_STRUCT), content_type="text/xml")
    assert forbidden.status_code == 403
    ok = client.post("/balance/notify?secret=s3cret", xmlrpc_body("NotifyClient2", CLIENT_STRUCT),
                     content_type="text/xml")
    assert ok.status_code == 200
    (answer,), _ = xmlrpc.client.loads(ok.content)
    assert answer == [0, "SUCCESS"]
    customer.overdraft.refresh_from_db()
    assert customer.overdraft.granted_limit == Decimal("5000.00") and customer.overdraft.last_tid == 17064300000000500


@pytest.mark.parametrize(("method_name", "accepted"), [
    ("NotifyClient2", True), ("BalanceClient.NotifyClient2", True), ("Balance2.NotifyClient2", False),
    ("BalanceClient.NotifyClient3", False), ("x.BalanceClient.NotifyClient2", False),
])
def test_xmlrpc_method_names(customer, method_name, accepted):
    """The page names JSON's path (`BalanceClient/NotifyClient2`), not the XML-RPC methodName: `BalanceClient.`
    and the bare name are both taken; another prefix or method is refused and changes nothing."""
    body = xmlrpc.client.dumps((CLIENT_STRUCT,), methodname=method_name).encode()
    response = Client().post("/balance/notify?secret=s3cret", body, content_type="text/xml")
    if accepted:
        (answer,), _ = xmlrpc.client.loads(response.content)
        assert answer == [0, "SUCCESS"]
    else:
        with pytest.raises(xmlrpc.client.Fault) as fault:
            xmlrpc.client.loads(response.content)
        assert "<code>INVALID_PARAM</code>" in fault.value.faultString
    assert Overdraft.objects.filter(customer=customer, last_tid=17064300000000500).exists() is accepted


def test_xmlrpc_notification_for_an_unknown_order_is_not_found(customer):
    response = Client().post("/balance/notify?secret=s3cret", xmlrpc_body("NotifyOrder2", ORDER_STRUCT),
                             content_type="text/xml")
    with pytest.raises(xmlrpc.client.Fault) as fault:
        xmlrpc.client.loads(response.content)
    assert "<code>NOT_FOUND</code>" in fault.value.faultString
    assert not BalanceNotification.objects.exists()


def test_json_notification(customer):
    client = Client()
    url = "/balance/notify/BalanceClient/NotifyClient2?secret=s3cret"
    first = client.post(url, json.dumps(CLIENT_STRUCT), content_type="application/json")
    assert first.status_code == 200 and first.json() == {"status": "ok", "outcome": "applied"}
    again = client.post(url, json.dumps(CLIENT_STRUCT), content_type="application/json")
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    stale = client.post(url, json.dumps({**CLIENT_STRUCT, "Tid": "17064300000000400", "OverdraftLimit": "1.00"}),
                        content_type="application/json")
    assert stale.json()["outcome"] == "stale"
    customer.overdraft.refresh_from_db()
    assert customer.overdraft.granted_limit == Decimal("5000.00")
    assert BalanceNotification.objects.filter(kind="client").count() == 2


def test_json_notification_errors(customer):
    client = Client()
    base = "/balance/notify/BalanceClient"
    assert client.post(f"{base}/NotifyOrder2", json.dumps(ORDER_STRUCT), content_type="application/json"
                       ).status_code == 403
    unknown = client.post(f"{base}/NotifyOrder2?secret=s3cret", json.dumps(ORDER_STRUCT),
                          content_type="application/json")
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND"  # Balance retries later
    bad = client.post(f"{base}/NotifyOrder2?secret=s3cret", b"{not json", content_type="application/json")
    assert bad.status_code == 400
    other = client.post(f"{base}/NotifyWhatever?secret=s3cret", json.dumps({}), content_type="application/json")
    assert other.status_code == 404
    assert not BalanceNotification.objects.exists()


def test_a_limit_for_another_service_is_kept_apart(customer):
    """NotifyClient2 names no service: the notification URL set per service in Balance does (`?service=`)."""
    client = Client()
    body = {**CLIENT_STRUCT, "OverdraftLimit": "99.00", "Tid": "17064300000000900"}
    other = client.post("/balance/notify/BalanceClient/NotifyClient2?secret=s3cret&service=11", json.dumps(body),
                        content_type="application/json")
    assert other.json()["outcome"] == "received"  # stored, not this customer's limit
    assert not hasattr(customer, "overdraft")
    own = client.post("/balance/notify/BalanceClient/NotifyClient2?secret=s3cret&service=7", json.dumps(CLIENT_STRUCT),
                      content_type="application/json")
    assert own.json()["outcome"] == "applied"  # its own Tid order: an older Tid than the other service's
    customer.refresh_from_db()
    assert customer.overdraft.granted_limit == Decimal("5000.00")
    assert set(BalanceNotification.objects.values_list("object_key", flat=True)) == {"1234567@11", "1234567@7"}


def test_the_service_in_the_path_serves_both_protocols(customer):
    """The page: JSON delivery is `POST <url>/BalanceClient/NotifyOrder2`, Balance appending the path to the URL
    configured for the service. A `?service=` in that URL would come before the appended path (the request would
    reach the XML-RPC view with `service=7/BalanceClient/...`), so the ServiceID goes in the path: one URL per
    service, `/balance/notify/<ServiceID>`, for both protocols."""
    client = Client()
    secret = {"HTTP_X_BALANCE_SECRET": "s3cret"}
    other = client.post("/balance/notify/11/BalanceClient/NotifyClient2",
                        json.dumps({**CLIENT_STRUCT, "OverdraftLimit": "99.00", "Tid": "17064300000000900"}),
                        content_type="application/json", **secret)
    assert other.status_code == 200 and other.json()["outcome"] == "received"  # another service's limit
    own = client.post("/balance/notify/7", xmlrpc_body("NotifyClient2", CLIENT_STRUCT), content_type="text/xml",
                      **secret)
    (answer,), _ = xmlrpc.client.loads(own.content)
    assert answer == [0, "SUCCESS"]
    customer.refresh_from_db()
    assert customer.overdraft.granted_limit == Decimal("5000.00")
    assert set(BalanceNotification.objects.values_list("object_key", flat=True)) == {"1234567@11", "1234567@7"}


# --- TVM through tvmtool ------------------------------------------------------------------------------------------

class FakeTvmTool:
    """tvmtool's HTTP API as its public client uses it: /tvm/tickets and /tvm/checksrv, with the auth token."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tool = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                tool.requests.append((parsed.path, query, dict(self.headers)))
                if self.headers.get("Authorization") != "tool-token":
                    status, body = 401, {"error": "bad auth token"}
                elif parsed.path == "/tvm/tickets":
                    status, body = 200, {"balance": {"ticket": "3:serv:BALANCE-TICKET", "tvm_id": 2000}}
                elif parsed.path == "/tvm/checksrv":
                    good = self.headers.get("X-Ya-Service-Ticket") == "3:serv:FROM-BALANCE"
                    status, body = (200, {"src": 2000, "dst": 1000}) if good else (403, {"error": "bad ticket"})
                else:
                    status, body = 404, {}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


@pytest.fixture
def tvmtool(settings) -> Iterator[FakeTvmTool]:
    tool = FakeTvmTool()
    thread = threading.Thread(target=tool.server.serve_forever, daemon=True)
    thread.start()
    settings.BALANCE_TVM_PROVIDER = "tvmtool"
    settings.BALANCE_TVMTOOL_URL = tool.url
    settings.BALANCE_TVMTOOL_AUTH_TOKEN = "tool-token"
    settings.BALANCE_TVM_SELF, settings.BALANCE_TVM_DST = "billing", "balance"
    try:
        yield tool
    finally:
        tool.server.shutdown()
        tool.server.server_close()


def test_calls_carry_a_ticket_from_tvmtool(tvmtool, fake_balance):
    fake_balance.reply("GetClientPersons", [])
    with BalanceClient(url=fake_balance.url) as client:
        client.get_client_persons(1)
    assert fake_balance.last("GetClientPersons").headers["X-Ya-Service-Ticket"] == "3:serv:BALANCE-TICKET"
    path, query, headers = tvmtool.requests[0]
    assert (path, query["dsts"], query["src"], headers["Authorization"]) == (
        "/tvm/tickets", "balance", "billing", "tool-token")


def test_notification_with_a_ticket_checked_by_tvmtool(tvmtool, customer, settings):
    settings.BALANCE_NOTIFY_TVM_CHECK, settings.BALANCE_NOTIFY_TVM_SOURCES = True, [2000]
    url = "/balance/notify/BalanceClient/NotifyClient2"
    client = Client()
    ok = client.post(url, json.dumps(CLIENT_STRUCT), content_type="application/json",
                     HTTP_X_YA_SERVICE_TICKET="3:serv:FROM-BALANCE")
    assert ok.status_code == 200, ok.content
    wrong = client.post(url, json.dumps(CLIENT_STRUCT), content_type="application/json",
                        HTTP_X_YA_SERVICE_TICKET="3:serv:FORGED")
    assert wrong.status_code == 403
    settings.BALANCE_NOTIFY_TVM_SOURCES = [3000]  # a valid ticket from another service
    other = client.post(url, json.dumps(CLIENT_STRUCT), content_type="application/json",
                        HTTP_X_YA_SERVICE_TICKET="3:serv:FROM-BALANCE")
    assert other.status_code == 403
    checks = [q for p, q, _ in tvmtool.requests if p == "/tvm/checksrv"]
    assert checks and checks[0] == {"dst": "billing"}
