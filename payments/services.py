"""Writes for payments: products, Balance orders (unified account), top-ups, money reported by Balance,
charges, holds, refunds, and spend reported to Balance.

Locking: every write to a customer's money locks the customer first (`wallets.services.lock_customer`), then the
ledger accounts, then this app's own rows (order, hold, charge), inside one short transaction; figures are
re-read and validated under the lock. Balance is called only by outbox handlers and periodic jobs, never inside
a transaction.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Replace
from django.utils import timezone

from agencies.models import Agency, Contract
from balance_gateway.client import BalanceClient, CompletionReport, OrderInfo, OrderSpec, RequestItem
from balance_gateway.models import OutboxOperation, RegistrationStatus
from balance_gateway.notifications import OrderNotification, notification_applier
from balance_gateway.outbox import OutboxFinalError, OutboxRetry, outbox_enqueue, outbox_handler, outbox_on_failure
from customers.models import Customer
from disbalance.exceptions import CustomerBlocked, CustomerNotActive, ValidationFailed
from disbalance.models import ConsumerService
from disbalance.money import CENT, ZERO, format_amount
from disbalance.webhooks import webhook_emit
from overdrafts import services as overdrafts
from payments.exceptions import HoldNotHeld, RefundTooLarge
from payments.models import BalanceOrder, Charge, Hold, Product, Refund, TopUp
from wallets import services as ledger
from wallets.models import Account

logger = logging.getLogger(__name__)

ORDERS_SYNC = "orders.sync"
TOPUP_REQUEST = "topup.request"


# --- products -------------------------------------------------------------------------------------------------

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


# --- Balance orders (unified account) -----------------------------------------------------------------------

def _payer_key(payer: Agency | None) -> str:
    return f"p{payer.pk}" if payer else "pself"


def _order_get_or_create(*, customer: Customer, payer: Agency | None, kind: str, product: Product | None,
                         parent: BalanceOrder | None) -> tuple[BalanceOrder, bool]:
    key = f"wallet:c{customer.pk}:{_payer_key(payer)}"
    if kind == BalanceOrder.Kind.CHILD:
        key = f"child:c{customer.pk}:{_payer_key(payer)}:{product.code}"  # type: ignore[union-attr]
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
                .only("balance_contract_id", "services").first())
    return contract.balance_contract_id if contract is not None else None


def _order_spec(order: BalanceOrder) -> OrderSpec:
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
    specs = [_order_spec(order) for order in orders]
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


# --- top-ups --------------------------------------------------------------------------------------------------

def _require_active(customer: Customer) -> None:
    if customer.status != RegistrationStatus.ACTIVE:
        raise CustomerNotActive(f"Customer {customer.external_id!r} is {customer.status}, not active.")


def _require_not_blocked(customer: Customer) -> None:
    if customer.blocked:
        raise CustomerBlocked(f"Customer {customer.external_id!r} is blocked: spending is refused until repaid.")


@transaction.atomic
def topup_create(*, customer: Customer, amount: Decimal, return_url: str = "") -> TopUp:
    """A payment request in Balance for the customer's wallet, payer = its agency if any (sent via the outbox)."""
    customer = ledger.lock_customer(customer.pk)
    _require_active(customer)
    payer = customer.agency
    wallet_order = orders_ensure(customer=customer, payer=payer)
    topup = TopUp.objects.create(
        service=customer.service, customer=customer, payer_agency=payer, order=wallet_order, amount=amount,
        return_url=return_url, expires_at=timezone.now() + timedelta(hours=settings.TOPUP_EXPIRY_HOURS),
    )
    outbox_enqueue(kind=TOPUP_REQUEST, subject=f"customer:{customer.pk}", payload={"topup_id": str(topup.id)},
                   service=customer.service)
    return topup


