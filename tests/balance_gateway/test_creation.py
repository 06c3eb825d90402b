"""Creation that is safe without SERVICE_CLIENT_ID: billing looks its client up by the marker in the client's NAME
(FindClient) and its person among its own client's persons (GetClientPersons) before creating either; several
matches go to support, never a guess. Against recorded replies, and end to end against the emulator under lost
responses."""

from __future__ import annotations

import pytest

from balance_gateway.client import BalanceClient
from balance_gateway.exceptions import PartyAmbiguous
from balance_gateway.services import client_name, party_sync
from customers.models import Customer
from tests.customers.test_api import COMPANY
from tests.factories import ConsumerServiceFactory, CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def party(settings):
    settings.BALANCE_TRUSTS_SERVICE_CLIENT_ID = False
    service = ConsumerServiceFactory(slug="autoru", balance_service_id=7)
    return CustomerFactory(service=service, name="Motors LLC", balance_client_id=None, balance_person_id=None,
                           status="registering")


def found_client(client_id: int, name: str, is_agency: int = 0) -> dict:
    return {"CLIENT_ID": client_id, "NAME": name, "EMAIL": "", "PHONE": "", "IS_AGENCY": is_agency, "AGENCY_ID": 0}


def person(person_id: int, inn: str = "7707654321", kpp: str = "770701001") -> dict:
    return {"id": person_id, "type": "ur", "name": "Motors LLC", "inn": inn, "kpp": kpp, "hidden": 0}


def sync(party, url: str) -> dict:
    with BalanceClient(url=url) as client:
        return party_sync(party=party, client=client)


def test_new_party_is_looked_up_then_created_with_its_marker(party, fake_balance):
    fake_balance.reply("FindClient", [0, "", [found_client(555, "Motors LLC")]])  # someone else's, unmarked
    fake_balance.reply("CreateClient", [0, "SUCCESS", 1000])
    fake_balance.reply("GetClientPersons", [])
    fake_balance.reply("CreatePerson", 2000)
    assert sync(party, fake_balance.url) == {"client": "created", "person": "created"}
    marked = f"Motors LLC [disbalance:customer:{party.pk}]"
    assert client_name(party) == marked
    assert fake_balance.last("FindClient").params == ({"Name": marked},)
    fields = fake_balance.last("CreateClient").params[1]
    assert fields["NAME"] == marked and "SERVICE_CLIENT_ID" not in fields
    person_fields = fake_balance.last("CreatePerson").params[1]
    assert {k: person_fields[k] for k in ("longname", "kpp", "postcode", "postaddress")} == {
        "longname": party.long_name, "kpp": "770701001", "postcode": "119334", "postaddress": "Moscow, Lenina 2"}
    party.refresh_from_db()
    assert (party.balance_client_id, party.balance_person_id) == (1000, 2000)


def test_a_client_made_by_a_lost_call_is_found_not_created_again(party, fake_balance):
    marked = f"Motors LLC [disbalance:customer:{party.pk}]"
    fake_balance.reply("FindClient", [0, "", [found_client(1000, marked), found_client(1001, marked, is_agency=1)]])
    fake_balance.reply("GetClientPersons", [person(2000), person(2001, inn="7700000000")])
    assert sync(party, fake_balance.url) == {"client": "found", "person": "found"}
    assert not fake_balance.calls("CreateClient") and not fake_balance.calls("CreatePerson")
    party.refresh_from_db()
    assert (party.balance_client_id, party.balance_person_id) == (1000, 2000)
    assert fake_balance.last("GetClientPersons").params == (1000, 0)  # on our own client only


def test_a_client_made_under_an_earlier_name_is_found_and_given_the_new_data(party, fake_balance):
    """CreateClient's answer lost, then the customer renamed before the retry (the soak's seed 303, JSON variant,
    for the person): the lookup tries the name the lost call sent too, and the sync carrying the change pushes it."""
    old_marked = f"Motors LLC [disbalance:customer:{party.pk}]"
    new_marked = f"Motors Group LLC [disbalance:customer:{party.pk}]"
    party.name = "Motors Group LLC"
    party.save()
    fake_balance.reply("FindClient", [0, "", []], [0, "", [found_client(1000, old_marked)]])
    fake_balance.reply("CreateClient", [0, "SUCCESS", 1000])
    fake_balance.reply("GetClientPersons", [person(2000)])
    fake_balance.reply("CreatePerson", 2000)
    with BalanceClient(url=fake_balance.url) as client:
        done = party_sync(party=party, client=client, update=True)
    assert done == {"client": "found, updated", "person": "found, updated"}
    assert [call.params for call in fake_balance.calls("FindClient")] == [({"Name": new_marked},),
                                                                          ({"Name": old_marked},)]
    (edit,) = fake_balance.calls("CreateClient")
    assert edit.params[1]["CLIENT_ID"] == 1000 and edit.params[1]["NAME"] == new_marked
    (person_edit,) = fake_balance.calls("CreatePerson")
    assert person_edit.params[1]["person_id"] == 2000 and person_edit.params[1]["name"] == "Motors Group LLC"
    party.refresh_from_db()
    assert (party.balance_client_id, party.balance_person_id) == (1000, 2000)


