"""Idempotency-Key on money-moving POSTs: replay, reuse with another body, and concurrent repeats."""

import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from disbalance.models import IdempotencyRecord
from payments.models import Charge
from tests.conftest import requires_postgres
from tests.payments.conftest import post
from wallets.models import LedgerTransaction
from wallets.services import wallet_credit_topup

CUSTOMER = "/api/v1/customers/dealer:20101"


@pytest.fixture
def funded(active_customer):
    from django.db import transaction

    with transaction.atomic():
        wallet_credit_topup(customer=active_customer, payer_agency=None, amount=__import__("decimal").Decimal("1000"))
    return active_customer


@pytest.mark.django_db
def test_money_moving_posts_require_the_key(api, funded):
    response = api.post(f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "validation_error"
    assert "Idempotency-Key" in response.json()["errors"]
    assert not Charge.objects.exists()


@pytest.mark.django_db
def test_same_key_same_body_replays_without_a_second_effect(api, funded):
    first = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"}, key="k1")
    second = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"}, key="k1")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true" and not first.has_header("Idempotent-Replayed")
    assert Charge.objects.count() == 1
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == "990.00"


@pytest.mark.django_db
def test_same_key_other_body_is_422(api, funded):
    post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"}, key="k1")
    response = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "11.00"}, key="k1")
    assert response.status_code == 422 and response.json()["code"] == "idempotency_key_reused"
    assert Charge.objects.count() == 1


@pytest.mark.django_db
def test_error_responses_are_replayed_too(api, funded):
    first = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "5000.00"}, key="big")
    assert first.status_code == 402 and first.json()["code"] == "insufficient_funds"
    again = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "5000.00"}, key="big")
    assert again.status_code == 402 and again["Idempotent-Replayed"] == "true"
    assert not Charge.objects.exists()
    assert LedgerTransaction.objects.filter(type="charge").count() == 0


@pytest.mark.django_db
def test_keys_are_scoped_per_service(api, other_api, funded):
    post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"}, key="shared")
    # The other service has no such customer: its request with the same key is its own (404, not a replay).
    response = post(other_api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"}, key="shared")
    assert response.status_code == 404 and not response.has_header("Idempotent-Replayed")


@pytest.mark.django_db
def test_in_progress_key_is_409(api, funded, service):
    IdempotencyRecord.objects.create(service=service, key="busy", request_hash="x" * 64, method="POST", path="/")
    from disbalance.idempotency import request_fingerprint  # noqa: F401 - the hash differs: 422 first

    IdempotencyRecord.objects.filter(key="busy").update(request_hash=_fingerprint_for(api, funded))
    response = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"}, key="busy")
    assert response.status_code == 409 and response.json()["code"] == "idempotency_key_in_use"


def _fingerprint_for(api, customer):
    import hashlib
    import json

    body = json.dumps({"product": "placement", "amount": "10.00"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"POST\n{CUSTOMER}/charges\n{body}".encode()).hexdigest()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "bad key\n"])
def test_invalid_keys_are_400(api, funded, key):
    response = api.post(f"{CUSTOMER}/charges", {"product": "placement", "amount": "1.00"}, format="json",
                        HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_requests_with_one_key_move_money_once(api, token, funded):
    barrier = threading.Barrier(20)
    statuses = []

    def charge():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            response = client.post(f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"},
                                   format="json", HTTP_IDEMPOTENCY_KEY="same")
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=charge) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {201, 409} and 201 in statuses
    assert Charge.objects.count() == 1
    assert LedgerTransaction.objects.filter(type="charge").count() == 1
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == "990.00"
    replay = post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "10.00"}, key="same")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
