"""Row-lock helpers shared by the apps' lock functions (`customers.locks`, `wallets.services`, ...)."""

from __future__ import annotations

from django.db import connection
from django.db.models import QuerySet

from disbalance.exceptions import ApplicationError


class TransactionRequired(ApplicationError):
    """A lock taken outside `transaction.atomic` would be released at once: a programming error (500)."""

    code = "ledger_error"
    http_status = 500
    title = "Lock outside a transaction"


def require_atomic(what: str) -> None:
    if not connection.in_atomic_block:
        raise TransactionRequired(f"{what} must run inside transaction.atomic")


def for_update(qs: QuerySet) -> QuerySet:
    """`SELECT ... FOR NO KEY UPDATE OF self` where the database has it.

    NO KEY UPDATE: still exclusive between writers, but does not block inserts of rows referencing the locked
    one (e.g. ledger entries by another transaction) the way FOR UPDATE would. `of=self`: never the joined rows.
    """
    features = connection.features
    return qs.select_for_update(
        no_key=features.has_select_for_no_key_update, of=("self",) if features.has_select_for_update_of else ()
    )
