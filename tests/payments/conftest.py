import pytest

from customers.models import Customer
from payments.services import product_create
from tests.customers.test_api import COMPANY


@pytest.fixture
def products(service):
    placement = product_create(service=service, code="placement", name="Placement", kind="placement",
                               balance_product_id=503162).product
    boost = product_create(service=service, code="boost", name="Boost", kind="vas", balance_product_id=503163).product
    return {"placement": placement, "boost": boost}


@pytest.fixture
def active_customer(api, emulator, run_outbox, products) -> Customer:
    """A customer registered in the emulator (status active)."""
    assert api.post("/api/v1/customers", COMPANY, format="json").status_code == 201
    run_outbox()
    customer = Customer.objects.get(external_id=COMPANY["external_id"])
    assert customer.status == "active", customer.status_reason
    return customer


def post(api, path, body=None, key=None):
    import uuid

    return api.post(path, body or {}, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))
