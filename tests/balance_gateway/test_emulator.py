"""The emulator against version 2 of docs/balance-protocol.md, method by method, over raw XML-RPC on real HTTP:
each request in the shape real clients send, each answer in the shape the real Balance gives, and the rules.
Money, groups, coverage, options, notifications and faults are in test_emulator_variants.py."""

from __future__ import annotations

import xmlrpc.client

import pytest
import requests as http

from balance_gateway.emulator import BalanceEmulator
from tests.balance_gateway.emulator_helpers import (
    OP,
    PH,
    SERVICE,
    SHOWS,
    UR,
    fault_of,
    info,
    moscow_now,
    new_agency,
    new_client,
    order,
    orders,
    pay,
    priced,
    spend,
    state_order,
)
from tests.emulator_fixtures import emulator_proxy, raw_xmlrpc_call

CLIENT_KEYS = {"CLIENT_ID", "NAME", "EMAIL", "PHONE", "FAX", "URL", "CITY", "REGION_ID", "CLIENT_TYPE_ID",
               "IS_AGENCY", "AGENCY_ID", "SERVICE_DATA", "SINGLE_ACCOUNT_NUMBER"}  # fmt: skip
ORDER_INFO_KEYS = {"id", "ServiceID", "ServiceOrderID", "IsGroupRoot", "GroupServiceOrderID", "product_id",
                   "consume_qty", "completion_qty", "consume_amount", "completion_amount", "ConsumeMoneyQty",
                   "CompletionMoneyQty", "CompletionFixedMoneyQty", "invoice_currency"}  # fmt: skip


@pytest.fixture
def rpc(balance_emulator: BalanceEmulator) -> xmlrpc.client.ServerProxy:
    return emulator_proxy(balance_emulator)


# --- transport -----------------------------------------------------------------------------------------------------


def test_faults_carry_balance_error_document(balance_emulator):
    kind, (code, text) = raw_xmlrpc_call(balance_emulator.url, "Balance2.GetClientPersons", "999")
    assert (kind, code) == ("fault", "CLIENT_NOT_FOUND")
    for tag in ("msg", "wo-rollback", "method", "code", "parent-codes", "contents"):
        assert f"<{tag}>" in text, tag
    assert text.startswith("<error>") and "<method>Balance2.GetClientPersons</method>" in text


def test_operator_uid_comes_first_as_a_string(rpc):
    assert rpc.Balance2.CreateClient(OP, {"NAME": "A", "IS_AGENCY": 0})[0] == 0
    assert rpc.Balance2.CreateClient(int(OP[:9]), {"NAME": "B", "IS_AGENCY": 0})[0] == 0  # an int works too
    assert fault_of(lambda: rpc.Balance2.CreateClient("robot", {"NAME": "C", "IS_AGENCY": 0}))[0] == "INVALID_PARAM"
    assert fault_of(lambda: rpc.Balance2.CreateClient({"NAME": "D", "IS_AGENCY": 0}))[0] == "INVALID_PARAM"


# --- clients, persons, users, contracts ----------------------------------------------------------------------------


def test_create_client_answers_code_message_and_id_and_is_not_idempotent(rpc):
    params = {"NAME": "Dup", "IS_AGENCY": 0, "REGION_ID": 225, "SERVICE_ID": SERVICE, "SERVICE_CLIENT_ID": "c-1"}
    code, message, first = rpc.Balance2.CreateClient(OP, params)
    assert (code, message) == (0, "SUCCESS") and isinstance(first, int)
    second = rpc.Balance2.CreateClient(OP, params)[2]
    assert second != first  # no source shows Balance keying clients by SERVICE_CLIENT_ID
    assert [c["NAME"] for c in rpc.Emulator.State()["clients"]] == ["Dup", "Dup"]


def test_create_client_honours_service_client_id_only_as_an_option(emulator_factory):
    rpc = emulator_proxy(emulator_factory(honour_service_client_id=True))
    params = {"NAME": "Once", "IS_AGENCY": 0, "SERVICE_ID": SERVICE, "SERVICE_CLIENT_ID": "c-1"}
    assert rpc.Balance2.CreateClient(OP, params)[2] == rpc.Balance2.CreateClient(OP, params)[2]


