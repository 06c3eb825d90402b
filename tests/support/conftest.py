"""Fixtures of the support console tests: the groups, a support user and a billing admin, customers with agencies,
and a customer with an open mismatch made by sabotage in the emulator."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.db import transaction
from django.test import Client

from agencies.models import Contract
from customers.models import AgencyAssignment
from tests.factories import AgencyFactory, CustomerFactory

PASSWORD = "support-password-1"


@pytest.fixture(autouse=True)
def _balance_offline(settings):
    """Outbox work set off by an action goes nowhere unless a test starts the emulator (`balance` resets this)."""
    settings.BALANCE_URL = "http://127.0.0.1:9/xmlrpc"
    settings.BALANCE_CONNECT_TIMEOUT = 0.5


@pytest.fixture
def groups(db):
    call_command("setup_groups", verbosity=0)
    return {group.name: group for group in Group.objects.all()}


def make_staff(username: str, *group_names: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    user.groups.add(*Group.objects.filter(name__in=group_names))
    return User.objects.get(pk=user.pk)  # fresh: no permission cache


@pytest.fixture
def support_user(groups) -> User:
    return make_staff("support", "support")


@pytest.fixture
def billing_admin(groups) -> User:
    return make_staff("billing", "billing-admin")


def english_client() -> Client:
    """A browser asking for English: these tests read the console's English texts (the Russian console, the
    default, is tested in test_i18n.py and test_timeline.py)."""
    return Client(headers={"Accept-Language": "en"})


@pytest.fixture
def support_client(support_user) -> Client:
    client = english_client()
    client.force_login(support_user)
    return client


@pytest.fixture
def billing_client(billing_admin) -> Client:
    client = english_client()
    client.force_login(billing_admin)
    return client


def with_contract(agency, service):
    Contract.objects.create(agency=agency, balance_contract_id=agency.pk + 9000, number=f"C-{agency.pk}", active=True,
                            payment_type="prepaid", services=[service.balance_service_id])
    return agency


@pytest.fixture
def agency_a(service):
    return with_contract(AgencyFactory(service=service, external_id="agency:a", name="Alpha Media"), service)


@pytest.fixture
def agency_b(service):
    return with_contract(AgencyFactory(service=service, external_id="agency:b", name="Beta Ads"), service)


@pytest.fixture
def customer(service, agency_a):
    customer = CustomerFactory(service=service, external_id="dealer:20101", name="Demo Motors LLC", agency=agency_a,
                               inn="7709876543", balance_client_id=3_000_101)
    AgencyAssignment.objects.create(customer=customer, agency=agency_a, since=customer.created_at,
                                    changed_by=f"service:{service.slug}", reason="registration")
    return customer


@pytest.fixture
def mismatched(service, balance, emulator, run_outbox):
    """A customer registered in the emulator whose wallet order got another product behind billing's back,
    and the reconciliation run (autofix off) that recorded it: returns (customer, order, mismatch)."""
    from agencies.services import AgencyData, agency_register
    from customers.services import CustomerData, customer_register
    from payments.services import orders_ensure
    from reconciliation.models import Mismatch
    from reconciliation.run import reconcile

    other = agency_register(service=service, external_id="agency:other", data=AgencyData(
        name="Other Agency LLC", legal={"inn": "7700000009", "legal_address": "Moscow", "kpp": "770101001",
                                        "long_name": "Limited Liability Company", "postal_address": "Moscow",
                                        "postcode": "101000"})).agency
    customer = customer_register(service=service, external_id="dealer:20101", data=CustomerData(
        kind="company", name="Demo Motors LLC", legal={"inn": "7709876543", "legal_address": "Moscow, Lenina 2",
                                                       "kpp": "770101001", "long_name": "Limited Liability Company",
                                                       "postal_address": "Moscow, Lenina 2", "postcode": "101000"},
    )).customer
    run_outbox()
    with transaction.atomic():
        order = orders_ensure(customer=customer, payer=None)
    run_outbox()
    other.refresh_from_db()
    customer.refresh_from_db()
    order.refresh_from_db()
    assert customer.status == "active" and order.sync_status == "synced", (customer.status_reason, order.sync_error)
    # A change Balance lets billing read back (an order's owner cannot be: each run re-asserts it instead).
    emulator.update_order(service.balance_service_id, order.pk, {"ProductID": 503999})
    reconcile(customer=customer, autofix=False)
    mismatch = Mismatch.objects.get(status="open", order=order)
    assert mismatch.kind == "order_ownership" and mismatch.details.get("fix"), mismatch.details
    return customer, order, mismatch
