"""Conformance with Balance's protocol, version 2 (docs/balance-protocol.md): for every method, what billing sends
and how it reads the answer, against recorded version-2 replies from a tiny local server (`fake_balance.py`), not
the emulator. Version 1's shapes are refused. docs/balance-conformance.md points at each test here."""

from __future__ import annotations

import xmlrpc.client
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from balance_gateway.client import (
    BalanceClient,
    CompletionReport,
    OrderSpec,
    PersonSpec,
    RequestItem,
    TransferDestination,
    TransferSource,
)
from balance_gateway.exceptions import BalanceFinalError, BalanceRetryableError, BalanceUnknownOutcome
from balance_gateway.models import BalanceCall
from balance_gateway.transport import Transport
from tests.balance_gateway.fake_balance import FakeBalance, Raw, balance_fault

pytestmark = pytest.mark.django_db

OPERATOR_UID = 1120000000000001

CLIENT = {"CLIENT_ID": 1234567, "NAME": "Motors LLC [disbalance:customer:1]", "EMAIL": "a@motors.example",
          "PHONE": "+7 495 000-00-00", "FAX": "", "URL": "", "CITY": "Moscow", "REGION_ID": 225,
          "CLIENT_TYPE_ID": 0, "IS_AGENCY": 0, "AGENCY_ID": 0, "SERVICE_DATA": {}, "SINGLE_ACCOUNT_NUMBER": "11"}

ORDER_INFO = {"id": 987654321, "ServiceID": 7, "ServiceOrderID": "41", "IsGroupRoot": 0,
              "GroupServiceOrderID": "40", "product_id": 503162, "consume_qty": "100", "completion_qty": "828.333333",
              "consume_amount": "3000.00", "completion_amount": "2485.00", "ConsumeMoneyQty": "3000",
              "CompletionMoneyQty": "2485", "CompletionFixedMoneyQty": "0", "invoice_currency": "RUR"}


@pytest.fixture
def gateway(fake_balance: FakeBalance, settings):
    settings.BALANCE_RETRY_BACKOFF_SECONDS = 0
    settings.BALANCE_TVM_PROVIDER = "none"
    with BalanceClient(url=fake_balance.url, operator_uid=OPERATOR_UID, connect_timeout=1, read_timeout=3) as client:
        yield client


def bad_response(exc_info: pytest.ExceptionInfo) -> bool:
    return isinstance(exc_info.value, BalanceUnknownOutcome) and exc_info.value.code == "BAD_RESPONSE"


# --- transport ---------------------------------------------------------------------------------------------------

def test_operator_uid_goes_as_a_string_and_reads_take_none(gateway, fake_balance):
    fake_balance.reply("CreateClient", [0, "SUCCESS", 1234567])
    fake_balance.reply("GetClientByIdBatch", [0, [CLIENT]])
    gateway.create_client(name="Motors LLC")
    gateway.get_client_by_id_batch([1234567])
    assert fake_balance.last("CreateClient").params[0] == str(OPERATOR_UID)
    assert fake_balance.last("GetClientByIdBatch").params == ([1234567],)


def test_non_xml_fault_is_transient_and_retried_for_repeatable_calls(gateway, fake_balance):
    ora = xmlrpc.client.Fault(-1, "Error: DatabaseError\nDescription: ORA-03113: end-of-file on communication channel")
    fake_balance.reply("GetOrdersInfo", ora, [ORDER_INFO])
    [info] = gateway.get_orders_info([(7, 41)])
    assert info.consume_amount == Decimal("3000.00")
    assert len(fake_balance.calls("GetOrdersInfo")) == 2
    outcomes = list(BalanceCall.objects.filter(method="GetOrdersInfo").order_by("id").values_list("outcome",
                                                                                                  "error_code"))
    assert outcomes == [("fault", "TRANSIENT_FAULT"), ("ok", "")]


def test_non_xml_fault_on_a_creation_is_an_unknown_outcome_never_repeated_blindly(gateway, fake_balance):
    fake_balance.reply("CreateClient", xmlrpc.client.Fault(-1, "Error: DatabaseError\nDescription: ORA-03113"))
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.create_client(name="Motors LLC")
    assert exc_info.value.retryable and exc_info.value.code == "TRANSIENT_FAULT"
    assert len(fake_balance.calls("CreateClient")) == 1


