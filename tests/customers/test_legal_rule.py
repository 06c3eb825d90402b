"""The company/individual legal-details rule lives in the service: callers other than the API get it too."""

from __future__ import annotations

import pytest

from customers.services import CustomerData, customer_register, customer_update
from disbalance.exceptions import ValidationFailed
from disbalance.models import OutboxOperation

pytestmark = pytest.mark.django_db

COMPANY_LEGAL = {"inn": "7700000011", "kpp": "770001001", "long_name": "Motors Limited Liability Company",
                 "legal_address": "Moscow", "postal_address": "Moscow", "postcode": "101000"}


def test_a_direct_update_cannot_blank_what_balance_needs(service):
    customer = customer_register(service=service, external_id="dealer:1", data=CustomerData(
        kind="company", name="Motors", legal=COMPANY_LEGAL)).customer
    operations = OutboxOperation.objects.count()
    with pytest.raises(ValidationFailed) as refused:
        customer_update(customer=customer, changes={"legal": {"inn": ""}})
    assert refused.value.extra["errors"] == {"legal.inn": ["Required for a company."]}
    customer.refresh_from_db()
    assert customer.inn == "7700000011" and OutboxOperation.objects.count() == operations


def test_a_partial_legal_change_is_merged_into_the_stored_details(service):
    customer = customer_register(service=service, external_id="dealer:2", data=CustomerData(
        kind="company", name="Motors", legal=COMPANY_LEGAL)).customer
    customer_update(customer=customer, changes={"legal": {"kpp": "770002002"}})
    customer.refresh_from_db()
    assert (customer.inn, customer.legal_address, customer.kpp) == ("7700000011", "Moscow", "770002002")


def test_a_direct_registration_of_a_company_needs_what_balance_needs_for_its_person(service):
    with pytest.raises(ValidationFailed) as refused:
        customer_register(service=service, external_id="dealer:4", data=CustomerData(
            kind="company", name="Motors", legal={"inn": "7700000011", "legal_address": "Moscow"}))
    assert set(refused.value.extra["errors"]) == {"legal.kpp", "legal.long_name", "legal.postal_address",
                                                  "legal.postcode"}


def test_a_direct_registration_needs_what_balance_needs(service):
    with pytest.raises(ValidationFailed) as refused:
        customer_register(service=service, external_id="dealer:3", data=CustomerData(kind="individual", name="Ivan",
                                                                                      legal={"lname": "Petrov"}))
    assert refused.value.extra["errors"] == {"legal.fname": ["Required for an individual."]}