def test_a_client_found_without_a_change_to_carry_is_not_edited(party, fake_balance):
    marked = f"Motors LLC [disbalance:customer:{party.pk}]"
    fake_balance.reply("FindClient", [0, "", [found_client(1000, marked)]])
    fake_balance.reply("GetClientPersons", [person(2000)])
    assert sync(party, fake_balance.url) == {"client": "found", "person": "found"}
    assert len(fake_balance.calls("FindClient")) == 1  # never renamed: one lookup
    assert not fake_balance.calls("CreateClient") and not fake_balance.calls("CreatePerson")


def test_a_person_made_under_earlier_details_is_found_not_created_again(party, fake_balance):
    """CreatePerson's answer lost, then the company's KPP changed: the person the lost call made carries the old
    KPP; it is ours (same client, an identity the party had) and gets the new details."""
    party.balance_client_id = 1000
    party.save()
    party.kpp = "770702002"
    party.save()
    fake_balance.reply("CreateClient", [0, "SUCCESS", 1000])
    fake_balance.reply("GetClientPersons", [person(2000, kpp="770701001"), person(2001, inn="7700000000")])
    fake_balance.reply("CreatePerson", 2000)
    with BalanceClient(url=fake_balance.url) as client:
        done = party_sync(party=party, client=client, update=True)
    assert done["person"] == "found, updated"
    (person_edit,) = fake_balance.calls("CreatePerson")
    assert person_edit.params[1]["person_id"] == 2000 and person_edit.params[1]["kpp"] == "770702002"
    party.refresh_from_db()
    assert party.balance_person_id == 2000


def test_two_clients_with_our_marker_go_to_support(party, fake_balance):
    marked = f"Motors LLC [disbalance:customer:{party.pk}]"
    fake_balance.reply("FindClient", [0, "", [found_client(1000, marked), found_client(1002, marked)]])
    with pytest.raises(PartyAmbiguous) as caught:
        sync(party, fake_balance.url)
    assert caught.value.candidates == [1000, 1002] and "support" in caught.value.message
    assert not caught.value.retryable
    assert not fake_balance.calls("CreateClient")
    party.refresh_from_db()
    assert party.balance_client_id is None


def test_two_matching_persons_go_to_support(party, fake_balance):
    party.balance_client_id = 1000
    party.save()
    fake_balance.reply("GetClientPersons", [person(2000), person(2001)])
    with pytest.raises(PartyAmbiguous) as caught:
        sync(party, fake_balance.url)
    assert caught.value.candidates == [2000, 2001]
    assert not fake_balance.calls("CreatePerson")


def test_service_client_id_is_sent_only_when_trusted(party, fake_balance, settings):
    settings.BALANCE_TRUSTS_SERVICE_CLIENT_ID = True
    fake_balance.reply("FindClient", [0, "", []])
    fake_balance.reply("CreateClient", [0, "SUCCESS", 1000])
    fake_balance.reply("GetClientPersons", [])
    fake_balance.reply("CreatePerson", 2000)
    sync(party, fake_balance.url)
    fields = fake_balance.last("CreateClient").params[1]
    assert fields["SERVICE_ID"] == 7 and fields["SERVICE_CLIENT_ID"] == f"disbalance:customer:{party.pk}"


@pytest.mark.django_db(transaction=True)
def test_registrations_under_lost_responses_make_no_duplicates(api, emulator, run_outbox, settings):
    settings.BALANCE_TRUSTS_SERVICE_CLIENT_ID = False
    emulator.set_faults({"CreateClient": {"lost_response_rate": 0.5}, "CreatePerson": {"lost_response_rate": 0.5},
                         "seed": 7})
    for n in range(8):
        body = {**COMPANY, "external_id": f"dealer:{n}", "name": f"Motors {n} LLC"}
        assert api.post("/api/v1/customers", body, format="json").status_code == 201
    for _ in range(6):
        run_outbox()
    emulator.set_faults({})
    for _ in range(3):
        run_outbox()
    customers = list(Customer.objects.all())
    assert [c.status for c in customers] == ["active"] * 8, [c.status_reason for c in customers]
    state = emulator.state()
    names = [c["NAME"] for c in state["clients"]]
    assert len(names) == len(set(names)) == 8  # no duplicate client
    persons_per_client: dict[int, int] = {}
    for p in state["persons"]:
        client_id = int(p.get("client_id") or p.get("CLIENT_ID"))
        persons_per_client[client_id] = persons_per_client.get(client_id, 0) + 1
    assert sorted(persons_per_client.values()) == [1] * 8  # no duplicate person
    assert {c.balance_client_id for c in customers} == set(persons_per_client)
