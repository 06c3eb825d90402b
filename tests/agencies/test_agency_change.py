"""Agency change over HTTP with the emulator: every order's completion is the spend made while its payer was in
force, no unpaid completion, each payer's money stays its own, and the history lists every change."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from agencies.models import Agency
from agencies.services import agency_contracts_refresh
from customers.models import AgencyAssignment
from payments.models import BalanceOrder, TopUp
from tests.customers.test_api import COMPANY
from tests.payments.conftest import post

CUSTOMER = "/api/v1/customers/dealer:20101"


def agency_body(external_id, inn):
    return {"external_id": external_id, "name": f"Agency {external_id}",
            "legal": {"inn": inn, "legal_address": "Moscow", "kpp": "770101001",
                      "long_name": "Limited Liability Company", "postal_address": "Moscow", "postcode": "101000"}}


def make_agency_with_contract(api, emulator, run_outbox, external_id, inn):
    assert api.post("/api/v1/agencies", agency_body(external_id, inn), format="json").status_code == 201
    run_outbox()
    agency = Agency.objects.get(external_id=external_id)
    emulator.create_contract(agency.balance_client_id, payment_type="prepaid", services=[7])
    agency_contracts_refresh(agency=agency)
    return agency


def pay(api, emulator, run_outbox, balance_live, amount):
    topup = post(api, f"{CUSTOMER}/topups", {"amount": amount}).json()
    run_outbox()
    emulator.pay_request(TopUp.objects.get(pk=topup["id"]).balance_request_id)
    assert balance_live.wait_notifications_idle(timeout=10)
    assert TopUp.objects.get(pk=topup["id"]).status == "succeeded"


def charge(api, amount):
    response = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": amount})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_a_then_b_then_none_then_a(api, emulator, run_outbox, balance_live, products):
    agency_a = make_agency_with_contract(api, emulator, run_outbox, "agency:a", "7700000001")
    agency_b = make_agency_with_contract(api, emulator, run_outbox, "agency:b", "7700000002")
    assert api.post("/api/v1/customers", {**COMPANY, "agency": "agency:a"}, format="json").status_code == 201
    run_outbox()

    pay(api, emulator, run_outbox, balance_live, "1000.00")
    assert charge(api, "100.00")["payer"] == "agency:a"

    changed = api.put(f"{CUSTOMER}/agency", {"agency": "agency:b", "reason": "moved to B"}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["agency"] == "agency:b" and changed.json()["since"]
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert wallet["payer"] == "agency:b" and wallet["balance"] == "0.00"
    assert wallet["other_payers"] == [{"payer": "agency:a", "balance": "900.00"}]
    # Agency A's money is never spent under B.
    refused = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"})
    assert refused.status_code == 402
    pay(api, emulator, run_outbox, balance_live, "500.00")
    assert charge(api, "200.00")["payer"] == "agency:b"

    assert api.put(f"{CUSTOMER}/agency", {"agency": None, "reason": "direct now"}, format="json").status_code == 200
    pay(api, emulator, run_outbox, balance_live, "300.00")
    assert charge(api, "50.00")["payer"] is None

    back = api.put(f"{CUSTOMER}/agency", {"agency": "agency:a", "reason": "back to A"}, format="json")
    assert back.status_code == 200
    assert charge(api, "25.00")["payer"] == "agency:a"

    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert (wallet["payer"], wallet["balance"]) == ("agency:a", "875.00")
    assert sorted((p["payer"] or "", p["balance"]) for p in wallet["other_payers"]) == [
        ("", "250.00"), ("agency:b", "300.00")]

    run_outbox()
    call_command("run_periodic", "spend_report")
    state = {o["ServiceOrderID"]: o for o in emulator.state()["orders"]}
    expected = {agency_a.pk: Decimal("125.00"), agency_b.pk: Decimal("200.00"), None: Decimal("50.00")}
    children = BalanceOrder.objects.filter(kind="child").select_related("payer_agency", "customer")
    assert children.count() == 3
    for order in children:
        balance_order = state[str(order.pk)]
        assert Decimal(balance_order["CompletionQty"]) == expected[order.payer_agency_id], order.key
        agency_client = order.payer_agency.balance_client_id if order.payer_agency else 0
        assert int(balance_order["AgencyID"] or 0) == agency_client
        assert int(balance_order["ClientID"]) == order.customer.balance_client_id
    assert all(Decimal(o.get("UnpaidQty") or "0") == 0 for o in state.values())

    history = api.get(f"{CUSTOMER}/agency-history").json()
    assert [(h["agency"], h["reason"], h["changed_by"]) for h in history] == [
        ("agency:a", "back to A", "service:autoru"),
        (None, "direct now", "service:autoru"),
        ("agency:b", "moved to B", "service:autoru"),
        ("agency:a", "registration", "service:autoru"),
    ]
    assert history[0]["until"] is None and all(h["until"] for h in history[1:])
    assert AgencyAssignment.objects.filter(until__isnull=True).count() == 1
    call_command("verify_ledger")


@pytest.mark.django_db
def test_agency_without_active_contract_is_refused(api, emulator, run_outbox, products):
    assert api.post("/api/v1/agencies", agency_body("agency:x", "7700000003"), format="json").status_code == 201
    run_outbox()
    assert api.post("/api/v1/customers", COMPANY, format="json").status_code == 201
    run_outbox()
    response = api.put(f"{CUSTOMER}/agency", {"agency": "agency:x"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "invalid_state"
    assert api.get(CUSTOMER).json()["agency"] is None
    assert AgencyAssignment.objects.count() == 1


@pytest.mark.django_db
def test_agency_change_validation(api, other_api, emulator, run_outbox):
    assert api.post("/api/v1/customers", COMPANY, format="json").status_code == 201
    assert api.put(f"{CUSTOMER}/agency", {"agency": "agency:404"}, format="json").status_code == 400
    assert api.put(f"{CUSTOMER}/agency", {}, format="json").status_code == 400
    assert api.put(f"{CUSTOMER}/agency", {"agency": 12}, format="json").status_code == 400
    assert other_api.put(f"{CUSTOMER}/agency", {"agency": None}, format="json").status_code == 404
    same = api.put(f"{CUSTOMER}/agency", {"agency": None}, format="json")
    assert same.status_code == 200 and same.json()["agency"] is None
    assert AgencyAssignment.objects.count() == 1