def test_a_fault_sent_with_http_500_is_read_as_the_fault(gateway, fake_balance):
    """XML-RPC sends faults with 200; a Balance (or a proxy) answering one with 500 still refused the call: a final
    fault stays final (not an unknown outcome retried for ever), and a 500 without a fault stays unknown."""
    body = xmlrpc.client.dumps(balance_fault("INVALID_PARAM", "Invalid parameter for function"), methodresponse=True)
    fake_balance.reply("GetClientPersons", Raw(500, body.encode()))
    with pytest.raises(BalanceFinalError) as exc_info:
        gateway.get_client_persons(100)
    assert (exc_info.value.code, exc_info.value.outcome) == ("INVALID_PARAM", "fault")
    assert len(fake_balance.calls("GetClientPersons")) == 1
    fake_balance.reply("CreateClient", Raw(500, b"<html>Internal Server Error</html>"))
    with pytest.raises(BalanceUnknownOutcome) as unknown:
        gateway.create_client(name="Motors LLC", email="", phone="", is_agency=False, currency="RUB")
    assert unknown.value.code == "HTTP_500"


def test_http_502_is_retried(gateway, fake_balance):
    fake_balance.reply("GetClientPersons", Raw(502, b"Bad Gateway"), Raw(502, b"Bad Gateway"), [])
    assert gateway.get_client_persons(1234567) == []
    assert len(fake_balance.calls("GetClientPersons")) == 3


def test_http_502_beyond_the_retries_is_transient_not_final(gateway, fake_balance, settings):
    settings.BALANCE_TRANSIENT_RETRIES = 1
    fake_balance.reply("GetClientPersons", Raw(502, b"Bad Gateway"))
    with pytest.raises(BalanceRetryableError) as exc_info:
        gateway.get_client_persons(1234567)
    assert exc_info.value.code == "HTTP_502"
    assert len(fake_balance.calls("GetClientPersons")) == 2


def test_xml_fault_with_code_is_final(gateway, fake_balance):
    fake_balance.reply("CreatePerson", balance_fault("MISSING_MANDATORY_PERSON_FIELD", "postcode is missing",
                                                     "CreatePerson"))
    with pytest.raises(BalanceFinalError) as exc_info:
        gateway.create_person(client_id=1, person=PersonSpec(person_type="ur", name="Motors"))
    assert exc_info.value.code == "MISSING_MANDATORY_PERSON_FIELD" and not exc_info.value.retryable
    assert len(fake_balance.calls("CreatePerson")) == 1


def test_tvm_ticket_header_from_the_provider(fake_balance, settings):
    class StaticTickets:
        def service_ticket(self) -> str:
            return "3:serv:TICKET"

        def check_service_ticket(self, ticket: str) -> int | None:
            return None

    fake_balance.reply("GetClientPersons", [])
    with BalanceClient(url=fake_balance.url) as client:
        client._transport.tickets = StaticTickets()
        client.get_client_persons(1)
    assert fake_balance.last("GetClientPersons").headers.get("X-Ya-Service-Ticket") == "3:serv:TICKET"


def test_no_ticket_header_for_the_emulator(gateway, fake_balance):
    fake_balance.reply("GetClientPersons", [])
    gateway.get_client_persons(1)
    assert "X-Ya-Service-Ticket" not in fake_balance.last("GetClientPersons").headers


def test_tls_settings(settings):
    settings.BALANCE_VERIFY_TLS, settings.BALANCE_CA_BUNDLE = True, "/etc/ssl/yandex-ca.pem"
    assert Transport("https://balance.example/xmlrpc", 1, 1).session.verify == "/etc/ssl/yandex-ca.pem"
    settings.BALANCE_CA_BUNDLE = ""
    assert Transport("https://balance.example/xmlrpc", 1, 1).session.verify is True
    settings.BALANCE_VERIFY_TLS = False
    assert Transport("https://balance.example/xmlrpc", 1, 1).session.verify is False


# --- clients and persons -----------------------------------------------------------------------------------------

def test_create_client(gateway, fake_balance, settings):
    settings.BALANCE_TRUSTS_SERVICE_CLIENT_ID = False
    fake_balance.reply("CreateClient", [0, "SUCCESS", 1234567])
    assert gateway.create_client(name="Motors LLC [m]", email="a@b.example", phone="1", currency="RUB",
                                 service_id=7, service_client_id="disbalance:customer:1") == 1234567
    uid, fields = fake_balance.last("CreateClient").params
    assert uid == str(OPERATOR_UID)
    assert fields == {"NAME": "Motors LLC [m]", "EMAIL": "a@b.example", "PHONE": "1", "REGION_ID": 225,
                      "IS_AGENCY": 0, "CURRENCY": "RUB"}