def test_client_edit_ignores_is_agency_and_batch_read_wraps_in_a_code(rpc):
    client_id = new_client(rpc, "Old")
    assert rpc.Balance2.CreateClient(OP, {"CLIENT_ID": client_id, "NAME": "New", "IS_AGENCY": 1}) == [
        0, "SUCCESS", client_id]  # fmt: skip
    code, clients = rpc.Balance2.GetClientByIdBatch([client_id, 999])
    assert code == 0 and len(clients) == 1
    assert set(clients[0]) == CLIENT_KEYS
    assert (clients[0]["NAME"], clients[0]["IS_AGENCY"], clients[0]["REGION_ID"]) == ("New", 0, 225)
    assert rpc.Balance2.GetClientByIdBatch([str(client_id)] * 1001)[0] == 0  # 1,001 ids in one call


def test_find_client_needs_a_criterion_and_answers_code_empty_message_list(rpc):
    first = new_client(rpc, "Romashka Trade", EMAIL="shop@r.ru")
    new_client(rpc, "Other", EMAIL="other@r.ru")
    assert fault_of(lambda: rpc.Balance2.FindClient({}))[0] == "INVALID_PARAM"
    code, message, found = rpc.Balance2.FindClient({"Email": "SHOP@r.ru"})
    assert (code, message, [c["CLIENT_ID"] for c in found]) == (0, "", [first])
    assert [c["CLIENT_ID"] for c in rpc.Balance2.FindClient({"Name": "romashka"})[2]] == [first]
    assert rpc.Balance2.FindClient({"ClientID": first, "Email": "other@r.ru"}) == [0, "", []]
    rpc.Balance2.CreateUserClientAssociation(OP, first, 4242)
    rpc.Emulator.SetLogin(4242, "shop-login")
    assert [c["CLIENT_ID"] for c in rpc.Balance2.FindClient({"Login": "shop-login"})[2]] == [first]
    assert [c["CLIENT_ID"] for c in rpc.Balance2.FindClient({"PassportID": "4242"})[2]] == [first]


@pytest.mark.parametrize("missing", sorted(set(UR) - {"type"}))
def test_company_person_needs_every_mandatory_field(rpc, missing):
    client_id = new_client(rpc)
    params = {**{k: v for k, v in UR.items() if k != missing}, "client_id": client_id}
    code, text = fault_of(lambda: rpc.Balance2.CreatePerson(OP, params))
    assert code == "MISSING_MANDATORY_PERSON_FIELD" and missing in text
    assert rpc.Balance2.GetClientPersons(client_id, 0) == []


def test_persons_by_type_and_region(rpc):
    client_id = new_client(rpc)
    ur_id = rpc.Balance2.CreatePerson(OP, {**UR, "client_id": client_id})
    ph_id = rpc.Balance2.CreatePerson(OP, {**PH, "client_id": str(client_id)})
    assert isinstance(ur_id, int) and ph_id != ur_id
    persons = rpc.Balance2.GetClientPersons(client_id, 0)
    assert [(p["ID"], p["TYPE"]) for p in persons] == [(ur_id, "ur"), (ph_id, "ph")]
    assert (persons[0]["LONGNAME"], persons[0]["KPP"], persons[0]["POSTCODE"]) == ("OOO Romashka", "770001001",
                                                                                    "101000")  # fmt: skip
    code, _ = fault_of(lambda: rpc.Balance2.CreatePerson(OP, {**{k: v for k, v in PH.items() if k != "fname"},
                                                              "client_id": client_id}))  # fmt: skip
    assert code == "MISSING_MANDATORY_PERSON_FIELD"
    belarus = new_client(rpc, "By", REGION_ID=149)
    assert fault_of(lambda: rpc.Balance2.CreatePerson(OP, {**UR, "client_id": belarus}))[0] == "INVALID_PERSON_TYPE"
    # not idempotent: the same person twice is two persons
    assert rpc.Balance2.CreatePerson(OP, {**PH, "client_id": client_id}) not in (ur_id, ph_id)


