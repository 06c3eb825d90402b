"""`customer_data`: the Balance client's name or agency flag, or the person's type, name or INN, differ from
billing's (or the client/person is gone), for customers and agencies. Persons cost one call per client, so they
are read only when needed: parties changed within RECONCILE_PERSONS_WINDOW_MINUTES, parties with an open person
mismatch or a client difference, every party of a one-customer run, or all with `persons="all"`.
Support's fix (never automatic): send billing's client and person data to Balance."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from agencies.services import enqueue_sync as agency_sync
from balance_gateway.client import ClientInfo, PersonInfo
from balance_gateway.exceptions import BalanceError
from balance_gateway.models import BalanceParty
from balance_gateway.services import client_name
from customers.services import enqueue_sync as customer_sync
from reconciliation.findings import Checks, Finding, Severity, setting
from reconciliation.models import Mismatch
from reconciliation.reading import Run, read
from reconciliation.registry import STAGE_AGENCIES, STAGE_CUSTOMERS, Check, FixContext, FixNotes, register

CUSTOMER_DATA = "customer_data"
FIX_PUSH_DATA = "push_data"  # send billing's client/person data to Balance (support only)


def party_key(party: BalanceParty, part: str) -> str:
    what = "agency" if party.IS_AGENCY else "customer"
    return f"{CUSTOMER_DATA}:{what}:{party.pk}:{part}"


def _check_client(checks: Checks, party: BalanceParty, info: ClientInfo | None) -> bool:
    """The party's Balance client: exists, same name, right agency flag. True when something differs."""
    key = party_key(party, "client")
    ids = _party_ids(party)
    label = party.external_id  # type: ignore[attr-defined]
    if info is None:
        checks.differ(Finding(
            kind=CUSTOMER_DATA, key=key, severity=Severity.CRITICAL, fix=None,
            summary=f"{label}: Balance client {party.balance_client_id} not found",
            rows=[[gettext_noop("Balance client"), str(party.balance_client_id), "missing"]],
            note=gettext_noop("The client billing links to does not exist in Balance: support must link the right "
                              "client."),
            **ids,
        ))
        return True
    rows = []
    if info.name not in (client_name(party), party.name):  # billing's marked name, or an adopted client's own
        rows.append(["name", client_name(party), info.name])
    if info.is_agency != party.IS_AGENCY:
        rows.append(["agency flag", "yes" if party.IS_AGENCY else "no", "yes" if info.is_agency else "no"])
    if not rows:
        checks.equal(key)
        return False
    flag = len(rows) > 1 or rows[0][0] == "agency flag"
    note = gettext_noop("Fix sends billing's data to Balance (CreateClient with CLIENT_ID).")
    if flag:
        note = ("Balance never changes a client's agency flag: the client billing links to is the wrong kind. "
                "Support must link the right client; " + note)
    checks.differ(Finding(
        kind=CUSTOMER_DATA, key=key, severity=Severity.CRITICAL if flag else Severity.WARNING,
        summary=f"{label}: Balance client {info.client_id} differs ({', '.join(r[0] for r in rows)})",
        rows=rows, note=note, fix=FIX_PUSH_DATA, **ids,
    ))
    return True


def _check_persons(run: Run, checks: Checks, parties: Iterable[BalanceParty], open_keys: set[str],
                   client_differs: set[int]) -> None:
    for party in parties:
        if not _needs_persons(run, party, open_keys, party.pk in client_differs):
            continue
        try:
            persons = read(run.client.get_client_persons, party.balance_client_id)
        except BalanceError as exc:
            if exc.retryable:
                raise
            persons = []  # NOT_FOUND: the client is gone (reported by the client check)
        run.report.persons_checked += 1
        _check_person(checks, party, persons)


def _check_person(checks: Checks, party: BalanceParty, persons: list[PersonInfo]) -> None:
    key = party_key(party, "person")
    ids = _party_ids(party)
    label = party.external_id  # type: ignore[attr-defined]
    person = next((p for p in persons if p.person_id == party.balance_person_id), None)
    if person is None or person.hidden:
        state = "hidden" if person is not None else "missing"
        checks.differ(Finding(
            kind=CUSTOMER_DATA, key=key, severity=Severity.WARNING, fix=None,
            summary=f"{label}: Balance person {party.balance_person_id} is {state}",
            rows=[[gettext_noop("person"), str(party.balance_person_id), state]],
            note=gettext_noop("Invoices need the payer's person: support must link or re-create it."), **ids,
        ))
        return
    rows = []
    if person.type != party.person_type:
        rows.append(["person type", party.person_type, person.type])
    if person.name != party.name:
        rows.append(["person name", party.name, person.name])
    if (person.inn or "") != party.inn:
        rows.append(["INN", party.inn, person.inn or ""])
    if not rows:
        checks.equal(key)
        return
    checks.differ(Finding(
        kind=CUSTOMER_DATA, key=key, severity=Severity.WARNING,
        summary=f"{label}: Balance person {person.person_id} differs ({', '.join(r[0] for r in rows)})",
        rows=rows, note=gettext_noop("Fix sends billing's data to Balance (CreatePerson with person_id)."),
        fix=FIX_PUSH_DATA,
        **ids,
    ))


def _party_ids(party: BalanceParty) -> dict[str, int | None]:
    if party.IS_AGENCY:
        return {"service_id": party.service_id, "agency_id": party.pk}  # type: ignore[attr-defined]
    return {"service_id": party.service_id, "customer_id": party.pk}  # type: ignore[attr-defined]


def _needs_persons(run: Run, party: BalanceParty, open_keys: set[str], client_differs: bool) -> bool:
    if party.balance_person_id is None or run.persons == "none":
        return False
    if run.persons == "all" or client_differs or party_key(party, "person") in open_keys:
        return True
    window = timedelta(minutes=setting("RECONCILE_PERSONS_WINDOW_MINUTES", 180))
    return party.updated_at >= run.now - window or party.created_at >= run.now - window


def compare(run: Run, batch: Any, checks: Checks) -> None:
    """The batch's parties (customers or agencies): their Balance client, then their person when needed."""
    differs = {p.pk for p in batch.parties if _check_client(checks, p, batch.clients.get(p.balance_client_id))}
    _check_persons(run, checks, batch.parties, batch.open_keys, differs)


def _push_party_data(mismatch: Mismatch) -> tuple[bool, str]:
    if mismatch.customer is not None:
        with transaction.atomic():
            operation = customer_sync(mismatch.customer, update=True)
    elif mismatch.agency is not None:
        with transaction.atomic():
            operation = agency_sync(mismatch.agency, update=True)
    else:
        return False, "no customer or agency"
    return True, f"billing's data sent to Balance (outbox operation {operation.pk})"


def fix(context: FixContext, mismatches: list) -> FixNotes:
    return {mismatch.pk: _push_party_data(mismatch) for mismatch in mismatches}


register(Check(kind=CUSTOMER_DATA, label=_("customer/agency data"), stages=(STAGE_CUSTOMERS, STAGE_AGENCIES),
               compare=compare, autofix=False, fix=fix, always_fixable=True))