def test_create_client_sends_service_client_id_only_when_trusted(gateway, fake_balance, settings):
    settings.BALANCE_TRUSTS_SERVICE_CLIENT_ID = True
    fake_balance.reply("CreateClient", [0, "SUCCESS", 1234567])
    gateway.create_client(name="Motors", service_id=7, service_client_id="disbalance:customer:1")
    fields = fake_balance.last("CreateClient").params[1]
    assert fields["SERVICE_ID"] == 7 and fields["SERVICE_CLIENT_ID"] == "disbalance:customer:1"


@pytest.mark.parametrize("old_shape", [1234567, [1234567], {"CLIENT_ID": 1234567}])
def test_create_client_refuses_other_shapes(gateway, fake_balance, old_shape):
    fake_balance.reply("CreateClient", old_shape)
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.create_client(name="Motors")
    assert bad_response(exc_info)


def test_create_client_error_code_is_final(gateway, fake_balance):
    fake_balance.reply("CreateClient", [1003, "no such client"])
    with pytest.raises(BalanceFinalError) as exc_info:
        gateway.create_client(name="Motors", client_id=99)
    assert exc_info.value.code == "1003"


def test_create_person_company(gateway, fake_balance):
    fake_balance.reply("CreatePerson", "765432")
    person = PersonSpec(person_type="ur", name="Motors", email="a@b.example", phone="+7", inn="7701234567",
                        kpp="770101001", long_name="LLC Motors", legal_address="Moscow, Tverskaya 1",
                        postal_address="Moscow, PO box 1", postcode="125009")
    assert gateway.create_person(client_id=1234567, person=person) == 765432
    uid, fields = fake_balance.last("CreatePerson").params
    assert uid == str(OPERATOR_UID)
    assert fields == {"client_id": 1234567, "type": "ur", "name": "Motors", "email": "a@b.example", "phone": "+7",
                      "longname": "LLC Motors", "inn": "7701234567", "kpp": "770101001",
                      "legaladdress": "Moscow, Tverskaya 1", "postaddress": "Moscow, PO box 1", "postcode": "125009"}


def test_create_person_individual(gateway, fake_balance):
    fake_balance.reply("CreatePerson", 765433)
    person = PersonSpec(person_type="ph", name="Ivan Petrov", email="i@p.example", phone="+7", lname="Petrov",
                        fname="Ivan")
    assert gateway.create_person(client_id=1234567, person=person, person_id=765433) == 765433
    fields = fake_balance.last("CreatePerson").params[1]
    assert fields == {"client_id": 1234567, "person_id": 765433, "type": "ph", "name": "Ivan Petrov",
                      "email": "i@p.example", "phone": "+7", "lname": "Petrov", "fname": "Ivan"}


@pytest.mark.parametrize("answer,linked,elsewhere", [([0, "SUCCESS"], True, False),
                                                      ([4008, "linked to another client"], False, True)])
def test_user_client_association(gateway, fake_balance, answer, linked, elsewhere):
    fake_balance.reply("CreateUserClientAssociation", answer)
    result = gateway.create_user_client_association(client_id=1234567, user_uid=4001234567890)
    assert (result.linked, result.linked_elsewhere) == (linked, elsewhere)
    assert fake_balance.last("CreateUserClientAssociation").params == (str(OPERATOR_UID), 1234567, "4001234567890")


# CreateUserClientAssociation's codes come as the answer's code (`[4008, "..."]`) or as a fault: Balance's XML
# error document with the code in `<code>`, or a fault whose faultCode is the code (its faultString plain text).
ASSOCIATION_FAULTS = {
    "answer": lambda code, text: [code, text],
    "xml fault": lambda code, text: balance_fault(str(code), text, "CreateUserClientAssociation"),
    "fault code": lambda code, text: xmlrpc.client.Fault(code, text),
}


