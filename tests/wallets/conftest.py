"""Fixtures of the ledger tests: a service, a customer paying itself, an agency, and the full invariant check."""

from __future__ import annotations

import pytest

from tests.factories import AgencyFactory, ConsumerServiceFactory, CustomerFactory
from wallets import services
from wallets.services import ledger, operations


@pytest.fixture(autouse=True)
def _full_ledger_check(monkeypatch):
    """Re-sum every touched account after each posting, on top of the cheap check that always runs."""
    original = ledger.ledger_post

    def ledger_post(*args, full_check=True, **kwargs):
        return original(*args, full_check=full_check, **kwargs)

    # Callers reach `ledger_post` through the package (other apps) or by name (the wallet operations).
    monkeypatch.setattr(services, "ledger_post", ledger_post)
    monkeypatch.setattr(operations, "ledger_post", ledger_post)
    # The wallet operations post on the accounts they locked through `_post_locked`, not `ledger_post`.
    original_locked = ledger._post_locked

    def post_locked(*args, full_check=True, **kwargs):
        return original_locked(*args, full_check=full_check, **kwargs)

    monkeypatch.setattr(operations, "_post_locked", post_locked)


@pytest.fixture
def svc(db):
    return ConsumerServiceFactory(slug="autoru", name="Auto.ru")


@pytest.fixture
def customer(svc):
    return CustomerFactory(service=svc, external_id="dealer:20101")


@pytest.fixture
def agency(svc):
    return AgencyFactory(service=svc, external_id="agency:7")
