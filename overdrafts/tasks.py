"""Celery tasks of overdrafts (thin: they call services)."""

from __future__ import annotations

from celery import shared_task

from overdrafts import services


@shared_task(ignore_result=True)
def overdrafts_check() -> dict[str, int]:
    return services.overdrafts_check()


@shared_task(ignore_result=True)
def overdrafts_pull() -> dict[str, int]:
    return services.overdrafts_pull()


@shared_task(ignore_result=True)
def agency_credits_pull() -> dict[str, int]:
    return services.agency_credits_pull()


@shared_task(ignore_result=True)
def overrides_expire() -> int:
    return services.overrides_expire()
