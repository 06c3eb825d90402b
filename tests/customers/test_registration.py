"""Registration in Balance through the outbox, against the emulator over HTTP (faults included)."""

import threading

import pytest
from django.db import connection

from balance_gateway.models import BalanceCall
from customers.models import Customer
from disbalance.models import OutboxOperation
from tests.conftest import requires_postgres
from tests.customers.test_api import COMPANY, PERSON

pytestmark = pytest.mark.django_db


def _state(emulator):
    return emulator.state()


def test_registration_creates_client_person_and_user_link(api, emulator, run_outbox):
    assert api.post("/api/v1/customers", COMPANY, format="json").status_code == 201
    run_outbox()
    body = api.get("/api/v1/customers/dealer:20101").json()
    assert body["status"] == "active", body
    assert body["balance"]["client_id"] and body["balance"]["person_id"]
    state = _state(emulator)
    [client] = state["clients"]
    assert int(client["CLIENT_ID"]) == body["balance"]["client_id"]
    customer = Customer.objects.get()
    # billing's marker ends the name: the client is found again after a lost answer (no SERVICE_CLIENT_ID)
    assert client["NAME"] == f"Motors LLC [disbalance:customer:{customer.pk}]" and int(client["IS_AGENCY"]) == 0
    [person] = state["persons"]
    assert person["TYPE"] == "ur" and person["INN"] == "7701234567"
    assert (person["LONGNAME"], person["POSTCODE"], person["KPP"]) == ("Limited Liability Company Motors", "125009",
                                                                       "770101001")
    assert customer.linked_user_uids == [5001]
    assert BalanceCall.objects.filter(method="CreateClient", outcome="ok").count() == 1
    assert BalanceCall.objects.exclude(operation=None).count() == BalanceCall.objects.count()


def test_individual_gets_a_ph_person(api, emulator, run_outbox):
    api.post("/api/v1/customers", PERSON, format="json")
    run_outbox()
    [person] = _state(emulator)["persons"]
    assert person["TYPE"] == "ph"


def test_patch_syncs_to_balance(api, emulator, run_outbox):
    api.post("/api/v1/customers", COMPANY, format="json")
    run_outbox()
    api.patch("/api/v1/customers/dealer:20101", {"name": "Motors Renamed", "legal": {"legal_address": "Kazan"}},
              format="json")
    run_outbox()
    state = _state(emulator)
    pk = Customer.objects.get().pk
    assert [c["NAME"] for c in state["clients"]] == [f"Motors Renamed [disbalance:customer:{pk}]"]
    assert len(state["persons"]) == 1 and state["persons"][0]["NAME"] == "Motors Renamed"


def test_final_error_marks_failed_with_reason_and_admin_retry_recovers(api, emulator, run_outbox, balance):
    emulator.set_faults({"Balance2.CreateClient": {"error_rate": 1.0}})
    from django.test import override_settings

    with override_settings(OUTBOX_MAX_ATTEMPTS=2):
        api.post("/api/v1/customers", COMPANY, format="json")
        run_outbox()
    body = api.get("/api/v1/customers/dealer:20101").json()
    assert body["status"] == "failed"
    assert any(code in body["status_reason"] for code in ("INTERNAL_ERROR", "HTTP_50", "TRANSIENT_FAULT"))
    op = OutboxOperation.objects.get(kind="customer.sync")
    assert op.status == "failed" and op.attempts == 2
    emulator.set_faults({})
    from disbalance.outbox import outbox_retry

    outbox_retry(operation=op)
    run_outbox()
    assert api.get("/api/v1/customers/dealer:20101").json()["status"] == "active"


def test_invalid_data_in_balance_is_a_final_failure(api, emulator, run_outbox):
    # The emulator refuses an `ur` person without a valid INN; the API validates it, so go around it.
    api.post("/api/v1/customers", COMPANY, format="json")
    Customer.objects.update(inn="12")
    run_outbox()
    body = api.get("/api/v1/customers/dealer:20101").json()
    assert body["status"] == "failed" and "INVALID_INN" in body["status_reason"]
    assert OutboxOperation.objects.get().attempts == 1


@pytest.mark.parametrize("seed", [1, 2])
def test_faults_on_every_method_leave_no_duplicates(api, emulator, run_outbox, seed, settings):
    settings.BALANCE_READ_TIMEOUT = 0.3
    emulator.set_faults({"seed": seed, "*": {"error_rate": 0.3, "timeout_rate": 0.2, "lost_response_rate": 0.1}})
    for i in range(15):
        body = {**COMPANY, "external_id": f"dealer:{i}", "user_uids": [9000 + i]}
        assert api.post("/api/v1/customers", body, format="json").status_code == 201
    for _ in range(30):
        run_outbox()
        if not Customer.objects.exclude(status="active").exists():
            break
    emulator.set_faults({})
    assert list(Customer.objects.exclude(status="active").values_list("external_id", "status_reason")) == []
    state = _state(emulator)
    assert len(state["clients"]) == 15
    assert len(state["persons"]) == 15
    assert sorted(int(c["CLIENT_ID"]) for c in state["clients"]) == sorted(
        Customer.objects.values_list("balance_client_id", flat=True))
    assert BalanceCall.objects.exclude(outcome="ok").exists(), "the faults did not fire"


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_same_external_id_registered_ten_times_concurrently(api, emulator, token, run_outbox):
    from rest_framework.test import APIClient

    barrier = threading.Barrier(10)
    statuses = []

    def register():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            statuses.append(client.post("/api/v1/customers", COMPANY, format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=register) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 9 + [201]
    run_outbox()
    assert Customer.objects.count() == 1
    assert len(_state(emulator)["clients"]) == 1
    other = {**COMPANY, "name": "Different"}
    assert api.post("/api/v1/customers", other, format="json").status_code == 409
