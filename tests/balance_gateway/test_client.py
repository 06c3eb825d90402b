"""The Balance gateway client against the version-2 emulator over HTTP, plus the client's own parsing defences
against a tiny hostile server (billion laughs, external entities, huge bodies, odd faults and statuses).
The exact request and answer of every method are pinned by test_conformance.py against recorded replies."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings

from balance_gateway.client import (
    BalanceClient,
    CompletionReport,
    OrderSpec,
    PersonSpec,
    RequestItem,
    TransferDestination,
    TransferSource,
    current_operation_id,
    operation_context,
)
from balance_gateway.emulator.remote import EmulatorControl
from balance_gateway.exceptions import (
    BalanceError,
    BalanceFinalError,
    BalanceRetryableError,
    BalanceUnknownOutcome,
)
from balance_gateway.models import BalanceCall
from balance_gateway.xmlrpc import dumps_call, wire_value
from disbalance.models import OutboxOperation

pytestmark = pytest.mark.django_db

SERVICE_ID = 7
PRODUCT_ID = 503162
COMPANY = PersonSpec(person_type="ur", name="Motors LLC", email="m@example.com", phone="+7 495 000-00-00",
                     inn="7701234567", kpp="770101001", long_name="LLC Motors", legal_address="Moscow, Tverskaya 1",
                     postal_address="Moscow, Tverskaya 1", postcode="125009")


@pytest.fixture
def gateway(balance_emulator, settings) -> Iterator[BalanceClient]:
    settings.BALANCE_RETRY_BACKOFF_SECONDS = 0
    if balance_emulator.options.required_ticket:
        settings.BALANCE_TVM_PROVIDER = "tests.tvm_tickets.StaticTickets"
        settings.TEST_SERVICE_TICKET = balance_emulator.options.required_ticket
    with BalanceClient(url=balance_emulator.url, connect_timeout=1.0, read_timeout=5.0) as balance:
        yield balance


@pytest.fixture
def control(balance_emulator) -> Iterator[EmulatorControl]:
    emulator_control = EmulatorControl(balance_emulator.url, ticket=balance_emulator.options.required_ticket)
    yield emulator_control
    emulator_control.close()


def calls(method: str | None = None) -> list[BalanceCall]:
    queryset = BalanceCall.objects.order_by("id")
    return list(queryset.filter(method=method) if method else queryset)


def new_customer(gateway: BalanceClient, *, name: str = "Motors LLC [disbalance:customer:1]") -> int:
    return gateway.create_client(name=name, email="m@example.com", phone="+7 495 000-00-00", currency="RUB")


def new_agency(gateway: BalanceClient, control: EmulatorControl, *, payment_type: str = "prepaid",
               credit_limit: Decimal = Decimal(0)) -> tuple[int, int]:
    agency_id = gateway.create_client(name="Ad Agency", is_agency=True, email="a@example.com", phone="+7")
    gateway.create_person(client_id=agency_id, person=COMPANY)
    contract_id = control.create_contract(agency_id, payment_type=payment_type, credit_limit=credit_limit,
                                          services=[SERVICE_ID])
    return agency_id, contract_id


def wallet_with_child(gateway: BalanceClient, client_id: int, *, agency_id: int | None = None,
                      contract_id: int | None = None, wallet: int = 1001, child: int = 1002) -> None:
    results = gateway.create_or_update_orders_batch([
        OrderSpec(SERVICE_ID, wallet, PRODUCT_ID, client_id, agency_id=agency_id, contract_id=contract_id,
                  text="wallet"),
        OrderSpec(SERVICE_ID, child, PRODUCT_ID, client_id, agency_id=agency_id, contract_id=contract_id,
                  group_service_order_id=wallet),
    ])
    assert all(r.ok for r in results), results


# --- clients, persons, users ----------------------------------------------------------------------------------


def test_create_client_is_not_idempotent_and_is_found_by_name(gateway):
    client_id = new_customer(gateway)
    assert isinstance(client_id, int)
    assert new_customer(gateway) != client_id  # no SERVICE_CLIENT_ID: a repeat makes a duplicate
    assert gateway.create_client(name="Motors 2", email="new@example.com", phone="+7 900",
                                 client_id=client_id) == client_id
    [info] = gateway.get_client_by_id_batch([client_id])
    assert (info.client_id, info.name, info.email, info.phone, info.is_agency, info.agency_id) == (
        client_id, "Motors 2", "new@example.com", "+7 900", False, None)
    assert [c.client_id for c in gateway.find_client(name="Motors 2")] == [client_id]
    assert gateway.get_client_by_id_batch([]) == []  # no call for nothing

    recorded = calls("CreateClient")
    assert [c.outcome for c in recorded] == ["ok", "ok", "ok"]
    assert recorded[0].arguments == {"client_id": None, "name": "Motors LLC [disbalance:customer:1]",
                                     "is_agency": False, "agency_id": None}
    assert "m@example.com" not in str(recorded[0].arguments)  # key arguments only
    assert recorded[0].operation_id is None and recorded[0].duration_ms >= 0


def test_agency_and_customer_linked_to_it(gateway):
    agency_id = gateway.create_client(name="Agency", is_agency=True)
    assert gateway.create_client(name="Agency 2", client_id=agency_id, is_agency=True) == agency_id
    customer_id = gateway.create_client(name="Customer", agency_id=agency_id, city="Moscow", currency="RUB")
    agency, customer = gateway.get_client_by_id_batch([agency_id, customer_id])
    assert agency.is_agency and agency.name == "Agency 2" and agency.agency_id is None
    assert not customer.is_agency and customer.agency_id == agency_id


def test_create_client_refused_is_final_and_recorded(gateway):
    with pytest.raises(BalanceFinalError) as caught:
        gateway.create_client(name="")
    error = caught.value
    assert (error.method, error.outcome) == ("CreateClient", "fault") and not error.retryable
    [record] = calls()
    assert record.outcome == "fault" and record.error_code == error.code and record.error_message


def test_persons_create_edit_and_look_up(gateway):
    client_id = new_customer(gateway)
    company = gateway.create_person(client_id=client_id, person=COMPANY)
    individual = gateway.create_person(client_id=client_id, person=PersonSpec(
        person_type="ph", name="Ivan Petrov", email="i@example.com", phone="+7", lname="Petrov", fname="Ivan"))
    edited = PersonSpec(**{**{f: getattr(COMPANY, f) for f in COMPANY.__slots__}, "legal_address": "Moscow, 2"})
    assert gateway.create_person(client_id=client_id, person=edited, person_id=company) == company
    by_id = {p.person_id: p for p in gateway.get_client_persons(client_id)}
    ur, ph = by_id[company], by_id[individual]
    assert (ur.type, ur.inn, ur.kpp, ur.hidden) == ("ur", "7701234567", "770101001", False)
    assert (ph.type, ph.lname, ph.fname) == ("ph", "Petrov", "Ivan")
    assert calls("CreatePerson")[0].arguments == {"client_id": client_id, "person_id": None, "type": "ur",
                                                  "name": "Motors LLC", "inn": "7701234567"}


def test_company_person_without_postcode_is_refused(gateway):
    client_id = new_customer(gateway)
    incomplete = PersonSpec(**{**{f: getattr(COMPANY, f) for f in COMPANY.__slots__}, "postcode": None})
    with pytest.raises(BalanceFinalError) as caught:
        gateway.create_person(client_id=client_id, person=incomplete)
    assert caught.value.code == "MISSING_MANDATORY_PERSON_FIELD"
    assert gateway.get_client_persons(client_id) == []  # the refusal created nothing


def test_user_association_linked_elsewhere_is_an_answer(gateway):
    first, second = new_customer(gateway), new_customer(gateway, name="Other")
    user_uid = 4_000_000_000_123  # a Passport uid: beyond int32, goes as a digit string
    linked = gateway.create_user_client_association(client_id=first, user_uid=user_uid)
    assert linked.linked and not linked.linked_elsewhere
    assert gateway.create_user_client_association(client_id=first, user_uid=user_uid).linked  # again: fine
    elsewhere = gateway.create_user_client_association(client_id=second, user_uid=user_uid)
    assert elsewhere.linked_elsewhere and not elsewhere.linked
    assert calls("CreateUserClientAssociation")[-1].error_code == "4008"
    with pytest.raises(BalanceFinalError) as caught:
        gateway.create_user_client_association(client_id=999999, user_uid=5)
    assert caught.value.code == "1003"


def test_operator_uid_goes_as_a_digit_string(balance_emulator, gateway):
    assert settings.BALANCE_OPERATOR_UID > 2**31 - 1
    body = dumps_call("Balance2.CreateClient", (str(settings.BALANCE_OPERATOR_UID), {"REGION_ID": 225}))
    assert f"<string>{settings.BALANCE_OPERATOR_UID}</string>".encode() in body
    assert wire_value(2**31 - 1) == 2**31 - 1 and wire_value(2**31) == str(2**31)
    assert wire_value({"A": Decimal("5"), "B": None, "C": [Decimal("0.005")]}) == {"A": "5.00", "C": ["0.01"]}
    with pytest.raises(TypeError):
        wire_value(1.5)  # money is never a float
    with BalanceClient(url=balance_emulator.url) as balance:  # operator uid from settings
        assert balance.operator_uid == str(settings.BALANCE_OPERATOR_UID)
        assert balance.create_client(name="Uid test") > 0
        with pytest.raises(TypeError):  # a float amount is a bug of the caller: refused before sending
            balance.create_request2(payer_client_id=1, items=[RequestItem(SERVICE_ID, 1, 1.5)])  # type: ignore[arg-type]
    assert [c.method for c in calls()] == ["CreateClient"]


# --- contracts and credit ----------------------------------------------------------------------------------


def test_contracts_and_credit_limits(gateway, control):
    agency_id, contract_id = new_agency(gateway, control, payment_type="postpaid", credit_limit=Decimal("1000"))
    [contract] = gateway.get_client_contracts(agency_id)
    assert contract.contract_id == contract_id
    assert contract.is_active and contract.payment_type == "postpaid" and contract.services == [SERVICE_ID]
    assert contract.external_id and contract.finish_dt is None
    limits = gateway.get_client_credit_limits(client_id=agency_id, product_id=PRODUCT_ID)
    assert limits.currency == "RUB"
    assert [(x.contract_id, x.limit_total, x.limit_spent) for x in limits.limits] == [
        (contract_id, Decimal("1000.00"), Decimal("0.00"))]


# --- orders, requests, completions, transfers ------------------------------------------------------------


def test_orders_batch_results_in_order_and_orders_info(gateway):
    client_id = new_customer(gateway)
    big_order_id = 9_000_000_001  # billing's own key, beyond int32
    results = gateway.create_or_update_orders_batch([
        OrderSpec(SERVICE_ID, big_order_id, PRODUCT_ID, client_id, text="wallet"),
        OrderSpec(SERVICE_ID, 1002, PRODUCT_ID, 999999),  # unknown client: refused, the others still go
        OrderSpec(SERVICE_ID, 1003, PRODUCT_ID, client_id, group_service_order_id=big_order_id),
    ])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].message
    [record] = calls("CreateOrUpdateOrdersBatch")
    assert (record.outcome, record.error_code) == ("ok", "-1")
    assert record.arguments == {"count": 3, "first": [[SERVICE_ID, big_order_id], [SERVICE_ID, 1002],
                                                      [SERVICE_ID, 1003]]}

    wallet, child = gateway.get_orders_info([(SERVICE_ID, big_order_id), (SERVICE_ID, "1002"), (SERVICE_ID, 1003)])
    assert (wallet.service_order_id, wallet.product_id) == (str(big_order_id), PRODUCT_ID)
    assert wallet.group_service_order_id is None and child.group_service_order_id == str(big_order_id)
    assert wallet.consume_amount == wallet.completion_amount == Decimal("0.00")
    assert gateway.get_orders_info([]) == []


def test_an_update_replaces_the_order(gateway, control):
    agency_id, contract_id = new_agency(gateway, control)
    client_id = gateway.create_client(name="Customer", agency_id=agency_id)
    wallet_with_child(gateway, client_id, agency_id=agency_id, contract_id=contract_id)
    # The child sent again without its group leaves the group: billing always sends the whole order.
    gateway.create_or_update_orders_batch([OrderSpec(SERVICE_ID, 1002, PRODUCT_ID, client_id, agency_id=agency_id)])
    [child] = gateway.get_orders_info([(SERVICE_ID, 1002)])
    assert child.group_service_order_id is None
    state = {o["ServiceOrderID"]: o for o in control.state()["orders"]}
    assert str(state["1002"].get("ContractID") or "") in ("", "0")


def test_batch_arguments_stay_small(gateway):
    client_id = new_customer(gateway)
    gateway.create_or_update_orders_batch([OrderSpec(SERVICE_ID, 5000 + i, PRODUCT_ID, client_id) for i in range(40)])
    [record] = calls("CreateOrUpdateOrdersBatch")
    assert record.arguments["count"] == 40 and len(record.arguments["first"]) == 5


def test_request_payment_completions_and_transfer(gateway, control):
    client_id = new_customer(gateway)
    gateway.create_person(client_id=client_id, person=COMPANY)
    wallet_with_child(gateway, client_id)
    gateway.create_or_update_orders_batch([OrderSpec(SERVICE_ID, 2001, PRODUCT_ID, client_id)])
    request = gateway.create_request2(payer_client_id=client_id,
                                      items=[RequestItem(SERVICE_ID, 1001, Decimal("1500"))],
                                      return_path="https://example.com/back")
    assert request.request_id > 0 and request.user_path
    assert calls("CreateRequest2")[0].arguments == {"payer_client_id": client_id, "count": 1,
                                                    "first": [[SERVICE_ID, 1001, "1500"]]}
    control.pay_request(request.request_id)
    [wallet] = gateway.get_orders_info([(SERVICE_ID, 1001)])
    assert wallet.consume_amount == Decimal("1500.00")

    now = datetime.now(UTC)
    accepted = gateway.update_campaigns([
        CompletionReport(SERVICE_ID, 1002, "Money", Decimal("300.5"), now),
        CompletionReport(SERVICE_ID, 1002, "Money", Decimal("300.5"), now + timedelta(hours=2)),  # never future
    ])
    assert accepted == [True, True]
    control.apply_pending()
    [child] = gateway.get_orders_info([(SERVICE_ID, 1002)])
    assert child.completion_qty == Decimal("300.5")

    # Move 400 of the free money to another root order of the same client.
    [wallet] = gateway.get_orders_info([(SERVICE_ID, 1001)])
    gateway.create_transfer_multiple(
        sources=[TransferSource(SERVICE_ID, 1001, wallet.consume_qty, wallet.consume_qty - Decimal("400"))],
        destinations=[TransferDestination(SERVICE_ID, 2001, Decimal("1"))],
    )
    [other] = gateway.get_orders_info([(SERVICE_ID, 2001)])
    assert other.consume_amount == Decimal("400.00")
    with pytest.raises(BalanceFinalError) as caught:  # the same transfer again: QtyOld is stale now
        gateway.create_transfer_multiple(
            sources=[TransferSource(SERVICE_ID, 1001, wallet.consume_qty, wallet.consume_qty - Decimal("400"))],
            destinations=[TransferDestination(SERVICE_ID, 2001, Decimal("1"))],
        )
    assert caught.value.code == "ORDERS_NOT_SYNCHRONIZED"


def test_completion_for_a_stopped_order_is_refused_per_item(gateway, control):
    client_id = new_customer(gateway)
    wallet_with_child(gateway, client_id)
    control.update_order(SERVICE_ID, 1002, {"Blocked": 1})
    now = datetime.now(UTC)
    assert gateway.update_campaigns([CompletionReport(SERVICE_ID, 1002, "Money", Decimal("10"), now)]) == [False]
    assert calls("UpdateCampaigns")[-1].error_code == "0"


def test_overdraft_params(gateway, control):
    client_id = new_customer(gateway)
    before = gateway.get_overdraft_params(service_id=SERVICE_ID, client_id=client_id)
    assert before is None or before.client_limit == 0  # no auto-overdraft (NOT_FOUND, or an empty setting)
    person_id = gateway.create_person(client_id=client_id, person=COMPANY)
    control.grant_overdraft(client_id, Decimal("5000"), 10)
    gateway.set_overdraft_params(service_id=SERVICE_ID, person_id=person_id, payment_method="bank",
                                 currency="RUB", client_limit=Decimal("3000"))
    params = gateway.get_overdraft_params(service_id=SERVICE_ID, client_id=client_id)
    assert (params.person_id, params.client_limit, params.currency) == (person_id, Decimal("3000.00"), "RUB")


# --- failures: retryable, unknown outcome, records -----------------------------------------------------------


def test_injected_errors_are_retryable_and_nothing_is_applied(gateway, control):
    control.set_faults({"CreateClient": {"error_rate": 1.0}})
    with pytest.raises(BalanceRetryableError) as fault:
        new_customer(gateway)
    assert fault.value.retryable
    control.set_faults({})
    assert gateway.find_client(name="Motors LLC [disbalance:customer:1]") == []


def test_read_timeout_is_an_unknown_outcome_and_the_client_is_found(balance_emulator, gateway, control):
    control.set_faults({"CreateClient": {"timeout_rate": 1.0}})
    with BalanceClient(url=balance_emulator.url, read_timeout=0.5) as impatient:
        started = time.monotonic()
        with pytest.raises(BalanceUnknownOutcome) as caught:
            new_customer(impatient)
        assert time.monotonic() - started < 1.4
    assert (caught.value.code, caught.value.outcome) == ("TIMEOUT", "timeout")
    [record] = calls("CreateClient")
    assert record.outcome == "timeout" and 400 <= record.duration_ms < 1400
    control.set_faults({})
    # It was applied: billing finds it by its marked name instead of creating it again.
    [found] = gateway.find_client(name="Motors LLC [disbalance:customer:1]")
    assert found.client_id > 0


def test_lost_response_is_an_unknown_outcome(gateway, control):
    client_id = new_customer(gateway)
    control.set_faults({"CreatePerson": {"lost_response_rate": 1.0}})
    with pytest.raises(BalanceUnknownOutcome) as caught:
        gateway.create_person(client_id=client_id, person=COMPANY)
    assert (caught.value.code, caught.value.outcome) == ("LOST_RESPONSE", "lost_response")
    control.set_faults({})
    [person] = gateway.get_client_persons(client_id)  # the lost CreatePerson was applied: look up, don't repeat
    assert person.inn == "7701234567"


def test_connection_refused_is_retryable_not_unknown(settings):
    settings.BALANCE_RETRY_BACKOFF_SECONDS = 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with BalanceClient(url=f"http://127.0.0.1:{port}/xmlrpc", connect_timeout=1.0) as nowhere:
        with pytest.raises(BalanceRetryableError) as caught:
            nowhere.get_client_persons(1)
    assert not isinstance(caught.value, BalanceUnknownOutcome)
    assert (caught.value.code, caught.value.outcome) == ("CONNECTION_ERROR", "connection_error")
    records = calls()
    assert {(r.method, r.outcome) for r in records} == {("GetClientPersons", "connection_error")}
    assert len(records) == 1 + settings.BALANCE_TRANSIENT_RETRIES  # a read is retried quickly


def test_calls_carry_the_operation_id_of_the_context(gateway, caplog):
    operation = OutboxOperation.objects.create(kind="customer.sync", subject="customer:1")
    new_customer(gateway)
    with operation_context(operation.pk):
        assert current_operation_id.get() == operation.pk
        client_id = new_customer(gateway)
        with pytest.raises(BalanceFinalError):
            gateway.create_person(client_id=client_id, person=PersonSpec(person_type="xx", name="X"))
    assert current_operation_id.get() is None
    new_customer(gateway)
    assert [c.operation_id for c in calls()] == [None, operation.pk, operation.pk, None]
    assert list(operation.calls.values_list("method", flat=True).order_by("id")) == ["CreateClient", "CreatePerson"]
    lines = [r for r in caplog.records if r.name == "balance_gateway.client"]
    assert len(lines) == 4
    assert (lines[2].balance_method, lines[2].balance_outcome, lines[2].operation) == ("CreatePerson", "fault",
                                                                                      operation.pk)


def test_a_failing_call_log_changes_nothing(gateway, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr(BalanceCall.objects, "create", broken)
    assert new_customer(gateway) > 0
    with pytest.raises(BalanceFinalError):
        gateway.create_client(name="")
    assert any(r.getMessage() == "BalanceCall not recorded" for r in caplog.records)


def test_emulator_control_helpers(gateway, control):
    client_id = new_customer(gateway)
    wallet_with_child(gateway, client_id)
    control.update_order(SERVICE_ID, 1001, {"ConsumeSum": "50.00", "ConsumeQty": "50"})
    assert gateway.get_orders_info([(SERVICE_ID, 1001)])[0].consume_amount == Decimal("50.00")
    state = control.state()
    assert [c["CLIENT_ID"] for c in state["clients"]] == [client_id] and len(state["orders"]) == 2
    control.drop_next_notifications(1)
    control.reset()
    assert control.state()["clients"] == []
    assert not calls("State") and not calls("Reset")  # control calls are not recorded
    with pytest.raises(xmlrpc.client.Fault):
        control.pay_request(123)


# --- the client's own parsing defences, against a hostile server -------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<methodResponse><params><param><value><string>&lol9;</string></value></param></params></methodResponse>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<methodResponse><params><param><value><string>&xxe;</string></value></param></params></methodResponse>"""


