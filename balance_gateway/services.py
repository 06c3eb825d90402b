"""Balance work shared by customers and agencies: bringing a party's client and person into Balance.

Each step is safe to repeat after an unknown outcome: the client is created with the service's own key
(SERVICE_CLIENT_ID, or looked up by name and e-mail when Balance does not honour it), and the person is
looked up on the client before one is created. Progress is stored after every step.
"""

from __future__ import annotations

from django.conf import settings

from balance_gateway.client import BalanceClient
from balance_gateway.models import BalanceParty
from disbalance.outbox import OutboxFinalError


def _client_fields(party: BalanceParty) -> dict:
    return {
        "service_id": party.service.balance_service_id,  # type: ignore[attr-defined]
        "name": party.name,
        "email": party.email,
        "phone": party.phone,
    }


def _person_fields(party: BalanceParty) -> dict:
    fields = {"person_type": party.person_type, "name": party.name, "email": party.email, "phone": party.phone}
    if party.person_type == "ur":
        fields.update(inn=party.inn, kpp=party.kpp or None, legal_address=party.legal_address)
    else:
        fields.update(lname=party.lname, fname=party.fname, mname=party.mname or None)
    return fields


def _find_client_by_name(party: BalanceParty, client: BalanceClient) -> int | None:
    matches = client.find_client(name=party.name, email=party.email or None)
    matches = [m for m in matches if m.is_agency == party.IS_AGENCY]
    if len(matches) > 1:
        ids = ", ".join(str(m.client_id) for m in matches)
        raise OutboxFinalError(f"several Balance clients match name and e-mail ({ids}); support must link one")
    return matches[0].client_id if matches else None


def party_sync(*, party: BalanceParty, client: BalanceClient, update: bool = False) -> dict:
    """Make sure the party's client and person exist in Balance (and carry its current data if `update`)."""
    model = type(party)
    done: dict[str, object] = {}
    if party.balance_client_id is None:
        client_id = None
        if not settings.BALANCE_TRUSTS_SERVICE_CLIENT_ID:
            client_id = _find_client_by_name(party, client)
        if client_id is None:
            client_id = client.create_client(
                **_client_fields(party), is_agency=party.IS_AGENCY, service_client_id=party.balance_key,
                currency=party.service.currency,  # type: ignore[attr-defined]
            )
        model.objects.filter(pk=party.pk).update(balance_client_id=client_id)
        party.balance_client_id = client_id
        done["client"] = "created"
    elif update:
        client.create_client(**_client_fields(party), client_id=party.balance_client_id)
        done["client"] = "updated"

    if party.balance_person_id is None:
        # CreatePerson is not idempotent: an earlier attempt may have made the person already.
        persons = client.get_client_persons(party.balance_client_id)
        existing = next((p for p in persons if p.type == party.person_type and not p.hidden), None)
        if existing is not None:
            person_id = existing.person_id
            done["person"] = "found"
        else:
            person_id = client.create_person(client_id=party.balance_client_id, **_person_fields(party))
            done["person"] = "created"
        model.objects.filter(pk=party.pk).update(balance_person_id=person_id)
        party.balance_person_id = person_id
    elif update:
        client.create_person(
            client_id=party.balance_client_id, person_id=party.balance_person_id, **_person_fields(party)
        )
        done["person"] = "updated"
    return done
