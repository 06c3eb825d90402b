"""Writes for customers: registration (idempotent by external_id), updates, and their sync to Balance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agencies.models import Agency
from agencies.services import agency_has_active_contract
from balance_gateway.client import BalanceClient
from balance_gateway.models import RegistrationStatus
from balance_gateway.services import party_sync
from customers.exceptions import CustomerExists, ValidationFailed
from customers.locks import lock_customer
from customers.models import AgencyAssignment, Customer
from customers.selectors import customer_agency_in_force
from disbalance.exceptions import InvalidState
from disbalance.models import ConsumerService, OutboxOperation
from disbalance.outbox import outbox_enqueue, outbox_handler, outbox_on_failure
from disbalance.webhooks import webhook_emit

LEGAL_FIELDS = ("inn", "kpp", "long_name", "legal_address", "postal_address", "postcode", "lname", "fname", "mname")
SYNC_KIND = "customer.sync"


COMPANY_LEGAL_FIELDS = ("inn", "kpp", "long_name", "legal_address", "postal_address", "postcode")


def legal_details_missing(*, kind: str, legal: dict, adopting: bool = False) -> dict[str, list[str]]:
    """What Balance's CreatePerson needs: for a company (`ur`) INN, KPP, full name, legal and postal address and
    postcode; for a person (`ph`) last and first name: the missing ones, by field, with the message to show.
    Adopting an existing Balance client (import) creates no person: a company then needs INN and legal address."""
    if kind == Customer.Kind.COMPANY:
        required = ("inn", "legal_address") if adopting else COMPANY_LEGAL_FIELDS
        missing = [f for f in required if not legal.get(f)]
    else:
        missing = [f for f in ("lname", "fname") if not legal.get(f)]
    article = "an" if kind == Customer.Kind.INDIVIDUAL else "a"
    return {f: [f"Required for {article} {kind}."] for f in missing}


def legal_details_check(*, kind: str, legal: dict) -> None:
    missing = legal_details_missing(kind=kind, legal=legal)
    if missing:
        raise ValidationFailed("The request has invalid fields; see `errors`.",
                               errors={f"legal.{field}": messages for field, messages in missing.items()})


@dataclass(frozen=True)
class CustomerData:
    """What a consumer registers; `legal` holds the person's fields (company or individual)."""

    kind: str
    name: str
    email: str = ""
    phone: str = ""
    legal: dict[str, str] | None = None
    agency_external_id: str | None = None
    user_uids: tuple[int, ...] = ()

    def legal_values(self) -> dict[str, str]:
        legal = self.legal or {}
        return {field: legal.get(field) or "" for field in LEGAL_FIELDS}


@dataclass(frozen=True)
class RegisterResult:
    customer: Customer
    created: bool


def agency_for(service: ConsumerService, external_id: str | None) -> Agency | None:
    if not external_id:
        return None
    agency = Agency.objects.filter(service=service, external_id=external_id).first()
    if agency is None:
        raise ValidationFailed(f"Agency {external_id!r} is not registered.", errors={"agency": ["Unknown agency."]})
    return agency


def _differences(customer: Customer, data: CustomerData, agency: Agency | None) -> list[str]:
    wanted: dict[str, Any] = {"kind": data.kind, "name": data.name, "email": data.email, "phone": data.phone,
                              **data.legal_values()}
    diffs = [field for field, value in wanted.items() if getattr(customer, field) != value]
    if customer.agency_id != (agency.pk if agency else None):
        diffs.append("agency")
    if sorted(set(customer.user_uids)) != sorted(set(data.user_uids)):
        diffs.append("user_uids")
    return diffs


@transaction.atomic
def enqueue_sync(customer: Customer, *, update: bool) -> OutboxOperation:
    dedup_key = f"{SYNC_KIND}:{customer.pk}"
    if update:
        # A sync of this customer still waiting (e.g. its registration, in backoff after creating the client) covers
        # this change only if it also pushes data: say so, with its row locked so that no worker starts it with the
        # old payload meanwhile. One already running gets a new one after it: it may have read the data before this
        # change, and the Balance client would keep the old name.
        waiting = (OutboxOperation.objects.select_for_update()
                   .filter(dedup_key=dedup_key, status=OutboxOperation.Status.PENDING).first())
        if waiting is not None:
            if not waiting.payload.get("update"):
                waiting.payload = {**waiting.payload, "update": True}
                waiting.save(update_fields=["payload"])
            return waiting
    return outbox_enqueue(
        kind=SYNC_KIND, subject=f"customer:{customer.pk}", payload={"customer_id": customer.pk, "update": update},
        service=customer.service, dedup_key=dedup_key,
    )


