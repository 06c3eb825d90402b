"""The Balance emulator against docs/balance-protocol.md, over real HTTP (XML-RPC, the payment page, notifications)."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from balance_gateway.emulator import BalanceEmulator
from tests.emulator_fixtures import NotifyReceiver, emulator_proxy, raw_xmlrpc_call

SERVICE = 7
UID = 1120000000012345  # a Passport-sized operator uid: beyond int32, so it travels as a digit string
OP = str(UID)


def fault_code(excinfo: pytest.ExceptionInfo) -> str:
    match = re.search(r"<code>(\w+)</code>", excinfo.value.faultString)
    assert match, excinfo.value.faultString
    return match[1]


@pytest.fixture
def rpc(balance_emulator: BalanceEmulator) -> xmlrpc.client.ServerProxy:
    return emulator_proxy(balance_emulator)


def new_client(rpc, name="Dealer", *, agency=False, key=None, **extra) -> int:
    params = {"NAME": name, "IS_AGENCY": int(agency), "SERVICE_ID": SERVICE, **extra}
    if key:
        params["SERVICE_CLIENT_ID"] = key
    code, message, client_id = rpc.Balance2.CreateClient(OP, params)
    assert (code, message) == (0, "SUCCESS")
    return client_id


def new_agency(rpc, payment_type="prepaid", credit_limit="0.00", **options) -> tuple[int, int]:
    agency_id = new_client(rpc, "Agency", agency=True)
    contract_id = rpc.Emulator.CreateContract(
        agency_id, {"payment_type": payment_type, "credit_limit": credit_limit, "services": [SERVICE], **options}
    )
    return agency_id, contract_id


def order(soid, client_id, *, product=1, agency=0, group=None) -> dict:
    item = {"ServiceID": SERVICE, "ServiceOrderID": str(soid), "ProductID": product, "ClientID": client_id,
            "AgencyID": agency}  # fmt: skip
    if group:
        item["GroupServiceOrderID"] = str(group)
    return item


def info(rpc, soid) -> dict:
    (found,) = rpc.Balance2.GetOrdersInfo([{"ServiceID": SERVICE, "ServiceOrderID": str(soid)}])
    return found


def state_order(rpc, soid) -> dict:
    return next(o for o in rpc.Emulator.State()["orders"] if o["ServiceOrderID"] == str(soid))


def pay(rpc, payer, soid, qty, amount=None) -> int:
    request = rpc.Balance2.CreateRequest2(OP, payer, [{"ServiceID": SERVICE, "ServiceOrderID": str(soid), "Qty": qty}])
    rpc.Emulator.PayRequest(request["RequestID"], *([amount] if amount else []))
    return request["RequestID"]


def wallet_with_child(rpc, client_id, *, agency=0) -> tuple[str, str]:
    wallet, child = "9000000000001", "9000000000002"  # beyond int32: billing's own large ids
    results = rpc.Balance2.CreateOrUpdateOrdersBatch(
        OP, [order(wallet, client_id, agency=agency), order(child, client_id, product=2, agency=agency, group=wallet)]
    )
    assert results == [[0, "Success"], [0, "Success"]]
    return wallet, child


def completion(rpc, soid, money) -> list:
    return rpc.Balance2.UpdateCampaigns(
        [{"ServiceID": SERVICE, "ServiceOrderID": str(soid), "dt": "2025-01-31", "Money": money, "stop": 0}]
    )


# --- clients ---------------------------------------------------------------------------------------------------


def test_create_client_is_idempotent_by_service_client_id(rpc):
    first = new_client(rpc, key="dealer:20101")
    assert new_client(rpc, "Another name", key="dealer:20101") == first
    assert new_client(rpc, key="dealer:20102") != first
    assert new_client(rpc) != new_client(rpc)  # without a key every create is a new client
    assert rpc.Balance2.FindClient({"ServiceID": SERVICE, "ServiceClientID": "dealer:20101"})[2][0]["NAME"] == "Dealer"


def test_create_client_validates_its_fields(rpc):
    for params in (
        {"IS_AGENCY": 0, "SERVICE_ID": SERVICE},  # no NAME
        {"NAME": "X", "SERVICE_ID": SERVICE},  # no IS_AGENCY
        {"NAME": "X", "IS_AGENCY": 0},  # no SERVICE_ID
        {"NAME": "X", "IS_AGENCY": 0, "SERVICE_ID": SERVICE, "SERVICE_CLIENTID": "typo"},
        {"NAME": "X", "IS_AGENCY": 2, "SERVICE_ID": SERVICE},
    ):
        with pytest.raises(xmlrpc.client.Fault) as excinfo:
            rpc.Balance2.CreateClient(OP, params)
        assert fault_code(excinfo) == "INVALID_PARAM"
        assert "<method>Balance2.CreateClient</method>" in excinfo.value.faultString
    assert rpc.Emulator.State()["clients"] == []


def test_edit_keeps_omitted_fields_and_clears_empty_ones(rpc):
    client_id = new_client(rpc, EMAIL="a@example.com", PHONE="+7 900", CITY="Moscow")
    assert rpc.Balance2.CreateClient(OP, {"CLIENT_ID": str(client_id), "EMAIL": "", "NAME": "Renamed"}) == [
        0, "SUCCESS", client_id,
    ]  # fmt: skip
    (client,) = rpc.Balance2.GetClientByIdBatch([client_id])
    assert (client["NAME"], client["EMAIL"], client["PHONE"], client["CITY"]) == ("Renamed", "", "+7 900", "Moscow")
    assert set(client) >= {"CLIENT_ID", "NAME", "EMAIL", "PHONE", "IS_AGENCY", "AGENCY_ID"}
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.CreateClient(OP, {"CLIENT_ID": 999, "NAME": "Nobody"})
    assert fault_code(excinfo) == "NOT_FOUND"


def test_is_agency_cannot_change(rpc):
    client_id = new_client(rpc)
    agency_id = new_client(rpc, "Agency", agency=True)
    for cid, flag in ((client_id, 1), (agency_id, 0)):
        with pytest.raises(xmlrpc.client.Fault) as excinfo:
            rpc.Balance2.CreateClient(OP, {"CLIENT_ID": cid, "IS_AGENCY": flag})
        assert fault_code(excinfo) == "INVALID_PARAM"
    rpc.Balance2.CreateClient(OP, {"CLIENT_ID": client_id, "IS_AGENCY": 0, "AGENCY_ID": agency_id})  # same: fine
    found = rpc.Balance2.GetClientByIdBatch([client_id, agency_id, 1])  # unknown ids are left out
    assert [(c["CLIENT_ID"], c["IS_AGENCY"], c["AGENCY_ID"]) for c in found] == [
        (client_id, 0, agency_id), (agency_id, 1, 0),
    ]  # fmt: skip


# --- persons and users -----------------------------------------------------------------------------------------

UR = {"type": "ur", "name": "OOO Romashka", "email": "b@example.com", "phone": "+7 495", "inn": "7701234567",
      "kpp": "770101001", "legaladdress": "Moscow, Tverskaya 1"}  # fmt: skip
PH = {"type": "ph", "name": "Ivan Petrov", "email": "i@example.com", "phone": "+7 916", "lname": "Petrov",
      "fname": "Ivan"}  # fmt: skip


def test_person_ur_needs_inn_and_legal_address(rpc):
    client_id = new_client(rpc)
    for broken in ({"inn": None}, {"inn": "12345"}, {"inn": "77012345ab"}, {"legaladdress": ""}, {"kpp": "1"}):
        params = {**UR, "client_id": client_id, **broken}
        with pytest.raises(xmlrpc.client.Fault) as excinfo:
            rpc.Balance2.CreatePerson(OP, {k: v for k, v in params.items() if v is not None})
        assert fault_code(excinfo) == "INVALID_PARAM", broken
    ten = rpc.Balance2.CreatePerson(OP, {**UR, "client_id": client_id})
    twelve = rpc.Balance2.CreatePerson(OP, {**UR, "client_id": str(client_id), "inn": "770123456789"})
    persons = rpc.Balance2.GetClientPersons(client_id)
    assert [(p["ID"], p["TYPE"], p["INN"], p["HIDDEN"]) for p in persons] == [
        (ten, "ur", "7701234567", 0), (twelve, "ur", "770123456789", 0),
    ]  # fmt: skip


def test_person_ph_needs_last_and_first_name(rpc):
    client_id = new_client(rpc)
    for missing in ("lname", "fname"):
        with pytest.raises(xmlrpc.client.Fault) as excinfo:
            rpc.Balance2.CreatePerson(OP, {k: v for k, v in {**PH, "client_id": client_id}.items() if k != missing})
        assert fault_code(excinfo) == "INVALID_PARAM"
    person_id = rpc.Balance2.CreatePerson(OP, {**PH, "client_id": client_id})
    assert rpc.Balance2.GetClientPersons(client_id)[0]["ID"] == person_id


def test_person_type_and_client_are_checked(rpc):
    client_id = new_client(rpc)
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.CreatePerson(OP, {**PH, "client_id": client_id, "type": "yt"})
    assert fault_code(excinfo) == "INVALID_PERSON_TYPE"
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.CreatePerson(OP, {**PH, "client_id": 123})
    assert fault_code(excinfo) == "NOT_FOUND"
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.GetClientPersons(123)
    assert fault_code(excinfo) == "NOT_FOUND"


def test_person_is_not_idempotent_and_edits_by_person_id(rpc):
    client_id, other_id = new_client(rpc), new_client(rpc, "Other")
    first = rpc.Balance2.CreatePerson(OP, {**PH, "client_id": client_id})
    second = rpc.Balance2.CreatePerson(OP, {**PH, "client_id": client_id})
    assert first != second
    assert rpc.Balance2.CreatePerson(OP, {"client_id": client_id, "person_id": first, "type": "ph", "mname": "I"}) == (
        first
    )
    person = rpc.Balance2.GetClientPersons(client_id)[0]
    assert (person["ID"], person["NAME"], person["LNAME"], person["MNAME"]) == (first, "Ivan Petrov", "Petrov", "I")
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.CreatePerson(OP, {**PH, "client_id": other_id, "person_id": first})
    assert fault_code(excinfo) == "PERMISSION_DENIED"
    assert len(rpc.Balance2.GetClientPersons(client_id)) == 2


def test_user_association_answers_4006_when_already_linked(rpc):
    client_id, other_id = new_client(rpc), new_client(rpc, "Other")
    user = "4000000000123"  # Passport uids exceed int32
    assert rpc.Balance2.CreateUserClientAssociation(OP, client_id, user) == [0, "SUCCESS"]
    for target in (client_id, other_id):
        code, message = rpc.Balance2.CreateUserClientAssociation(OP, target, user)
        assert (code, message) == (4006, f"User {user} is already linked to client {client_id}")
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.CreateUserClientAssociation(OP, 999, 5)
    assert fault_code(excinfo) == "NOT_FOUND"


def test_find_client_criteria(rpc):
    a = new_client(rpc, "Alpha", key="a", EMAIL="alpha@example.com")
    b = new_client(rpc, "Alpha", key="b", EMAIL="other@example.com")
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.FindClient({})
    assert fault_code(excinfo) == "INVALID_PARAM"

    def ids(criteria):
        code, _, found = rpc.Balance2.FindClient(criteria)
        assert code == 0
        return [c["CLIENT_ID"] for c in found]

    assert ids({"Name": "alpha"}) == [a, b]
    assert ids({"Name": "Alpha", "Email": "ALPHA@example.com"}) == [a]
    assert ids({"ClientID": str(b)}) == [b]
    assert ids({"ClientID": b, "Name": "Beta"}) == []
    assert ids({"ServiceID": SERVICE, "ServiceClientID": "b"}) == [b]
    assert ids({"ServiceID": 8, "ServiceClientID": "b"}) == []


# --- contracts and orders ----------------------------------------------------------------------------------------


def test_client_contracts(rpc):
    agency_id, prepaid = new_agency(rpc, external_id="AG-1/25", dt="2020-01-01")
    postpaid = rpc.Emulator.CreateContract(
        agency_id, {"payment_type": "postpaid", "credit_limit": "5000.00", "services": [SERVICE, 8],
                    "dt": "2020-01-01", "finish_dt": "2021-01-01"}
    )  # fmt: skip
    contracts = rpc.Balance2.GetClientContracts({"ClientID": agency_id})
    assert contracts[0] | {"CLIENT_ID": None} == {
        "ID": prepaid, "EXTERNAL_ID": "AG-1/25", "IS_ACTIVE": 1, "DT": "2020-01-01", "FINISH_DT": "",
        "PAYMENT_TYPE": 2, "CREDIT_LIMIT": "0.00", "PERSON_ID": 0, "SERVICES": [SERVICE], "CLIENT_ID": None,
    }  # fmt: skip
    assert (contracts[1]["ID"], contracts[1]["PAYMENT_TYPE"], contracts[1]["IS_ACTIVE"]) == (postpaid, 3, 0)
    assert rpc.Balance2.GetClientContracts({"ClientID": agency_id, "Dt": "2020-06-01"})[1]["IS_ACTIVE"] == 1
    assert rpc.Balance2.GetClientContracts({"ClientID": new_client(rpc)}) == []
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Emulator.CreateContract(new_client(rpc), {"payment_type": "prepaid", "services": [SERVICE]})
    assert fault_code(excinfo) == "CONTRACT_RULE_VIOLATION"


def test_agency_orders_need_an_active_contract_for_the_service(rpc):
    client_id = new_client(rpc)
    bare_agency = new_client(rpc, "No contract", agency=True)
    old_agency, _ = new_agency(rpc, dt="2020-01-01", finish_dt="2021-01-01")
    agency_id, _ = new_agency(rpc)
    results = rpc.Balance2.CreateOrUpdateOrdersBatch(
        OP,
        [
            order(1, client_id, agency=bare_agency),
            order(2, client_id, agency=old_agency),
            order(3, client_id, agency=client_id),  # not an agency
            order(4, client_id, agency=agency_id),
            order(5, 999),
            {**order(6, client_id, agency=agency_id), "ServiceID": 8},  # the contract is for service 7 only
        ],
    )
    assert [code for code, _ in results] == [-1, -1, -1, 0, -1, -1]
    assert results[3] == [0, "Success"]
    assert [o["ServiceOrderID"] for o in rpc.Emulator.State()["orders"]] == ["4"]


def test_client_agency_and_product_cannot_change_once_consumed(rpc):
    client_id, other_id = new_client(rpc), new_client(rpc, "Other")
    agency_id, _ = new_agency(rpc)
    assert rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id)]) == [[0, "Success"]]
    assert rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, other_id)]) == [[0, "Success"]]  # no consume yet
    pay(rpc, other_id, 1, "10.00")
    changes = [order(1, client_id), order(1, other_id, agency=agency_id), order(1, other_id, product=9)]
    assert [code for code, _ in rpc.Balance2.CreateOrUpdateOrdersBatch(OP, changes)] == [-1, -1, -1]
    assert rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [{**order(1, other_id), "Text": "renamed"}]) == [[0, "Success"]]
    assert (info(rpc, 1)["ClientID"], info(rpc, 1)["AgencyID"], info(rpc, 1)["ProductID"]) == (other_id, 0, 1)


def test_group_order_must_exist_with_the_same_client_and_agency(rpc):
    client_id, other_id = new_client(rpc), new_client(rpc, "Other")
    agency_id, _ = new_agency(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(10, client_id), order(20, client_id, agency=agency_id)])
    results = rpc.Balance2.CreateOrUpdateOrdersBatch(
        OP,
        [
            order(11, other_id, group=10),  # another client
            order(12, client_id, agency=agency_id, group=10),  # another payer
            order(13, client_id, group=99),  # no such order
            order(14, client_id, group=10),
            order(15, client_id, group=14),  # a child cannot be a wallet
            order(21, client_id, agency=agency_id, group=20),
        ],
    )
    assert [code for code, _ in results] == [-1, -1, -1, 0, -1, 0]
    assert info(rpc, 14)["GroupServiceOrderID"] == "10"


def test_orders_info_shape(rpc):
    client_id = new_client(rpc)
    wallet, child = wallet_with_child(rpc, client_id)
    found = rpc.Balance2.GetOrdersInfo(
        [{"ServiceID": SERVICE, "ServiceOrderID": child}, {"ServiceID": SERVICE, "ServiceOrderID": "404"}]
    )
    assert len(found) == 1
    assert found[0] | {"Tid": None} == {
        "ServiceID": SERVICE, "ServiceOrderID": child, "ClientID": client_id, "AgencyID": 0, "ProductID": 2,
        "GroupServiceOrderID": wallet, "ConsumeQty": "0.00", "ConsumeSum": "0.00", "CompletionQty": "0.00",
        "Tid": None,
    }  # fmt: skip
    assert found[0]["Tid"].isdigit()
    assert info(rpc, wallet)["GroupServiceOrderID"] == ""


# --- requests and payments ---------------------------------------------------------------------------------------


def test_request_is_for_the_payer_only(rpc):
    client_id = new_client(rpc)
    agency_id, _ = new_agency(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id, agency=agency_id), order(2, client_id)])
    line = {"ServiceID": SERVICE, "ServiceOrderID": "1", "Qty": "100.00"}
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.CreateRequest2(OP, client_id, [line], {})
    assert fault_code(excinfo) == "PERMISSION_DENIED"
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.CreateRequest2(OP, agency_id, [{**line, "ServiceOrderID": "2"}], {})
    assert fault_code(excinfo) == "PERMISSION_DENIED"
    for qty in ("0.00", "-5.00", "1.005", "abc"):
        with pytest.raises(xmlrpc.client.Fault) as excinfo:
            rpc.Balance2.CreateRequest2(OP, agency_id, [{**line, "Qty": qty}], {})
        assert fault_code(excinfo) == "INVALID_PARAM", qty
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.CreateRequest2(OP, agency_id, [{**line, "ServiceOrderID": "404"}], {})
    assert fault_code(excinfo) == "NOT_FOUND"
    request = rpc.Balance2.CreateRequest2(OP, agency_id, [line], {"ReturnPath": "https://billing.example/back"})
    assert request["UserPath"] == f"{rpc.Emulator.State()['requests'][0]['UserPath']}"
    assert request["UserPath"].endswith(f"/paystep/{request['RequestID']}")


def test_pay_request_consumes_money_and_cannot_pay_twice(rpc):
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id), order(2, client_id)])
    tid_before = int(info(rpc, 1)["Tid"])
    request = rpc.Balance2.CreateRequest2(
        OP, client_id, [{"ServiceID": SERVICE, "ServiceOrderID": 1, "Qty": "100.00"},
                        {"ServiceID": SERVICE, "ServiceOrderID": "2", "Qty": 50}], {}
    )  # fmt: skip
    assert rpc.Emulator.PayRequest(request["RequestID"]) == [0, "SUCCESS", "150.00"]
    assert (info(rpc, 1)["ConsumeQty"], info(rpc, 1)["ConsumeSum"], info(rpc, 2)["ConsumeQty"]) == (
        "100.00", "100.00", "50.00",
    )  # fmt: skip
    assert int(info(rpc, 1)["Tid"]) > tid_before
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Emulator.PayRequest(request["RequestID"])
    assert fault_code(excinfo) == "INVALID_PARAM"
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Emulator.PayRequest(999)
    assert fault_code(excinfo) == "NOT_FOUND"
    assert info(rpc, 1)["ConsumeQty"] == "100.00"


def test_partial_payment_is_split_by_qty(rpc):
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id), order(2, client_id)])
    request = rpc.Balance2.CreateRequest2(
        OP, client_id, [{"ServiceID": SERVICE, "ServiceOrderID": 1, "Qty": "200.00"},
                        {"ServiceID": SERVICE, "ServiceOrderID": 2, "Qty": "100.00"}], {}
    )  # fmt: skip
    rpc.Emulator.PayRequest(request["RequestID"], "100.00")
    assert (info(rpc, 1)["ConsumeQty"], info(rpc, 2)["ConsumeQty"]) == ("66.67", "33.33")
    assert rpc.Emulator.State()["requests"][0] | {"UserPath": None} == {
        "RequestID": request["RequestID"], "ClientID": client_id, "Status": "paid", "Sum": "300.00",
        "PaidAmount": "100.00", "ReturnPath": "", "UserPath": None,
        "Orders": [{"ServiceID": SERVICE, "ServiceOrderID": "1", "Qty": "200.00"},
                   {"ServiceID": SERVICE, "ServiceOrderID": "2", "Qty": "100.00"}],
    }  # fmt: skip


def test_payment_page(rpc):
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id), order(2, client_id)])
    plain = rpc.Balance2.CreateRequest2(OP, client_id, [{"ServiceID": SERVICE, "ServiceOrderID": 1, "Qty": "1500.00"}])
    back = rpc.Balance2.CreateRequest2(
        OP, client_id, [{"ServiceID": SERVICE, "ServiceOrderID": 2, "Qty": "10.00"}],
        {"ReturnPath": "https://billing.example/wallet?paid=1"},
    )  # fmt: skip

    page = requests.get(plain["UserPath"], timeout=5)
    assert page.status_code == 200
    assert "1500.00" in page.text and "<form" in page.text and "Pay</button>" in page.text
    assert info(rpc, 1)["ConsumeQty"] == "0.00"  # looking is not paying

    paid = requests.post(plain["UserPath"], data={"amount": "1000.00"}, timeout=5)
    assert paid.status_code == 200 and "paid" in paid.text.lower()
    assert info(rpc, 1)["ConsumeQty"] == "1000.00"
    again = requests.post(plain["UserPath"], data={}, timeout=5)
    assert again.status_code == 400
    assert info(rpc, 1)["ConsumeQty"] == "1000.00"
    assert "is paid" in requests.get(plain["UserPath"], timeout=5).text

    redirected = requests.post(back["UserPath"], data={"amount": ""}, allow_redirects=False, timeout=5)
    assert (redirected.status_code, redirected.headers["Location"]) == (303, "https://billing.example/wallet?paid=1")
    assert info(rpc, 2)["ConsumeQty"] == "10.00"
    assert requests.get(plain["UserPath"].replace(str(plain["RequestID"]), "1"), timeout=5).status_code == 404
    bad = rpc.Balance2.CreateRequest2(OP, client_id, [{"ServiceID": SERVICE, "ServiceOrderID": 2, "Qty": "5.00"}])
    assert requests.post(bad["UserPath"], data={"amount": "-1"}, timeout=5).status_code == 400


# --- notifications -------------------------------------------------------------------------------------------


def test_notify_order_carries_totals_as_strings(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order("9000000000001", client_id)])
    pay(rpc, client_id, "9000000000001", "100.00")
    completion(rpc, "9000000000001", "30.00")
    assert balance_emulator.wait_notifications_idle(5)
    first, second = notify_receiver.payloads()
    assert first | {"Tid": None} == {
        "ServiceID": SERVICE, "ServiceOrderID": "9000000000001", "ConsumeQty": "100.00", "ConsumeSum": "100.00",
        "CompletionQty": "0.00", "ConsumeCurrency": "RUB", "Tid": None, "Signal": 1,
        "SignalDescription": first["SignalDescription"],
    }  # fmt: skip
    assert (second["ConsumeQty"], second["CompletionQty"]) == ("100.00", "30.00")  # the state when each was queued
    assert int(second["Tid"]) > int(first["Tid"]) and second["Tid"] == info(rpc, "9000000000001")["Tid"]
    assert {path for _, _, path in notify_receiver.received} == {"/balance/notify?secret=s3cret"}
    assert rpc.Emulator.State()["notifications"] | {"sent": 2} == {
        "sent": 2, "failed": 0, "dropped": 0, "duplicated": 0, "queued": 0, "retried": 0, "skipped": 0,
    }  # fmt: skip


def test_notification_is_retried_after_a_not_found_fault(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    notify_receiver.fail_next = 2  # billing does not know the order yet
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id)])
    pay(rpc, client_id, 1, "50.00")
    assert notify_receiver.wait_for(1, timeout=5)
    assert balance_emulator.wait_notifications_idle(5)
    assert notify_receiver.faulted == 2
    assert [p["ConsumeQty"] for p in notify_receiver.payloads()] == ["50.00"]
    counts = rpc.Emulator.State()["notifications"]
    assert (counts["sent"], counts["retried"], counts["failed"]) == (1, 2, 0)


def test_notifications_are_retried_until_the_receiver_comes_back(balance_emulator, rpc):
    balance_emulator.notify_url = "http://127.0.0.1:9/nobody-listens"
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id)])
    pay(rpc, client_id, 1, "50.00")
    assert not balance_emulator.wait_notifications_idle(0.3)
    receiver = NotifyReceiver()
    try:
        balance_emulator.notify_url = receiver.url
        assert receiver.wait_for(1, timeout=5)
    finally:
        receiver.close()
    assert rpc.Emulator.State()["notifications"]["retried"] >= 1


def test_notifications_give_up_after_the_deadline(rpc):
    emulator = BalanceEmulator(notify_url="http://127.0.0.1:9/x", notify_give_up_after=0.3).start()
    try:
        proxy = emulator_proxy(emulator)
        client_id = new_client(proxy)
        proxy.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id)])
        pay(proxy, client_id, 1, "50.00")
        assert emulator.wait_notifications_idle(5)
        assert proxy.Emulator.State()["notifications"]["failed"] == 1
    finally:
        emulator.stop()


def test_drop_next_notifications(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id)])
    rpc.Emulator.DropNextNotifications(1)
    pay(rpc, client_id, 1, "10.00")
    pay(rpc, client_id, 1, "20.00")
    assert balance_emulator.wait_notifications_idle(5)
    assert [p["ConsumeQty"] for p in notify_receiver.payloads()] == ["30.00"]
    assert rpc.Emulator.State()["notifications"]["dropped"] == 1


def test_notify_faults_duplicate_reorder_and_fail(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id)])
    rpc.Emulator.SetFaults({"notify": {"duplicate_rate": 1.0}})
    pay(rpc, client_id, 1, "10.00")
    assert balance_emulator.wait_notifications_idle(5)
    assert [p["ConsumeQty"] for p in notify_receiver.payloads()] == ["10.00", "10.00"]

    notify_receiver.received.clear()
    rpc.Emulator.SetFaults({"notify": {"reorder": True}})
    completion(rpc, 1, "1.00")
    completion(rpc, 1, "2.00")
    assert balance_emulator.wait_notifications_idle(5)
    assert [p["CompletionQty"] for p in notify_receiver.payloads()] == ["2.00", "1.00"]

    notify_receiver.received.clear()
    rpc.Emulator.SetFaults({"notify": {"fail_rate": 0.5, "delay_ms": 50}, "seed": 3})
    for money in ("3.00", "4.00", "5.00", "6.00"):
        completion(rpc, 1, money)
    assert balance_emulator.wait_notifications_idle(8)
    assert sorted(p["CompletionQty"] for p in notify_receiver.payloads()) == ["3.00", "4.00", "5.00", "6.00"]
    counts = rpc.Emulator.State()["notifications"]
    assert counts["retried"] >= 1 and counts["duplicated"] == 1 and counts["failed"] == 0


# --- completions, unified account, overdraft, transfers, credit ---------------------------------------------------


def test_update_campaigns_is_cumulative_and_applies_corrections(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id)])
    pay(rpc, client_id, 1, "100.00")
    assert completion(rpc, 1, "30.00") == [1]
    assert completion(rpc, 1, "50.00") == [1]
    tid = info(rpc, 1)["Tid"]
    assert completion(rpc, 1, "50.00") == [1]  # a repeat changes nothing
    assert info(rpc, 1)["Tid"] == tid
    assert completion(rpc, 1, "40.00") == [1]  # a correction
    assert info(rpc, 1)["CompletionQty"] == "40.00" and int(info(rpc, 1)["Tid"]) > int(tid)
    results = rpc.Balance2.UpdateCampaigns(
        [
            {"ServiceID": SERVICE, "ServiceOrderID": "404", "dt": "2025-01-31", "Money": "1.00", "stop": 0},
            {"ServiceID": SERVICE, "ServiceOrderID": "1", "dt": "2025-01-31", "Money": "-1.00", "stop": 0},
            {"ServiceID": SERVICE, "ServiceOrderID": "1", "Money": "1.00", "stop": 0},
            {"ServiceID": SERVICE, "ServiceOrderID": "1", "dt": "2025-01-31", "Money": "45.50", "stop": 1},
        ]
    )
    assert results == [0, 0, 0, 1]
    assert balance_emulator.wait_notifications_idle(5)
    assert [p["CompletionQty"] for p in notify_receiver.payloads()] == ["0.00", "30.00", "50.00", "40.00", "45.50"]


def test_unified_account_overspend_is_unpaid_without_an_overdraft(rpc):
    client_id = new_client(rpc)
    wallet, child = wallet_with_child(rpc, client_id)
    pay(rpc, client_id, wallet, "100.00")
    completion(rpc, child, "80.00")
    assert (state_order(rpc, wallet)["FreeQty"], state_order(rpc, wallet)["UnpaidQty"]) == ("20.00", "0.00")
    completion(rpc, child, "150.00")
    wallet_state = state_order(rpc, wallet)
    assert (wallet_state["IsWallet"], wallet_state["UnpaidQty"], wallet_state["FreeQty"]) == (1, "50.00", "-50.00")
    pay(rpc, client_id, wallet, "50.00")
    assert state_order(rpc, wallet)["UnpaidQty"] == "0.00"


def test_overdraft_covers_overspend_and_is_repaid_by_payments(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id = new_client(rpc)
    wallet, child = wallet_with_child(rpc, client_id)
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.GetOverdraftParams(SERVICE, client_id)
    assert fault_code(excinfo) == "NOT_FOUND"
    assert rpc.Emulator.GrantOverdraft(client_id, "30.00", 15) == [0, "SUCCESS"]
    assert rpc.Balance2.GetOverdraftParams(SERVICE, client_id) == {
        "ClientLimit": "30.00", "OverdraftLimit": "30.00", "OverdraftSpent": "0.00", "MinPaymentTerm": "0000-00-00",
        "Currency": "RUB",
    }  # fmt: skip
    pay(rpc, client_id, wallet, "100.00")
    completion(rpc, child, "120.00")
    params = rpc.Balance2.GetOverdraftParams(SERVICE, str(client_id))
    due = (datetime.date.today() + datetime.timedelta(days=15)).isoformat()
    assert (params["OverdraftSpent"], params["MinPaymentTerm"]) == ("20.00", due)
    assert state_order(rpc, wallet)["UnpaidQty"] == "0.00"
    completion(rpc, child, "150.00")  # 50 over: 30 on the overdraft, 20 unpaid
    assert rpc.Balance2.GetOverdraftParams(SERVICE, client_id)["OverdraftSpent"] == "30.00"
    assert (state_order(rpc, wallet)["OverdraftQty"], state_order(rpc, wallet)["UnpaidQty"]) == ("30.00", "20.00")
    pay(rpc, client_id, wallet, "60.00")  # repays the debt first
    params = rpc.Balance2.GetOverdraftParams(SERVICE, client_id)
    assert (params["OverdraftSpent"], params["MinPaymentTerm"]) == ("0.00", "0000-00-00")
    assert balance_emulator.wait_notifications_idle(5)
    spent = [
        (n["OverdraftLimit"], n["OverdraftSpent"]) for n in notify_receiver.payloads("BalanceClient.NotifyClient2")
    ]
    assert spent == [("30.00", "0.00"), ("30.00", "20.00"), ("30.00", "30.00"), ("30.00", "0.00")]
    last = notify_receiver.payloads("BalanceClient.NotifyClient2")[-1]
    assert last | {"Tid": None} == {
        "ClientID": client_id, "OverdraftLimit": "30.00", "OverdraftSpent": "0.00", "MinPaymentTerm": "0000-00-00",
        "OverdraftBan": 0, "ClientCurrency": "RUB", "Tid": None,
    }  # fmt: skip


def test_overdraft_is_refused_to_agencies_and_can_be_set_spent(rpc):
    agency_id = new_client(rpc, "Agency", agency=True)
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Emulator.GrantOverdraft(agency_id, "1000.00", 10)
    assert fault_code(excinfo) == "CONTRACT_RULE_VIOLATION"
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        rpc.Balance2.GetOverdraftParams(SERVICE, agency_id)
    assert fault_code(excinfo) == "NOT_FOUND"
    client_id = new_client(rpc)
    rpc.Emulator.GrantOverdraft(client_id, "1000.00", -1)  # a term in the past: the debt is overdue at once
    rpc.Emulator.SetOverdraftSpent(client_id, "250.00")
    assert rpc.Balance2.GetOverdraftParams(SERVICE, client_id)["OverdraftSpent"] == "250.00"
    (client,) = [c for c in rpc.Emulator.State()["clients"] if c["CLIENT_ID"] == client_id]
    assert (client["OverdraftSpent"], client["OverdraftBan"]) == ("250.00", 1)


def test_transfer_moves_free_money_between_orders_of_one_client_and_payer(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id, other_id = new_client(rpc), new_client(rpc, "Other")
    rpc.Balance2.CreateOrUpdateOrdersBatch(
        OP, [order(1, client_id), order(2, client_id), order(3, client_id, group=1), order(4, other_id)]
    )
    pay(rpc, client_id, 1, "100.00")
    completion(rpc, 3, "30.00")  # the child spends 30 of the wallet's 100

    def transfer(src, qty_old, qty_new, dst, delta):
        return rpc.Balance2.CreateTransferMultiple(
            OP,
            [{"ServiceID": SERVICE, "ServiceOrderID": str(src), "QtyOld": qty_old, "QtyNew": qty_new}],
            [{"ServiceID": SERVICE, "ServiceOrderID": str(dst), "QtyDelta": delta}],
        )

    for args, code in (
        ((1, "90.00", "50.00", 2, "40.00"), "ORDERS_NOT_SYNCHRONIZED"),
        ((1, "100.00", "20.00", 2, "80.00"), "CONTRACT_RULE_VIOLATION"),  # only 70 is free
        ((1, "100.00", "50.00", 4, "50.00"), "CONTRACT_RULE_VIOLATION"),  # another client
        ((1, "100.00", "50.00", 2, "40.00"), "INVALID_PARAM"),  # does not add up
        ((1, "100.00", "50.00", 404, "50.00"), "NOT_FOUND"),
    ):
        with pytest.raises(xmlrpc.client.Fault) as excinfo:
            transfer(*args)
        assert fault_code(excinfo) == code, args
    assert info(rpc, 1)["ConsumeQty"] == "100.00"
    assert transfer(1, "100.00", "30.00", 2, "70.00") == [0, "SUCCESS"]
    assert (info(rpc, 1)["ConsumeQty"], info(rpc, 2)["ConsumeQty"]) == ("30.00", "70.00")
    assert state_order(rpc, 1)["FreeQty"] == "0.00"
    assert balance_emulator.wait_notifications_idle(5)
    assert [(p["ServiceOrderID"], p["ConsumeQty"]) for p in notify_receiver.payloads()][-2:] == [
        ("1", "30.00"), ("2", "70.00"),
    ]  # fmt: skip


def test_credit_limits_of_postpaid_contracts(rpc):
    client_id = new_client(rpc)
    agency_id, postpaid = new_agency(rpc, "postpaid", "1000.00")
    rpc.Emulator.CreateContract(agency_id, {"payment_type": "prepaid", "services": [SERVICE]})
    wallet, child = wallet_with_child(rpc, client_id, agency=agency_id)
    pay(rpc, agency_id, wallet, "100.00")
    completion(rpc, child, "400.00")
    assert rpc.Balance2.GetClientCreditLimits(agency_id, 1) == {
        "CURRENCY": "RUB", "LIMITS": [{"CONTRACT_ID": postpaid, "LIMIT_TOTAL": "1000.00", "LIMIT_SPENT": "300.00"}],
    }  # fmt: skip
    completion(rpc, child, "1300.00")
    assert rpc.Balance2.GetClientCreditLimits(agency_id, 1)["LIMITS"][0]["LIMIT_SPENT"] == "1000.00"
    assert state_order(rpc, wallet)["UnpaidQty"] == "200.00"
    assert rpc.Balance2.GetClientCreditLimits(client_id, 1) == {"CURRENCY": "RUB", "LIMITS": []}


def test_concurrent_calls_are_serialised(balance_emulator, rpc):
    client_id = new_client(rpc)
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id)])

    def work(n: int) -> int:
        proxy = emulator_proxy(balance_emulator)
        pay(proxy, client_id, 1, "1.01")
        return new_client(proxy, key="same")

    with ThreadPoolExecutor(max_workers=10) as pool:
        ids = set(pool.map(work, range(20)))
    assert len(ids) == 1
    assert info(rpc, 1)["ConsumeQty"] == "20.20"


# --- the emulator's own controls -----------------------------------------------------------------------------------


def test_state_update_order_and_reset(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id = new_client(rpc, key="k")
    agency_id, _ = new_agency(rpc)
    rpc.Balance2.CreatePerson(OP, {**PH, "client_id": client_id})
    rpc.Balance2.CreateOrUpdateOrdersBatch(OP, [order(1, client_id)])
    tid = int(info(rpc, 1)["Tid"])
    changed = rpc.Emulator.UpdateOrder(SERVICE, "1", {"AgencyID": agency_id, "ConsumeQty": "70.00"})
    assert (changed["AgencyID"], changed["ConsumeQty"]) == (agency_id, "70.00") and int(changed["Tid"]) > tid
    assert balance_emulator.wait_notifications_idle(5)
    assert notify_receiver.received == []  # behind billing's back

    state = rpc.Emulator.State()
    assert set(state) >= {"clients", "persons", "contracts", "orders", "requests", "notifications"}
    assert [c["CLIENT_ID"] for c in state["clients"]] == [client_id, agency_id]
    assert state["persons"][0]["CLIENT_ID"] == client_id
    assert state["contracts"][0]["CLIENT_ID"] == agency_id
    assert state["orders"][0]["ConsumeQty"] == "70.00" and "UnpaidQty" in state["orders"][0]

    assert rpc.Emulator.Reset() == [0, "SUCCESS"]
    state = rpc.Emulator.State()
    assert [state[k] for k in ("clients", "persons", "contracts", "orders", "requests")] == [[]] * 5
    assert new_client(rpc, key="k") == client_id  # ids start over


def test_call_errors(balance_emulator, rpc):
    for call, code in (
        (lambda: rpc.Balance2.NoSuchMethod(1), "INVALID_PARAM"),
        (lambda: rpc.Balance2.GetClientPersons(), "INVALID_PARAM"),  # wrong arity
        (lambda: rpc.Balance2.GetClientPersons("abc"), "INVALID_PARAM"),
        (lambda: rpc.Balance2.GetOrdersInfo("not a list"), "INVALID_PARAM"),
        (lambda: rpc.Emulator.SetFaults({"NoSuchMethod": {"error_rate": 1}}), "INVALID_PARAM"),
        (lambda: rpc.Emulator.SetFaults({"*": {"error_rate": 2}}), "INVALID_PARAM"),
        (lambda: rpc.Emulator.SetFaults({"*": {"oops": 1}}), "INVALID_PARAM"),
    ):
        with pytest.raises(xmlrpc.client.Fault) as excinfo:
            call()
        assert fault_code(excinfo) == code
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<methodCall><methodName>Balance2.FindClient</methodName><params><param><value><string>&b;</string>"
        b"</value></param></params></methodCall>"
    )
    response = requests.post(balance_emulator.url, data=bomb, timeout=5)
    assert response.status_code == 200 and "INVALID_PARAM" in response.text
    assert rpc.Emulator.State()["clients"] == []  # still serving


# --- fault injection -----------------------------------------------------------------------------------------------


def outcomes(url: str, count: int) -> list[str]:
    return [raw_xmlrpc_call(url, "Balance2.FindClient", {"Name": "x"}, timeout=0.5)[0] for _ in range(count)]


def test_faults_are_reproducible_with_the_same_seed(balance_emulator, rpc):
    spec = {"seed": 42, "*": {"error_rate": 0.3, "lost_response_rate": 0.2, "timeout_rate": 0.05}}
    rpc.Emulator.SetFaults(spec)
    first = outcomes(balance_emulator.url, 30)
    rpc.Emulator.SetFaults(spec)
    second = outcomes(balance_emulator.url, 30)
    assert first == second
    assert {"ok", "fault", "http", "lost", "timeout"} <= set(first)
    rpc.Emulator.SetFaults({**spec, "seed": 43})
    assert outcomes(balance_emulator.url, 30) != first
    rpc.Emulator.SetFaults({})
    assert set(outcomes(balance_emulator.url, 5)) == {"ok"}


def test_error_fault_does_not_apply_the_call(balance_emulator, rpc):
    rpc.Emulator.SetFaults({"CreateClient": {"error_rate": 1.0}})
    params = {"NAME": "X", "IS_AGENCY": 0, "SERVICE_ID": SERVICE}
    kind, (code, _) = raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, params)
    assert (kind, code) == ("fault", "INTERNAL_ERROR")
    assert raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, params) == ("http", 503)
    assert rpc.Emulator.State()["clients"] == []  # Emulator.* is never faulted
    assert rpc.Balance2.FindClient({"Name": "X"}) == [0, "", []]  # other methods are not faulted


def test_lost_response_closes_the_connection_after_applying(balance_emulator, rpc):
    rpc.Emulator.SetFaults({"Balance2.CreateClient": {"lost_response_rate": 1.0}})
    params = {"NAME": "X", "IS_AGENCY": 0, "SERVICE_ID": SERVICE, "SERVICE_CLIENT_ID": "x"}
    assert raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, params) == ("lost", None)
    with pytest.raises((ConnectionError, xmlrpc.client.ProtocolError)):
        rpc.Balance2.CreateClient(OP, params)
    assert [c["SERVICE_CLIENT_ID"] for c in rpc.Emulator.State()["clients"]] == ["x"]  # applied (and idempotent)


def test_timeout_applies_the_call_and_answers_late(balance_emulator, rpc):
    rpc.Emulator.SetFaults({"*": {"timeout_rate": 1.0}})
    params = {"NAME": "Slow", "IS_AGENCY": 0, "SERVICE_ID": SERVICE}
    started = time.monotonic()
    assert raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, params, timeout=0.3) == ("timeout", None)
    assert time.monotonic() - started < 1.0
    assert [c["NAME"] for c in rpc.Emulator.State()["clients"]] == ["Slow"]


def test_latency(balance_emulator, rpc):
    rpc.Emulator.SetFaults({"FindClient": {"latency_ms": 200}})
    started = time.monotonic()
    rpc.Balance2.FindClient({"Name": "x"})
    assert time.monotonic() - started >= 0.2


# --- persistence and the command -------------------------------------------------------------------------------------


def test_state_file_survives_a_restart(tmp_path: Path):
    path = tmp_path / "balance.json"
    with BalanceEmulator(state_file=path) as emulator:
        proxy = emulator_proxy(emulator)
        client_id = new_client(proxy, key="persisted")
        proxy.Balance2.CreateOrUpdateOrdersBatch(OP, [order("9000000000001", client_id)])
        pay(proxy, client_id, "9000000000001", "12.34")
        tid = int(info(proxy, "9000000000001")["Tid"])
    data = json.loads(path.read_text())
    assert data["orders"][0]["consume_qty"] == "12.34"
    assert data["pending_notifications"] == []  # no notify URL: counted, not kept
    with BalanceEmulator(state_file=path) as emulator:
        proxy = emulator_proxy(emulator)
        assert new_client(proxy, key="persisted") == client_id
        assert info(proxy, "9000000000001")["ConsumeQty"] == "12.34"
        pay(proxy, client_id, "9000000000001", "1.00")
        assert int(info(proxy, "9000000000001")["Tid"]) > tid
        assert Decimal(info(proxy, "9000000000001")["ConsumeQty"]) == Decimal("13.34")
    assert not list(tmp_path.glob(".balance.json.*"))  # no temp files left behind


def test_management_command_serves_until_sigterm(tmp_path: Path):
    manage = Path(__file__).resolve().parents[2] / "manage.py"
    process = subprocess.Popen(
        [sys.executable, str(manage), "balance_emulator", "--port", "0", "--seed", "5",
         "--state-file", str(tmp_path / "s.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        url = re.search(r"(http://\S+/xmlrpc)", line)[1]
        assert xmlrpc.client.ServerProxy(url).Balance2.CreateClient(OP, {"NAME": "C", "IS_AGENCY": 0, "SERVICE_ID": 7})
        process.terminate()
        assert process.wait(10) == 0
        assert "Balance2.CreateClient" in process.stderr.read()
        assert json.loads((tmp_path / "s.json").read_text())["clients"][0]["name"] == "C"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
