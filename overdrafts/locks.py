"""Locks on overdraft rows: an agency's shared credit (`AgencyCredit`, after the customer, before anything
else) and a customer's `Overdraft`."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from agencies.models import Agency
from disbalance.locking import require_atomic
from overdrafts.models import AgencyCredit, Overdraft


def lock_agency_credit(agency: Agency) -> AgencyCredit:
    """Lock (creating it if needed) the agency's credit row; taken after the customer, before anything else."""
    require_atomic("lock_agency_credit")
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
