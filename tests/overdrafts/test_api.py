"""`GET /customers/{id}/overdraft` and the wallet's debt fields: shape, scoping, errors."""

from datetime import datetime
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tests.factories import CustomerFactory
from tests.overdrafts.conftest import grant

pytestmark = pytest.mark.django_db


def problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def test_a_customer_without_overdraft(api, service):
    CustomerFactory(service=service, external_id="dealer:1")
    assert api.get("/api/v1/customers/dealer:1/overdraft").json() == {
        "limit": "0.00", "granted_by_balance": "0.00", "spent": "0.00", "due_at": None, "overdue": False,
        "blocked": False,
    }
    wallet = api.get("/api/v1/customers/dealer:1/wallet").json()
    assert (wallet["overdraft_limit"], wallet["debt"], wallet["debt_due_at"], wallet["overdue"]) == \
        ("0.00", "0.00", None, False)


def test_debt_and_due_date_over_http(api, service, products, clock, settings):
    settings.OVERDRAFT_PAYMENT_TERM_DAYS = 10
    customer = CustomerFactory(service=service, external_id="dealer:1")
    grant(customer, "700.00", tid=1)
    from payments.services import charge_create

    charge_create(customer=customer, product=products["placement"], amount=Decimal("250.00"))
    body = api.get("/api/v1/customers/dealer:1/overdraft").json()
    assert (body["limit"], body["granted_by_balance"], body["spent"], body["overdue"]) == \
        ("700.00", "700.00", "250.00", False)
    due = datetime.fromisoformat(body["due_at"].replace("Z", "+00:00"))
    assert 9.9 < (due - clock()).total_seconds() / 86400 <= 10
    clock.advance(days=11)
    assert api.get("/api/v1/customers/dealer:1/overdraft").json()["overdue"] is True
    assert api.get("/api/v1/customers/dealer:1/wallet").json()["overdue"] is True


def test_unknown_other_service_and_no_token(api, other_service):
    problem(api.get("/api/v1/customers/nobody/overdraft"), 404, "not_found")
    CustomerFactory(service=other_service, external_id="dealer:other")
    problem(api.get("/api/v1/customers/dealer:other/overdraft"), 404, "not_found")
    problem(APIClient().get("/api/v1/customers/dealer:other/overdraft"), 401, "unauthorized")


def test_the_schema_documents_the_endpoint(api):
    schema = APIClient().get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/customers/{external_id}/overdraft"]["get"]
    assert operation["operationId"] == "overdraft_get"
    assert {"200", "404", "401"} <= set(operation["responses"])
