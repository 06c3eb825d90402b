"""Reads of payments, always scoped to one consumer service."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from customers.models import Customer
from disbalance.models import ConsumerService
from payments.exceptions import OperationNotFound, ProductNotFound
from payments.models import Charge, Hold, Product, TopUp


def product_list(*, service: ConsumerService) -> QuerySet[Product]:
    return Product.objects.filter(service=service, is_active=True).order_by("code")


def product_get(*, service: ConsumerService, code: str) -> Product:
    product = Product.objects.filter(service=service, code=code, is_active=True).first()
    if product is None:
        raise ProductNotFound(f"No product {code!r} in the catalog.")
    return product


def _get(qs: QuerySet, pk: str, what: str):  # type: ignore[no-untyped-def]
    try:
        obj = qs.filter(pk=pk).first()
    except (ValueError, TypeError, ValidationError):  # not a UUID: names nothing (404, not 500)
        obj = None
    if obj is None:
        raise OperationNotFound(f"No {what} {pk!r}.")
    return obj


def topup_get(*, service: ConsumerService, topup_id: str) -> TopUp:
    return _get(TopUp.objects.select_related("customer", "payer_agency").filter(service=service), topup_id, "top-up")


def topup_list(*, customer: Customer) -> QuerySet[TopUp]:
    return TopUp.objects.select_related("customer", "payer_agency").filter(customer=customer)


def charge_get(*, service: ConsumerService, charge_id: str) -> Charge:
    return _get(Charge.objects.select_related("customer", "payer_agency", "product").filter(service=service),
                charge_id, "charge")


def charge_list(*, customer: Customer, product: str | None = None, since: datetime | None = None) -> QuerySet[Charge]:
    qs = Charge.objects.select_related("customer", "payer_agency", "product").filter(customer=customer)
    if product:
        qs = qs.filter(product__code=product)
    if since:
        qs = qs.filter(created_at__gte=since)
    return qs


def hold_get(*, service: ConsumerService, hold_id: str) -> Hold:
    return _get(Hold.objects.select_related("customer", "payer_agency", "product").filter(service=service),
                hold_id, "hold")