@pytest.mark.parametrize("form", sorted(ASSOCIATION_FAULTS))
def test_user_client_association_linked_elsewhere_in_every_form(gateway, fake_balance, form):
    fake_balance.reply("CreateUserClientAssociation",
                       ASSOCIATION_FAULTS[form](4008, "Passport 42 is already linked to client 7654321"))
    result = gateway.create_user_client_association(client_id=1234567, user_uid=42)
    assert (result.linked, result.linked_elsewhere) == (False, True)
    assert len(fake_balance.requests) == 1  # an answer: not repeated


@pytest.mark.parametrize("form", sorted(ASSOCIATION_FAULTS))
@pytest.mark.parametrize("code,meaning", [(1003, "no such client"), (2, "no such user")])
def test_user_client_association_refusals_are_final(gateway, fake_balance, code, meaning, form):
    fake_balance.reply("CreateUserClientAssociation", ASSOCIATION_FAULTS[form](code, "not found in DB"))
    with pytest.raises(BalanceFinalError) as exc_info:
        gateway.create_user_client_association(client_id=1234567, user_uid=42)
    assert exc_info.value.code == str(code)
    assert exc_info.value.message.startswith(meaning), exc_info.value.message
    assert len(fake_balance.requests) == 1  # final: never retried


def test_a_plain_fault_with_another_code_stays_transient(gateway, fake_balance):
    """Only the method's own codes are read from faultCode: any other plain fault is Balance failing."""
    fake_balance.reply("CreateUserClientAssociation", xmlrpc.client.Fault(-1, "Error: DatabaseError"),
                       [0, "SUCCESS"])
    assert gateway.create_user_client_association(client_id=1234567, user_uid=42).linked


def test_find_client(gateway, fake_balance):
    fake_balance.reply("FindClient", [0, "", [CLIENT]])
    [client] = gateway.find_client(name="Motors LLC [disbalance:customer:1]")
    assert (client.client_id, client.name, client.is_agency, client.agency_id, client.region_id) == (
        1234567, "Motors LLC [disbalance:customer:1]", False, None, 225)
    assert fake_balance.last("FindClient").params == ({"Name": "Motors LLC [disbalance:customer:1]"},)


@pytest.mark.parametrize("old_shape", [[CLIENT], [0, [CLIENT]]])
def test_find_client_refuses_other_shapes(gateway, fake_balance, old_shape):
    fake_balance.reply("FindClient", old_shape)
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.find_client(email="a@motors.example")
    assert bad_response(exc_info)


def test_find_client_without_criteria_is_not_sent(gateway, fake_balance):
    with pytest.raises(TypeError):
        gateway.find_client()
    assert fake_balance.requests == []


def test_get_client_by_id_batch(gateway, fake_balance):
    agency = {**CLIENT, "CLIENT_ID": "7654321", "IS_AGENCY": "1", "NAME": "Agency"}
    fake_balance.reply("GetClientByIdBatch", [0, [CLIENT, agency]])
    clients = gateway.get_client_by_id_batch([1234567, 7654321])
    assert [(c.client_id, c.is_agency) for c in clients] == [(1234567, False), (7654321, True)]


def test_get_client_by_id_batch_refuses_version_1(gateway, fake_balance):
    fake_balance.reply("GetClientByIdBatch", [CLIENT])
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.get_client_by_id_batch([1234567])
    assert bad_response(exc_info)


def test_get_client_persons(gateway, fake_balance):
    fake_balance.reply("GetClientPersons", [{"id": "765432", "type": "ur", "name": "Motors", "inn": "7701234567",
                                             "kpp": "770101001", "longname": "LLC Motors", "postcode": "125009",
                                             "hidden": "0"}])
    [person] = gateway.get_client_persons(1234567)
    assert (person.person_id, person.type, person.inn, person.kpp, person.long_name, person.hidden) == (
        765432, "ur", "7701234567", "770101001", "LLC Motors", False)
    assert fake_balance.last("GetClientPersons").params == (1234567, 0)


def test_get_client_contracts(gateway, fake_balance):
    fake_balance.reply("GetClientContracts", [
        {"ID": 55, "EXTERNAL_ID": "12345/26", "PERSON_ID": 765432, "IS_ACTIVE": 1, "IS_SIGNED": 1,
         "IS_SUSPENDED": 0, "PAYMENT_TYPE": 3, "SERVICES": [7, 11], "CURRENCY": "RUR", "DT": "2026-01-01"},
    ])
    [contract] = gateway.get_client_contracts(7654321)
    assert (contract.contract_id, contract.external_id, contract.payment_type, contract.services,
            contract.currency, str(contract.dt)) == (55, "12345/26", "postpaid", [7, 11], "RUB", "2026-01-01")
    assert fake_balance.last("GetClientContracts").params == ({"ClientID": 7654321},)


