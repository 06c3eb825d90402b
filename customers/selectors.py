"""Reads of customers, always scoped to one consumer service."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from customers.exceptions import CustomerNotFound
from customers.models import AgencyAssignment, Customer
from disbalance.models import ConsumerService


def customer_get(*, service: ConsumerService, external_id: str) -> Customer:
    customer = Customer.objects.select_related("agency", "service").filter(
        service=service, external_id=external_id
    ).first()
    if customer is None:
        raise CustomerNotFound(f"No customer {external_id!r}.")
    return customer


def customer_list(*, service: ConsumerService, status: str | None = None, agency: str | None = None,
                  q: str | None = None) -> QuerySet[Customer]:
    qs = Customer.objects.select_related("agency").filter(service=service)
    if status:
        qs = qs.filter(status=status)
    if agency:
        qs = qs.filter(agency__external_id=agency)
    if q:
        qs = qs.filter(Q(external_id__icontains=q) | Q(name__icontains=q) | Q(email__icontains=q) | Q(inn=q))
    return qs


def customer_agency_in_force(customer: Customer) -> AgencyAssignment | None:
    return AgencyAssignment.objects.filter(customer=customer, until__isnull=True).first()


def customer_agency_history(customer: Customer) -> QuerySet[AgencyAssignment]:
    """Who paid for the customer when, newest first."""
    return AgencyAssignment.objects.filter(customer=customer).select_related("agency").order_by("-since", "-id")
