"""`charge_target_get`: the charge endpoint's customer and product in one statement, the same rows as
`customer_get` and `product_get` (PostgreSQL and SQLite)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.exceptions import CustomerNotFound
from customers.selectors import customer_get
from payments.models import Product
from payments.selectors import charge_target_get, product_get


@pytest.mark.django_db
def test_the_same_customer_and_product_as_the_two_selectors(active_customer, products, service, other_service):
    with CaptureQueriesContext(connection) as queries:
        customer, product = charge_target_get(service=service, external_id=active_customer.external_id,
                                              product_code="boost")
    assert len(queries) == 1
    expected = customer_get(service=service, external_id=active_customer.external_id)
    assert (customer.pk, customer.external_id, customer.service_id, customer.agency_id) == (
        expected.pk, expected.external_id, expected.service_id, expected.agency_id)
    expected_product = product_get(service=service, code="boost")
    assert (product.pk, product.code, product.name, product.kind, product.service_id, product.is_active) == (
        expected_product.pk, "boost", expected_product.name, expected_product.kind, service.pk, True)
    # Any other field loads on first access, with its database value.
    assert customer.status == expected.status and product.balance_product_id == expected_product.balance_product_id

    for code in ("nope", None, 12, ["boost"]):  # no such product, or not a code at all: the customer alone
        assert charge_target_get(service=service, external_id=active_customer.external_id,
                                 product_code=code)[1] is None
    Product.objects.filter(pk=product.pk).update(is_active=False)
    assert charge_target_get(service=service, external_id=active_customer.external_id, product_code="boost")[1] is None
    for other, external_id in ((service, "dealer:none"), (other_service, active_customer.external_id)):
        with pytest.raises(CustomerNotFound):
            charge_target_get(service=other, external_id=external_id, product_code="boost")
