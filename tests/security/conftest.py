"""Fixtures of the security suite: two tenants (consumer services) with one real object of each kind."""

from __future__ import annotations

import pytest

from tests.security.support import Tenant, make_tenant


@pytest.fixture
def tenants(balance, run_outbox) -> tuple[Tenant, Tenant]:
    """Service A (`alpha`) and service B (`beta`), each with a customer, an agency, a top-up, a charge with a refund
    and an open hold, all made through the API with the Balance emulator."""
    a = make_tenant(slug="alpha", balance_service_id=7, run_outbox=run_outbox, prefix="alpha")
    b = make_tenant(slug="beta", balance_service_id=8, run_outbox=run_outbox, prefix="beta")
    return a, b


@pytest.fixture
def tenant(balance, run_outbox) -> Tenant:
    """Service A alone, with one object of each kind."""
    return make_tenant(slug="alpha", balance_service_id=7, run_outbox=run_outbox, prefix="alpha")
