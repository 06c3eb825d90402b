"""The emulator's money (groups, coverage, unpaid completion, overdraft and credit), its options (group types,
notification protocols, tickets, asynchronous completions), notifications, faults, controls and persistence."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

import pytest

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

NOTIFY_ORDER_KEYS = {"ServiceID", "ServiceOrderID", "ConsumeQty", "ConsumeSum", "ConsumeAmount", "CompletionQty",
                     "ConsumeCurrency", "Tid", "Signal", "SignalDescription"}  # fmt: skip
NOTIFY_CLIENT_KEYS = {"ClientID", "ClientCurrency", "OverdraftLimit", "OverdraftSpent", "MinPaymentTerm",
                      "OverdraftBan", "BusinessUnit", "NonResident", "MigrateToCurrencyDone",
                      "CanBeForceCurrencyConverted", "HasEquivalentOrBrandClients", "Tid"}  # fmt: skip


@pytest.fixture
def rpc(balance_emulator: BalanceEmulator) -> xmlrpc.client.ServerProxy:
    return emulator_proxy(balance_emulator)


def overdraft_client(rpc, limit: str = "5000.00") -> tuple[int, int]:
    client_id = new_client(rpc)
    person_id = rpc.Balance2.CreatePerson(OP, {**PH, "client_id": client_id})
    orders(rpc, order(1, client_id), order(2, client_id, group=1))
    rpc.Emulator.GrantOverdraft(client_id, limit, 15)
    return client_id, person_id


# --- unified account: both reporting types -------------------------------------------------------------------------


def test_parent_type_reports_the_group_on_the_parent(emulator_factory):
    rpc = emulator_proxy(emulator_factory(group_type="parent"))
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id), order(2, client_id, group=1), order(3, client_id, group=1))
    pay(rpc, client_id, 1, "1000.00")
    spend(rpc, 2, "300")
    spend(rpc, 3, "200")
    parent, child, other = info(rpc, 1), info(rpc, 2), info(rpc, 3)
    assert (parent["IsGroupRoot"], parent["consume_amount"], parent["consume_qty"]) == (1, "1000.00", "1000.000000")
    assert (child["consume_qty"], child["ConsumeMoneyQty"], child["consume_amount"]) == ("0.000000", "0.00", "300.00")
    assert (other["completion_qty"], other["consume_amount"]) == ("200.000000", "200.00")
    assert other["GroupServiceOrderID"] == 1
    assert {o["ServiceOrderID"]: o["UnpaidQty"] for o in rpc.Emulator.State()["orders"]} == {
        "1": "0.000000", "2": "0.000000", "3": "0.000000"}  # fmt: skip


def test_enqueue_type_moves_money_onto_children(emulator_factory):
    rpc = emulator_proxy(emulator_factory(group_type="enqueue"))
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id), order(2, client_id, group=1))
    pay(rpc, client_id, 1, "1000.00")
    spend(rpc, 2, "300")
    parent, child = state_order(rpc, 1), state_order(rpc, 2)
    assert (parent["ConsumeSum"], parent["TotalConsumeQty"]) == ("700.00", "1000.000000")
    assert (child["ConsumeSum"], child["ConsumeQty"], child["CompletionQty"]) == ("300.00", "300.000000",
                                                                                  "300.000000")  # fmt: skip
    rpc.Emulator.SetOptions({"total_consume_qty": False})
    assert "TotalConsumeQty" not in state_order(rpc, 1)
    spend(rpc, 2, "1200")  # beyond the group's money
    assert (state_order(rpc, 1)["ConsumeSum"], state_order(rpc, 2)["ConsumeSum"]) == ("0.00", "1000.00")
    assert (state_order(rpc, 2)["UnpaidQty"], state_order(rpc, 2)["UnpaidSum"]) == ("200.000000", "200.00")


def test_joining_a_group_moves_free_money_unless_told_not_to(emulator_factory):
    rpc = emulator_proxy(emulator_factory(group_type="parent"))  # its figures are the parent type's
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id), order(2, client_id), order(3, client_id))
    pay(rpc, client_id, 2, "100.00")
    pay(rpc, client_id, 3, "50.00")
    spend(rpc, 2, "30")
    orders(rpc, order(2, client_id, group=1), order(3, client_id, group=1, GroupWithoutTransfer=1))
    rpc.Emulator.ApplyPending()
    assert [state_order(rpc, n)["OwnConsumeSum"] for n in (1, 2, 3)] == ["70.00", "30.00", "50.00"]
    assert info(rpc, 1)["consume_amount"] == "150.00"  # the group's money, on the parent


def test_unpaid_completion_and_units_with_a_price(rpc):
    priced(rpc)
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id), order(2, client_id, product=SHOWS, group=1))
    pay(rpc, client_id, 1, "3000.00")
    spend(rpc, 2, "110", unit="Shows")  # 3,300.00 of completion on 3,000.00 of money
    child = state_order(rpc, 2)
    assert (child["UnpaidSum"], child["UnpaidQty"], child["CompletionSum"]) == ("300.00", "10.000000", "3300.00")
    pay(rpc, client_id, 1, "300.00")
    assert state_order(rpc, 2)["UnpaidSum"] == "0.00"


# --- spending before paying: auto-overdraft, overdraft invoices, credit invoices -----------------------------------


def test_overdraft_params_are_auto_overdraft_settings(rpc):
    agency_id, _ = new_agency(rpc)
    agency_person = rpc.Balance2.CreatePerson(OP, {**UR, "client_id": agency_id})
    client_id = new_client(rpc)
    person_id = rpc.Balance2.CreatePerson(OP, {**PH, "client_id": client_id})
    empty = {"PersonID": 0, "PaymentMethodCC": "", "Currency": "", "ClientLimit": "0.00"}
    assert rpc.Balance2.GetOverdraftParams(SERVICE, client_id) == empty
    params = {"PersonID": person_id, "ServiceID": SERVICE, "PaymentMethodCC": "card", "Currency": "RUB",
              "ClientLimit": "3000.00"}  # fmt: skip
    assert "no overdraft limit" in fault_of(lambda: rpc.Balance2.SetOverdraftParams(params))[1]
    rpc.Emulator.GrantOverdraft(client_id, "5000.00", 15)
    assert "Currency is required" in fault_of(lambda: rpc.Balance2.SetOverdraftParams({**params, "Currency": ""}))[1]
    assert "Agencies can't have an overdraft" in fault_of(
        lambda: rpc.Balance2.SetOverdraftParams({**params, "PersonID": agency_person}))[1]  # fmt: skip
    assert rpc.Balance2.SetOverdraftParams(params) == [0, "SUCCESS"]
    assert rpc.Balance2.GetOverdraftParams(SERVICE, client_id) == {
        "PersonID": person_id, "PaymentMethodCC": "card", "Currency": "RUB", "ClientLimit": "3000.00"}  # fmt: skip
    too_much = {**params, "ClientLimit": "5000.01"}
    assert fault_of(lambda: rpc.Balance2.SetOverdraftParams(too_much))[0] == "INVALID_PARAM"
    assert fault_of(lambda: rpc.Emulator.GrantOverdraft(agency_id, "100.00", 15))[0] == "OVERDRAFT_NOT_ALLOWED"


def test_auto_overdraft_covers_spending_and_payment_repays_it(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id, person_id = overdraft_client(rpc)
    rpc.Balance2.SetOverdraftParams({"PersonID": person_id, "ServiceID": SERVICE, "PaymentMethodCC": "card",
                                     "Currency": "RUB", "ClientLimit": "5000.00"})  # fmt: skip
    spend(rpc, 2, "3000")
    child = state_order(rpc, 2)
    assert (child["UnpaidSum"], child["OverdraftSum"]) == ("0.00", "3000.00")
    assert balance_emulator.wait_notifications_idle(5)
    last = notify_receiver.payloads("BalanceClient.NotifyClient2")[-1]
    assert (last["OverdraftLimit"], last["OverdraftSpent"]) == ("5000.00", "3000.00")
    assert last["MinPaymentTerm"] != "0000-00-00"
    pay(rpc, client_id, 1, "3000.00")
    assert state_order(rpc, 2)["OverdraftSum"] == "0.00"
    assert balance_emulator.wait_notifications_idle(5)
    last = notify_receiver.payloads("BalanceClient.NotifyClient2")[-1]
    assert (last["OverdraftSpent"], last["MinPaymentTerm"]) == ("0.00", "0000-00-00")
    assert all(o["UnpaidSum"] == "0.00" for o in rpc.Emulator.State()["orders"])


def test_overdraft_invoice_puts_money_at_once_within_the_limit(emulator_factory):
    rpc = emulator_proxy(emulator_factory(group_type="parent"))  # its figures are the parent type's
    client_id, _ = overdraft_client(rpc)
    line = [{"ServiceID": SERVICE, "ServiceOrderID": "1", "Qty": "3000.00"}]
    request = rpc.Balance2.CreateRequest2(OP, client_id, line, {"QtyIsAmount": 1, "Overdraft": 1})
    assert info(rpc, 1)["consume_amount"] == "3000.00"  # before any payment
    spend(rpc, 2, "3000")
    client = next(c for c in rpc.Emulator.State()["clients"] if c["CLIENT_ID"] == client_id)
    assert client["OverdraftSpent"] == "3000.00"
    code, _ = fault_of(lambda: rpc.Balance2.CreateRequest2(OP, client_id, [{**line[0], "Qty": "2500.00"}],
                                                           {"QtyIsAmount": 1, "Overdraft": 1}))  # fmt: skip
    assert code == "NOT_ENOUGH_OVERDRAFT_LIMIT"
    rpc.Emulator.PayRequest(request["RequestID"])  # the client repays the overdraft invoice
    client = next(c for c in rpc.Emulator.State()["clients"] if c["CLIENT_ID"] == client_id)
    assert (client["OverdraftSpent"], info(rpc, 1)["consume_amount"]) == ("0.00", "3000.00")  # no new money
    assert all(o["UnpaidSum"] == "0.00" for o in rpc.Emulator.State()["orders"])


def test_credit_invoices_cover_an_agencys_customers(rpc):
    agency_id, contract_id = new_agency(rpc, "postpaid", "10000.00")
    first, second = new_client(rpc, "First"), new_client(rpc, "Second")
    orders(rpc, order(1, first, agency=agency_id, contract=contract_id),
           order(2, second, agency=agency_id, contract=contract_id))  # fmt: skip
    invoices = []
    for soid, money in ((1, "6000.00"), (2, "4000.00")):
        request = rpc.Balance2.CreateRequest2(OP, agency_id, [{"ServiceID": SERVICE, "ServiceOrderID": str(soid),
                                                               "Qty": money}], {"QtyIsAmount": 1})  # fmt: skip
        invoices.append(rpc.Balance2.CreateInvoice(OP, {"RequestID": request["RequestID"], "PaysysID": 1003,
                                                        "Credit": 1, "ContractID": contract_id}))  # fmt: skip
    assert (info(rpc, 1)["consume_amount"], info(rpc, 2)["consume_amount"]) == ("6000.00", "4000.00")
    assert rpc.Balance2.GetClientCreditLimits(agency_id, SHOWS)["LIMITS"][0]["LIMIT_SPENT"] == "10000.00"
    more = rpc.Balance2.CreateRequest2(OP, agency_id, [{"ServiceID": SERVICE, "ServiceOrderID": "1", "Qty": "1"}],
                                       {"QtyIsAmount": 1})  # fmt: skip
    code, _ = fault_of(lambda: rpc.Balance2.CreateInvoice(OP, {"RequestID": more["RequestID"], "Credit": 1,
                                                                "ContractID": contract_id}))  # fmt: skip
    assert code == "CREDIT_LIMIT_EXCEEDED"
    spend(rpc, 1, "6000")
    spend(rpc, 2, "3500")
    assert all(o["UnpaidSum"] == "0.00" for o in rpc.Emulator.State()["orders"])
    spend(rpc, 2, "4100")  # beyond the credit invoices: unpaid
    assert state_order(rpc, 2)["UnpaidSum"] == "100.00"
    rpc.Emulator.PayInvoice(invoices[0])
    assert rpc.Balance2.GetClientCreditLimits(agency_id, SHOWS)["LIMITS"][0]["LIMIT_SPENT"] == "4000.00"
    assert fault_of(lambda: rpc.Balance2.CreateRequest2(OP, agency_id, [{"ServiceID": SERVICE, "ServiceOrderID": "1",
                                                                         "Qty": "1"}], {"Overdraft": 1}))[1].find(
        "Agencies can't have an overdraft") > 0  # fmt: skip


def test_notify_client2_per_firm_and_service(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id = new_client(rpc)
    rpc.Emulator.GrantOverdraft(client_id, "1000.00", 15, {"ServiceID": SERVICE})
    rpc.Emulator.SetOptions({"client_notify_ids": True})  # an emulator-only extra, off by default
    rpc.Emulator.GrantOverdraft(client_id, "250.00", 15, {"ServiceID": 11, "FirmID": 111})
    assert balance_emulator.wait_notifications_idle(5)
    first, second = notify_receiver.payloads("BalanceClient.NotifyClient2")
    assert set(first) == NOTIFY_CLIENT_KEYS and first["ClientID"] == str(client_id)
    assert set(second) - set(first) == {"ServiceID", "FirmID"} and (second["ServiceID"], second["FirmID"]) == (11, 111)
    assert (first["OverdraftLimit"], second["OverdraftLimit"]) == ("1000.00", "250.00")
    assert int(second["Tid"]) > int(first["Tid"]) and 13 <= len(first["Tid"]) <= 17


# --- transfers -----------------------------------------------------------------------------------------------------


def test_transfer_multiple_checks_qty_old_and_splits_by_weight(rpc):
    client_id = new_client(rpc)
    agency_id, _ = new_agency(rpc)
    orders(rpc, order(1, client_id), order(2, client_id), order(3, client_id), order(4, client_id, agency=agency_id))
    pay(rpc, client_id, 1, "100.00")
    source = {"ServiceID": SERVICE, "ServiceOrderID": "1", "QtyOld": "99.999999", "QtyNew": "0"}
    targets = [{"ServiceID": SERVICE, "ServiceOrderID": "2", "QtyDelta": "1"},
               {"ServiceID": SERVICE, "ServiceOrderID": "3", "QtyDelta": "3"}]  # fmt: skip
    assert fault_of(lambda: rpc.Balance2.CreateTransferMultiple(OP, [source], targets))[0] == "ORDERS_NOT_SYNCHRONIZED"
    to_agency = [{"ServiceID": SERVICE, "ServiceOrderID": "4", "QtyDelta": "1"}]
    assert fault_of(lambda: rpc.Balance2.CreateTransferMultiple(OP, [{**source, "QtyOld": "100.000000"}],
                                                                to_agency))[0] == "NOT_EQUIVALENT_CLIENTS"  # fmt: skip
    assert rpc.Balance2.CreateTransferMultiple(OP, [{**source, "QtyOld": "100.000000", "QtyNew": "20"}],
                                               targets) == [0, "SUCCESS"]  # fmt: skip
    assert [info(rpc, n)["consume_amount"] for n in (1, 2, 3)] == ["20.00", "20.00", "60.00"]


def test_transfer_across_agencies_is_an_option(emulator_factory):
    rpc = emulator_proxy(emulator_factory(transfer_across_agencies=True))
    client_id = new_client(rpc)
    agency_id, _ = new_agency(rpc)
    orders(rpc, order(1, client_id), order(2, client_id, agency=agency_id))
    pay(rpc, client_id, 1, "10.00")
    rpc.Balance2.CreateTransferMultiple(OP, [{"ServiceID": SERVICE, "ServiceOrderID": "1", "QtyOld": "10",
                                              "QtyNew": "0"}], [{"ServiceID": SERVICE, "ServiceOrderID": "2",
                                                                 "QtyDelta": "1"}])  # fmt: skip
    assert info(rpc, 2)["consume_amount"] == "10.00"


# --- asynchronous completions --------------------------------------------------------------------------------------


def test_completions_are_applied_after_the_delay_then_notified(emulator_factory, notify_receiver):
    emulator = emulator_factory(completion_delay_ms=300)
    emulator.notify_url = notify_receiver.url
    rpc = emulator_proxy(emulator)
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id))
    item = {"ServiceID": SERVICE, "ServiceOrderID": "1", "dt": moscow_now(), "stop": 0, "Money": "25"}
    assert rpc.Balance2.UpdateCampaigns([item]) == {str(SERVICE): {"1": 1}}
    assert info(rpc, 1)["completion_qty"] == "0.000000"  # accepted, not applied yet
    assert emulator.wait_notifications_idle(5)
    assert info(rpc, 1)["completion_qty"] == "25.000000"
    assert notify_receiver.payloads()[-1]["CompletionQty"] == "25.000000"


# --- notifications: protocols, ticket, retries, faults -------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["xmlrpc", "json"])
def test_notify_order2_as_xmlrpc_or_json_with_a_ticket(emulator_factory, notify_receiver, protocol):
    emulator = emulator_factory(notify_protocol=protocol, notify_ticket="3:serv:ticket")
    emulator.notify_url = notify_receiver.url
    rpc = emulator_proxy(emulator)
    client_id = new_client(rpc)
    orders(rpc, order("9000000000001", client_id))
    pay(rpc, client_id, "9000000000001", "100.00")
    spend(rpc, "9000000000001", "30")
    assert emulator.wait_notifications_idle(5)
    first, second = notify_receiver.payloads()
    assert NOTIFY_ORDER_KEYS <= set(first)
    assert (first["ServiceID"], str(first["ServiceOrderID"])) == (SERVICE, "9000000000001")
    assert (first["ConsumeQty"], first["ConsumeSum"], first["CompletionQty"]) == ("100.000000", "100.00", "0.000000")
    assert second["CompletionQty"] == "30.000000" and int(second["Tid"]) > int(first["Tid"])
    assert all(13 <= len(p["Tid"]) <= 17 and p["Tid"].isdigit() for p in (first, second))
    assert all(h.get("X-Ya-Service-Ticket") == "3:serv:ticket" for h in notify_receiver.headers)
    path = notify_receiver.received[0][2]
    expected = "/balance/notify/BalanceClient/NotifyOrder2?secret=s3cret" if protocol == "json" else (
        "/balance/notify?secret=s3cret")  # fmt: skip
    assert path == expected


def test_notifications_are_retried_after_a_fault(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    notify_receiver.fail_next = 2  # billing does not know the order yet
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id))
    pay(rpc, client_id, 1, "50.00")
    assert balance_emulator.wait_notifications_idle(5)
    assert [p["ConsumeSum"] for p in notify_receiver.payloads()] == ["50.00"]
    counts = rpc.Emulator.State()["notifications"]
    assert (counts["sent"], counts["retried"], counts["failed"]) == (1, 2, 0)


def test_notify_faults_are_seeded(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id = new_client(rpc)
    orders(rpc, order(1, client_id))
    rpc.Emulator.SetFaults({"notify": {"duplicate_rate": 1.0}})
    pay(rpc, client_id, 1, "10.00")
    assert balance_emulator.wait_notifications_idle(5)
    assert [p["ConsumeSum"] for p in notify_receiver.payloads()] == ["10.00", "10.00"]
    notify_receiver.received.clear()
    rpc.Emulator.SetFaults({"notify": {"reorder": True}})
    spend(rpc, 1, "1")
    spend(rpc, 1, "2")
    assert balance_emulator.wait_notifications_idle(5)
    assert [p["CompletionQty"] for p in notify_receiver.payloads()] == ["2.000000", "1.000000"]
    notify_receiver.received.clear()
    rpc.Emulator.SetFaults({"notify": {"fail_rate": 0.5, "delay_ms": 50}, "seed": 3})
    for qty in ("3", "4", "5"):
        spend(rpc, 1, qty)
    assert balance_emulator.wait_notifications_idle(8)
    assert sorted(p["CompletionQty"] for p in notify_receiver.payloads()) == ["3.000000", "4.000000", "5.000000"]
    assert rpc.Emulator.State()["notifications"]["retried"] >= 1


@pytest.mark.parametrize(("failure", "expected"), [("403", ("http", 403)), ("fault", "TVM_TICKET_INVALID")])
def test_a_required_ticket_is_checked(emulator_factory, failure, expected):
    emulator = emulator_factory(required_ticket="3:serv:good", ticket_failure=failure)
    for headers in ({}, {"X-Ya-Service-Ticket": "3:serv:bad"}):
        answer = raw_xmlrpc_call(emulator.url, "Balance2.FindClient", {"Name": "x"}, headers=headers)
        assert answer == expected if failure == "403" else answer[1][0] == expected
    good = raw_xmlrpc_call(emulator.url, "Balance2.FindClient", {"Name": "x"},
                           headers={"X-Ya-Service-Ticket": "3:serv:good"})  # fmt: skip
    assert good == ("ok", [0, "", []])


# --- call faults ---------------------------------------------------------------------------------------------------


def outcomes(url: str, count: int) -> list:
    answers = [raw_xmlrpc_call(url, "Balance2.FindClient", {"Name": "x"}, timeout=0.5) for _ in range(count)]
    return [(kind, detail[0] if kind == "fault" else None if kind == "ok" else detail) for kind, detail in answers]


def test_faults_are_reproducible_with_the_same_seed(balance_emulator, rpc):
    spec = {"seed": 42, "*": {"error_rate": 0.4, "lost_response_rate": 0.2, "timeout_rate": 0.05}}
    rpc.Emulator.SetFaults(spec)
    first = outcomes(balance_emulator.url, 30)
    rpc.Emulator.SetFaults(spec)
    assert outcomes(balance_emulator.url, 30) == first
    assert {("fault", "INTERNAL_ERROR"), ("fault", ""), ("http", 502), ("lost", None), ("ok", None)} <= set(first)
    rpc.Emulator.SetFaults({**spec, "seed": 43})
    assert outcomes(balance_emulator.url, 30) != first
    rpc.Emulator.SetFaults({})
    assert {kind for kind, _ in outcomes(balance_emulator.url, 5)} == {"ok"}


def test_error_kinds_do_not_apply_the_call(balance_emulator, rpc):
    rpc.Emulator.SetFaults({"CreateClient": {"error_rate": 1.0}})
    params = {"NAME": "X", "IS_AGENCY": 0}
    kind, (code, _) = raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, params)
    assert (kind, code) == ("fault", "INTERNAL_ERROR")
    kind, (code, text) = raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, params)
    assert (kind, code) == ("fault", "") and text.startswith("Error: DatabaseError\n") and "ORA-03113" in text
    assert raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, params) == ("http", 502)
    assert rpc.Emulator.State()["clients"] == []
    rpc.Emulator.SetFaults({"CreateClient": {"error_rate": 1.0}, "errors": ["db"]})
    assert raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, params)[1][0] == ""


def test_lost_response_and_timeout_apply_the_call(balance_emulator, rpc):
    rpc.Emulator.SetFaults({"Balance2.CreateClient": {"lost_response_rate": 1.0}})
    params = {"NAME": "Lost", "IS_AGENCY": 0}
    assert raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, params) == ("lost", None)
    rpc.Emulator.SetFaults({"*": {"timeout_rate": 1.0}})
    started = time.monotonic()
    answer = raw_xmlrpc_call(balance_emulator.url, "Balance2.CreateClient", OP, {**params, "NAME": "Slow"},
                             timeout=0.3)  # fmt: skip
    assert answer == ("timeout", None) and time.monotonic() - started < 1.0
    assert [c["NAME"] for c in rpc.Emulator.State()["clients"]] == ["Lost", "Slow"]
    rpc.Emulator.SetFaults({"FindClient": {"latency_ms": 200}})
    started = time.monotonic()
    rpc.Balance2.FindClient({"Name": "x"})
    assert time.monotonic() - started >= 0.2


# --- controls, persistence, the command ----------------------------------------------------------------------------


def test_state_update_order_seed_and_reset(balance_emulator, rpc, notify_receiver):
    balance_emulator.notify_url = notify_receiver.url
    client_id = new_client(rpc)
    agency_id, _ = new_agency(rpc)
    orders(rpc, order(1, client_id))
    state = state_order(rpc, 1)
    assert {"ServiceID", "ServiceOrderID", "ClientID", "AgencyID", "ProductID", "GroupServiceOrderID", "ConsumeQty",
            "ConsumeSum", "CompletionQty", "UnpaidQty"} <= set(state)  # fmt: skip
    changed = rpc.Emulator.UpdateOrder(SERVICE, "1", {"AgencyID": agency_id, "ConsumeSum": "70.00"})
    assert (changed["AgencyID"], changed["ConsumeSum"]) == (agency_id, "70.00")
    assert balance_emulator.wait_notifications_idle(5) and notify_receiver.received == []  # behind billing's back
    assert rpc.Emulator.Seed({"clients": [{"client_id": 777, "name": "Legacy"}],
                              "orders": [{"service_id": SERVICE, "service_order_id": "77", "client_id": 777,
                                          "product_id": 1, "consume_sum": "12.00"}]}) == [0, "SUCCESS"]  # fmt: skip
    assert info(rpc, 77)["consume_amount"] == "12.00"
    assert rpc.Emulator.Reset() == [0, "SUCCESS"]
    state = rpc.Emulator.State()
    assert [state[k] for k in ("clients", "persons", "contracts", "orders", "requests")] == [[]] * 5


def test_state_file_survives_a_restart(tmp_path: Path):
    path = tmp_path / "balance.json"
    with BalanceEmulator(state_file=path) as emulator:
        proxy = emulator_proxy(emulator)
        client_id = new_client(proxy)
        orders(proxy, order("9000000000001", client_id))
        pay(proxy, client_id, "9000000000001", "12.34")
    assert json.loads(path.read_text())["orders"][0]["consume_sum"] == "12.34"
    with BalanceEmulator(state_file=path) as emulator:
        proxy = emulator_proxy(emulator)
        assert info(proxy, "9000000000001")["consume_amount"] == "12.34"
        assert new_client(proxy) == client_id + 1
    assert not list(tmp_path.glob(".balance.json.*"))


def test_management_command_takes_options(tmp_path: Path):
    manage = Path(__file__).resolve().parents[2] / "manage.py"
    process = subprocess.Popen(
        [sys.executable, str(manage), "balance_emulator", "--port", "0", "--seed", "5",
         "--state-file", str(tmp_path / "s.json"), "--option", "group_type=enqueue",
         "--option", "completion_delay_ms=20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "BALANCE_EMULATOR_OPTIONS"},  # only the options given here
    )  # fmt: skip
    try:
        url = re.search(r"(http://\S+/xmlrpc)", process.stdout.readline())[1]
        proxy = xmlrpc.client.ServerProxy(url, allow_none=True)
        assert proxy.Balance2.CreateClient(OP, {"NAME": "C", "IS_AGENCY": 0})[0] == 0
        options = proxy.Emulator.State()["options"]
        assert (options["group_type"], options["completion_delay_ms"]) == ("enqueue", 20.0)
        process.terminate()
        assert process.wait(10) == 0
        assert "Balance2.CreateClient" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_options_are_validated(rpc):
    assert fault_of(lambda: rpc.Emulator.SetOptions({"group_type": "flat"}))[0] == "INVALID_PARAM"
    assert fault_of(lambda: rpc.Emulator.SetOptions({"no_such": 1}))[0] == "INVALID_PARAM"
    assert rpc.Emulator.SetOptions({"group_type": "enqueue"}) == [0, "SUCCESS"]
    assert rpc.Emulator.State()["options"]["group_type"] == "enqueue"



def test_a_version_1_state_file_is_upgraded_on_load(tmp_path: Path):
    v1 = {"version": 1, "clients": [{"client_id": 100000, "name": "Old", "service_id": SERVICE,
                                     "service_client_id": "k", "overdraft_granted": True,
                                     "overdraft_limit": "500.00", "overdraft_term_days": 10}],
          "persons": [{"person_id": 200000, "client_id": 100000, "type": "ur", "name": "Old", "inn": "7700000000"}],
          "orders": [{"service_id": SERVICE, "service_order_id": "5", "client_id": 100000, "product_id": 1,
                      "consume_qty": "80.00", "completion_qty": "30.00", "tid": 1, "seq": 1}],
          "next_ids": {"client": 100001, "person": 200001}}  # fmt: skip
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(v1))
    with BalanceEmulator(state_file=path) as emulator:
        proxy = emulator_proxy(emulator)
        assert (info(proxy, 5)["consume_amount"], info(proxy, 5)["completion_qty"]) == ("80.00", "30.000000")
        (client,) = proxy.Emulator.State()["clients"]
        assert client["OverdraftLimit"] == "500.00"
        assert proxy.Balance2.GetClientPersons(100000, 0)[0]["INN"] == "7700000000"
        assert new_client(proxy) == 100001


def test_the_emulator_imports_nothing_of_django():
    code = (
        "import sys, balance_gateway.emulator; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'rest_framework', 'celery'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                            cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert result.stdout.strip() == "[]"
