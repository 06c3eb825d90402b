"""Every periodic job, declared once. Celery beat schedules them; `manage.py run_periodic NAME` runs one now.

Later work adds its jobs to `PERIODIC_JOBS` here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from celery.schedules import crontab


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    task: str
    schedule: timedelta | crontab
    description: str


PERIODIC_JOBS: list[PeriodicJob] = [
    PeriodicJob(
        "outbox_sweep",
        "balance_gateway.tasks.outbox_sweep",
        timedelta(seconds=10),
        "Send outbox operations that are due and were left behind (crash, lost task, backoff elapsed).",
    ),
    PeriodicJob(
        "balance_calls_purge",
        "balance_gateway.tasks.balance_calls_purge",
        crontab(minute=17, hour=3),
        "Delete the Balance call log older than BALANCE_CALL_RETENTION_DAYS, and expired idempotency keys.",
    ),
    PeriodicJob(
        "agency_contracts_refresh",
        "agencies.tasks.agency_contracts_refresh",
        timedelta(minutes=30),
        "Re-read every active agency's contracts from Balance (GetClientContracts).",
    ),
    PeriodicJob(
        "spend_report",
        "payments.tasks.spend_report",
        timedelta(minutes=1),
        "Report each changed child order's cumulative spend to Balance (UpdateCampaigns, batched).",
    ),
    PeriodicJob(
        "orders_pull",
        "payments.tasks.orders_pull",
        timedelta(minutes=2),
        "Read orders with top-ups awaiting payment from Balance (GetOrdersInfo): a lost notification delays little.",
    ),
    PeriodicJob(
        "topups_expire",
        "payments.tasks.topups_expire",
        timedelta(minutes=10),
        "Top-ups whose payment request expired unpaid become `expired`.",
    ),
    PeriodicJob(
        "holds_expire",
        "payments.tasks.holds_expire",
        timedelta(minutes=1),
        "Release holds past their expiry (status `expired`, webhook `hold.expired`).",
    ),
]


def get_job(name: str) -> PeriodicJob:
    for job in PERIODIC_JOBS:
        if job.name == name:
            return job
    raise KeyError(name)


def beat_schedule() -> dict[str, dict]:
    return {job.name: {"task": job.task, "schedule": job.schedule} for job in PERIODIC_JOBS}
