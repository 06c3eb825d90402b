"""The per-process token cache: a known token costs no query, and revocation stays immediate in the process that
revokes and bounded (SERVICE_TOKEN_CACHE_SECONDS) in the others."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from disbalance import auth
from disbalance.models import ConsumerService, ServiceToken, hash_token
from disbalance.services import service_token_revoke

pytestmark = pytest.mark.django_db


def _token_queries(api) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        status = api.get("/api/v1/products").status_code
    return status, sum("disbalance_servicetoken" in q["sql"] for q in queries.captured_queries)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(auth, "_clock", clock)
    return clock


def test_a_known_token_costs_no_query(api, clock):
    assert _token_queries(api) == (200, 2)  # looked up, and last_used_at touched once
    assert _token_queries(api) == (200, 0)
    clock.now += 60  # past the cache's life: looked up again (the touch is not due yet)
    assert _token_queries(api) == (200, 1)


def test_revocation_in_this_process_is_immediate(api, token, clock):
    assert api.get("/api/v1/products").status_code == 200
    service_token_revoke(token=ServiceToken.objects.get(token_hash=hash_token(token)))
    assert api.get("/api/v1/products").status_code == 401


def test_revocation_by_another_process_takes_effect_within_the_cache_life(api, token, clock, settings):
    settings.SERVICE_TOKEN_CACHE_SECONDS = 5
    assert api.get("/api/v1/products").status_code == 200
    # Another process revokes it: no signal reaches this one, which may accept it until its entry expires.
    ServiceToken.objects.filter(token_hash=hash_token(token)).update(revoked_at=timezone.now())
    clock.now += 4.9
    assert api.get("/api/v1/products").status_code == 200
    clock.now += 0.2
    assert api.get("/api/v1/products").status_code == 401
    assert api.get("/api/v1/products").status_code == 401  # refusals are not cached as anything else


def test_a_deactivated_service_is_refused_within_the_cache_life(api, service, clock, settings):
    settings.SERVICE_TOKEN_CACHE_SECONDS = 5
    assert api.get("/api/v1/products").status_code == 200
    ConsumerService.objects.filter(pk=service.pk).update(is_active=False)
    clock.now += 5.1
    assert api.get("/api/v1/products").status_code == 401


def test_saving_a_service_forgets_its_tokens_at_once(api, service, clock):
    assert api.get("/api/v1/products").status_code == 200
    service.is_active = False
    service.save(update_fields=["is_active"])
    assert api.get("/api/v1/products").status_code == 401


def test_zero_turns_the_cache_off(api, clock, settings):
    settings.SERVICE_TOKEN_CACHE_SECONDS = 0
    assert _token_queries(api)[0] == 200
    assert _token_queries(api) == (200, 1)