def test_user_client_association_codes(rpc):
    first, second = new_client(rpc, "One"), new_client(rpc, "Two")
    assert rpc.Balance2.CreateUserClientAssociation(OP, first, "5001") == [0, "SUCCESS"]
    assert rpc.Balance2.CreateUserClientAssociation(OP, first, "5001") == [0, "SUCCESS"]  # already this client's
    assert rpc.Balance2.CreateUserClientAssociation(OP, second, "5001")[0] == 4008
    assert rpc.Balance2.CreateUserClientAssociation(OP, 999, "5002")[0] == 1003
    rpc.Emulator.ForgetUser(5003)
    assert rpc.Balance2.CreateUserClientAssociation(OP, first, "5003")[0] == 2
    assert next(c for c in rpc.Emulator.State()["clients"] if c["CLIENT_ID"] == first)["USER_UIDS"] == [5001]


def test_client_contracts_signed_only_by_default_and_credit_limits_apart(rpc):
    agency_id, contract_id = new_agency(rpc, "postpaid", "10000.00")
    unsigned = rpc.Emulator.CreateContract(agency_id, {"payment_type": "prepaid", "services": [SERVICE],
                                                       "is_signed": 0})  # fmt: skip
    (contract,) = rpc.Balance2.GetClientContracts({"ClientID": agency_id})
    assert contract["ID"] == contract_id
    assert {"ID", "EXTERNAL_ID", "PERSON_ID", "IS_ACTIVE", "IS_SIGNED", "IS_SUSPENDED", "PAYMENT_TYPE", "SERVICES",
            "CURRENCY", "DT"} <= set(contract)  # fmt: skip
    assert (contract["PAYMENT_TYPE"], contract["SERVICES"], contract["IS_ACTIVE"]) == (3, [SERVICE], 1)
    assert "CREDIT_LIMIT" not in contract
    assert [c["ID"] for c in rpc.Balance2.GetClientContracts({"ClientID": agency_id, "Signed": 0})] == [
        contract_id, unsigned]  # fmt: skip
    limits = rpc.Balance2.GetClientCreditLimits(agency_id, SHOWS)
    assert limits["CURRENCY"] == "RUR" and "PRODUCT_PRICE" in limits
    assert limits["LIMITS"] == [{"CONTRACT_ID": str(contract_id), "CONTRACT_EID": contract["EXTERNAL_ID"],
                                 "ISO_CURRENCY": "RUB", "LIMIT_TOTAL": "10000.00", "LIMIT_SPENT": "0.00"}]  # fmt: skip


# --- orders --------------------------------------------------------------------------------------------------------


def test_orders_batch_answers_per_order(rpc):
    client_id = new_client(rpc)
    answer = orders(rpc, order(1, client_id), order(2, 999), order(3, client_id))
    assert answer[0] == [0, "Success"] and answer[2] == [0, "Success"]
    assert answer[1][0] == -1 and answer[1][1].startswith("<error>") and "CLIENT_NOT_FOUND" in answer[1][1]
    assert [o["ServiceOrderID"] for o in rpc.Emulator.State()["orders"]] == ["1", "3"]


def test_order_update_replaces_the_order(rpc):
    agency_id, contract_id = new_agency(rpc)
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id, agency=agency_id))
    orders(rpc, order(2, client_id, agency=agency_id, group=1, contract=contract_id, Text="child"))
    assert (state_order(rpc, 2)["ContractID"], state_order(rpc, 2)["GroupServiceOrderID"]) == (contract_id, "1")
    assert orders(rpc, order(2, client_id, agency=agency_id)) == [[0, "Success"]]  # sent without contract, group
    child = state_order(rpc, 2)
    assert (child["ContractID"], child["GroupServiceOrderID"], child["Text"]) == (0, "", "")
    orders(rpc, order(2, client_id, agency=agency_id, group=1))
    orders(rpc, order(2, client_id, agency=agency_id, GroupServiceOrderID=-1))
    assert state_order(rpc, 2)["GroupServiceOrderID"] == ""