def test_contracts_of_other_payment_types_are_left_out_not_fatal(gateway, fake_balance):
    """The page names PAYMENT_TYPE 2 and 3 only: a contract of another type is left out (and noted on the call),
    the prepaid and postpaid ones are still read."""
    fake_balance.reply("GetClientContracts", [
        {"ID": 54, "EXTERNAL_ID": "1/25", "IS_ACTIVE": 1, "PAYMENT_TYPE": 1, "SERVICES": [7], "DT": "2025-01-01"},
        {"ID": 55, "EXTERNAL_ID": "12345/26", "IS_ACTIVE": 1, "PAYMENT_TYPE": "2", "SERVICES": [7], "DT": "2026-01-01"},
    ])
    assert [(c.contract_id, c.payment_type) for c in gateway.get_client_contracts(7654321)] == [(55, "prepaid")]
    call = BalanceCall.objects.filter(method="GetClientContracts").latest("pk")
    assert (call.outcome, call.error_code) == ("ok", "OTHER_PAYMENT_TYPE")


# --- orders, requests, completions -------------------------------------------------------------------------------

def test_orders_are_sent_whole(gateway, fake_balance):
    fake_balance.reply("CreateOrUpdateOrdersBatch", [[0, "Success"], [-1, balance_fault(
        "ORDERS_NOT_SYNCHRONIZED", "only equivalent clients are permitted").faultString]])
    results = gateway.create_or_update_orders_batch([
        OrderSpec(service_id=7, service_order_id=40, product_id=503000, client_id=1234567, agency_id=7654321,
                  contract_id=55, text="wallet"),
        OrderSpec(service_id=7, service_order_id=41, product_id=503162, client_id=1234567, agency_id=7654321,
                  contract_id=55, group_service_order_id=40, group_without_transfer=True, text="child"),
    ])
    assert results[0].ok and not results[1].ok
    assert "only equivalent clients are permitted" in results[1].message
    uid, orders = fake_balance.last("CreateOrUpdateOrdersBatch").params
    assert uid == str(OPERATOR_UID)
    assert orders == [
        {"ServiceID": 7, "ServiceOrderID": 40, "ProductID": 503000, "ClientID": 1234567, "AgencyID": 7654321,
         "ContractID": 55, "Text": "wallet"},
        {"ServiceID": 7, "ServiceOrderID": 41, "ProductID": 503162, "ClientID": 1234567, "AgencyID": 7654321,
         "ContractID": 55, "GroupServiceOrderID": 40, "GroupWithoutTransfer": 1, "Text": "child"},
    ]


@pytest.mark.parametrize("old_shape", [[True, False], [[0]], [0, "Success"]])
def test_orders_batch_refuses_other_shapes(gateway, fake_balance, old_shape):
    fake_balance.reply("CreateOrUpdateOrdersBatch", old_shape)
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.create_or_update_orders_batch([
            OrderSpec(service_id=7, service_order_id=40, product_id=503000, client_id=1),
            OrderSpec(service_id=7, service_order_id=41, product_id=503000, client_id=1)])
    assert bad_response(exc_info)


def test_get_orders_info_reads_money_from_money_fields(gateway, fake_balance):
    fake_balance.reply("GetOrdersInfo", [ORDER_INFO])
    [info] = gateway.get_orders_info([(7, 41)])
    assert info.consume_qty == Decimal("100") and info.consume_amount == Decimal("3000.00")
    assert info.completion_qty == Decimal("828.333333") and info.completion_amount == Decimal("2485.00")
    assert (info.service_order_id, info.group_service_order_id, info.product_id, info.currency) == (
        "41", "40", 503162, "RUB")
    assert fake_balance.last("GetOrdersInfo").params == ([{"ServiceID": 7, "ServiceOrderID": 41}],)


def test_get_orders_info_refuses_version_1(gateway, fake_balance):
    fake_balance.reply("GetOrdersInfo", [{"ServiceID": 7, "ServiceOrderID": 41, "ClientID": 1, "AgencyID": 0,
                                          "ProductID": 503162, "ConsumeQty": "100.00", "ConsumeSum": "100.00",
                                          "CompletionQty": "0.00", "Tid": 1}])
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.get_orders_info([(7, 41)])
    assert bad_response(exc_info)


