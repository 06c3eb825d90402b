import io

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from disbalance.models import ConsumerService, ServiceToken, hash_token
from disbalance.services import service_token_revoke

pytestmark = pytest.mark.django_db


def _problem(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status
    return body


def test_no_token_is_401():
    _problem(APIClient().get("/api/v1/customers"), 401, "unauthorized")


@pytest.mark.parametrize("header", ["Bearer nope", "Token abc", "Bearer", "Bearer a b", "Basic Zm9vOmJhcg=="])
def test_wrong_token_is_401(header, token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/customers")
    _problem(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Bearer"


def test_revoked_token_is_401_at_once(service, api, token):
    assert api.get("/api/v1/customers").status_code == 200
    service_token_revoke(token=ServiceToken.objects.get(token_hash=hash_token(token)))
    _problem(api.get("/api/v1/customers"), 401, "unauthorized")


def test_inactive_service_token_is_401(service, api):
    ConsumerService.objects.filter(pk=service.pk).update(is_active=False)
    _problem(api.get("/api/v1/customers"), 401, "unauthorized")


def test_tokens_are_stored_hashed(service, token):
    stored = ServiceToken.objects.get(service=service)
    assert stored.token_hash == hash_token(token)
    assert token not in {str(v) for v in ServiceToken.objects.values_list("prefix", "token_hash", "label")[0]}
    assert stored.prefix == token[:12]


def test_create_service_is_idempotent():
    out = io.StringIO()
    call_command("create_service", "autoru", "--name", "Auto.ru", "--balance-service-id", "7", stderr=out)
    call_command("create_service", "autoru", "--name", "Auto.ru", "--balance-service-id", "7", stderr=out)
    call_command("create_service", "autoru", "--name", "Auto.ru 2", "--balance-service-id", "7",
                 "--webhook-url", "https://hooks.example.com/billing", stderr=out)
    service = ConsumerService.objects.get()
    assert service.name == "Auto.ru 2" and service.webhook_url == "https://hooks.example.com/billing"
    assert "already up to date" in out.getvalue()


def test_issue_service_token_prints_only_the_token(service):
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_service_token", service.slug, stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert "\n" not in raw and raw.startswith("dsb_")
    assert ServiceToken.objects.filter(token_hash=hash_token(raw), service=service).exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get("/api/v1/customers").status_code == 200


def test_issue_token_for_unknown_service_fails_clearly(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no consumer service"):
        call_command("issue_service_token", "nope")


def test_throttling_per_service_is_429(service, api, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"service": "3/min"}}
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    api_settings.reload()
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    try:
        statuses = [api.get("/api/v1/customers").status_code for _ in range(4)]
        assert statuses[:3] == [200, 200, 200]
        _problem(api.get("/api/v1/customers"), 429, "rate_limited")
    finally:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"service": "6000/min"}}
        api_settings.reload()
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES


def test_webhook_secret_can_be_shown_and_rotated(service):
    out = io.StringIO()
    call_command("service_webhook_secret", service.slug, stdout=out, stderr=io.StringIO())
    assert out.getvalue().strip() == service.webhook_secret and service.webhook_secret
    out = io.StringIO()
    old = service.webhook_secret
    call_command("service_webhook_secret", service.slug, "--rotate", stdout=out, stderr=io.StringIO())
    service.refresh_from_db()
    assert out.getvalue().strip() == service.webhook_secret != old
    assert service.webhook_secret_previous == old  # still signing during the overlap period
    assert service.webhook_secret_previous_until > timezone.now()
