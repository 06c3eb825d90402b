"""Celery task of reconciliation (thin: it calls `reconciliation.run.reconcile`)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from reconciliation.run import reconcile as reconcile_all

RECONCILE_LOCK = "balance_gateway:reconcile:running"


# The name it had under the gateway, so that the beat schedule and queued messages keep working.
@shared_task(name="balance_gateway.tasks.reconcile", ignore_result=True)
def reconcile() -> dict:
    """The hourly reconciliation with Balance (autofix on). A run still going elsewhere makes this one skip."""
    if not cache.add(RECONCILE_LOCK, 1, timeout=getattr(settings, "RECONCILE_LOCK_SECONDS", 3 * 3600)):
        return {"skipped": "another reconciliation is running"}
    try:
        return reconcile_all().as_dict()
    finally:
        cache.delete(RECONCILE_LOCK)