@outbox_handler(TOPUP_REQUEST)
def topup_request_in_balance(operation: OutboxOperation) -> dict:
    """Outbox handler: CreateRequest2 on the wallet order. Repeating after an unknown outcome only leaves an
    unpaid request behind, which is harmless (the protocol's rule)."""
    topup = TopUp.objects.select_related("order", "payer_agency", "customer", "service").get(
        pk=operation.payload["topup_id"]
    )
    if topup.status != TopUp.Status.PENDING:
        return {"skipped": topup.status}
    order = topup.order
    if order.sync_status != BalanceOrder.SyncStatus.SYNCED:
        if order.sync_status == BalanceOrder.SyncStatus.FAILED:
            raise OutboxFinalError(f"the wallet order is not in Balance: {order.sync_error}")
        raise OutboxRetry("the wallet order is not in Balance yet")
    payer_client_id = (topup.payer_agency.balance_client_id if topup.payer_agency
                       else topup.customer.balance_client_id)
    with BalanceClient() as client:
        request = client.create_request2(
            payer_client_id=payer_client_id,
            items=[RequestItem(service_id=topup.service.balance_service_id, service_order_id=order.pk,
                               amount=topup.amount)],
            return_path=topup.return_url or None,
        )
    TopUp.objects.filter(pk=topup.pk, status=TopUp.Status.PENDING).update(
        status=TopUp.Status.AWAITING_PAYMENT, balance_request_id=request.request_id, payment_url=request.user_path,
        updated_at=timezone.now(),
    )
    return {"request_id": request.request_id}


@outbox_on_failure(TOPUP_REQUEST)
def _topup_request_failed(operation: OutboxOperation, error: str, final: bool) -> None:
    if not final:
        return
    with transaction.atomic():
        topup = TopUp.objects.select_for_update().get(pk=operation.payload["topup_id"])
        if topup.status != TopUp.Status.PENDING:
            return
        topup.status = TopUp.Status.FAILED
        topup.status_reason = error[:500]
        topup.updated_at = timezone.now()
        topup.save(update_fields=["status", "status_reason", "updated_at"])
        webhook_emit(service=topup.service, type="topup.failed", data=_topup_event(topup),
                     dedup_key=f"topup.failed:{topup.id}")


def _topup_event(topup: TopUp) -> dict:
    return {"id": str(topup.id), "customer": topup.customer.external_id, "amount": format_amount(topup.amount),
            "status": topup.status, "payer": topup.payer_agency.external_id if topup.payer_agency else None}


def topups_expire(*, now: datetime | None = None) -> int:
    """Top-ups whose payment request expired unpaid become `expired`."""
    now = now or timezone.now()
    expired = 0
    for topup_id in TopUp.objects.filter(
        status__in=[TopUp.Status.PENDING, TopUp.Status.AWAITING_PAYMENT], expires_at__lte=now
    ).values_list("id", flat=True):
        with transaction.atomic():
            topup = TopUp.objects.select_for_update().get(pk=topup_id)
            if topup.status in (TopUp.Status.PENDING, TopUp.Status.AWAITING_PAYMENT):
                topup.status = TopUp.Status.EXPIRED
                topup.updated_at = now
                topup.save(update_fields=["status", "updated_at"])
                webhook_emit(service=topup.service, type="topup.failed", data=_topup_event(topup),
                             dedup_key=f"topup.failed:{topup.id}")
                expired += 1
    return expired


# --- money reported by Balance (notifications and pulls) ----------------------------------------------------

@dataclass(frozen=True)
class OrderState:
    """Balance's view of a wallet order's money: `consume_money` is money (never a *Qty of a priced product).
    `tid` None means a pull (GetOrdersInfo, no Tid): it may only add money, never take it away, because a
    notification newer than what was read may already be applied."""

    consume_money: Decimal
    completion_qty: Decimal
    tid: int | None


def _credit(order: BalanceOrder, customer: Customer, amount: Decimal, topup: TopUp | None, tid: int) -> None:
    """A `topup` transaction: for the top-up it pays, or for money that came without one (paid elsewhere),
    referenced by the order and the Tid that brought it, so that each is in the ledger once."""
    description = f"Top-up {topup.id}" if topup else f"Money received on Balance order {order.pk}"
    ledger.wallet_credit_topup(
        customer=customer, payer_agency=order.payer_agency, amount=amount,
        reference_kind="topup" if topup else "balance_order",
        reference_id=str(topup.id) if topup else f"{order.pk}@{tid}", description=description,
    )


