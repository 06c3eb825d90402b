"""Products of a consumer service's catalog."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from disbalance.models import ConsumerService
from payments.models import Product


@dataclass(frozen=True)
class ProductCreateResult:
    product: Product
    created: bool
    changed: list[str]


@transaction.atomic
def product_create(*, service: ConsumerService, code: str, name: str, kind: str, balance_product_id: int,
                   balance_unit: str = "Money", balance_price: Decimal = Decimal("1")) -> ProductCreateResult:
    """Create a product of the service's catalog, or bring it up to date (idempotent by code). `balance_unit` and
    `balance_price` are the product's unit and price in Balance (completions are reported in that unit)."""
    product = Product.objects.select_for_update().filter(service=service, code=code).first()
    wanted = {"name": name, "kind": kind, "balance_product_id": balance_product_id, "balance_unit": balance_unit,
              "balance_price": Decimal(balance_price)}
    if product is None:
        product = Product(service=service, code=code, **wanted)
        product.full_clean()
        product.save()
        return ProductCreateResult(product, True, [])
    changed = [field for field, value in wanted.items() if getattr(product, field) != value]
    for field in changed:
        setattr(product, field, wanted[field])
    if changed:
        product.full_clean()
        product.save()
    return ProductCreateResult(product, False, changed)
