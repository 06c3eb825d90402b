"""Balance work shared by customers and agencies: bringing a party's client and person into Balance.

Creation is not idempotent in Balance (no source shows it honouring SERVICE_CLIENT_ID), so every step looks before
it creates, with criteria that cannot match someone else's object:

- the client carries billing's marker at the end of its NAME (`Motors LLC [disbalance:customer:12]`); before
  creating one, FindClient by that exact name, keeping only exact matches of the same kind (agency or not). One
  match is ours; several are an ambiguity for support (`PartyAmbiguous`), never a guess.
- the person is looked up among our own client's persons (GetClientPersons) by type and identity (INN and KPP for
  a company, last and first name for an individual); several matches go to support as well.
- with BALANCE_TRUSTS_SERVICE_CLIENT_ID the client also carries SERVICE_CLIENT_ID (the marker).

Progress is stored after every step, so a crash between steps repeats only the lookup. A lookup tries every name
and identity the party has had (its history), not only the current one: a change made after a call whose answer
was lost must not hide what that call created. An object found that way, when the sync carries a change
(`update`), is given the party's current data, as one created by this sync would have been.
"""

from __future__ import annotations

from django.conf import settings

from balance_gateway.client import BalanceClient, ClientInfo, PersonInfo, PersonSpec
from balance_gateway.exceptions import PartyAmbiguous
from balance_gateway.models import BalanceParty


def client_name(party: BalanceParty, name: str | None = None) -> str:
    """The client's NAME in Balance: the party's name (or `name`, one it had) and billing's marker."""
    return f"{party.name if name is None else name} [{party.balance_key}]"


def person_spec(party: BalanceParty) -> PersonSpec:
    common = {"person_type": party.person_type, "name": party.name,
              "email": party.email or settings.BALANCE_PERSON_FALLBACK_EMAIL,
              "phone": party.phone or settings.BALANCE_PERSON_FALLBACK_PHONE}
    if party.person_type == "ur":
        return PersonSpec(**common, inn=party.inn, kpp=party.kpp or None, long_name=party.long_name or party.name,
                          legal_address=party.legal_address,
                          postal_address=party.postal_address or party.legal_address,
                          postcode=party.postcode or None)
    return PersonSpec(**common, lname=party.lname, fname=party.fname, mname=party.mname or None)


def _client_args(party: BalanceParty) -> dict:
    return {"name": client_name(party), "email": party.email, "phone": party.phone, "is_agency": party.IS_AGENCY,
            "currency": party.service.currency}  # type: ignore[attr-defined]


def party_find_client(party: BalanceParty, client: BalanceClient) -> int | None:
    """Our client in Balance, found by the marker in its name (with any name the party has had); None if there is
    none. One FindClient per name: the page does not say whether `Name` matches exactly or in part."""
    matches_found: set[int] = set()
    for (name_had,) in values_had(party, ("name",)):
        name = client_name(party, name_had)
        found: list[ClientInfo] = client.find_client(name=name)
        matches_found |= {m.client_id for m in found if m.name == name and m.is_agency == party.IS_AGENCY}
    matches = sorted(matches_found)
    if len(matches) > 1:
        raise PartyAmbiguous(
            f"{len(matches)} Balance clients carry this party's marker ({', '.join(map(str, matches))}): "
            f"support must keep one and link it", method="FindClient", candidates=matches,
        )
    return matches[0] if matches else None


def values_had(party: BalanceParty, fields: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The distinct values of `fields` the party has had, the current ones first, then its history newest first:
    what an earlier call, whose answer was lost, may have sent to Balance."""
    values = [tuple(getattr(party, field) or "" for field in fields)]
    history = getattr(party, "history", None)
    if history is not None and party.pk is not None:
        for row in history.order_by("-history_date", "-history_id").values_list(*fields):
            row = tuple(value or "" for value in row)
            if row not in values:
                values.append(row)
    return values


def _person_identity(person_type: str, person: PersonInfo) -> tuple[str, str]:
    if person_type == "ur":
        return (person.inn or "", person.kpp or "")
    return (person.lname or "", person.fname or "")


def party_find_person(party: BalanceParty, client: BalanceClient) -> int | None:
    """Our person on our own client, by type and identity (INN and KPP, or last and first name: any the party has
    had); None if there is none."""
    assert party.balance_client_id is not None
    identities = values_had(party, ("inn", "kpp") if party.person_type == "ur" else ("lname", "fname"))
    persons = client.get_client_persons(party.balance_client_id)
    matches = sorted({p.person_id for p in persons
                      if not p.hidden and p.type == party.person_type
                      and _person_identity(party.person_type, p) in identities})
    if len(matches) > 1:
        raise PartyAmbiguous(
            f"{len(matches)} persons of client {party.balance_client_id} match this party "
            f"({', '.join(map(str, matches))}): support must keep one and link it", method="GetClientPersons",
            candidates=matches,
        )
    return matches[0] if matches else None


def party_sync(*, party: BalanceParty, client: BalanceClient, update: bool = False) -> dict:
    """Make sure the party's client and person exist in Balance (and carry its current data if `update`)."""
    model = type(party)
    done: dict[str, object] = {}
    if party.balance_client_id is None:
        client_id = party_find_client(party, client)
        done["client"] = "found"
        if client_id is None:
            client_id = client.create_client(
                **_client_args(party), service_id=party.service.balance_service_id,  # type: ignore[attr-defined]
                service_client_id=party.balance_key if settings.BALANCE_TRUSTS_SERVICE_CLIENT_ID else None,
            )
            done["client"] = "created"
        elif update:
            # Made by an earlier attempt whose answer was lost, perhaps with data older than this change.
            client.create_client(**_client_args(party), client_id=client_id)
            done["client"] = "found, updated"
        model.objects.filter(pk=party.pk).update(balance_client_id=client_id)
        party.balance_client_id = client_id
    elif update:
        client.create_client(**_client_args(party), client_id=party.balance_client_id)
        done["client"] = "updated"

    if party.balance_person_id is None:
        person_id = party_find_person(party, client)
        done["person"] = "found"
        if person_id is None:
            person_id = client.create_person(client_id=party.balance_client_id, person=person_spec(party))
            done["person"] = "created"
        elif update:
            client.create_person(client_id=party.balance_client_id, person=person_spec(party), person_id=person_id)
            done["person"] = "found, updated"
        model.objects.filter(pk=party.pk).update(balance_person_id=person_id)
        party.balance_person_id = person_id
    elif update:
        client.create_person(client_id=party.balance_client_id, person=person_spec(party),
                             person_id=party.balance_person_id)
        done["person"] = "updated"
    return done
