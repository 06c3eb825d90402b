"""The API's contract beyond single endpoints: problem+json for every error under /api/ (unknown paths and methods
too), the JSON index, amount messages that name the real problem, and an OpenAPI schema that documents what the
API answers (pagination envelopes, problem+json errors with real examples, summaries and descriptions)."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from django.test import Client

from disbalance.openapi import ERRORS

pytestmark = pytest.mark.django_db

PAGINATED = {"customers_list", "agencies_list", "agencies_customers", "charges_list", "topups_list",
             "wallet_transactions", "events_list"}


def problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json", response["Content-Type"]
    body = response.json()
    assert body["code"] == code and body["status"] == status and body["type"].endswith("/" + code), body
    return body


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    import io

    out = io.StringIO()
    with django_db_blocker.unblock():
        call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


# --- problem+json everywhere under /api/ ----------------------------------------------------------------------

def test_unknown_path_under_api_is_problem_json_404(api):
    body = problem(api.get("/api/v1/nope"), 404, "not_found")
    assert "/api/v1/nope" in body["detail"]


def test_unknown_method_is_problem_json_405(api):
    response = api.delete("/api/v1/products")
    problem(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/products/", "/api/v1/customers/x/nope", "/api/",
                                  "/api", "/api/v2/customers", "/api/v1/holds/x/capture/extra"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_no_html_anywhere_under_api(api, settings, debug, path, method):
    settings.DEBUG = debug
    response = api.generic(method, path, "{}", content_type="application/json")
    problem(response, 404, "not_found")


def test_unauthenticated_unknown_path_is_still_problem_json():
    problem(Client().get("/api/v1/nope"), 404, "not_found")


@pytest.mark.parametrize("path", ["/", "/api/v1/"])
def test_index_is_json_with_links(path):
    response = Client().get(path)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert body["api"] == "http://testserver/api/v1/"
    assert body["schema"] == "http://testserver/api/schema/" and body["docs"] == "http://testserver/api/docs/"
    assert Client().get(body["schema"].removeprefix("http://testserver")).status_code == 200


def test_index_refuses_writes_with_problem_json():
    response = Client().post("/api/v1/", {})
    problem(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET, HEAD"


# --- amounts ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("amount", "message"), [
    ("10000000000000.00", "must not exceed 1000000000000.00"),
    ("1000000000000.01", "must not exceed 1000000000000.00"),
    (10000000000000, "must not exceed 1000000000000.00"),
    ("99999999999999999999999999999999", "must not exceed 1000000000000.00"),
    ("1.001", "must have at most 2 decimal places"),
    ("10000000000000.001", "must have at most 2 decimal places"),
    ("-5.00", "must be positive"),
    ("-99999999999999999999", "must be positive"),
    ("0", "must be greater than zero"),
    ("0.00", "must be greater than zero"),
    ("1e3", "must be a decimal string"),
    ("NaN", "must be a decimal string"),
    ("Infinity", "must be a decimal string"),
    ("12,50", "must be a decimal string"),
    ("", "must be a decimal string"),
    (12.5, "must be a decimal string"),
    (True, "must be a decimal string"),
    (None, "This field may not be null."),
    ({"value": "1.00"}, "must be a decimal string"),
])
def test_amount_errors_name_the_real_problem(api, active_customer, amount, message):
    from wallets.models import LedgerTransaction

    response = api.post(f"/api/v1/customers/{active_customer.external_id}/charges",
                        {"product": "placement", "amount": amount}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    body = problem(response, 400, "validation_error")
    assert len(body["errors"]["amount"]) == 1 and body["errors"]["amount"][0].startswith(message), body
    assert not LedgerTransaction.objects.filter(type="charge").exists()


@pytest.mark.parametrize("amount", ["1000000000000.00", 1000000000000, "0.01", " 7.5 "])
def test_amounts_at_the_edges_are_accepted(api, active_customer, amount):
    response = api.post(f"/api/v1/customers/{active_customer.external_id}/topups", {"amount": amount},
                        format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 201, response.content
    assert response.json()["amount"] in ("1000000000000.00", "0.01", "7.50")


# --- the schema ---------------------------------------------------------------------------------------------------

def test_every_operation_has_a_summary_a_description_and_described_responses(schema):
    missing = [(path, method, what) for path, method, op in operations(schema)
               for what in ("summary", "description", "operationId") if not op.get(what)]
    missing += [(path, method, status) for path, method, op in operations(schema)
                for status, response in op["responses"].items() if not response.get("description")]
    assert not missing


def test_every_component_and_field_is_described(schema):
    components = schema["components"]["schemas"]
    missing = [name for name, c in components.items() if not c.get("description") and "enum" not in c]
    missing += [f"{name}.{field}" for name, c in components.items()
                for field, prop in c.get("properties", {}).items() if not prop.get("description")]
    assert not missing


def test_every_paginated_list_documents_the_envelope_and_cursor_limit(schema):
    seen = set()
    for _path, _method, op in operations(schema):
        ok_schema = op["responses"]["200"]["content"]["application/json"]["schema"] if "200" in op["responses"] \
            else {}
        ref = ok_schema.get("$ref", "")
        if op["operationId"] not in PAGINATED:
            assert not ref.split("/")[-1].startswith("Paginated"), op["operationId"]
            continue
        seen.add(op["operationId"])
        component = schema["components"]["schemas"][ref.split("/")[-1]]
        assert set(component["properties"]) == {"next", "previous", "results"}, op["operationId"]
        assert component["properties"]["results"]["type"] == "array"
        nxt = component["properties"]["next"]
        assert nxt.get("nullable") is True or "null" in nxt.get("type", []), nxt  # OpenAPI 3.0 or 3.1
        params = {p["name"] for p in op["parameters"] if p["in"] == "query"}
        assert {"cursor", "limit"} <= params, op["operationId"]
        assert "404" in op["responses"], "a bad cursor is 404"
    assert seen == PAGINATED


def test_every_error_is_problem_json_with_an_example_per_code(schema):
    assert sorted(schema["components"]["schemas"]["Problem"]["required"]) == ["code", "detail", "status", "title",
                                                                            "type"]
    for path, method, op in operations(schema):
        errors = {status: r for status, r in op["responses"].items() if int(status) >= 400}
        assert {"400", "401", "429"} <= set(errors), (path, method)
        for status, response in errors.items():
            assert list(response["content"]) == ["application/problem+json"], (path, method, status)
            content = response["content"]["application/problem+json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
            examples = [e["value"] for e in content["examples"].values()]
            assert examples and all(e["status"] == int(status) and e["code"] in ERRORS for e in examples)
            for code in {e["code"] for e in examples}:
                assert f"`{code}`" in response["description"], (path, method, status, code)


def test_every_post_that_moves_money_requires_an_idempotency_key(schema):
    required = {op["operationId"] for _p, method, op in operations(schema) if method == "post"
                and any(p["name"] == "Idempotency-Key" and p.get("required") for p in op.get("parameters", []))}
    assert required == {"topups_create", "charges_create", "holds_create", "holds_capture", "holds_release",
                        "refunds_create"}


@pytest.mark.django_db(transaction=True)
def test_capture_and_release_without_a_key_are_400_and_change_nothing(api, active_customer, emulator, run_outbox,
                                                                       balance_live):
    from payments.models import Hold
    from tests.payments.test_money_flow import pay_topup

    pay_topup(api, emulator, run_outbox, "100.00")
    assert balance_live.wait_notifications_idle(timeout=10)
    hold = api.post(f"/api/v1/customers/{active_customer.external_id}/holds", {"product": "boost", "amount": "5"},
                    format="json", HTTP_IDEMPOTENCY_KEY="h1").json()
    for action in ("capture", "release"):
        body = problem(api.post(f"/api/v1/holds/{hold['id']}/{action}", {}, format="json"), 400,
                       "validation_error")
        assert body["errors"] == {"Idempotency-Key": ["This header is required."]}
    assert Hold.objects.get(pk=hold["id"]).status == "held"
    first = api.post(f"/api/v1/holds/{hold['id']}/capture", {}, format="json", HTTP_IDEMPOTENCY_KEY="c1")
    again = api.post(f"/api/v1/holds/{hold['id']}/capture", {}, format="json", HTTP_IDEMPOTENCY_KEY="c1")
    assert first.status_code == again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    # a closed hold: the documented `invalid_state` example is this answer (with this hold's id)
    from disbalance.openapi import problem_example

    late = api.post(f"/api/v1/holds/{hold['id']}/release", {}, format="json", HTTP_IDEMPOTENCY_KEY="r1")
    example = problem_example("invalid_state")
    assert late.json() == {**example, "detail": f"Hold {hold['id']} is captured."}
    assert example["detail"] == "Hold 0d87c23c-2ea0-4cda-b974-244cbc72f907 is captured."


def test_error_examples_are_what_the_api_answers(api, client, active_customer, emulator, run_outbox):
    """The documented examples are real answers: trigger each code the same way and compare the bodies."""
    from disbalance.openapi import NOT_FOUND, problem_example

    def same(response, code: str, **overrides: object) -> None:
        assert response.json() == {**problem_example(code), **overrides}, response.json()

    customer = f"/api/v1/customers/{active_customer.external_id}"
    same(api.post(f"{customer}/charges", {"product": "placement", "amount": "10000000000000.00"}, format="json",
                  HTTP_IDEMPOTENCY_KEY="e1"), "validation_error")
    same(client.get("/api/v1/products", HTTP_AUTHORIZATION="Bearer nope"), "unauthorized")
    same(api.post(f"{customer}/charges", {"product": "placement", "amount": "300.00"}, format="json",
                  HTTP_IDEMPOTENCY_KEY="e2"), "insufficient_funds")
    missing = api.get("/api/v1/customers/dealer:404")
    assert (missing.json()["title"], missing.json()["detail"]) == NOT_FOUND["customer"]
    hold_id = NOT_FOUND["hold"][1].split("'")[1]
    assert api.get(f"/api/v1/holds/{hold_id}").json()["detail"] == NOT_FOUND["hold"][1]
    assert api.get("/api/v1/customers?cursor=bad").json()["detail"] == NOT_FOUND["cursor"][1]
    api.post(f"{customer}/charges", {"product": "placement", "amount": "1.00"}, format="json",
             HTTP_IDEMPOTENCY_KEY="charge-1")
    same(api.post(f"{customer}/charges", {"product": "placement", "amount": "2.00"}, format="json",
                  HTTP_IDEMPOTENCY_KEY="charge-1"), "idempotency_key_reused")
    same(api.post(f"{customer}/charges", "x", content_type="text/plain", HTTP_IDEMPOTENCY_KEY="e3"),
         "unsupported_media_type")


def _json_schema(node, components):
    """OpenAPI 3.0 schema → JSON Schema: inline `$ref`s, turn `nullable` into a null alternative."""
    if isinstance(node, list):
        return [_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(components[node["$ref"].split("/")[-1]], components)
    out = {key: _json_schema(value, components) for key, value in node.items()
           if key not in ("nullable", "readOnly", "writeOnly", "example")}
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def test_every_documented_example_matches_its_response_schema(schema):
    import jsonschema

    components = schema["components"]["schemas"]
    checked = set()
    for path, method, op in operations(schema):
        for status, response in op["responses"].items():
            for media_type, content in response.get("content", {}).items():
                for name, example in content.get("examples", {}).items():
                    validator = jsonschema.Draft202012Validator(_json_schema(content["schema"], components),
                                                                format_checker=jsonschema.FormatChecker())
                    errors = [e.message for e in validator.iter_errors(example["value"])]
                    assert not errors, (path, method, status, media_type, name, errors)
                    checked.add((op["operationId"], status))
    successes = {(op["operationId"], status) for _p, _m, op in operations(schema)
                 for status, response in op["responses"].items() if int(status) < 300 and response.get("content")}
    assert successes - checked == set(), "success answers without a real example"
    assert len(checked) > 60


@pytest.mark.parametrize("debug", [True, False])
def test_an_unexpected_error_under_api_is_problem_json_not_html(api, settings, monkeypatch, debug):
    from payments import selectors

    settings.DEBUG = debug

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(selectors, "product_list", broken)
    api.raise_request_exception = False
    response = api.get("/api/v1/products")
    body = problem(response, 500, "internal_error")
    assert "boom" not in response.content.decode()
    assert body["detail"] == "An unexpected error occurred; it has been logged."


@pytest.mark.parametrize("debug", [True, False])
def test_a_bad_host_under_api_is_problem_json_not_html(settings, debug):
    settings.DEBUG = debug
    response = Client(HTTP_HOST="evil.example").get("/api/v1/products")
    problem(response, 400, "validation_error")


def test_html_outside_api_is_left_alone(client):
    response = client.get("/admin/")
    assert response.status_code == 302


def test_more_error_examples_are_what_the_api_answers(api, active_customer, admin_user, settings):
    """The examples that name an object are compared with that object's name put in."""
    import re
    from types import SimpleNamespace

    from disbalance.idempotency import request_fingerprint
    from disbalance.models import IdempotencyRecord
    from disbalance.openapi import problem_example
    from overdrafts.services import customer_block

    ext = active_customer.external_id
    customer = f"/api/v1/customers/{ext}"

    def same(response, code: str, **substitutions: str) -> None:
        expected = problem_example(code)
        for old, new in substitutions.items():
            expected["detail"] = expected["detail"].replace(old.replace("_", ":"), new)
        assert response.json() == expected, response.json()

    # registration not finished: a customer registered just now, its Balance work not run yet
    api.post("/api/v1/customers", {"external_id": "dealer:777", "kind": "individual", "name": "Ivan",
                                   "legal": {"lname": "Petrov", "fname": "Ivan"}}, format="json")
    same(api.post("/api/v1/customers/dealer:777/topups", {"amount": "10"}, format="json",
                  HTTP_IDEMPOTENCY_KEY="t1"), "customer_not_active")

    # a body over the limit
    big = api.generic("POST", f"{customer}/charges", "x" * (settings.MAX_REQUEST_BODY_BYTES + 1),
                      content_type="application/json", HTTP_IDEMPOTENCY_KEY="big")
    same(big, "payload_too_large")

    # the same key while the first request still runs
    body = {"product": "placement", "amount": "1.00"}
    path = f"{customer}/charges"
    IdempotencyRecord.objects.create(
        service=active_customer.service, key="charge-1", method="POST", path=path,
        request_hash=request_fingerprint(SimpleNamespace(data=body, method="POST", path=path)))
    same(api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="charge-1"), "idempotency_key_in_use")

    # blocked by support
    customer_block(customer=active_customer, reason="check", by=admin_user)
    same(api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="c2"), "customer_blocked", dealer_777=ext)

    # over the rate limit
    from django.core.cache import cache
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    original = settings.REST_FRAMEWORK
    settings.REST_FRAMEWORK = {**original, "DEFAULT_THROTTLE_RATES": {"service": "1/min"}}
    api_settings.reload()
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    cache.clear()  # the earlier requests of this test are not in the new bucket
    try:
        api.get("/api/v1/products")
        limited = api.get("/api/v1/products")
    finally:
        settings.REST_FRAMEWORK = original
        api_settings.reload()
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0, limited.headers
    answer = limited.json()
    example = problem_example("rate_limited")
    assert {**answer, "detail": re.sub(r"\d+", "N", answer["detail"])} == {
        **example, "detail": re.sub(r"\d+", "N", example["detail"])}