def _match_topups(order: BalanceOrder, delta: Decimal) -> list[TopUp]:
    """The top-ups this money pays. Balance reports totals, not requests: prefer a set of waiting top-ups whose
    amounts add up exactly to the new money (fewest, oldest first), else the oldest that fit."""
    waiting = list(
        TopUp.objects.select_for_update().filter(
            order=order, status__in=[TopUp.Status.AWAITING_PAYMENT, TopUp.Status.PENDING]
        ).order_by("created_at")[:MATCH_WINDOW]
    )
    for size in range(1, min(len(waiting), MATCH_MAX_SET) + 1):
        for combo in itertools.combinations(waiting, size):
            if sum((t.amount for t in combo), ZERO) == delta:
                return list(combo)
    matched, remaining = [], delta
    for topup in waiting:
        if topup.amount <= remaining:
            matched.append(topup)
            remaining -= topup.amount
    return matched


# How many waiting top-ups of one order are considered, and the largest set tried for an exact match.
MATCH_WINDOW, MATCH_MAX_SET = 24, 4


@transaction.atomic
def order_apply_balance_state(*, order_id: int, state: OrderState) -> str:
    """Apply Balance's money on a wallet order: a notification if its Tid is new, a pull if it adds money. The
    difference between that money and what was already credited is credited (matching top-ups become
    `succeeded`; money without a top-up is credited too) or, from a notification only, taken back.

    Returns `applied` or `stale`. Duplicates, older Tids and pulls showing no new money change nothing.
    """
    customer_id = BalanceOrder.objects.values_list("customer_id", flat=True).get(pk=order_id)
    customer = ledger.lock_customer(customer_id)
    order = BalanceOrder.objects.select_for_update(of=("self",)).select_related("payer_agency").get(pk=order_id)
    if state.tid is not None and state.tid <= order.last_tid:
        return "stale"
    delta = state.consume_money - order.credited_qty
    if state.tid is None and delta <= 0:
        return "stale"
    reference_tid = state.tid if state.tid is not None else f"pull:{state.consume_money}"
    if delta > 0:
        remaining = delta
        for topup in _match_topups(order, delta):
            _credit(order, customer, topup.amount, topup, reference_tid)
            remaining -= topup.amount
            topup.status = TopUp.Status.SUCCEEDED
            topup.succeeded_at = topup.updated_at = timezone.now()
            topup.save(update_fields=["status", "succeeded_at", "updated_at"])
            webhook_emit(service=customer.service, type="topup.succeeded", data=_topup_event(topup),
                         dedup_key=f"topup.succeeded:{topup.id}")
        if remaining > 0:
            _credit(order, customer, remaining, None, reference_tid)
    elif delta < 0:
        # Balance took money off the order (a refund or transfer made in Balance): mirror it, with the reason.
        ledger.wallet_adjust(
            customer=customer, payer_agency=order.payer_agency, amount=delta, created_by=None,
            reason=f"Balance lowered the money on order {order.pk} to {format_amount(state.consume_money)}",
            reference_kind="balance_order", reference_id=f"{order.pk}@{state.tid}",
        )
    if delta > 0:
        overdrafts.after_money_in(customer=customer, payer=order.payer_agency)
    elif delta < 0:
        overdrafts.after_spend(customer=customer, payer=order.payer_agency)
    order.credited_qty = state.consume_money
    order.balance_consume_qty = state.consume_money
    order.balance_completion_qty = state.completion_qty
    if state.tid is not None:
        order.last_tid = state.tid
    order.balance_refreshed_at = timezone.now()
    order.save(update_fields=["credited_qty", "balance_consume_qty", "balance_completion_qty", "last_tid",
                              "balance_refreshed_at"])
    return "applied"


