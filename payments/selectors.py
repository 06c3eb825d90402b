"""Reads of payments, always scoped to one consumer service."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import QuerySet

from customers.exceptions import CustomerNotFound
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


# The fields `charge_target_get` reads, in each model's field order (the order `Model.from_db` takes values in).
_CUSTOMER_FIELDS = ["id", "service_id", "external_id", "agency_id"]
_PRODUCT_FIELDS = ["id", "service_id", "code", "name", "kind", "is_active"]
_CHARGE_TARGET_SQL = (
    "SELECT c.id, c.service_id, c.external_id, c.agency_id, p.id, p.service_id, p.code, p.name, p.kind, p.is_active"
    " FROM customers_customer c LEFT JOIN payments_product p ON p.service_id = c.service_id AND p.code = %s"
    " AND p.is_active = %s WHERE c.service_id = %s AND c.external_id = %s"
)


def charge_target_get(*, service: ConsumerService, external_id: str, product_code: object
                      ) -> tuple[Customer, Product | None]:
    """The customer (`CustomerNotFound` if none) and the active product of that code (None if none, or if the code
    is not a string), in one statement: the charge endpoint's two reads (`customer_get`, `product_get`) without
    compiling two ORM queries per request. Written in SQL once for that reason (issue 12: the ORM's query
    compilation was a fifth of a charge's CPU). The instances hold the fields above (plain columns: no converter
    needed on any database); any other field loads on first access, as a deferred field does."""
    code = product_code if isinstance(product_code, str) else None
    with connection.cursor() as cursor:
        cursor.execute(_CHARGE_TARGET_SQL, [code, True, service.pk, external_id])
        row = cursor.fetchone()
    if row is None:
        raise CustomerNotFound(f"No customer {external_id!r}.")
    n = len(_CUSTOMER_FIELDS)
    customer = Customer.from_db(connection.alias, _CUSTOMER_FIELDS, row[:n])
    customer.service = service
    product = None
    if row[n] is not None:
        values = [bool(value) if name == "is_active" else value for name, value in zip(_PRODUCT_FIELDS, row[n:],
                                                                                        strict=True)]
        product = Product.from_db(connection.alias, _PRODUCT_FIELDS, values)
        product.service = service
    return customer, product


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