def test_owner_change_is_refused_once_the_order_has_money(rpc):
    agency_id, _ = new_agency(rpc)
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id), order(2, client_id))
    assert orders(rpc, order(2, client_id, agency=agency_id)) == [[0, "Success"]]  # no money yet: allowed
    pay(rpc, client_id, 1, "100.00")
    (refused,) = orders(rpc, order(1, client_id, agency=agency_id))
    assert refused[0] == -1 and "equivalent" in refused[1]
    assert state_order(rpc, 1)["AgencyID"] == 0


def test_get_orders_info_has_units_and_money_and_no_owner(rpc):
    priced(rpc)
    client_id = new_client(rpc)
    _, contract_id = new_agency(rpc)
    orders(rpc, order(7, client_id, product=SHOWS))
    request = rpc.Balance2.CreateRequest2(OP, client_id, [{"ServiceID": SERVICE, "ServiceOrderID": "7", "Qty": "100"}])
    rpc.Emulator.PayRequest(request["RequestID"])
    assert spend(rpc, 7, "10.5", unit="Shows") == 1
    found = info(rpc, 7)
    assert set(found) == ORDER_INFO_KEYS  # no ClientID, AgencyID or Tid: owners cannot be read back
    assert (found["consume_qty"], found["consume_amount"], found["ConsumeMoneyQty"]) == ("100.000000", "3000.00",
                                                                                         "3000.00")  # fmt: skip
    assert (found["completion_qty"], found["completion_amount"], found["CompletionMoneyQty"]) == (
        "10.500000", "315.00", "315.00")  # fmt: skip
    assert (found["ServiceOrderID"], found["product_id"], found["IsGroupRoot"]) == (7, SHOWS, 0)
    assert rpc.Balance2.GetOrdersInfo([{"ServiceID": SERVICE, "ServiceOrderID": "404"}]) == []
    agency_id = rpc.Emulator.State()["contracts"][0]["CLIENT_ID"]
    orders(rpc, order(8, client_id, agency=agency_id, contract=contract_id))
    assert [o["ServiceOrderID"] for o in rpc.Balance2.GetOrdersInfo({"ContractID": contract_id})] == [8]


# --- requests ------------------------------------------------------------------------------------------------------


def test_create_request2_counts_units_unless_qty_is_amount(rpc):
    priced(rpc)
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id, product=SHOWS))
    line = [{"ServiceID": SERVICE, "ServiceOrderID": "1", "Qty": "828.333333"}]
    request = rpc.Balance2.CreateRequest2(OP, client_id, line)
    assert set(request) == {"RequestID", "UserPath", "AdminPath"}
    assert request["UserPath"].endswith(f"/paystep/{request['RequestID']}")
    by_amount = rpc.Balance2.CreateRequest2(OP, str(client_id), [{**line[0], "Qty": "3000.00"}], {"QtyIsAmount": 1})
    sums = {r["RequestID"]: r["Sum"] for r in rpc.Emulator.State()["requests"]}
    assert (sums[request["RequestID"]], sums[by_amount["RequestID"]]) == ("24850.00", "3000.00")
    rpc.Emulator.PayRequest(by_amount["RequestID"])
    assert (info(rpc, 1)["consume_qty"], info(rpc, 1)["consume_amount"]) == ("100.000000", "3000.00")
    other = new_client(rpc, "Stranger")
    assert fault_of(lambda: rpc.Balance2.CreateRequest2(OP, other, line))[0] == "PERMISSION_DENIED"


def test_paystep_page_pays_the_request(rpc):
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id))
    request = rpc.Balance2.CreateRequest2(
        OP, client_id, [{"ServiceID": SERVICE, "ServiceOrderID": "1", "Qty": "1500.00"}],
        {"QtyIsAmount": 1, "ReturnPath": "https://billing.example/back"},
    )  # fmt: skip
    page = http.get(request["UserPath"], timeout=5)
    assert page.status_code == 200 and "1500.00" in page.text and "<form" in page.text
    assert info(rpc, 1)["consume_amount"] == "0.00"  # looking is not paying
    paid = http.post(request["UserPath"], data={"amount": "1000.00"}, allow_redirects=False, timeout=5)
    assert (paid.status_code, paid.headers["Location"]) == (303, "https://billing.example/back")
    assert info(rpc, 1)["consume_amount"] == "1000.00"
    assert http.post(request["UserPath"], data={}, timeout=5).status_code == 400  # paid once
    assert info(rpc, 1)["consume_amount"] == "1000.00"


