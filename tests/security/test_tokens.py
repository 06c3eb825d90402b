"""Service tokens: hashed at rest (nowhere in the database or the admin's pages), revoked at once, and throttled per
service (one service's 429 leaves another untouched)."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from disbalance.models import ConsumerService, ServiceToken, hash_token
from disbalance.services import service_create, service_token_issue, service_token_revoke
from tests.security.support import company, problem, text_values

pytestmark = pytest.mark.django_db


def client_for(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@pytest.fixture
def services(db):
    alpha = service_create(slug="alpha", name="Alpha", balance_service_id=7).service
    beta = service_create(slug="beta", name="Beta", balance_service_id=8).service
    return alpha, beta


def _secret_part(raw: str) -> str:
    """The part of a token that is never stored (the first 12 characters are kept as a visible prefix)."""
    return raw[12:]


def _issue_in_admin(admin_client, service) -> str:
    """The "Issue a new API token" action; the raw token is in the one message shown right after."""
    response = admin_client.post(reverse("admin:disbalance_consumerservice_changelist"),
                                 {"action": "issue_token", "_selected_action": [service.pk]}, follow=True)
    assert response.status_code == 200
    match = re.search(r"(dsb_[A-Za-z0-9_\-]{20,})", response.content.decode())
    assert match, "the admin shows the new token once"
    return match.group(1)


def test_no_raw_token_is_stored_anywhere(services, admin_client):
    alpha, beta = services
    raws = [service_token_issue(service=alpha).raw_token, service_token_issue(service=beta, label="ci").raw_token]
    out = io.StringIO()
    call_command("issue_service_token", "alpha", stdout=out, stderr=io.StringIO())
    raws.append(out.getvalue().strip())
    raws.append(_issue_in_admin(admin_client, alpha))
    for raw in raws:  # each works, so last_used_at and friends were written too
        assert client_for(raw).post("/api/v1/customers", company(f"c:{uuid.uuid4().hex[:8]}", "C"),
                                    format="json").status_code == 201

    for row in ServiceToken.objects.all():
        assert re.fullmatch(r"[0-9a-f]{64}", row.token_hash)
    assert {hash_token(raw) for raw in raws} <= set(ServiceToken.objects.values_list("token_hash", flat=True))
    stored = text_values()
    stored += [("sessions.session", "decoded", str(s.get_decoded())) for s in Session.objects.all()]
    leaks = [(label, name) for label, name, text in stored for raw in raws if _secret_part(raw) in text]
    assert not leaks, f"raw tokens stored in {leaks}"


def test_admin_pages_never_show_a_token_its_hash_or_the_webhook_secret(services, admin_client):
    alpha, _ = services
    raw = service_token_issue(service=alpha, label="main").raw_token
    client_for(raw).get("/api/v1/customers")
    admin_raw = _issue_in_admin(admin_client, alpha)  # shown once, in the message right after the action
    token = ServiceToken.objects.get(token_hash=hash_token(raw))
    pages = [
        reverse("admin:index"),
        reverse("admin:disbalance_servicetoken_changelist"),
        reverse("admin:disbalance_servicetoken_changelist") + f"?q={raw[:12]}",
        reverse("admin:disbalance_servicetoken_change", args=[token.pk]),
        reverse("admin:disbalance_servicetoken_history", args=[token.pk]),
        reverse("admin:disbalance_consumerservice_changelist"),
        reverse("admin:disbalance_consumerservice_change", args=[alpha.pk]),
        reverse("admin:disbalance_consumerservice_history", args=[alpha.pk]),
    ]
    secrets = [_secret_part(raw), _secret_part(admin_raw), token.token_hash,
               ServiceToken.objects.get(token_hash=hash_token(admin_raw)).token_hash,
               ConsumerService.objects.get(pk=alpha.pk).webhook_secret]
    assert raw[:12] in admin_client.get(pages[1]).content.decode()  # tokens are told apart by their prefix
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, (page, response.status_code)
        html = response.content.decode()
        assert not [s for s in secrets if s and s in html], f"a secret is on {page}"


def test_revocation_is_effective_at_once(services, admin_client):
    alpha, _ = services
    first = service_token_issue(service=alpha).raw_token
    second = service_token_issue(service=alpha).raw_token
    a1, a2 = client_for(first), client_for(second)
    assert a1.get("/api/v1/customers").status_code == 200
    service_token_revoke(token=ServiceToken.objects.get(token_hash=hash_token(first)))
    problem(a1.get("/api/v1/customers"), 401, "unauthorized")
    assert a2.get("/api/v1/customers").status_code == 200  # the service's other token still works

    # The admin's "Revoke" action, on a token that was just used (so nothing is cached in between).
    assert a2.get("/api/v1/products").status_code == 200
    token = ServiceToken.objects.get(token_hash=hash_token(second))
    response = admin_client.post(reverse("admin:disbalance_servicetoken_changelist"),
                                 {"action": "revoke", "_selected_action": [token.pk]})
    assert response.status_code == 302
    problem(a2.get("/api/v1/customers"), 401, "unauthorized")
    problem(a2.post("/api/v1/customers", company("late:1", "Late"), format="json"), 401, "unauthorized")
    from customers.models import Customer

    assert not Customer.objects.filter(external_id="late:1").exists()


@pytest.fixture
def rate_limit(settings):
    """API_RATE_LIMIT of 5 requests a minute per service, for one test."""
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    def apply(rate: str) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"service": rate}}
        api_settings.reload()
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES

    original = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["service"]
    apply("5/min")
    yield 5
    apply(original)


def test_throttling_is_per_service(services, rate_limit):
    alpha, beta = services
    a1 = client_for(service_token_issue(service=alpha).raw_token)
    a2 = client_for(service_token_issue(service=alpha).raw_token)  # same service, same bucket
    b = client_for(service_token_issue(service=beta).raw_token)
    for _ in range(rate_limit - 1):
        assert a1.get("/api/v1/customers").status_code == 200
    assert a2.get("/api/v1/products").status_code == 200
    limited = a1.get("/api/v1/customers")
    problem(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) > 0
    problem(a2.get("/api/v1/customers"), 429, "rate_limited")
    # A throttled write does nothing.
    problem(a1.post("/api/v1/customers", company("throttled:1", "T"), format="json"), 429, "rate_limited")
    from customers.models import Customer

    assert not Customer.objects.filter(external_id="throttled:1").exists()
    # Another service is unaffected and has its own full bucket.
    for _ in range(rate_limit):
        assert b.get("/api/v1/customers").status_code == 200
    problem(b.get("/api/v1/customers"), 429, "rate_limited")


def test_a_token_for_an_inactive_service_is_refused(services):
    alpha, _ = services
    client = client_for(service_token_issue(service=alpha).raw_token)
    ConsumerService.objects.filter(pk=alpha.pk).update(is_active=False)
    problem(client.get("/api/v1/customers"), 401, "unauthorized")


@pytest.mark.parametrize("header", [
    "Bearer " + "a" * 201,  # longer than any token: refused before hashing
    "Bearer dsb_\u00e9t\u00e9",  # not ASCII
    "Bearer  ",
    "bearer",
])
def test_malformed_authorization_headers_are_401_not_500(services, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    problem(client.get("/api/v1/customers"), 401, "unauthorized")
