"""Celery tasks of the gateway: the call log's purge, and the reconciliation run."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from balance_gateway.models import BalanceCall
from disbalance.idempotency import purge_expired_keys


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
