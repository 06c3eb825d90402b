"""Customers API: registration contract, validation, PATCH, lists, and what bad input changes (nothing)."""

import json

import pytest

from customers.models import Customer
from disbalance.models import OutboxOperation

pytestmark = pytest.mark.django_db

COMPANY = {
    "external_id": "dealer:20101",
    "kind": "company",
    "name": "Motors LLC",
    "email": "m@example.com",
    "legal": {"inn": "7701234567", "kpp": "770101001", "long_name": "Limited Liability Company Motors",
              "legal_address": "Moscow, Tverskaya 1", "postal_address": "Moscow, Tverskaya 1", "postcode": "125009"},
    "user_uids": [5001],
}
PERSON = {"external_id": "user:1", "kind": "individual", "name": "Ivan Petrov",
          "legal": {"lname": "Petrov", "fname": "Ivan"}}


def problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json"), response["Content-Type"]
    assert response.json()["code"] == code
    return response.json()


def test_register_returns_201_then_200_for_the_same_body(api):
    first = api.post("/api/v1/customers", COMPANY, format="json")
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["external_id"] == "dealer:20101" and body["status"] == "registering"
    assert body["legal"]["inn"] == "7701234567" and body["agency"] is None and body["blocked"] is False
    assert body["balance"] == {"client_id": None, "person_id": None}
    second = api.post("/api/v1/customers", COMPANY, format="json")
    assert second.status_code == 200
    assert Customer.objects.count() == 1
    assert OutboxOperation.objects.filter(kind="customer.sync").count() == 1


def test_register_with_other_data_is_409(api):
    api.post("/api/v1/customers", COMPANY, format="json")
    body = problem(api.post("/api/v1/customers", {**COMPANY, "name": "Other"}, format="json"), 409, "invalid_state")
    assert "name" in body["detail"]


def test_get_and_patch(api):
    api.post("/api/v1/customers", PERSON, format="json")
    got = api.get("/api/v1/customers/user:1")
    assert got.status_code == 200 and got.json()["kind"] == "individual"
    patched = api.patch("/api/v1/customers/user:1", {"name": "Ivan P.", "legal": {"mname": "Ivanovich"}},
                        format="json")
    assert patched.status_code == 200, patched.content
    assert patched.json()["name"] == "Ivan P." and patched.json()["legal"]["mname"] == "Ivanovich"
    assert patched.json()["legal"]["lname"] == "Petrov"


def test_patch_cannot_clear_required_legal_fields(api):
    api.post("/api/v1/customers", COMPANY, format="json")
    problem(api.patch("/api/v1/customers/dealer:20101", {"legal": {"inn": ""}}, format="json"),
            400, "validation_error")
    assert Customer.objects.get().inn == "7701234567"


def test_patch_ignores_read_only_fields(api):
    api.post("/api/v1/customers", COMPANY, format="json")
    response = api.patch("/api/v1/customers/dealer:20101",
                         {"status": "active", "balance": {"client_id": 1}, "external_id": "x", "blocked": True},
                         format="json")
    assert response.status_code == 200
    customer = Customer.objects.get()
    assert customer.status == "registering" and customer.balance_client_id is None
    assert customer.external_id == "dealer:20101" and customer.blocked is False


def test_list_filters_and_pagination(api):
    for i in range(5):
        api.post("/api/v1/customers", {**PERSON, "external_id": f"user:{i}", "name": f"Person {i}"}, format="json")
    Customer.objects.filter(external_id="user:3").update(status="active")
    page = api.get("/api/v1/customers?limit=2").json()
    assert [c["external_id"] for c in page["results"]] == ["user:4", "user:3"]
    assert page["next"]
    rest = api.get(page["next"]).json()
    assert [c["external_id"] for c in rest["results"]] == ["user:2", "user:1"]
    assert [c["external_id"] for c in api.get("/api/v1/customers?status=active").json()["results"]] == ["user:3"]
    assert len(api.get("/api/v1/customers?q=Person 2").json()["results"]) == 1
    problem(api.get("/api/v1/customers?status=bogus"), 400, "validation_error")


@pytest.mark.parametrize("limit", ["0", "501", "-1", "abc", "2.5", "", "\u0663"])
def test_a_limit_outside_1_to_500_is_a_400_not_a_silent_default(api, limit):
    data = problem(api.get("/api/v1/customers", {"limit": limit}), 400, "validation_error")
    assert "limit" in data["errors"], data
    problem(api.get("/api/v1/events", {"limit": limit}), 400, "validation_error")


def test_the_largest_limit_is_served(api):
    assert api.get("/api/v1/customers?limit=500").status_code == 200


def test_unknown_customer_is_404(api):
    problem(api.get("/api/v1/customers/nope"), 404, "not_found")
    problem(api.patch("/api/v1/customers/nope", {"name": "x"}, format="json"), 404, "not_found")


def test_unknown_agency_is_400(api):
    body = problem(api.post("/api/v1/customers", {**COMPANY, "agency": "agency:404"}, format="json"),
                   400, "validation_error")
    assert "agency" in body["errors"]
    assert not Customer.objects.exists()


