"""Celery tasks of payments (thin: they call services)."""

from __future__ import annotations

from celery import shared_task

from payments import services


@shared_task(ignore_result=True)
def spend_report() -> dict[str, int]:
    return services.spend_report()


@shared_task(ignore_result=True)
def orders_pull() -> dict[str, int]:
    return services.orders_pull()


@shared_task(ignore_result=True)
def topups_expire() -> int:
    return services.topups_expire()


@shared_task(ignore_result=True)
def holds_expire() -> int:
    return services.holds_expire()