def test_get_orders_info_by_contract(gateway, fake_balance):
    fake_balance.reply("GetOrdersInfo", [ORDER_INFO])
    assert gateway.get_orders_info_by_contract(55)[0].consume_amount == Decimal("3000.00")
    assert fake_balance.last("GetOrdersInfo").params == ({"ContractID": 55},)


def test_create_request2_is_for_money(gateway, fake_balance):
    fake_balance.reply("CreateRequest2", {"RequestID": 3344, "UserPath": "https://balance/paystep?request_id=3344",
                                          "AdminPath": "https://admin/request?id=3344"})
    request = gateway.create_request2(payer_client_id=1234567, return_path="https://ret",
                                      items=[RequestItem(service_id=7, service_order_id=40, amount=Decimal("1500"))])
    assert (request.request_id, request.user_path) == (3344, "https://balance/paystep?request_id=3344")
    assert fake_balance.last("CreateRequest2").params == (
        str(OPERATOR_UID), 1234567, [{"ServiceID": 7, "ServiceOrderID": 40, "Qty": "1500.00"}],
        {"QtyIsAmount": 1, "ReturnPath": "https://ret"})


def test_create_request2_refuses_other_shapes(gateway, fake_balance):
    fake_balance.reply("CreateRequest2", [0, "SUCCESS", 3344])
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.create_request2(payer_client_id=1, items=[RequestItem(7, 40, Decimal("1"))])
    assert bad_response(exc_info)


def test_update_campaigns(gateway, fake_balance, settings):
    settings.BALANCE_TIME_ZONE, settings.BALANCE_COMPLETION_DT_LAG_SECONDS = "Europe/Moscow", 60
    fake_balance.reply("UpdateCampaigns", {"7": {"41": 1, "42": 0}})
    now = datetime.now(UTC)
    flags = gateway.update_campaigns([
        CompletionReport(service_id=7, service_order_id=41, unit="Shows", qty=Decimal("828.333333"), dt=now),
        CompletionReport(service_id=7, service_order_id=42, unit="Money", qty=Decimal("1500"),
                         dt=now + timedelta(hours=1)),
        CompletionReport(service_id=7, service_order_id=43, unit="Days", qty=Decimal("2"), dt=now),
    ])
    assert flags == [True, False, None]
    (items,) = fake_balance.last("UpdateCampaigns").params
    assert [(i["ServiceID"], i["ServiceOrderID"], i["stop"]) for i in items] == [(7, 41, 0), (7, 42, 0), (7, 43, 0)]
    assert items[0]["Shows"] == "828.333333" and items[1]["Money"] == "1500" and items[2]["Days"] == "2"
    assert "Money" not in items[0] and "Shows" not in items[1]
    assert b"<dateTime.iso8601>" in fake_balance.last("UpdateCampaigns").body
    moscow_now = now.astimezone(ZoneInfo("Europe/Moscow")).replace(tzinfo=None)
    for item in items:  # Moscow local time, never in the future
        assert isinstance(item["dt"], datetime)
        assert moscow_now - timedelta(minutes=2) <= item["dt"] <= moscow_now - timedelta(seconds=59)


@pytest.mark.parametrize("old_shape", [[1, 0], [True], {"41": 1}, {"7": [1]}])
def test_update_campaigns_refuses_other_shapes(gateway, fake_balance, old_shape):
    fake_balance.reply("UpdateCampaigns", old_shape)
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.update_campaigns([CompletionReport(7, 41, "Money", Decimal("1"), datetime.now(UTC))])
    assert bad_response(exc_info)


def test_update_campaigns_never_sends_a_float_or_an_unknown_unit(gateway, fake_balance):
    with pytest.raises(TypeError):
        gateway.update_campaigns([CompletionReport(7, 41, "Money", 1.5, datetime.now(UTC))])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        gateway.update_campaigns([CompletionReport(7, 41, "Roubles", Decimal("1"), datetime.now(UTC))])
    assert fake_balance.requests == []