BAD_BODIES = [
    ({}, "external_id"),
    ({**COMPANY, "external_id": ""}, "external_id"),
    ({**COMPANY, "external_id": "x" * 129}, "external_id"),
    ({**COMPANY, "external_id": "has space"}, "external_id"),
    ({**COMPANY, "external_id": "dealer/1"}, "external_id"),
    ({**COMPANY, "kind": "alien"}, "kind"),
    ({**COMPANY, "name": 12}, None),
    ({**COMPANY, "name": ""}, "name"),
    ({**COMPANY, "name": "x" * 256}, "name"),
    ({**COMPANY, "name": "bad\u0000nul"}, None),
    ({**COMPANY, "legal": {"inn": "123"}}, "legal.inn"),
    ({**COMPANY, "legal": {"inn": "7701234567"}}, "legal.legal_address"),
    ({**PERSON, "legal": {}}, "legal.lname"),
    ({**COMPANY, "legal": "string"}, "legal.non_field_errors"),
    ({**COMPANY, "user_uids": ["a"]}, "user_uids"),
    ({**COMPANY, "user_uids": [-1]}, "user_uids"),
    ({**COMPANY, "user_uids": [2**70]}, "user_uids"),
    ({**COMPANY, "email": "not-an-email"}, "email"),
    ([COMPANY], None),
    ("just a string", None),
]


def test_a_company_needs_what_balance_needs_for_its_person(api):
    """CreatePerson (`ur`) refuses a company without KPP, full name, postal address or postcode: a 400 names
    every missing field, and nothing is created."""
    body = {**COMPANY, "legal": {"inn": "7701234567", "legal_address": "Moscow"}}
    data = problem(api.post("/api/v1/customers", body, format="json"), 400, "validation_error")
    assert {"legal.kpp", "legal.long_name", "legal.postal_address", "legal.postcode"} <= set(data["errors"]), data
    assert not Customer.objects.exists()


def test_an_agency_needs_what_balance_needs_for_its_person(api):
    body = {"external_id": "agency:1", "name": "Agency", "legal": {"inn": "7701234567", "legal_address": "Moscow"}}
    data = problem(api.post("/api/v1/agencies", body, format="json"), 400, "validation_error")
    assert {"legal.kpp", "legal.long_name", "legal.postal_address", "legal.postcode"} <= set(data["errors"]), data


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_bodies_are_400_and_create_nothing(api, body, field):
    response = api.post("/api/v1/customers", body, format="json")
    data = problem(response, 400, "validation_error")
    if field:
        assert any(key == field or key.startswith(field + ".") for key in data["errors"]), data
    assert not Customer.objects.exists()
    assert not OutboxOperation.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"external_id": "a",',
        b"\xff\xfe\x00garbage",
        b'{"external_id": "a", "kind": "company", "name": NaN}',
        b'{"external_id": "\\ud800", "kind": "company", "name": "x"}',
        b'{"name": "' + b"[" * 5000 + b'"}',
        b"[" * 100000 + b"]" * 100000,
        b'{"a":' * 1000 + b"1" + b"}" * 1000,
    ],
)
def test_malformed_json_is_400(api, raw):
    response = api.generic("POST", "/api/v1/customers", raw, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "validation_error"
    assert not Customer.objects.exists()


def test_wrong_content_type_is_415(api):
    response = api.generic("POST", "/api/v1/customers", "external_id=x",
                           content_type="application/x-www-form-urlencoded")
    problem(response, 415, "unsupported_media_type")
    response = api.generic("POST", "/api/v1/customers", json.dumps(COMPANY), content_type="text/plain")
    problem(response, 415, "unsupported_media_type")
    assert not Customer.objects.exists()


def test_ten_megabyte_body_is_413(api):
    body = json.dumps({**COMPANY, "name": "x" * (10 * 1024 * 1024)})
    response = api.generic("POST", "/api/v1/customers", body, content_type="application/json")
    problem(response, 413, "payload_too_large")
    assert not Customer.objects.exists()


def test_unicode_names_round_trip(api):
    body = {**PERSON, "name": "Ёжиков Пётр 🚗 \u200b", "legal": {"lname": "Ёжиков", "fname": "Пётр"}}
    response = api.post("/api/v1/customers", body, format="json")
    assert response.status_code == 201
    assert api.get("/api/v1/customers/user:1").json()["name"] == "Ёжиков Пётр 🚗 \u200b"


def test_method_not_allowed_is_problem(api):
    problem(api.delete("/api/v1/customers/x"), 405, "method_not_allowed")


def test_tenant_isolation_for_customers(api, other_api):
    api.post("/api/v1/customers", COMPANY, format="json")
    problem(other_api.get("/api/v1/customers/dealer:20101"), 404, "not_found")
    problem(other_api.patch("/api/v1/customers/dealer:20101", {"name": "x"}, format="json"), 404, "not_found")
    assert other_api.get("/api/v1/customers").json()["results"] == []
    # The other service may register its own customer with the same external id.
    assert other_api.post("/api/v1/customers", COMPANY, format="json").status_code == 201
    assert Customer.objects.count() == 2


@pytest.mark.parametrize("char", ["\x01", "\x08", "\x0b", "\x1f", "\ufffe"])
def test_characters_xml_cannot_carry_are_refused_before_they_reach_balance(api, char):
    """A name Balance's XML-RPC could not carry would fail every CreateClient for ever: a 400 naming the field
    instead, and nothing created. Tab, newline and carriage return are fine."""
    data = problem(api.post("/api/v1/customers", {**PERSON, "name": f"Ivan{char}Petrov"}, format="json"),
                   400, "validation_error")
    assert "name" in data["errors"], data
    data = problem(api.post("/api/v1/customers", {**COMPANY, "legal": {**COMPANY["legal"], "long_name": f"LLC{char}"}},
                            format="json"), 400, "validation_error")
    assert "legal.long_name" in data["errors"], data
    assert not Customer.objects.exists()
    assert api.post("/api/v1/customers", {**PERSON, "name": "Ivan\tPetrov\r\n"}, format="json").status_code == 201