def customer_register(*, service: ConsumerService, external_id: str, data: CustomerData) -> RegisterResult:
    """Register a customer, or return it if it exists with the same data (409 if with other data).

    The Balance client, person and user links are made in the background (outbox), status `registering`.
    """
    legal_details_check(kind=data.kind, legal=data.legal or {})
    agency = agency_for(service, data.agency_external_id)
    existing = Customer.objects.filter(service=service, external_id=external_id).first()
    if existing is None:
        try:
            with transaction.atomic():
                customer = Customer.objects.create(
                    service=service, external_id=external_id, kind=data.kind, name=data.name, email=data.email,
                    phone=data.phone, agency=agency, user_uids=sorted(set(data.user_uids)), **data.legal_values(),
                )
                enqueue_sync(customer, update=False)
                AgencyAssignment.objects.create(customer=customer, agency=agency, since=customer.created_at,
                                                changed_by=f"service:{service.slug}", reason="registration")
            return RegisterResult(customer=customer, created=True)
        except IntegrityError:
            # Registered concurrently by another request: answer as for a repeat.
            existing = Customer.objects.get(service=service, external_id=external_id)
    diffs = _differences(existing, data, agency)
    if diffs:
        raise CustomerExists(
            f"Customer {external_id!r} exists with other data ({', '.join(diffs)}); use PATCH to change it.",
            extra={"fields": diffs},
        )
    return RegisterResult(customer=existing, created=False)


UPDATABLE_FIELDS = ("name", "email", "phone", *LEGAL_FIELDS)


@transaction.atomic
def customer_update(*, customer: Customer, changes: dict[str, Any]) -> Customer:
    """Change name, contacts or legal details (a partial change: `legal` is merged into the stored details, and the
    result must still hold what Balance needs for the customer's kind); synced to Balance through the outbox."""
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    changes = dict(changes)
    if "legal" in changes:
        legal_details_check(kind=customer.kind,
                            legal={f: getattr(customer, f) for f in LEGAL_FIELDS} | (changes["legal"] or {}))
    legal = changes.pop("legal", None) or {}
    values = {**{k: v for k, v in changes.items() if k in UPDATABLE_FIELDS},
              **{k: (v or "") for k, v in legal.items() if k in LEGAL_FIELDS}}
    changed = [field for field, value in values.items() if getattr(customer, field) != value]
    if not changed:
        return customer
    for field in changed:
        setattr(customer, field, values[field])
    customer.updated_at = timezone.now()
    fields = [*changed, "updated_at"]
    if customer.status == RegistrationStatus.FAILED:
        customer.status = RegistrationStatus.REGISTERING
        customer.status_reason = ""
        fields += ["status", "status_reason"]
    customer.save(update_fields=fields)
    # update=True even before the client exists: a sync already running may create it from the old data.
    enqueue_sync(customer, update=True)
    webhook_emit(service=customer.service, customer=customer, type="customer.updated",
                 data={"customer": customer.external_id, "changed": sorted(changed)})
    return customer


def _set_status(customer_id: int, status: str, reason: str) -> None:
    customer = Customer.objects.get(pk=customer_id)
    if customer.status == status and customer.status_reason == reason:
        return
    customer.status = status
    customer.status_reason = reason[:500]
    customer.updated_at = timezone.now()
    customer.save(update_fields=["status", "status_reason", "updated_at"])


@outbox_handler(SYNC_KIND)
def customer_sync_to_balance(operation: OutboxOperation) -> dict:
    """Outbox handler: client, person and user links in Balance, then `active`. Safe to repeat."""
    customer = Customer.objects.select_related("service").get(pk=operation.payload["customer_id"])
    with BalanceClient() as client:
        done = party_sync(party=customer, client=client, update=bool(operation.payload.get("update")))
        linked = set(customer.linked_user_uids)
        notes = []
        for uid in customer.user_uids:
            if uid in linked:
                continue
            result = client.create_user_client_association(client_id=customer.balance_client_id, user_uid=uid)
            if result.linked_elsewhere:
                notes.append(f"user {uid}: {result.message}")
            linked.add(uid)
            Customer.objects.filter(pk=customer.pk).update(linked_user_uids=sorted(linked))
    with transaction.atomic():
        _set_status(customer.pk, RegistrationStatus.ACTIVE, "; ".join(notes))
        webhook_emit(service=customer.service, customer=customer, type="customer.registered",
                     data=_event_data(customer),
                     dedup_key=f"customer.registered:{customer.pk}")
    return {**done, "linked_users": sorted(linked)}


