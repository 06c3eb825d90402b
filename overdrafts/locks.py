"""Locks on overdraft rows: an agency's shared credit (`AgencyCredit`, after the customer, before anything
else) and a customer's `Overdraft`."""

from __future__ import annotations

from django.db import IntegrityError, connection, transaction

from agencies.models import Agency
from overdrafts.models import AgencyCredit, Overdraft


def _require_atomic(what: str) -> None:
    if not connection.in_atomic_block:
        raise RuntimeError(f"{what} must run inside transaction.atomic")


def lock_agency_credit(agency: Agency) -> AgencyCredit:
    """Lock (creating it if needed) the agency's credit row; taken after the customer, before anything else."""
    _require_atomic("lock_agency_credit")
    qs = AgencyCredit.objects.select_for_update()
    credit = qs.filter(agency=agency).first()
    if credit is None:
        try:
            with transaction.atomic():
                AgencyCredit.objects.create(agency=agency)
        except IntegrityError:
            pass  # created by a concurrent transaction, which has committed by now
        credit = qs.get(agency=agency)
    return credit


def _lock_overdraft(customer_id: int) -> Overdraft | None:
    return Overdraft.objects.select_for_update().filter(customer_id=customer_id).first()
