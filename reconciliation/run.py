"""A reconciliation run: compare billing with Balance and record each difference as a `Mismatch`.

`reconcile()` walks the customers in batches (by id), then the agencies, then the outbox (`stages`), and lets
every registered check (`registry`, `checks/`) compare each batch. A re-run updates the open mismatch of the same
key instead of adding one; an open mismatch whose subject was checked again and found equal is closed by the
system (`resolution="system: no longer seen"`). Safe kinds are fixed at once when `autofix` (at most
RECONCILE_AUTOFIX_MAX_ATTEMPTS times per mismatch); the next run confirms the fix and closes the mismatch.
Support uses `mismatch_fix` and `mismatch_resolve` (`actions`). A difference that support resolved with a
comment is acknowledged: the same figures found again open nothing; different figures open a new mismatch.

Balance is called outside transactions; mismatches are written in short transactions per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.utils import timezone

from agencies.models import Agency
from customers.models import Customer
from disbalance.models import ConsumerService
from payments.models import BalanceOrder
from reconciliation.findings import ReconcileReport, batch_size_default
from reconciliation.reading import CountingClient, Run
from reconciliation.stages import reconcile_agencies, reconcile_customers, reconcile_operations

logger = logging.getLogger(__name__)


def reconcile(*, customer: Customer | None = None, service: ConsumerService | None = None,
              batch_size: int | None = None, progress: Callable[[int, int], None] | None = None,
              autofix: bool = True, persons: str = "changed") -> ReconcileReport:
    """Compare billing with Balance (everything, one service, or one customer) and record the mismatches.

    `progress(done, total)` is called after each batch (customers + agencies). A Balance that stays unreachable
    raises `BalanceError` (what was already checked is kept; nothing unchecked is closed).
    """
    if persons not in ("changed", "all", "none"):
        raise ValueError("persons must be 'changed', 'all' or 'none'")
    batch_size = max(1, batch_size or batch_size_default())
    counting = CountingClient()
    report = ReconcileReport()
    run = Run(client=counting, report=report, batch_size=batch_size, autofix=autofix,
               persons="all" if customer is not None and persons == "changed" else persons, now=timezone.now())
    started = time.monotonic()
    customers = Customer.objects.filter(balance_client_id__isnull=False).select_related("service")
    agencies = Agency.objects.filter(balance_client_id__isnull=False).select_related("service")
    if customer is not None:
        customers = customers.filter(pk=customer.pk)
        payer_ids = set(BalanceOrder.objects.filter(customer=customer, payer_agency__isnull=False)
                        .values_list("payer_agency_id", flat=True))
        if customer.agency_id:
            payer_ids.add(customer.agency_id)
        agencies = agencies.filter(pk__in=payer_ids)
    elif service is not None:
        customers = customers.filter(service=service)
        agencies = agencies.filter(service=service)
    total = customers.count() + agencies.count()
    done = 0
    try:
        for queryset, handler in ((customers, reconcile_customers), (agencies, reconcile_agencies)):
            last_id = 0
            while True:
                batch = list(queryset.filter(pk__gt=last_id).order_by("pk")[:batch_size])
                if not batch:
                    break
                last_id = batch[-1].pk
                handler(run, batch)  # type: ignore[operator]
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        reconcile_operations(run, customer=customer, service=service)
    finally:
        report.calls = counting.calls
        report.duration = time.monotonic() - started
        counting.close()
    logger.info("reconciliation done", extra={"reconcile": report.as_dict()})
    return report