def _event_data(customer: Customer) -> dict:
    customer.refresh_from_db(fields=["status", "status_reason", "balance_client_id"])
    return {"customer": customer.external_id, "status": customer.status, "status_reason": customer.status_reason}


@outbox_on_failure(SYNC_KIND)
def _customer_sync_failed(operation: OutboxOperation, error: str, final: bool) -> None:
    customer_id = operation.payload["customer_id"]
    current = Customer.objects.filter(pk=customer_id).values_list("status", flat=True).first()
    if current is None:
        return
    if final:
        with transaction.atomic():
            _set_status(customer_id, RegistrationStatus.FAILED, f"Balance: {error}")
            customer = Customer.objects.select_related("service").get(pk=customer_id)
            webhook_emit(service=customer.service, customer=customer, type="customer.registration_failed",
                         data=_event_data(customer),
                         dedup_key=f"customer.registration_failed:{customer.pk}:{operation.pk}")
    elif current != RegistrationStatus.ACTIVE:
        _set_status(customer_id, current, f"retrying (attempt {operation.attempts}): {error}")


# What other apps do in the same transaction when a customer's payer changes (payments: the new payer's orders in
# Balance). Registered by the app that owns the work, so that customers imports none of them.
PayerChangeHook = Callable[[Customer, Agency | None], None]
_PAYER_CHANGE_HOOKS: list[PayerChangeHook] = []


def on_payer_change(hook: PayerChangeHook) -> PayerChangeHook:
    if hook in _PAYER_CHANGE_HOOKS or any(h.__qualname__ == hook.__qualname__ and h.__module__ == hook.__module__
                                          for h in _PAYER_CHANGE_HOOKS):
        raise RuntimeError(f"payer change hook {hook.__module__}.{hook.__qualname__} registered twice")
    _PAYER_CHANGE_HOOKS.append(hook)
    return hook



# --- agency change --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgencyChangeResult:
    agency: Agency | None
    since: Any
    changed: bool


@transaction.atomic
def agency_change(*, customer: Customer, agency: Agency | None, reason: str = "", changed_by: str,
                  user: Any = None) -> AgencyChangeResult:
    """Switch the customer's payer now, in one step: the history row, what the registered payer-change hooks do
    (payments: the new payer's orders in Balance, through the outbox) and, from this commit on, every charge
    billed under the new payer.

    Open holds stay with the payer they were made under; the old payer's money stays its own (shown apart,
    never spent under another payer). An agency without an active contract for the service is refused.
    """
    customer = lock_customer(customer.pk)
    current = customer_agency_in_force(customer)
    if customer.agency_id == (agency.pk if agency else None):
        return AgencyChangeResult(agency=agency, since=current.since if current else customer.created_at,
                                  changed=False)
    if agency is not None:
        if agency.service_id != customer.service_id:
            raise ValidationFailed("Unknown agency.", errors={"agency": ["Unknown agency."]})
        if agency.status != RegistrationStatus.ACTIVE or not agency_has_active_contract(agency=agency):
            raise InvalidState(f"Agency {agency.external_id!r} has no active contract for this service.")
    now = timezone.now()
    old_agency = customer.agency
    if current is not None:
        current.until = now
        current.save(update_fields=["until"])
    AgencyAssignment.objects.create(customer=customer, agency=agency, since=now, changed_by=changed_by,
                                    changed_by_user=user, reason=reason[:500])
    customer.agency = agency
    customer.updated_at = now
    customer.save(update_fields=["agency", "updated_at"])
    for hook in _PAYER_CHANGE_HOOKS:
        hook(customer, agency)
    webhook_emit(service=customer.service, customer=customer, type="agency.changed",
                 dedup_key=f"agency.changed:{customer.pk}:{now}",
                 data={"customer": customer.external_id, "agency": agency.external_id if agency else None,
                       "previous_agency": old_agency.external_id if old_agency else None, "since": now,
                       "reason": reason})
    return AgencyChangeResult(agency=agency, since=now, changed=True)