@transaction.atomic
def order_note_balance_state(*, order_id: int, consume_money: Decimal, completion_qty: Decimal,
                             tid: int | None) -> str:
    """A child order's figures from Balance, kept for support and reconciliation. Never wallet money: on a
    grouped child, ConsumeAmount is what covers it, not new money."""
    order = BalanceOrder.objects.select_for_update().get(pk=order_id)
    if tid is not None and tid <= order.last_tid:
        return "stale"
    order.balance_consume_qty = consume_money
    order.balance_completion_qty = completion_qty
    if tid is not None:
        order.last_tid = tid
    order.balance_refreshed_at = timezone.now()
    order.save(update_fields=["balance_consume_qty", "balance_completion_qty", "last_tid", "balance_refreshed_at"])
    return "applied"


def _order_for_key(service_id: int, service_order_id: str) -> BalanceOrder | None:
    if not service_order_id.isdigit():
        return None
    return BalanceOrder.objects.filter(pk=int(service_order_id), service__balance_service_id=service_id).first()


def wallet_money_from_notification(notification: OrderNotification) -> Decimal | None:
    """The wallet's money in a NotifyOrder2 of a wallet order, by the service's group reporting type: "parent":
    ConsumeSum (the group's money); "enqueue": TotalConsumeQty (the wallet product is priced one unit per rouble).
    None when the notification does not carry it."""
    if settings.BALANCE_GROUP_REPORTING == "enqueue":
        return notification.total_consume_qty.quantize(CENT) if notification.total_consume_qty is not None else None
    return notification.consume_sum


@notification_applier("order")
class OrderNotifications:
    """NotifyOrder2: a wallet order's money through `order_apply_balance_state`; a child's figures are noted."""

    @staticmethod
    def exists(notification: OrderNotification) -> bool:
        return _order_for_key(notification.service_id, notification.service_order_id) is not None

    @staticmethod
    def apply(notification: OrderNotification) -> str:
        order = _order_for_key(notification.service_id, notification.service_order_id)
        assert order is not None
        money = wallet_money_from_notification(notification) if order.kind == BalanceOrder.Kind.WALLET else None
        if money is None:
            return order_note_balance_state(order_id=order.pk, consume_money=notification.consume_amount,
                                            completion_qty=notification.completion_qty, tid=notification.tid)
        return order_apply_balance_state(order_id=order.pk, state=OrderState(
            consume_money=money, completion_qty=notification.completion_qty, tid=notification.tid))


def wallet_money_from_info(wallet: OrderInfo, children: list[OrderInfo]) -> Decimal:
    """The wallet's money from GetOrdersInfo: the wallet order's consume_amount ("parent" reporting), plus what
    Balance moved onto its children ("enqueue")."""
    if settings.BALANCE_GROUP_REPORTING == "enqueue":
        return wallet.consume_amount + sum((c.consume_amount for c in children), ZERO)
    return wallet.consume_amount


