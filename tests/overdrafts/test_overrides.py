"""Support overrides: lowering caps the limit charges see, raising needs `raise_limit`, a reason and an expiry;
every change is kept with who, when and why."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from disbalance.exceptions import ValidationFailed
from overdrafts import selectors
from overdrafts.exceptions import NoOverdraftForAgencyCustomer
from overdrafts.models import LimitOverride
from overdrafts.services import overdraft_override_end, overdraft_override_set
from tests.factories import AgencyFactory, CustomerFactory
from tests.overdrafts.conftest import CUSTOMER, charge, grant, verify_ledger_clean
from wallets.models import Account


def limit(customer):
    return selectors.overdraft_limit(customer=customer)


@pytest.fixture
def customer(active_customer):
    grant(active_customer, "5000.00", tid=1)
    return active_customer


@pytest.mark.django_db
def test_an_override_to_1000_refuses_a_1500_charge_and_the_history_shows_who(api, customer, support_user):
    override = overdraft_override_set(customer=customer, limit=Decimal("1000.00"), reason="risky dealer, ticket 42",
                                      by=support_user)
    assert api.get(f"{CUSTOMER}/overdraft").json()["limit"] == "1000.00"
    assert api.get(f"{CUSTOMER}/overdraft").json()["granted_by_balance"] == "5000.00"
    wallet = api.get(f"{CUSTOMER}/wallet").json()
    assert (wallet["overdraft_limit"], wallet["available"]) == ("1000.00", "1000.00")

    refused = charge(api, "1500.00")
    assert refused.status_code == 402 and refused.json()["code"] == "insufficient_funds"
    assert not Account.objects.filter(customer=customer, kind="spend").exists()  # nothing was written
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == "0.00"
    assert charge(api, "1000.00").status_code == 201

    history = list(LimitOverride.objects.filter(customer=customer))
    assert [(h.limit, h.raises, h.granted_when_set, h.reason, h.created_by.username) for h in history] == [
        (Decimal("1000.00"), False, Decimal("5000.00"), "risky dealer, ticket 42", "support-anna")]
    assert override.created_at is not None
    verify_ledger_clean()


@pytest.mark.django_db
def test_raising_needs_the_permission_a_reason_and_an_expiry(customer, support_user, billing_admin, clock):
    with pytest.raises(PermissionDenied):
        overdraft_override_set(customer=customer, limit=Decimal("8000.00"), reason="big campaign", by=support_user,
                               expires_at=timezone.now() + timedelta(days=7))
    with pytest.raises(ValidationFailed):
        overdraft_override_set(customer=customer, limit=Decimal("8000.00"), reason="big campaign", by=billing_admin)
    with pytest.raises(ValidationFailed):
        overdraft_override_set(customer=customer, limit=Decimal("8000.00"), reason="  ", by=billing_admin,
                               expires_at=timezone.now() + timedelta(days=7))
    with pytest.raises(ValidationFailed):
        overdraft_override_set(customer=customer, limit=Decimal("8000.00"), reason="too long", by=billing_admin,
                               expires_at=timezone.now() + timedelta(days=365))
    assert not LimitOverride.objects.exists() and limit(customer) == Decimal("5000.00")

    raised = overdraft_override_set(customer=customer, limit=Decimal("8000.00"), reason="big campaign",
                                    by=billing_admin, expires_at=timezone.now() + timedelta(days=7))
    assert raised.raises and limit(customer) == Decimal("8000.00")
    clock.advance(days=8)
    assert limit(customer) == Decimal("5000.00")  # expired: the grant applies again


@pytest.mark.django_db
def test_a_new_override_replaces_the_open_one_and_ending_restores_the_grant(customer, support_user):
    first = overdraft_override_set(customer=customer, limit=Decimal("1000.00"), reason="first", by=support_user)
    second = overdraft_override_set(customer=customer, limit=Decimal("2000.00"), reason="second", by=support_user)
    first.refresh_from_db()
    assert first.ended_at is not None and first.ended_by == support_user and first.end_reason == "Replaced: second"
    assert limit(customer) == Decimal("2000.00")
    overdraft_override_end(override=second, reason="paid on time", by=support_user)
    assert limit(customer) == Decimal("5000.00")
    assert LimitOverride.objects.filter(ended_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_a_lowering_override_never_exceeds_a_later_lower_grant_and_a_ban_wins(customer, support_user, billing_admin):
    overdraft_override_set(customer=customer, limit=Decimal("3000.00"), reason="cap", by=support_user)
    grant(customer, "2000.00", tid=2)
    assert limit(customer) == Decimal("2000.00")
    overdraft_override_set(customer=customer, limit=Decimal("4000.00"), reason="raise", by=billing_admin,
                           expires_at=timezone.now() + timedelta(days=3))
    assert limit(customer) == Decimal("4000.00")
    grant(customer, "6000.00", tid=3)
    assert limit(customer) == Decimal("6000.00")  # a raise is a floor, never below the grant
    grant(customer, "6000.00", tid=4, banned=True)
    assert limit(customer) == Decimal("0.00")


@pytest.mark.django_db
def test_without_any_permission_nothing_is_set(customer, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", password="pw", is_staff=True)
    with pytest.raises(PermissionDenied):
        overdraft_override_set(customer=customer, limit=Decimal("100.00"), reason="x", by=nobody)
    assert not LimitOverride.objects.exists()


@pytest.mark.django_db
def test_an_agency_customer_gets_no_override(service, billing_admin):
    customer = CustomerFactory(service=service, agency=AgencyFactory(service=service))
    with pytest.raises(NoOverdraftForAgencyCustomer):
        overdraft_override_set(customer=customer, limit=Decimal("100.00"), reason="x", by=billing_admin,
                               expires_at=timezone.now() + timedelta(days=1))


@pytest.mark.django_db
def test_an_expired_override_is_ended_and_announced_once(customer, support_user, billing_admin, clock):
    from disbalance.models import WebhookEvent
    from overdrafts.services import overrides_expire

    raised = overdraft_override_set(customer=customer, limit=Decimal("8000.00"), reason="big campaign",
                                    by=billing_admin, expires_at=timezone.now() + timedelta(days=7))
    lowered_elsewhere = overdraft_override_set(customer=CustomerFactory(status="active"), limit=Decimal("0.00"),
                                               reason="watch", by=support_user,
                                               expires_at=timezone.now() + timedelta(days=30))
    events = WebhookEvent.objects.filter(type="overdraft.limit_changed", customer_pk=customer.pk)
    announced = events.count()  # Balance's grant and the raise
    assert overrides_expire() == 0  # nothing due yet
    clock.advance(days=8)
    assert overrides_expire() == 1
    raised.refresh_from_db()
    assert (raised.ended_at, raised.end_reason, raised.ended_by) == (raised.expires_at, "Expired", None)
    expired = events.order_by("sequence").last()
    assert {k: expired.data[k] for k in ("limit", "previous_limit", "cause", "reason")} == {
        "limit": "5000.00", "previous_limit": "8000.00", "cause": "support", "reason": "Expired"}
    assert overrides_expire() == 0 and events.count() == announced + 1  # once
    lowered_elsewhere.refresh_from_db()
    assert lowered_elsewhere.ended_at is None  # not yet due


@pytest.mark.django_db
def test_an_override_ended_by_support_is_not_expired_again(customer, billing_admin, clock):
    from overdrafts.services import overrides_expire

    raised = overdraft_override_set(customer=customer, limit=Decimal("8000.00"), reason="big campaign",
                                    by=billing_admin, expires_at=timezone.now() + timedelta(days=7))
    overdraft_override_end(override=raised, reason="campaign cancelled", by=billing_admin)
    clock.advance(days=8)
    assert overrides_expire() == 0
    raised.refresh_from_db()
    assert (raised.end_reason, raised.ended_by) == ("campaign cancelled", billing_admin)
