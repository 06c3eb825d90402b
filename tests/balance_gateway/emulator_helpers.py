"""Helpers for the emulator's tests: version-2 calls made the way a client of the real Balance makes them."""

from __future__ import annotations

import datetime
import re
import xmlrpc.client
import zoneinfo
from typing import Any

import pytest

SERVICE = 7
UID = 1120000000012345  # a Passport-sized operator uid: beyond int32, so it travels as a digit string
OP = str(UID)
SHOWS = 503162  # a product sold in Shows at 30.00 each (set up by `priced`)
MONEY = 503000  # a product without a catalogue entry: Money at 1.00
UR = {"type": "ur", "name": "Romashka", "longname": "OOO Romashka", "phone": "+74950000000", "email": "a@r.ru",
      "postcode": "101000", "postaddress": "Moscow, 1", "legaladdress": "Moscow, 1", "inn": "7700000000",
      "kpp": "770001001"}  # fmt: skip
PH = {"type": "ph", "lname": "Ivanov", "fname": "Ivan", "phone": "+74950000001", "email": "i@i.ru"}


def fault_code(excinfo: pytest.ExceptionInfo) -> str:
    match = re.search(r"<code>(\w+)</code>", excinfo.value.faultString)
    assert match, excinfo.value.faultString
    return match[1]


def moscow_now(minutes: int = 0) -> datetime.datetime:
    now = datetime.datetime.now(zoneinfo.ZoneInfo("Europe/Moscow")).replace(tzinfo=None, microsecond=0)
    return now + datetime.timedelta(minutes=minutes, seconds=-1)


def new_client(rpc: Any, name: str = "Dealer", *, agency: bool = False, **extra: Any) -> int:
    params = {"NAME": name, "EMAIL": "d@example.com", "PHONE": "+70000000000", "REGION_ID": 225,
              "IS_AGENCY": int(agency), **extra}  # fmt: skip
    code, message, client_id = rpc.Balance2.CreateClient(OP, params)
    assert (code, message) == (0, "SUCCESS")
    return client_id


def new_agency(rpc: Any, payment_type: str = "prepaid", credit_limit: str = "0.00") -> tuple[int, int]:
    agency_id = new_client(rpc, "Agency", agency=True)
    contract_id = rpc.Emulator.CreateContract(
        agency_id, {"payment_type": payment_type, "credit_limit": credit_limit, "services": [SERVICE]}
    )
    return agency_id, contract_id


def order(soid: Any, client_id: int, *, product: int = MONEY, agency: int = 0, group: Any = None,
          contract: int = 0, **extra: Any) -> dict:  # fmt: skip
    item = {"ServiceID": SERVICE, "ServiceOrderID": str(soid), "ProductID": product, "ClientID": client_id, **extra}
    if agency:
        item["AgencyID"] = agency
    if group:
        item["GroupServiceOrderID"] = str(group)
    if contract:
        item["ContractID"] = contract
    return item


def orders(rpc: Any, *items: dict) -> list:
    return rpc.Balance2.CreateOrUpdateOrdersBatch(OP, list(items))


def info(rpc: Any, soid: Any) -> dict:
    (found,) = rpc.Balance2.GetOrdersInfo([{"ServiceID": SERVICE, "ServiceOrderID": str(soid)}])
    return found


def state_order(rpc: Any, soid: Any) -> dict:
    return next(o for o in rpc.Emulator.State()["orders"] if o["ServiceOrderID"] == str(soid))


def pay(rpc: Any, payer: int, soid: Any, money: str) -> int:
    request = rpc.Balance2.CreateRequest2(
        OP, payer, [{"ServiceID": SERVICE, "ServiceOrderID": str(soid), "Qty": money}], {"QtyIsAmount": 1}
    )
    assert rpc.Emulator.PayRequest(request["RequestID"])[:2] == [0, "SUCCESS"]
    return request["RequestID"]


def spend(rpc: Any, soid: Any, qty: str, unit: str = "Money", **extra: Any) -> int:
    """Report cumulative completion and apply it now; returns the item's 1 or 0."""
    item = {"ServiceID": SERVICE, "ServiceOrderID": str(soid), "dt": moscow_now(), "stop": 0, unit: qty, **extra}
    answer = rpc.Balance2.UpdateCampaigns([item])
    rpc.Emulator.ApplyPending()
    return answer[str(SERVICE)][str(soid)]


def priced(rpc: Any) -> None:
    rpc.Emulator.SetProduct(SHOWS, {"unit": "Shows", "price": "30.00"})


def fault_of(call: Any) -> tuple[str, str]:
    with pytest.raises(xmlrpc.client.Fault) as excinfo:
        call()
    return fault_code(excinfo), excinfo.value.faultString