def orders_pull(*, orders: list[BalanceOrder] | None = None, client: BalanceClient | None = None) -> dict[str, int]:
    """Read wallet orders with top-ups still waiting from Balance (GetOrdersInfo, batched) and credit money that
    came in, so that a lost notification delays nothing for long. Money is read from the money fields."""
    if orders is None:
        waiting = TopUp.objects.filter(status__in=[TopUp.Status.AWAITING_PAYMENT]).values("order_id")
        orders = list(BalanceOrder.objects.filter(pk__in=waiting, sync_status=BalanceOrder.SyncStatus.SYNCED)
                      .select_related("service"))
    client = client or BalanceClient()
    outcomes = {"orders": len(orders), "applied": 0, "stale": 0, "missing": 0}
    batch = settings.ORDERS_PULL_BATCH
    enqueue = settings.BALANCE_GROUP_REPORTING == "enqueue"
    for start in range(0, len(orders), batch):
        chunk = [o for o in orders[start:start + batch] if o.kind == BalanceOrder.Kind.WALLET]
        outcomes["missing"] += len(orders[start:start + batch]) - len(chunk)
        children: dict[int, list[BalanceOrder]] = {}
        if enqueue:
            for child in BalanceOrder.objects.filter(parent__in=chunk, sync_status=BalanceOrder.SyncStatus.SYNCED):
                children.setdefault(child.parent_id, []).append(child)  # type: ignore[arg-type]
        keys = [(o.service.balance_service_id, o.pk) for o in chunk]
        keys += [(o.service.balance_service_id, c.pk) for o in chunk for c in children.get(o.pk, [])]
        infos = client.get_orders_info(keys)
        by_id = {int(info.service_order_id): info for info in infos}
        for order in chunk:
            info = by_id.get(order.pk)
            if info is None:
                outcomes["missing"] += 1
                continue
            child_infos = [by_id[c.pk] for c in children.get(order.pk, []) if c.pk in by_id]
            outcome = order_apply_balance_state(order_id=order.pk, state=OrderState(
                consume_money=wallet_money_from_info(info, child_infos), completion_qty=info.completion_qty,
                tid=None))
            outcomes[outcome] += 1
    return outcomes


# --- charges, holds, refunds --------------------------------------------------------------------------------

def _spend_checks(customer: Customer) -> None:
    _require_active(customer)
    _require_not_blocked(customer)


@transaction.atomic
def charge_create(*, customer: Customer, product: Product, amount: Decimal, description: str = "",
                  metadata: dict[str, str] | None = None) -> Charge:
    """An immediate charge under the customer's current payer; `402 insufficient_funds` writes nothing."""
    customer = ledger.lock_customer(customer.pk)
    _spend_checks(customer)
    payer = customer.agency
    charge = Charge(service=customer.service, customer=customer, payer_agency=payer, product=product, amount=amount,
                    description=description, metadata=metadata or {})
    ledger.wallet_charge(
        customer=customer, payer_agency=payer, product_code=product.code, amount=amount,
        overdraft_limit=overdrafts.spend_limit(customer=customer, payer=payer), reference_kind="charge",
        reference_id=str(charge.id), description=description or f"{product.name}",
    )
    overdrafts.after_spend(customer=customer, payer=payer)
    charge.save(force_insert=True)
    orders_ensure(customer=customer, payer=payer, product=product)
    return charge


@transaction.atomic
def hold_create(*, customer: Customer, product: Product, amount: Decimal, expires_at: datetime | None = None,
                description: str = "", metadata: dict[str, str] | None = None) -> Hold:
    """Reserve money under the current payer until captured, released or expired (default 7 days, max 90)."""
    now = timezone.now()
    expires_at = expires_at or now + timedelta(days=settings.HOLD_DEFAULT_DAYS)
    if expires_at <= now or expires_at > now + timedelta(days=settings.HOLD_MAX_DAYS):
        raise ValidationFailed(f"expires_at must be in the future and at most {settings.HOLD_MAX_DAYS} days away.",
                               errors={"expires_at": ["Out of range."]})
    customer = ledger.lock_customer(customer.pk)
    _spend_checks(customer)
    payer = customer.agency
    hold = Hold(service=customer.service, customer=customer, payer_agency=payer, product=product, amount=amount,
                expires_at=expires_at, description=description, metadata=metadata or {})
    ledger.wallet_hold(
        customer=customer, payer_agency=payer, amount=amount,
        overdraft_limit=overdrafts.spend_limit(customer=customer, payer=payer), reference_kind="hold",
        reference_id=str(hold.id), description=description or f"Hold for {product.name}",
    )
    overdrafts.after_spend(customer=customer, payer=payer)
    hold.save(force_insert=True)
    orders_ensure(customer=customer, payer=payer, product=product)
    return hold


def _lock_hold(hold: Hold) -> Hold:
    ledger.lock_customer(hold.customer_id)
    locked = (Hold.objects.select_for_update(of=("self",)).select_related("product", "payer_agency", "customer")
              .get(pk=hold.pk))
    if locked.status != Hold.Status.HELD:
        raise HoldNotHeld(f"Hold {hold.id} is {locked.status}.")
    return locked


