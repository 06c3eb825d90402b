"""Top-ups: a payment request in Balance for the customer's wallet (sent via the outbox `topup.request`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from balance_gateway.client import BalanceClient, RequestItem
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.events import event_emit
from disbalance.idempotency import atomic_service
from disbalance.models import OutboxOperation
from disbalance.money import format_amount
from disbalance.outbox import OutboxFinalError, OutboxRetry, outbox_enqueue, outbox_handler, outbox_on_failure
from payments.models import BalanceOrder, TopUp
from payments.services.orders import orders_ensure
from payments.services.rules import _require_active

TOPUP_REQUEST = "topup.request"


@atomic_service
def topup_create(*, customer: Customer, amount: Decimal, return_url: str = "") -> TopUp:
    """A payment request in Balance for the customer's wallet, payer = its agency if any (sent via the outbox)."""
    customer = lock_customer(customer.pk)
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
        event_emit(service=topup.service, type="topup.failed", data=_topup_event(topup), customer=topup.customer,
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
                event_emit(service=topup.service, type="topup.expired", data=_topup_event(topup),
                           customer=topup.customer, dedup_key=f"topup.expired:{topup.id}")
                expired += 1
    return expired
