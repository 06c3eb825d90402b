"""Writes for agencies: registration (idempotent by external_id), contracts read from Balance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from agencies.exceptions import AgencyExists
from agencies.models import Agency, Contract
from balance_gateway.client import BalanceClient, ContractInfo
from balance_gateway.models import RegistrationStatus
from balance_gateway.services import party_sync
from disbalance.models import ConsumerService, OutboxOperation
from disbalance.outbox import outbox_enqueue, outbox_handler, outbox_on_failure

LEGAL_FIELDS = ("inn", "kpp", "long_name", "legal_address", "postal_address", "postcode")
SYNC_KIND = "agency.sync"


@dataclass(frozen=True)
class AgencyData:
    name: str
    email: str = ""
    phone: str = ""
    legal: dict[str, str] | None = None

    def values(self) -> dict[str, str]:
        legal = self.legal or {}
        return {"name": self.name, "email": self.email, "phone": self.phone,
                **{field: legal.get(field) or "" for field in LEGAL_FIELDS}}


@dataclass(frozen=True)
class AgencyRegisterResult:
    agency: Agency
    created: bool


def agency_register(*, service: ConsumerService, external_id: str, data: AgencyData) -> AgencyRegisterResult:
    """Register an agency (a Balance client with the agency flag), or return it if it exists with the same data."""
    existing = Agency.objects.filter(service=service, external_id=external_id).first()
    if existing is None:
        try:
            with transaction.atomic():
                agency = Agency.objects.create(service=service, external_id=external_id, **data.values())
                enqueue_sync(agency, update=False)
            return AgencyRegisterResult(agency=agency, created=True)
        except IntegrityError:
            existing = Agency.objects.get(service=service, external_id=external_id)
    diffs = [field for field, value in data.values().items() if getattr(existing, field) != value]
    if diffs:
        raise AgencyExists(
            f"Agency {external_id!r} exists with other data ({', '.join(diffs)}).", extra={"fields": diffs}
        )
    return AgencyRegisterResult(agency=existing, created=False)


def enqueue_sync(agency: Agency, *, update: bool) -> OutboxOperation:
    return outbox_enqueue(
        kind=SYNC_KIND, subject=f"agency:{agency.pk}", payload={"agency_id": agency.pk, "update": update},
        service=agency.service, dedup_key=f"{SYNC_KIND}:{agency.pk}",
    )


@transaction.atomic
def agency_contracts_store(*, agency: Agency, contracts: list[ContractInfo],
                           credit_limits: dict[int, Decimal] | None = None) -> list[Contract]:
    """Replace the agency's view of its contracts with what Balance returned. GetClientContracts carries no
    credit limit: `credit_limits` (from GetClientCreditLimits, by contract id) sets it; a contract missing there
    keeps the limit it had."""
    now = timezone.now()
    credit_limits = credit_limits or {}
    stored = []
    seen = []
    for info in contracts:
        defaults = {
            "number": info.external_id or "", "active": info.is_active and not info.is_suspended,
            "payment_type": info.payment_type, "valid_from": info.dt, "valid_to": info.finish_dt,
            "services": list(info.services), "refreshed_at": now,
        }
        if info.contract_id in credit_limits:
            defaults["credit_limit"] = credit_limits[info.contract_id]
        contract, _ = Contract.objects.update_or_create(agency=agency, balance_contract_id=info.contract_id,
                                                        defaults=defaults)
        stored.append(contract)
        seen.append(info.contract_id)
    # A contract Balance no longer returns is not active for us any more.
    Contract.objects.filter(agency=agency).exclude(balance_contract_id__in=seen).update(active=False, refreshed_at=now)
    Agency.objects.filter(pk=agency.pk).update(contracts_refreshed_at=now)
    return stored


def agency_contracts_refresh(*, agency: Agency, client: BalanceClient | None = None) -> list[Contract]:
    """Read the agency's contracts from Balance (GetClientContracts) and, for postpaid ones, their credit limits
    (GetClientCreditLimits), and store them."""
    client = client or BalanceClient()
    contracts = client.get_client_contracts(agency.balance_client_id)
    credit_limits: dict[int, Decimal] = {}
    if any(c.payment_type == "postpaid" for c in contracts):
        limits = client.get_client_credit_limits(client_id=agency.balance_client_id,
                                                 product_id=settings.BALANCE_WALLET_PRODUCT_ID)
        credit_limits = {limit.contract_id: limit.limit_total for limit in limits.limits}
    return agency_contracts_store(agency=agency, contracts=contracts, credit_limits=credit_limits)


def agency_has_active_contract(*, agency: Agency, on: date | None = None) -> bool:
    on = on or timezone.localdate()
    service_id = agency.service.balance_service_id
    return any(contract.valid_on(day=on, balance_service_id=service_id)
               for contract in agency.contracts.filter(active=True))


def _set_status(agency_id: int, status: str, reason: str) -> None:
    Agency.objects.filter(pk=agency_id).update(status=status, status_reason=reason[:500], updated_at=timezone.now())


@outbox_handler(SYNC_KIND)
def agency_sync_to_balance(operation: OutboxOperation) -> dict:
    """Outbox handler: the agency's client (agency flag) and person in Balance, its contracts, then `active`."""
    agency = Agency.objects.select_related("service").get(pk=operation.payload["agency_id"])
    with BalanceClient() as client:
        done = party_sync(party=agency, client=client, update=bool(operation.payload.get("update")))
        contracts = agency_contracts_refresh(agency=agency, client=client)
    _set_status(agency.pk, RegistrationStatus.ACTIVE, "")
    return {**done, "contracts": len(contracts)}


@outbox_on_failure(SYNC_KIND)
def _agency_sync_failed(operation: OutboxOperation, error: str, final: bool) -> None:
    agency_id = operation.payload["agency_id"]
    current = Agency.objects.filter(pk=agency_id).values_list("status", flat=True).first()
    if current is None:
        return
    if final:
        _set_status(agency_id, RegistrationStatus.FAILED, f"Balance: {error}")
    elif current != RegistrationStatus.ACTIVE:
        _set_status(agency_id, current, f"retrying (attempt {operation.attempts}): {error}")
