"""Celery tasks of agencies (thin: they call services)."""

from __future__ import annotations

import logging

from celery import shared_task

from agencies import selectors, services
from balance_gateway.client import BalanceClient
from balance_gateway.exceptions import BalanceError

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def agency_contracts_refresh() -> dict[str, int]:
    """Re-read every registered agency's contracts; one agency's failure does not stop the others."""
    client = BalanceClient()
    refreshed = failed = 0
    for agency in selectors.agencies_to_refresh().iterator(chunk_size=200):
        try:
            services.agency_contracts_refresh(agency=agency, client=client)
            refreshed += 1
        except BalanceError as exc:
            failed += 1
            logger.warning("contracts refresh failed", extra={"agency": agency.pk, "error": str(exc)})
    return {"refreshed": refreshed, "failed": failed}