@transaction.atomic
def hold_capture(*, hold: Hold, amount: Decimal | None = None) -> Hold:
    """Capture all or part of a hold (the rest is released) under the payer it was made under; at most once."""
    hold = _lock_hold(hold)
    captured = hold.amount if amount is None else amount
    if captured > hold.amount:
        raise ValidationFailed(f"Cannot capture {format_amount(captured)} of a {format_amount(hold.amount)} hold.",
                               errors={"amount": ["Must not exceed the held amount."]})
    charge = Charge(service=hold.service, customer=hold.customer, payer_agency=hold.payer_agency,
                    product=hold.product, amount=captured, description=hold.description, metadata=hold.metadata,
                    hold=hold)
    ledger.wallet_capture(
        customer=hold.customer, payer_agency=hold.payer_agency, product_code=hold.product.code,
        hold_amount=hold.amount, captured=captured, reference_kind="hold", reference_id=str(hold.id),
        description=f"Capture of hold {hold.id}",
    )
    overdrafts.after_money_in(customer=hold.customer, payer=hold.payer_agency)
    hold.status = Hold.Status.CAPTURED
    hold.captured_amount = captured
    hold.closed_at = timezone.now()
    hold.save(update_fields=["status", "captured_amount", "closed_at"])
    charge.save(force_insert=True)
    orders_ensure(customer=hold.customer, payer=hold.payer_agency, product=hold.product)
    return hold


def _release(hold: Hold, status: str) -> Hold:
    hold = _lock_hold(hold)
    ledger.wallet_release(
        customer=hold.customer, payer_agency=hold.payer_agency, amount=hold.amount, reference_kind="hold",
        reference_id=str(hold.id), description=f"{'Expiry' if status == Hold.Status.EXPIRED else 'Release'} "
                                               f"of hold {hold.id}",
    )
    overdrafts.after_money_in(customer=hold.customer, payer=hold.payer_agency)
    hold.status = status
    hold.closed_at = timezone.now()
    hold.save(update_fields=["status", "closed_at"])
    return hold


@transaction.atomic
def hold_release(*, hold: Hold) -> Hold:
    """Give the held money back; at most once (the loser of a race gets `409 invalid_state`)."""
    return _release(hold, Hold.Status.RELEASED)


def holds_expire(*, now: datetime | None = None) -> int:
    """Release every hold past its expiry (status `expired`), each in its own transaction."""
    now = now or timezone.now()
    expired = 0
    for hold in Hold.objects.filter(status=Hold.Status.HELD, expires_at__lte=now).only("pk", "customer_id"):
        try:
            with transaction.atomic():
                hold = _release(hold, Hold.Status.EXPIRED)
                webhook_emit(service=hold.service, type="hold.expired", dedup_key=f"hold.expired:{hold.id}", data={
                    "id": str(hold.id), "customer": hold.customer.external_id,
                    "amount": format_amount(hold.amount), "product": hold.product.code})
                expired += 1
        except HoldNotHeld:
            continue  # captured or released in between
    return expired


@transaction.atomic
def refund_create(*, charge: Charge, amount: Decimal | None, reason: str) -> Refund:
    """Refund all or part of a charge to the payer it was charged to; refunds never exceed the charge."""
    ledger.lock_customer(charge.customer_id)
    charge = Charge.objects.select_for_update(of=("self",)).select_related("product", "payer_agency", "customer").get(
        pk=charge.pk
    )
    left = charge.amount - charge.refunded_amount
    amount = left if amount is None else amount
    if amount <= ZERO or amount > left:
        raise RefundTooLarge(f"Refund {format_amount(amount)} exceeds what is left to refund "
                             f"({format_amount(left)}) of charge {charge.id}.")
    refund = Refund(charge=charge, amount=amount, reason=reason)
    ledger.wallet_refund(
        customer=charge.customer, payer_agency=charge.payer_agency, product_code=charge.product.code, amount=amount,
        reference_kind="refund", reference_id=str(refund.id), description=f"Refund of charge {charge.id}: {reason}",
    )
    overdrafts.after_money_in(customer=charge.customer, payer=charge.payer_agency)
    refund.save(force_insert=True)
    Charge.objects.filter(pk=charge.pk).update(refunded_amount=F("refunded_amount") + amount)
    return refund