def _fault(code: int, text: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), methodresponse=True).encode()


def _result(value: object) -> bytes:
    return xmlrpc.client.dumps((value,), methodresponse=True).encode()


CANNED: dict[str, tuple[int, bytes]] = {
    "/laughs": (200, BILLION_LAUGHS),
    "/xxe": (200, EXTERNAL_ENTITY),
    "/garbage": (200, b"<html>Bad gateway</html"),
    "/wrong-shape": (200, _result("not a list")),
    "/locked": (200, _fault(-1, "<error><msg>busy</msg><code>REQUEST_IS_LOCKED</code><method>x</method></error>")),
    "/plain-fault": (200, _fault(1, "<class 'KeyError'>:'x'")),
    "/hostile-fault": (200, _fault(-1, BILLION_LAUGHS.decode().replace("methodResponse", "error"))),
    "/http-500": (500, b"oops"),
    "/http-503": (503, b"busy"),
    "/http-404": (404, b"no such endpoint"),
}


class _HostileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with contextlib.suppress(OSError):
            if self.path == "/huge-declared":
                self.send_response(200)
                self.send_header("Content-Length", str(50 * 1024 * 1024))
                self.end_headers()
                self.wfile.write(b"<?xml version='1.0'?><methodResponse>")
                return
            if self.path == "/huge-streamed":  # no Content-Length: the body runs until the connection closes
                self.send_response(200)
                self.end_headers()
                chunk = b"<!-- " + b"x" * (1024 * 1024) + b" -->"
                for _ in range(12):
                    self.wfile.write(chunk)
                return
            status, body = CANNED[self.path]
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _call_hostile(base_url: str, path: str) -> BalanceError:
    with BalanceClient(url=base_url + path, read_timeout=2.0) as hostile:
        started = time.monotonic()
        with pytest.raises(BalanceError) as caught:
            hostile.create_client(name="X")
        assert time.monotonic() - started < 2.0, f"{path} took too long"
    return caught.value


