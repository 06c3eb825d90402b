"""Celery tasks of the gateway: the call log's purge."""

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
