"""Reads of agencies, always scoped to one consumer service."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from agencies.exceptions import AgencyNotFound
from agencies.models import Agency, Contract
from disbalance.models import ConsumerService


def agency_get(*, service: ConsumerService, external_id: str) -> Agency:
    agency = (
        Agency.objects.filter(service=service, external_id=external_id)
        .prefetch_related(Prefetch("contracts", queryset=Contract.objects.order_by("-active", "-valid_from", "-id")))
        .first()
    )
    if agency is None:
        raise AgencyNotFound(f"No agency {external_id!r}.")
    return agency


def agency_list(*, service: ConsumerService, status: str | None = None, q: str | None = None) -> QuerySet[Agency]:
    qs = Agency.objects.filter(service=service).prefetch_related("contracts")
    if status:
        qs = qs.filter(status=status)
    if q:
        qs = qs.filter(external_id__icontains=q) | qs.filter(name__icontains=q)
    return qs


def agencies_to_refresh() -> QuerySet[Agency]:
    return Agency.objects.select_related("service").filter(balance_client_id__isnull=False)
