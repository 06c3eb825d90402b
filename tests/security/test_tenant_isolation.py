"""Tenant isolation, generated from the URL router: every route under /api/v1/, every method its view allows.

Another service's object is `404 not_found` (never 200, 403 or 500) and nothing changes; lists never show another
service's objects; without a valid token every route is `401`. A new endpoint is covered the moment it is routed:
if it has a path parameter of a new kind, `test_every_path_parameter_is_in_the_object_map` fails until the kind is
added to `tests.security.support.OBJECT_MAP` (and to `Tenant.ids`).
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient
from rest_framework.views import APIView

from disbalance.auth import IsConsumerService, ServiceRateThrottle, ServiceTokenAuthentication
from disbalance.models import ConsumerService, IdempotencyRecord, ServiceToken, hash_token
from disbalance.services import service_token_revoke
from tests.security.support import (
    OBJECT_MAP,
    api_routes,
    call,
    company,
    db_snapshot,
    nonexistent_ids,
    problem,
    snapshot_diff,
)

pytestmark = pytest.mark.django_db

# A body every write accepts as valid (unknown fields are ignored), so validation never answers before the lookup.
UNIVERSAL_BODY = {"amount": "10.00", "product": "placement", "reason": "isolation test", "agency": None,
                  "name": "Renamed by another service", "description": "x"}


def test_the_router_has_api_routes():
    routes = api_routes()
    assert len(routes) >= 15, [str(r) for r in routes]
    assert any(r.params for r in routes) and any(not r.params for r in routes)


@pytest.mark.parametrize("route", api_routes(), ids=str)
def test_every_api_view_authenticates_throttles_and_checks_the_service(route):
    """Each view is a DRF view with the service-token authentication, the service permission and the per-service
    throttle (a view that overrode them would skip the tenant scoping everything else relies on)."""
    cls = route.view_class
    assert cls is not None and issubclass(cls, APIView), f"{route} is not a DRF APIView"
    assert list(cls.authentication_classes) == [ServiceTokenAuthentication], route
    assert any(issubclass(p, IsConsumerService) for p in cls.permission_classes), route
    assert any(issubclass(t, ServiceRateThrottle) for t in cls.throttle_classes), route


def test_every_path_parameter_is_in_the_object_map():
    """A new route with a parameter of an unknown kind must be taught to the isolation tests first."""
    missing = sorted({(str(route), slot) for route in api_routes() for slot in route.param_slots
                      if slot not in OBJECT_MAP})
    assert not missing, (
        "Routes with path parameters the isolation tests do not know; add each (segment, parameter) to "
        f"tests/security/support.py OBJECT_MAP and Tenant.ids: {missing}"
    )


def _sorted_records(service):
    return list(IdempotencyRecord.objects.filter(service=service).order_by("pk").values())


def test_another_services_objects_are_404_on_every_route_and_method(tenants):
    a, b = tenants
    routes = [r for r in api_routes() if r.params]
    assert routes
    missing = nonexistent_ids()

    # The ids are real: A itself reads every one of them.
    for route in routes:
        if "GET" in route.methods:
            response = a.api.get(route.path_for(a.ids))
            assert response.status_code == 200, (str(route), response.status_code, response.content[:300])

    before = db_snapshot(skip=("disbalance.idempotencyrecord",))
    a_records = _sorted_records(a.service)
    failures = []
    calls = 0
    for route in routes:
        for method in route.methods:
            path = route.path_for(a.ids)
            response = call(b.api, method, path, UNIVERSAL_BODY)
            calls += 1
            if method == "OPTIONS":
                # OPTIONS describes the endpoint, never the object: it must answer exactly as for an id that
                # does not exist (no existence oracle), and it must not be a server error.
                other = call(b.api, method, route.path_for(missing))
                if (response.status_code, response.content) != (other.status_code, other.content) or \
                        response.status_code >= 500:
                    failures.append((method, path, response.status_code, "differs from a missing id"))
                continue
            ok = response.status_code == 404 and response["Content-Type"].startswith("application/problem+json")
            if ok and method != "HEAD":
                ok = response.json().get("code") == "not_found"
            if not ok:
                failures.append((method, path, response.status_code, response.content[:200]))
    assert calls > len(routes)
    assert not failures, "another service's ids must be 404 problem+json:\n" + "\n".join(map(str, failures))
    assert snapshot_diff(before, db_snapshot(skip=("disbalance.idempotencyrecord",))) == {}
    assert _sorted_records(a.service) == a_records
    # Money is where it was: A's wallet still shows what A left there.
    wallet = a.api.get(f"/api/v1/customers/{a.customer.external_id}/wallet").json()
    assert (wallet["balance"], wallet["held"]) == ("910.00", "50.00"), wallet


def _leaks(response, identifiers: list[str]) -> list[str]:
    text = response.content.decode("utf-8", "replace")
    return [i for i in identifiers if i and i in text]


def test_lists_and_reads_never_show_another_services_objects(tenants):
    """Every GET under /api/v1/, by each service with its own ids (and filters naming the other's objects), never
    carries an identifier of the other service's objects."""
    a, b = tenants
    leaks = []
    for me, other in ((b, a), (a, b)):
        foreign = other.identifiers()
        filters = ["", f"?q={other.customer.external_id}", f"?agency={other.agency.external_id}",
                   f"?q={other.customer.name}", "?limit=500"]
        for route in api_routes():
            if "GET" not in route.methods:
                continue
            path = route.path_for(me.ids)
            for query in filters:
                response = me.api.get(path + query)
                assert response.status_code in (200, 400), (path + query, response.status_code, response.content)
                if found := _leaks(response, foreign):
                    leaks.append((me.service.slug, path + query, found))
        # The own lists are not empty: the scan looked at real data.
        customers = me.api.get("/api/v1/customers").json()["results"]
        assert [c["external_id"] for c in customers] == [me.customer.external_id]
        agencies = me.api.get("/api/v1/agencies").json()["results"]
        assert [ag["external_id"] for ag in agencies] == [me.agency.external_id]
    assert not leaks, leaks


def test_the_same_external_id_in_two_services_names_two_customers(tenants):
    a, b = tenants
    assert a.api.post("/api/v1/customers", company("shared:1", "Alpha Shared"), format="json").status_code == 201
    assert b.api.post("/api/v1/customers", company("shared:1", "Beta Shared"), format="json").status_code == 201
    assert a.api.get("/api/v1/customers/shared:1").json()["name"] == "Alpha Shared"
    assert b.api.get("/api/v1/customers/shared:1").json()["name"] == "Beta Shared"
    assert b.api.patch("/api/v1/customers/shared:1", {"name": "Beta Renamed"}, format="json").status_code == 200
    assert a.api.get("/api/v1/customers/shared:1").json()["name"] == "Alpha Shared"


# --- without a valid token -------------------------------------------------------------------------------------

def _clients(tenants):
    a, b = tenants
    none = APIClient()
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Bearer dsb_" + "x" * 43)
    malformed = APIClient()
    malformed.credentials(HTTP_AUTHORIZATION=f"Token {a.token}")
    revoked = APIClient()
    revoked.credentials(HTTP_AUTHORIZATION=f"Bearer {a.token}")
    service_token_revoke(token=ServiceToken.objects.get(token_hash=hash_token(a.token)))
    inactive = APIClient()
    inactive.credentials(HTTP_AUTHORIZATION=f"Bearer {b.token}")
    ConsumerService.objects.filter(pk=b.service.pk).update(is_active=False)
    return {"no token": none, "wrong token": wrong, "other scheme": malformed, "revoked token": revoked,
            "inactive service": inactive}


def test_every_route_and_method_is_401_without_a_valid_token(tenants):
    a, _ = tenants
    routes = api_routes()
    clients = _clients(tenants)
    before = db_snapshot()
    failures = []
    for route in routes:
        path = route.path_for(a.ids)
        for method in route.methods:
            for label, client in clients.items():
                response = call(client, method, path, UNIVERSAL_BODY)
                ok = response.status_code == 401 and response["Content-Type"].startswith("application/problem+json")
                if ok and method != "HEAD":
                    ok = response.json().get("code") == "unauthorized"
                if not ok:
                    failures.append((label, method, path, response.status_code))
    assert not failures, failures
    assert snapshot_diff(before, db_snapshot()) == {}


def test_401_answers_carry_the_bearer_challenge(tenants):
    response = APIClient().get("/api/v1/customers")
    problem(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Bearer"