def test_create_transfer_multiple(gateway, fake_balance):
    fake_balance.reply("CreateTransferMultiple", [0, "SUCCESS"])
    gateway.create_transfer_multiple(
        sources=[TransferSource(7, 40, qty_old=Decimal("828.333333"), qty_new=Decimal("28.333333"))],
        destinations=[TransferDestination(7, 50, qty_delta=Decimal("1"))])
    assert fake_balance.last("CreateTransferMultiple").params == (
        str(OPERATOR_UID), [{"ServiceID": 7, "ServiceOrderID": 40, "QtyOld": "828.333333", "QtyNew": "28.333333"}],
        [{"ServiceID": 7, "ServiceOrderID": 50, "QtyDelta": "1"}])


def test_create_transfer_multiple_not_synchronized_is_final(gateway, fake_balance):
    fake_balance.reply("CreateTransferMultiple", balance_fault("ORDERS_NOT_SYNCHRONIZED", "QtyOld differs"))
    with pytest.raises(BalanceFinalError) as exc_info:
        gateway.create_transfer_multiple(sources=[TransferSource(7, 40, Decimal("1"), Decimal("0"))],
                                         destinations=[TransferDestination(7, 50, Decimal("1"))])
    assert exc_info.value.code == "ORDERS_NOT_SYNCHRONIZED"


# --- overdraft and credit ----------------------------------------------------------------------------------------

def test_get_overdraft_params_is_the_auto_overdraft_setting(gateway, fake_balance):
    fake_balance.reply("GetOverdraftParams", {"PersonID": 765432, "PaymentMethodCC": "bank", "Currency": "RUR",
                                              "ClientLimit": "3000.00"})
    params = gateway.get_overdraft_params(service_id=7, client_id=1234567)
    assert (params.person_id, params.payment_method, params.currency, params.client_limit) == (
        765432, "bank", "RUB", Decimal("3000.00"))
    assert not hasattr(params, "overdraft_limit")
    assert fake_balance.last("GetOverdraftParams").params == (7, 1234567)


def test_get_overdraft_params_not_found_is_none(gateway, fake_balance):
    fake_balance.reply("GetOverdraftParams", balance_fault("NOT_FOUND", "no overdraft params"))
    assert gateway.get_overdraft_params(service_id=7, client_id=1234567) is None


def test_get_overdraft_params_empty_settings_are_none(gateway, fake_balance):
    """The page leaves open how Balance answers for a client with no auto-overdraft settings; an empty struct is
    the other way it may say so (docs/balance-conformance.md lists both), and it is none, not a bad response that
    would make `overdrafts_pull` skip the customer on every run."""
    fake_balance.reply("GetOverdraftParams", {})
    assert gateway.get_overdraft_params(service_id=7, client_id=1234567) is None
    assert BalanceCall.objects.filter(method="GetOverdraftParams").latest("pk").outcome == "ok"


def test_get_overdraft_params_refuses_version_1(gateway, fake_balance):
    fake_balance.reply("GetOverdraftParams", {"OverdraftLimit": "5000.00", "OverdraftSpent": "0.00"})
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.get_overdraft_params(service_id=7, client_id=1234567)
    assert bad_response(exc_info)


def test_set_overdraft_params(gateway, fake_balance):
    fake_balance.reply("SetOverdraftParams", [0, "SUCCESS"])
    gateway.set_overdraft_params(service_id=7, person_id=765432, payment_method="bank", currency="RUB",
                                 client_limit=Decimal("3000"))
    assert fake_balance.last("SetOverdraftParams").params == (
        {"PersonID": 765432, "ServiceID": 7, "PaymentMethodCC": "bank", "Currency": "RUB", "ClientLimit": "3000.00"},)


def test_set_overdraft_params_refused_for_an_agency(gateway, fake_balance):
    fake_balance.reply("SetOverdraftParams", balance_fault("INVALID_PARAM", "Agencies can't have an overdraft"))
    with pytest.raises(BalanceFinalError) as exc_info:
        gateway.set_overdraft_params(service_id=7, person_id=1, payment_method="bank", currency="RUB",
                                     client_limit=Decimal("1"))
    assert "Agencies" in exc_info.value.message


