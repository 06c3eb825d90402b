"""Fixtures of the overdraft tests: a test clock, staff users with the support permissions, agencies with
contracts in the emulator, and small helpers over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import transaction

from agencies.models import Agency
from agencies.services import agency_contracts_refresh
from overdrafts.services import BalanceOverdraft, overdraft_apply_balance_params
from payments.models import TopUp
from tests.payments.conftest import post
from wallets import services as wallet_services

CUSTOMER = "/api/v1/customers/dealer:20101"
SUPPORT_PERMS = ["view_overdraft", "view_historicaloverdraft", "view_limitoverride", "add_limitoverride",
                 "change_limitoverride", "view_block", "add_block", "change_block", "view_agencycredit"]


class Clock:
    """`django.utils.timezone.now` = real time + an offset that tests move forward (time keeps flowing)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@pytest.fixture
def clock():
    clock = Clock()
    with mock.patch("django.utils.timezone.now", clock):
        yield clock


def make_staff(django_user_model, username, perms):
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="overdrafts", codename__in=perms))
    return django_user_model.objects.get(pk=user.pk)  # a fresh object: permissions are cached per instance


@pytest.fixture
def support_user(django_user_model):
    return make_staff(django_user_model, "support-anna", SUPPORT_PERMS)


@pytest.fixture
def billing_admin(django_user_model):
    return make_staff(django_user_model, "billing-boris", [*SUPPORT_PERMS, "raise_limit"])


def grant(customer, limit, *, tid=None, banned=False):
    """Store an overdraft as Balance would report it (what NotifyClient2 / the pull do)."""
    params = BalanceOverdraft(limit=Decimal(limit), spent=Decimal("0.00"), min_payment_term=None, banned=banned,
                              currency="RUB")
    return overdraft_apply_balance_params(customer_id=customer.pk, params=params, tid=tid)


def fund(customer, amount, payer=None):
    with transaction.atomic():
        wallet_services.wallet_credit_topup(customer=customer, payer_agency=payer, amount=Decimal(amount))


def charge(api, amount, customer=CUSTOMER, product="placement"):
    return post(api, f"{customer}/charges", {"product": product, "amount": amount})


def pay_topup(api, emulator, run_outbox, balance_live, amount, customer=CUSTOMER):
    response = post(api, f"{customer}/topups", {"amount": amount})
    assert response.status_code == 201, response.content
    run_outbox()
    topup = TopUp.objects.get(pk=response.json()["id"])
    assert topup.balance_request_id, topup.status_reason
    emulator.pay_request(topup.balance_request_id)
    assert balance_live.wait_notifications_idle(timeout=10)
    topup.refresh_from_db()
    assert topup.status == "succeeded"
    return topup


def agency_with_contract(api, emulator, run_outbox, external_id="agency:1", inn="7700000001",
                         payment_type="postpaid", credit_limit="10000.00"):
    body = {"external_id": external_id, "name": f"Agency {external_id}",
            "legal": {"inn": inn, "legal_address": "Moscow", "kpp": "770101001",
                      "long_name": "Limited Liability Company", "postal_address": "Moscow", "postcode": "101000"}}
    assert api.post("/api/v1/agencies", body, format="json").status_code == 201
    run_outbox()
    agency = Agency.objects.get(external_id=external_id)
    assert agency.balance_client_id, agency.status_reason
    emulator.create_contract(agency.balance_client_id, payment_type=payment_type, credit_limit=Decimal(credit_limit),
                             services=[7])
    agency_contracts_refresh(agency=agency)
    return agency


def register(api, run_outbox, external_id, agency=None, inn="7701234567"):
    body = {"external_id": external_id, "kind": "company", "name": f"Dealer {external_id}",
            "legal": {"inn": inn, "legal_address": "Moscow, Tverskaya 1", "kpp": "770101001",
                      "long_name": "Limited Liability Company", "postal_address": "Moscow, Tverskaya 1",
                      "postcode": "101000"}}
    if agency:
        body["agency"] = agency
    response = api.post("/api/v1/customers", body, format="json")
    assert response.status_code == 201, response.content
    run_outbox()
    from customers.models import Customer

    customer = Customer.objects.get(external_id=external_id)
    assert customer.status == "active", customer.status_reason
    return customer


def verify_ledger_clean():
    call_command("verify_ledger")  # SystemExit on any difference
