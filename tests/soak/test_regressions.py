"""Bugs the fault-injection soak (`make soak`) found, kept fixed."""

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from disbalance.auth import ServiceRateThrottle


class _CacheDown:
    """Django's Redis cache while Redis restarts: every call raises."""

    def get(self, *args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    set = add = incr = get_many = get


@pytest.mark.django_db
def test_the_api_answers_while_the_cache_is_down(api, monkeypatch):
    # Soak, seed 1: Redis restarted and every API call answered 500 from the throttle's cache lookup.
    monkeypatch.setattr(ServiceRateThrottle, "cache", _CacheDown())
    response = api.get("/api/v1/customers")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_reconciliation_limit_of_the_own_pot_after_a_move_and_when_overdue(service, products):
    # Soak, seed 4: a customer spent into its overdraft, then moved to an agency; reconciliation took the limit of
    # its own pot from `spend_limit` (0 once the customer has an agency) and opened a false critical
    # `unpaid_completion`. The same call raised CustomerBlocked for an overdue customer, aborting the whole run.
    from datetime import timedelta
    from decimal import Decimal
    from types import SimpleNamespace

    from django.utils import timezone

    from overdrafts.models import Overdraft
    from reconciliation.checks.unpaid import _spend_limit
    from tests.factories import AgencyFactory, CustomerFactory
    from wallets.services import wallet_charge

    customer = CustomerFactory(service=service)
    Overdraft.objects.create(customer=customer, in_balance=True, granted_limit=Decimal("500.00"))
    wallet_charge(customer=customer, payer_agency=None, product_code="placement", amount=Decimal("300.00"),
                  overdraft_limit=Decimal("500.00"), reference_kind="charge", reference_id="soak-4")
    assert _spend_limit(SimpleNamespace(limits={}), customer, None) == Decimal("500.00")

    customer.agency = AgencyFactory(service=service)
    customer.save(update_fields=["agency"])
    assert _spend_limit(SimpleNamespace(limits={}), customer, None) == Decimal("500.00")

    now = timezone.now()
    Overdraft.objects.filter(customer=customer).update(debt_since=now - timedelta(days=16),
                                                       due_at=now - timedelta(days=1))
    assert _spend_limit(SimpleNamespace(limits={}), customer, None) == Decimal("500.00")


@pytest.mark.django_db
def test_a_patch_while_the_registration_sync_waits_makes_it_push_the_new_data(service):
    # Soak, seed 4: registration created the Balance client, then failed on GetClientPersons and waited in backoff;
    # a PATCH reused that waiting operation (dedup) whose payload said update=False, so the Balance client kept
    # the old name for good (only the person, created later, got the new one).
    from customers.services import CustomerData, customer_register, customer_update
    from disbalance.models import OutboxOperation

    customer = customer_register(service=service, external_id="c:1", data=CustomerData(
        kind="individual", name="Old Name", legal={"lname": "Old", "fname": "Name"})).customer
    registration = OutboxOperation.objects.get(kind="customer.sync")
    assert registration.payload["update"] is False
    customer_update(customer=customer, changes={"name": "New Name"})
    registration.refresh_from_db()
    assert registration.payload["update"] is True
    assert OutboxOperation.objects.filter(kind="customer.sync").count() == 1

    # The sync already running (claimed) with the old data: the change gets an operation of its own.
    OutboxOperation.objects.filter(pk=registration.pk).update(status="in_progress")
    customer_update(customer=customer, changes={"name": "Newer Name"})
    waiting = OutboxOperation.objects.get(kind="customer.sync", status="pending")
    assert waiting.payload["update"] is True