@pytest.mark.parametrize("path", ["/laughs", "/xxe", "/garbage", "/wrong-shape"])
def test_unparseable_answers_are_unknown_outcomes_and_nothing_is_expanded(hostile_url, path):
    error = _call_hostile(hostile_url, path)
    assert isinstance(error, BalanceUnknownOutcome)
    assert (error.code, error.outcome) == ("BAD_RESPONSE", "bad_response")
    assert "root:" not in error.message and "lollol" not in error.message
    assert len(error.message) < 2100
    [record] = calls()
    assert (record.outcome, record.error_code) == ("bad_response", "BAD_RESPONSE")


@pytest.mark.parametrize("path", ["/huge-declared", "/huge-streamed"])
def test_huge_answers_are_refused(hostile_url, path):
    error = _call_hostile(hostile_url, path)
    assert isinstance(error, BalanceUnknownOutcome) and error.code == "RESPONSE_TOO_LARGE"


@pytest.mark.parametrize(("path", "error_class", "code", "outcome"), [
    ("/locked", BalanceRetryableError, "REQUEST_IS_LOCKED", "fault"),
    ("/plain-fault", BalanceUnknownOutcome, "TRANSIENT_FAULT", "fault"),  # not Balance's <error>: transient
    ("/hostile-fault", BalanceUnknownOutcome, "TRANSIENT_FAULT", "fault"),
    ("/http-500", BalanceUnknownOutcome, "HTTP_500", "http_error"),
    ("/http-503", BalanceRetryableError, "HTTP_503", "http_error"),
    ("/http-404", BalanceFinalError, "HTTP_404", "http_error"),
])
def test_fault_and_status_mapping(hostile_url, path, error_class, code, outcome):
    error = _call_hostile(hostile_url, path)
    assert type(error) is error_class
    assert (error.code, error.outcome, error.method) == (code, outcome, "CreateClient")
    assert "lollol" not in error.message


def test_a_ticket_required_by_balance_comes_from_the_provider(emulator_factory, settings):
    protected = emulator_factory(required_ticket="3:serv:BILLING")
    with BalanceClient(url=protected.url) as without:
        with pytest.raises(BalanceError) as caught:
            without.create_client(name="No ticket")
    assert caught.value.code in ("HTTP_403", "TVM_TICKET_INVALID")
    settings.BALANCE_TVM_PROVIDER = "tests.tvm_tickets.StaticTickets"
    settings.TEST_SERVICE_TICKET = "3:serv:BILLING"
    with BalanceClient(url=protected.url) as with_ticket:
        assert with_ticket.create_client(name="With ticket") > 0
