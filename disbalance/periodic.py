"""Every periodic job, declared once. Celery beat schedules them; `manage.py run_periodic NAME` runs one now.

Later work adds its jobs to `PERIODIC_JOBS` here and nowhere else.
"""

from __future__ import annotations

import os
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
        "webhooks_sweep",
        "disbalance.webhooks.sweep",
        timedelta(seconds=30),
        "Deliver webhook events that are due (retries on their own schedule, and events whose kick was lost).",
    ),
    PeriodicJob(
        "events_purge",
        "disbalance.events.purge",
        crontab(minute=23, hour=3),
        "Delete events older than EVENTS_RETENTION_DAYS (at least 30) that no longer wait for delivery.",
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
    PeriodicJob(
        "overrides_expire",
        "overdrafts.tasks.overrides_expire",
        timedelta(minutes=1),
        "End support's limit overrides past their expiry (webhook `overdraft.limit_changed`; the auto-overdraft "
        "in Balance follows).",
    ),
    PeriodicJob(
        "overdrafts_check",
        "overdrafts.tasks.overdrafts_check",
        crontab(minute=7),
        "The daily-or-better debt re-check (hourly): block customers whose debt is past due (`customer.blocked`), "
        "lift blocks of repaid debts (`customer.unblocked`), start the clock of debts no hook saw.",
    ),
    PeriodicJob(
        "overdrafts_pull",
        "overdrafts.tasks.overdrafts_pull",
        timedelta(hours=3),
        "Read every direct active customer's overdraft from Balance (GetOverdraftParams): lost NotifyClient2s.",
    ),
    PeriodicJob(
        "agency_credits_pull",
        "overdrafts.tasks.agency_credits_pull",
        timedelta(minutes=30),
        "Read the credit limits of agencies with postpaid contracts from Balance (GetClientCreditLimits).",
    ),
    PeriodicJob(
        "reconcile",
        "balance_gateway.tasks.reconcile",
        crontab(minute=41),
        "Compare billing with Balance (orders, money in and out, unpaid completion, client data, stale outbox "
        "operations); record mismatches, fix the safe ones, close what is no longer seen.",
    ),
]


def get_job(name: str) -> PeriodicJob:
    for job in PERIODIC_JOBS:
        if job.name == name:
            return job
    raise KeyError(name)


def _scaled(schedule: timedelta | crontab, scale: float) -> timedelta | crontab:
    """The schedule as an interval `scale` times its (average) period: PERIODIC_SCALE=0.05 runs an hourly crontab
    job every 3 minutes. For soak runs and demos only; 1 (unset) keeps the declared schedules."""
    if scale == 1:
        return schedule
    if isinstance(schedule, crontab):  # the jobs here are hourly or daily: period = a day / runs per day
        schedule = timedelta(days=1) / (len(schedule.hour) * len(schedule.minute))
    return max(schedule * scale, timedelta(seconds=0.5))


def beat_schedule() -> dict[str, dict]:
    scale = float(os.environ.get("PERIODIC_SCALE") or 1)
    return {job.name: {"task": job.task, "schedule": _scaled(job.schedule, scale)} for job in PERIODIC_JOBS}
