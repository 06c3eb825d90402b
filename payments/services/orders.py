"""Balance orders of the unified account: a wallet order per (customer, payer) and a child order per product,
created in Balance through the outbox (`orders.sync`)."""

from __future__ import annotations

from collections import defaultdict

from django.conf import settings
from django.db import IntegrityError, transaction

from agencies.models import Agency, Contract
from balance_gateway.client import BalanceClient, OrderSpec
from customers.models import Customer
from customers.services import on_payer_change
from disbalance.models import OutboxOperation
from disbalance.outbox import OutboxFinalError, OutboxRetry, outbox_enqueue, outbox_handler
from payments.models import BalanceOrder, Product
from wallets.services import owner_key

ORDERS_SYNC = "orders.sync"


def child_order_key(*, customer_id: int, payer_id: int | None, product_code: str) -> str:
    """The unique key of a product's child order of (customer, payer): `child:c<customer>:p<payer>|pself:<code>`."""
    return f"child:{owner_key(customer_id=customer_id, payer_agency_id=payer_id, product_code=product_code)}"


def _order_get_or_create(*, customer: Customer, payer: Agency | None, kind: str, product: Product | None,
                         parent: BalanceOrder | None) -> tuple[BalanceOrder, bool]:
    payer_id = payer.pk if payer else None
    key = f"wallet:{owner_key(customer_id=customer.pk, payer_agency_id=payer_id)}"
    if kind == BalanceOrder.Kind.CHILD:
        key = child_order_key(customer_id=customer.pk, payer_id=payer_id,
                              product_code=product.code)  # type: ignore[union-attr]
    order = BalanceOrder.objects.filter(key=key).first()
    if order is not None:
        return order, False
    try:
        with transaction.atomic():
            order = BalanceOrder.objects.create(
                key=key, service=customer.service, customer=customer, payer_agency=payer, kind=kind,
                product=product, parent=parent,
            )
            return order, True
    except IntegrityError:
        return BalanceOrder.objects.get(key=key), False


def orders_ensure(*, customer: Customer, payer: Agency | None, product: Product | None = None) -> BalanceOrder:
    """The wallet order for (customer, payer), and the product's child order if a product is given.

    New orders are created in Balance through the outbox; returns the wallet order or the child order.
    """
    wallet, created = _order_get_or_create(customer=customer, payer=payer, kind=BalanceOrder.Kind.WALLET,
                                           product=None, parent=None)
    order, child_created = wallet, False
    if product is not None:
        order, child_created = _order_get_or_create(customer=customer, payer=payer, kind=BalanceOrder.Kind.CHILD,
                                                    product=product, parent=wallet)
    if created or child_created:
        enqueue_orders_sync(customer)
    return order


def enqueue_orders_sync(customer: Customer) -> OutboxOperation:
    return outbox_enqueue(kind=ORDERS_SYNC, subject=f"customer:{customer.pk}", payload={"customer_id": customer.pk},
                          service=customer.service, dedup_key=f"{ORDERS_SYNC}:{customer.pk}")


def _order_contract_id(payer: Agency | None) -> int | None:
    """The agency's active contract for the order (Balance unlinks the contract of an order sent without it)."""
    if payer is None:
        return None
    contract = (Contract.objects.filter(agency=payer, active=True).order_by("payment_type", "-valid_from", "pk")
                .only("balance_contract_id").first())
    return contract.balance_contract_id if contract is not None else None


def order_spec(order: BalanceOrder) -> OrderSpec:
    """The whole order as billing wants it in Balance: an update replaces the order there, so owner, payer,
    contract and group are sent every time."""
    customer = order.customer
    if customer.balance_client_id is None:
        raise OutboxRetry(f"customer {customer.external_id} is not registered in Balance yet")
    agency_id = None
    if order.payer_agency is not None:
        agency_id = order.payer_agency.balance_client_id
        if agency_id is None:
            raise OutboxRetry(f"agency {order.payer_agency.external_id} is not registered in Balance yet")
    product_id = order.product.balance_product_id if order.product else settings.BALANCE_WALLET_PRODUCT_ID
    return OrderSpec(
        service_id=order.service.balance_service_id, service_order_id=order.pk, product_id=product_id,
        client_id=customer.balance_client_id, agency_id=agency_id, contract_id=_order_contract_id(order.payer_agency),
        group_service_order_id=order.parent_id, group_without_transfer=settings.BALANCE_GROUP_WITHOUT_TRANSFER,
        text=order.key,
    )


@outbox_handler(ORDERS_SYNC)
def orders_sync_to_balance(operation: OutboxOperation) -> dict:
    """Outbox handler: create or update the customer's unsynced orders (wallet orders first). Safe to repeat:
    orders are keyed by billing's ServiceOrderID."""
    orders = list(
        BalanceOrder.objects.select_related("customer", "payer_agency", "product", "service")
        .filter(customer_id=operation.payload["customer_id"])
        .exclude(sync_status=BalanceOrder.SyncStatus.SYNCED)
    )
    orders.sort(key=lambda o: (o.kind != BalanceOrder.Kind.WALLET, o.pk))  # a child's wallet order goes first
    if not orders:
        return {"orders": 0}
    specs = [order_spec(order) for order in orders]
    with BalanceClient() as client:
        results = client.create_or_update_orders_batch(specs)
    failed = []
    for order, spec, result in zip(orders, specs, results, strict=True):
        if result.ok:
            BalanceOrder.objects.filter(pk=order.pk).update(
                sync_status=BalanceOrder.SyncStatus.SYNCED, sync_error="", synced_client_id=spec.client_id,
                synced_agency_id=spec.agency_id,
            )
        else:
            failed.append(f"order {order.pk}: {result.message}")
            BalanceOrder.objects.filter(pk=order.pk).update(
                sync_status=BalanceOrder.SyncStatus.FAILED, sync_error=result.message[:500]
            )
    if failed:
        raise OutboxFinalError("; ".join(failed))
    return {"orders": len(orders)}


def enqueue_orders_sync_by_id(customer_id: int) -> None:
    with transaction.atomic():
        enqueue_orders_sync(Customer.objects.select_related("service").get(pk=customer_id))


def orders_resend(*, orders: list[BalanceOrder]) -> list[OutboxOperation]:
    """Send orders to Balance again although billing thinks they are synced (mark pending + orders sync)."""
    operations = []
    by_customer: dict[int, list[int]] = defaultdict(list)
    for order in orders:
        by_customer[order.customer_id].append(order.pk)
    for customer_id, order_ids in by_customer.items():
        with transaction.atomic():
            customer = Customer.objects.select_related("service").get(pk=customer_id)
            BalanceOrder.objects.filter(pk__in=order_ids).update(sync_status=BalanceOrder.SyncStatus.PENDING,
                                                                  sync_error="")
            operations.append(enqueue_orders_sync(customer))
    return operations


@on_payer_change
def orders_for_new_payer(customer: Customer, payer: Agency | None) -> None:
    """After an agency change: the new payer's wallet order and a child order for every product the customer
    has used (created in Balance through the outbox)."""
    orders_ensure(customer=customer, payer=payer)
    used_products = {o.product for o in BalanceOrder.objects.filter(customer=customer, kind=BalanceOrder.Kind.CHILD)
                     .select_related("product")}
    for product in used_products:
        orders_ensure(customer=customer, payer=payer, product=product)