def test_get_client_credit_limits(gateway, fake_balance):
    fake_balance.reply("GetClientCreditLimits", {"CURRENCY": "RUR", "PRODUCT_PRICE": "30.00", "LIMITS": [
        {"CONTRACT_ID": "55", "CONTRACT_EID": "12345/26", "ISO_CURRENCY": "RUB", "LIMIT_TOTAL": "10000.00",
         "LIMIT_SPENT": "2500.50"}]})
    limits = gateway.get_client_credit_limits(client_id=7654321, product_id=503162)
    assert limits.currency == "RUB" and limits.product_price == Decimal("30.00")
    assert [(x.contract_id, x.contract_external_id, x.limit_total, x.limit_spent) for x in limits.limits] == [
        (55, "12345/26", Decimal("10000.00"), Decimal("2500.50"))]
    assert fake_balance.last("GetClientCreditLimits").params == (7654321, 503162)
    # PRODUCT_PRICE is only kept: any places, or none that can be read, never fail the limits billing needs.
    for price, kept in (("30.000000", Decimal("30.000000")), (30.5, Decimal("30.5")), ("n/a", None)):
        fake_balance.reply("GetClientCreditLimits", {"CURRENCY": "RUB", "PRODUCT_PRICE": price, "LIMITS": []})
        assert gateway.get_client_credit_limits(client_id=7654321, product_id=503162).product_price == kept


def test_completion_amount_is_read_to_six_places_and_rounded_to_kopecks(gateway, fake_balance):
    """completion_amount is a quantity times a price: 333.333333 units at 0.03 is 9.99999999 in full, 9.999999 to six
    places; read, and rounded as Balance shows money. Paid money (consume_amount) stays exact to two places."""
    fake_balance.reply("GetOrdersInfo", [{**ORDER_INFO, "completion_amount": "9.999999"}])
    [info] = gateway.get_orders_info([(7, 41)])
    assert info.completion_amount == Decimal("10.00")
    fake_balance.reply("GetOrdersInfo", [{**ORDER_INFO, "completion_amount": "9.9999999"}])
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.get_orders_info([(7, 41)])
    assert bad_response(exc_info)


def test_money_with_more_than_two_places_is_refused(gateway, fake_balance):
    fake_balance.reply("GetOrdersInfo", [{**ORDER_INFO, "consume_amount": "3000.001"}])
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.get_orders_info([(7, 41)])
    assert bad_response(exc_info)


def test_create_invoice_credit(gateway, fake_balance):
    """CreateInvoice is not on the protocol page: the request is how real clients call it [client]; the answer is
    the invoice id (also read from a struct's InvoiceID, the other shape a client might meet)."""
    fake_balance.reply("CreateInvoice", 778899)
    invoice_id = gateway.create_invoice(request_id=3344, person_id=765432, contract_id=55, credit=True)
    assert invoice_id == 778899
    assert fake_balance.last("CreateInvoice").params == (
        str(OPERATOR_UID), {"RequestID": 3344, "PersonID": 765432, "Credit": 1, "ContractID": 55})
    fake_balance.reply("CreateInvoice", {"InvoiceID": "778900"})
    assert gateway.create_invoice(request_id=3345, person_id=765432, contract_id=55, credit=True) == 778900


def test_create_invoice_sends_the_paysys_only_when_set(gateway, fake_balance):
    """Balance's own tests send a PaysysID with every invoice; the page names none: BALANCE_CREDIT_PAYSYS_ID."""
    fake_balance.reply("CreateInvoice", 778899)
    gateway.create_invoice(request_id=3344, person_id=765432, contract_id=55, credit=True, paysys_id=1003)
    assert fake_balance.last("CreateInvoice").params[1] == {
        "RequestID": 3344, "PersonID": 765432, "PaysysID": 1003, "Credit": 1, "ContractID": 55}
    gateway.create_invoice(request_id=3345, person_id=765432, contract_id=55, credit=True, paysys_id=None)
    assert "PaysysID" not in fake_balance.last("CreateInvoice").params[1]


def test_create_invoice_refusals_are_final_and_other_shapes_bad(gateway, fake_balance):
    fake_balance.reply("CreateInvoice", balance_fault("CREDIT_LIMIT_EXCEEDED", "Contract 55 has credit 0.00 left"))
    with pytest.raises(BalanceFinalError) as exc_info:
        gateway.create_invoice(request_id=3344, person_id=765432, contract_id=55, credit=True)
    assert exc_info.value.code == "CREDIT_LIMIT_EXCEEDED"
    fake_balance.reply("CreateInvoice", [0, "SUCCESS"])
    with pytest.raises(BalanceUnknownOutcome) as exc_info:
        gateway.create_invoice(request_id=3344, person_id=765432, contract_id=55, credit=True)
    assert bad_response(exc_info)
