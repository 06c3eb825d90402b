"""Mass assignment: read-only fields in any body under /api/v1/ are ignored or rejected, never applied.

Every POST/PUT/PATCH the router has is sent a valid body plus every read-only field (`status`, `status_reason`,
`balance`, `blocked`, `id`, `payer`, `created_at`, `refunded`, `captured`, `customer`, `service`, ...) with
recognisable hostile values. Then the database is checked, not the response: no row the request created or changed
carries a hostile value, and the route's own object is exactly what the legitimate fields make of it.
A new write endpoint fails `test_every_write_endpoint_has_a_mass_assignment_case` until it has a case in `WRITES`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from agencies.models import Agency
from customers.models import Customer
from disbalance.services import service_create
from payments.models import Charge, Hold, Refund, TopUp
from tests.factories import CustomerFactory
from tests.security.support import Tenant, agency_body, api_routes, call, company, db_snapshot, make_tenant
from tests.security.support import snapshot_diff as diff

pytestmark = pytest.mark.django_db

MARKER = "pwned-by-mass-assignment"
HOSTILE_ID = "00000000-0000-4000-8000-00000000beef"
HOSTILE_TIME = "2001-02-03T04:05:06Z"
HOSTILE_AMOUNTS = {Decimal("987654.32"), Decimal("876.54")}
HOSTILE_BALANCE_IDS = {424242, 434343}
VICTIM = "alpha:victim"


@dataclass(frozen=True)
class Write:
    """How to call one write endpoint legitimately, which status it must not be able to set, and what its own
    object must look like afterwards."""

    body: Callable[[Tenant], dict]
    status: str
    check: Callable[[Tenant, Any, dict], None]
    money_balance: bool = True  # send `balance` as an amount (wallet-like) rather than the customer's Balance ids


def _wallet(t: Tenant) -> tuple[str, str]:
    body = t.api.get(f"/api/v1/customers/{t.customer.external_id}/wallet").json()
    return body["balance"], body["held"]


def _created(model, response):
    return model.objects.get(pk=response.json()["id"])


def _customer_untouched(t: Tenant, response: Any, before: dict) -> None:
    customer = Customer.objects.get(pk=t.customer.pk)
    assert (customer.status, customer.status_reason, customer.blocked, customer.external_id, customer.kind) == \
        ("active", "", False, t.customer.external_id, t.customer.kind)
    assert (customer.balance_client_id, customer.balance_person_id) == \
        (t.customer.balance_client_id, t.customer.balance_person_id)
    assert customer.created_at == t.customer.created_at and customer.service_id == t.service.pk
    assert customer.agency_id is None
    assert _wallet(t) == before["wallet"]


def _new_customer(t: Tenant, response: Any, before: dict) -> None:
    customer = Customer.objects.get(service=t.service, external_id="alpha:new-1")
    assert (customer.status, customer.status_reason, customer.blocked, customer.agency_id) == \
        ("registering", "", False, None)
    assert (customer.balance_client_id, customer.balance_person_id) == (None, None)
    assert timezone.now() - customer.created_at < dt.timedelta(minutes=5)


def _new_agency(t: Tenant, response: Any, before: dict) -> None:
    agency = Agency.objects.get(service=t.service, external_id="alpha:agency-new")
    assert (agency.status, agency.status_reason) == ("registering", "")
    assert (agency.balance_client_id, agency.balance_person_id) == (None, None)
    assert timezone.now() - agency.created_at < dt.timedelta(minutes=5)


def _new_topup(t: Tenant, response: Any, before: dict) -> None:
    topup = _created(TopUp, response)
    assert (topup.status, topup.status_reason, topup.amount, topup.succeeded_at) == \
        ("pending", "", Decimal("20.00"), None)
    assert (topup.customer_id, topup.payer_agency_id, topup.service_id) == (t.customer.pk, None, t.service.pk)
    assert _wallet(t) == before["wallet"], "a top-up credits nothing before Balance reports the money"


def _new_charge(t: Tenant, response: Any, before: dict) -> None:
    charge = _created(Charge, response)
    assert (charge.status, charge.amount, charge.refunded_amount, charge.hold_id) == \
        ("succeeded", Decimal("20.00"), Decimal("0.00"), None)
    assert (charge.customer_id, charge.payer_agency_id, charge.service_id) == (t.customer.pk, None, t.service.pk)
    assert _wallet(t) == ("890.00", "50.00")


def _new_refund(t: Tenant, response: Any, before: dict) -> None:
    refund = _created(Refund, response)
    assert (refund.amount, refund.charge_id) == (Decimal("5.00"), t.charge.pk)
    assert Charge.objects.get(pk=t.charge.pk).refunded_amount == Decimal("15.00")
    assert _wallet(t) == ("915.00", "50.00")


def _new_hold(t: Tenant, response: Any, before: dict) -> None:
    hold = _created(Hold, response)
    assert (hold.status, hold.amount, hold.captured_amount, hold.closed_at) == \
        ("held", Decimal("20.00"), Decimal("0.00"), None)
    assert (hold.customer_id, hold.payer_agency_id, hold.service_id) == (t.customer.pk, None, t.service.pk)
    assert _wallet(t) == ("910.00", "70.00")


def _captured(t: Tenant, response: Any, before: dict) -> None:
    hold = Hold.objects.get(pk=t.hold.pk)
    assert (hold.status, hold.captured_amount) == ("captured", Decimal("10.00"))
    assert _wallet(t) == ("900.00", "0.00")


def _released(t: Tenant, response: Any, before: dict) -> None:
    hold = Hold.objects.get(pk=t.hold.pk)
    assert (hold.status, hold.captured_amount) == ("released", Decimal("0.00"))
    assert _wallet(t) == ("910.00", "0.00")


def _alerts_set(t: Tenant, response: Any, before: dict) -> None:
    _customer_untouched(t, response, before)
    assert Customer.objects.get(pk=t.customer.pk).low_balance_threshold == Decimal("100.00")
    assert response.json() == {"low_balance": "100.00", "effective": "100.00"}


# (URL name, method) -> the case. The tenant has 910.00 in the wallet, 50.00 held, a charge of 100.00 with 10.00
# refunded, and no agency (so any payer in a row is a forged one).
WRITES: dict[tuple[str, str], Write] = {
    ("customer-list", "POST"): Write(lambda t: company("alpha:new-1", "New Co"), "active", _new_customer, False),
    ("customer-detail", "PATCH"): Write(lambda t: {"name": "Patched Name"}, "failed", _customer_untouched, False),
    ("customer-agency", "PUT"): Write(lambda t: {"agency": None, "reason": "test"}, "failed", _customer_untouched,
                                      False),
    ("agency-list", "POST"): Write(lambda t: agency_body("alpha:agency-new", "New Agency"), "active", _new_agency,
                                   False),
    ("customer-topups", "POST"): Write(lambda t: {"amount": "20.00"}, "succeeded", _new_topup),
    ("customer-charges", "POST"): Write(lambda t: {"product": "placement", "amount": "20.00"}, "refunded",
                                        _new_charge),
    ("charge-refunds", "POST"): Write(lambda t: {"amount": "5.00", "reason": "bad photo"}, "failed", _new_refund),
    ("customer-holds", "POST"): Write(lambda t: {"product": "boost", "amount": "20.00"}, "captured", _new_hold),
    ("hold-capture", "POST"): Write(lambda t: {"amount": "10.00"}, "released", _captured),
    ("hold-release", "POST"): Write(lambda t: {}, "captured", _released),
    ("customer-wallet-alerts", "PUT"): Write(lambda t: {"low_balance": "100.00"}, "failed", _alerts_set),
}


def _write_cases() -> list[tuple[Any, str]]:
    return [(route, method) for route in api_routes() for method in route.write_methods]


def test_every_write_endpoint_has_a_mass_assignment_case():
    missing = [(route.name, method, str(route)) for route, method in _write_cases()
               if (route.name, method) not in WRITES]
    assert not missing, f"add a case to WRITES in {__name__} for: {missing}"


@pytest.fixture
def alpha(balance, run_outbox) -> Tenant:
    tenant = make_tenant(slug="alpha", balance_service_id=7, run_outbox=run_outbox, prefix="alpha")
    CustomerFactory(service=tenant.service, external_id=VICTIM, name="Victim", balance_client_id=None,
                    balance_person_id=None)
    service_create(slug="beta", name="Beta", balance_service_id=8)
    return tenant


def hostile_fields(t: Tenant, write: Write) -> dict[str, Any]:
    from disbalance.models import ConsumerService

    beta = ConsumerService.objects.get(slug="beta")
    return {
        "status": write.status,
        "status_reason": MARKER,
        "balance": "987654.32" if write.money_balance else {"client_id": 424242, "person_id": 434343},
        "blocked": True,
        "id": HOSTILE_ID,
        "pk": HOSTILE_ID,
        "payer": t.agency.external_id,
        "payer_agency": t.agency.pk,
        "created_at": HOSTILE_TIME,
        "updated_at": HOSTILE_TIME,
        "succeeded_at": HOSTILE_TIME,
        "closed_at": HOSTILE_TIME,
        "refunded": "876.54",
        "refunded_amount": "876.54",
        "captured": "876.54",
        "captured_amount": "876.54",
        "customer": VICTIM,
        "customer_id": Customer.objects.get(external_id=VICTIM).pk,
        "service": "beta",
        "service_id": beta.pk,
        "payment_url": f"https://evil.example/{MARKER}",
        "balance_client_id": 424242,
        "contracts": [{"id": 424242, "number": MARKER, "active": True, "payment_type": "postpaid",
                       "credit_limit": "987654.32"}],
    }


def _forged(t: Tenant, row: dict, victim_id: int) -> list[str]:
    """What in one created or changed row comes from the hostile fields."""
    problems = []
    for name, value in row.items():
        if isinstance(value, str) and MARKER in value:
            problems.append(f"{name}={value!r}")
        if str(value) == HOSTILE_ID:
            problems.append(f"{name} is the forged id")
        if isinstance(value, dt.datetime) and value.year == 2001:
            problems.append(f"{name}={value}")
        if isinstance(value, Decimal) and value in HOSTILE_AMOUNTS:
            problems.append(f"{name}={value}")
        if isinstance(value, int) and not isinstance(value, bool) and value in HOSTILE_BALANCE_IDS:
            problems.append(f"{name}={value}")
    if row.get("service_id", t.service.pk) != t.service.pk:
        problems.append("service_id is another service")
    if row.get("customer_id") == victim_id:
        problems.append("customer_id is the victim")
    if row.get("payer_agency_id") is not None:
        problems.append("payer_agency_id set (the customer has no agency)")
    if row.get("blocked") is True:
        problems.append("blocked")
    return problems


@pytest.mark.parametrize(("route", "method"), _write_cases(), ids=lambda v: str(v))
def test_read_only_fields_are_ignored_or_rejected(alpha, route, method):
    write = WRITES.get((route.name, method))
    if write is None:
        pytest.fail(f"no mass-assignment case for {method} {route} ({route.name}); add one to WRITES")
    t = alpha
    victim_id = Customer.objects.get(external_id=VICTIM).pk
    body = {**hostile_fields(t, write), **write.body(t)}
    before_state = {"wallet": _wallet(t)}
    before = db_snapshot()

    response = call(t.api, method, route.path_for(t.ids), body)

    assert response.status_code < 500, response.content
    changes = diff(before, db_snapshot())
    if response.status_code >= 400:  # rejected: then nothing but the stored idempotent answer may change
        assert response["Content-Type"].startswith("application/problem+json")
        assert set(changes) <= {"disbalance.idempotencyrecord"}, changes
        return
    assert response.status_code in (200, 201), response.content
    forged = []
    for label, change in changes.items():
        for row in change["created"] + [new for _, new in change["changed"]]:
            if found := _forged(t, row, victim_id):
                forged.append((label, row.get("id"), found))
        assert not change["deleted"], (label, change["deleted"])
    assert not forged, forged
    assert MARKER not in response.content.decode() and HOSTILE_ID not in response.content.decode()
    write.check(t, response, before_state)


def test_a_body_of_only_read_only_fields_changes_nothing(alpha):
    t = alpha
    victim_id = Customer.objects.get(external_id=VICTIM).pk
    wallet = _wallet(t)
    before = db_snapshot()
    response = t.api.patch(f"/api/v1/customers/{t.customer.external_id}",
                           hostile_fields(t, WRITES[("customer-detail", "PATCH")]), format="json")
    assert response.status_code in (200, 400), response.content
    for label, change in diff(before, db_snapshot()).items():
        for row in change["created"] + [new for _, new in change["changed"]]:
            assert not _forged(t, row, victim_id), (label, row)
    _customer_untouched(t, response, {"wallet": wallet})


def test_a_new_customer_cannot_be_placed_in_another_service_or_take_balance_ids(alpha):
    t = alpha
    body = {**company("alpha:forged", "Forged"), "service": "beta", "service_id": 999, "status": "active",
            "balance": {"client_id": 424242, "person_id": 434343}, "blocked": True}
    response = t.api.post("/api/v1/customers", body, format="json")
    assert response.status_code == 201, response.content
    customer = Customer.objects.get(external_id="alpha:forged")
    assert (customer.service_id, customer.status, customer.blocked) == (t.service.pk, "registering", False)
    assert (customer.balance_client_id, customer.balance_person_id) == (None, None)