# --- spend reported to Balance --------------------------------------------------------------------------------

def orders_with_unreported_spend() -> QuerySet[BalanceOrder]:
    """Synced child orders whose cumulative spend in the ledger differs from what Balance last accepted, and
    whose last report Balance did not refuse (a refused one waits for support: `report_refused_at`).

    A child order `child:c<customer>:p<payer>:<product>` and its spend account `spend:c<customer>:p<payer>:<product>`
    share the key's tail, which joins them without a second foreign key.
    """
    spend = Account.objects.filter(kind=Account.Kind.SPEND, key=OuterRef("spend_key")).values("balance")[:1]
    return (
        BalanceOrder.objects.filter(kind=BalanceOrder.Kind.CHILD, sync_status=BalanceOrder.SyncStatus.SYNCED,
                                    report_refused_at__isnull=True)
        .annotate(spend_key=Replace(F("key"), Value("child:"), Value("spend:")))
        .annotate(spend=Subquery(spend))
        .exclude(spend__isnull=True)
        .exclude(spend=F("reported_qty"))
        .select_related("service", "product")
        .order_by("id")
    )


REPORT_REFUSED = ("Balance refused the completion (UpdateCampaigns answered 0): the order is blocked or stopped "
                  "in Balance, or Balance saw the report's dt as future. Not sent again until support re-reports "
                  "it (reconciliation shows it as a money-out mismatch).")


def completion_report_for(order: BalanceOrder, money: Decimal, now: datetime) -> CompletionReport:
    """A child order's cumulative spend as Balance counts it: in the product's unit, exact to 6 places."""
    product = order.product
    assert product is not None
    return CompletionReport(service_id=order.service.balance_service_id, service_order_id=order.pk,
                            unit=product.balance_unit, qty=product.units_for(money), dt=now)


def spend_report(*, client: BalanceClient | None = None, batch_size: int | None = None) -> dict[str, int]:
    """Send each changed child order's cumulative spend with UpdateCampaigns, many orders per call.

    Safe to repeat and to crash mid-way: figures are cumulative, and `reported_qty` moves only after Balance
    accepted the value sent. An order Balance refuses (0) is flagged with the reason and left alone: never
    endless retries. One Balance does not answer for is sent again next time.
    """
    client = client or BalanceClient()
    batch_size = batch_size or settings.SPEND_REPORT_BATCH
    totals = {"orders": 0, "calls": 0, "rejected": 0, "unanswered": 0}
    last_id = 0
    while True:
        chunk = list(orders_with_unreported_spend().filter(id__gt=last_id)[:batch_size])
        if not chunk:
            break
        last_id = chunk[-1].pk
        now = timezone.now()
        results = client.update_campaigns([completion_report_for(o, o.spend, now) for o in chunk])
        totals["calls"] += 1
        for order, accepted in zip(chunk, results, strict=True):
            if accepted:
                BalanceOrder.objects.filter(pk=order.pk).update(reported_qty=order.spend, reported_at=now)
                totals["orders"] += 1
            elif accepted is None:
                totals["unanswered"] += 1
            else:
                totals["rejected"] += 1
                BalanceOrder.objects.filter(pk=order.pk).update(report_refused_at=now, report_error=REPORT_REFUSED)
                logger.warning("completion refused by Balance", extra={"order": order.pk, "spend": str(order.spend)})
    return totals


def enqueue_orders_sync_by_id(customer_id: int) -> None:
    with transaction.atomic():
        enqueue_orders_sync(Customer.objects.select_related("service").get(pk=customer_id))
