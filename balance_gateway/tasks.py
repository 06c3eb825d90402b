"""Celery tasks of the gateway: thin wrappers around `balance_gateway.outbox` and the call log."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from balance_gateway import outbox
from balance_gateway.models import BalanceCall
from disbalance.idempotency import purge_expired_keys


@shared_task(acks_late=True, ignore_result=True)
def outbox_dispatch(operation_id: int) -> str:
    result = outbox.outbox_process(operation_id=operation_id)
    if result.outcome == "retry" and result.retry_in is not None and not settings.CELERY_TASK_ALWAYS_EAGER:
        outbox_dispatch.apply_async((operation_id,), countdown=result.retry_in)
    return result.outcome


@shared_task(ignore_result=True)
def outbox_sweep() -> dict[str, int]:
    return outbox.outbox_sweep()


@shared_task(ignore_result=True)
def balance_calls_purge() -> dict[str, int]:
    cutoff = timezone.now() - timedelta(days=settings.BALANCE_CALL_RETENTION_DAYS)
    calls, _ = BalanceCall.objects.filter(created_at__lt=cutoff).delete()
    return {"balance_calls": calls, "idempotency_keys": purge_expired_keys()}


RECONCILE_LOCK = "balance_gateway:reconcile:running"


@shared_task(ignore_result=True)
def reconcile() -> dict:
    """The hourly reconciliation with Balance (autofix on). A run still going elsewhere makes this one skip."""
    from django.core.cache import cache

    from balance_gateway.reconciliation import reconcile as reconcile_all

    if not cache.add(RECONCILE_LOCK, 1, timeout=getattr(settings, "RECONCILE_LOCK_SECONDS", 3 * 3600)):
        return {"skipped": "another reconciliation is running"}
    try:
        return reconcile_all().as_dict()
    finally:
        cache.delete(RECONCILE_LOCK)