# --- completions ---------------------------------------------------------------------------------------------------


def test_update_campaigns_answers_per_service_and_order(rpc):
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id), order(2, client_id), order(3, client_id))
    rpc.Emulator.UpdateOrder(SERVICE, "3", {"Blocked": 1})
    now, later = moscow_now(), moscow_now(minutes=2)
    answer = rpc.Balance2.UpdateCampaigns([
        {"ServiceID": SERVICE, "ServiceOrderID": "1", "dt": now, "stop": 0, "Money": "10.5"},
        {"ServiceID": SERVICE, "ServiceOrderID": "2", "dt": later, "stop": 0, "Money": "5"},  # the future
        {"ServiceID": SERVICE, "ServiceOrderID": "3", "dt": now, "stop": 0, "Money": "5"},  # blocked
        {"ServiceID": SERVICE, "ServiceOrderID": "404", "dt": now, "stop": 0, "Money": "5"},  # unknown
    ])  # fmt: skip
    assert answer == {str(SERVICE): {"1": 1, "2": 0, "3": 0, "404": 0}}
    rpc.Emulator.ApplyPending()
    assert [info(rpc, n)["completion_qty"] for n in (1, 2, 3)] == ["10.500000", "0.000000", "0.000000"]


def test_update_campaigns_values_are_cumulative_in_the_products_unit(rpc):
    priced(rpc)
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id, product=SHOWS))
    assert spend(rpc, 1, "10", unit="Shows") == 1
    assert spend(rpc, 1, "12", unit="Shows") == 1  # a total, not a delta
    assert spend(rpc, 1, "99", unit="Money") == 1  # another unit stays unset
    assert (info(rpc, 1)["completion_qty"], info(rpc, 1)["completion_amount"]) == ("12.000000", "360.00")


# --- version 1 is gone ---------------------------------------------------------------------------------------------


def test_version_1_shapes_are_refused(balance_emulator, rpc):
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id))
    # a dt as a "YYYY-MM-DD" string (version 1) is not accepted
    v1_item = {"ServiceID": SERVICE, "ServiceOrderID": "1", "dt": "2026-01-01", "stop": 0, "Money": "5.00"}
    assert rpc.Balance2.UpdateCampaigns([v1_item]) == {str(SERVICE): {"1": 0}}
    # answers are version 2: GetClientByIdBatch is not a bare list, UpdateCampaigns not a list of ints
    assert rpc.Balance2.GetClientByIdBatch([client_id])[0] == 0
    assert "Tid" not in info(rpc, 1) and "ClientID" not in info(rpc, 1) and "ConsumeQty" not in info(rpc, 1)
    # GetOverdraftParams is the auto-overdraft settings, not the limit
    assert set(rpc.Balance2.GetOverdraftParams(SERVICE, client_id)) == {"PersonID", "PaymentMethodCC", "Currency",
                                                                         "ClientLimit"}  # fmt: skip
    # the fault document is Balance's, and unknown order fields are typos
    (bad,) = orders(rpc, {**order(1, client_id), "ClientId": client_id})
    assert bad[0] == -1 and "INVALID_PARAM" in bad[1]
    kind, (code, _) = raw_xmlrpc_call(balance_emulator.url, "Balance2.NoSuchMethod")
    assert (kind, code) == ("fault", "INVALID_PARAM")


def test_client_creation_under_v1_field_names_is_refused(rpc):
    code, _ = fault_of(lambda: rpc.Balance2.CreateClient(OP, {"NAME": "X", "IS_AGENCY": 0, "SERVICE": 7}))
    assert code == "INVALID_PARAM"
