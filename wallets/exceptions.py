"""Ledger errors. `InsufficientFunds`, `InvalidState` and `ValidationFailed` come from `disbalance.exceptions`.

A `LedgerError` is a programming error or a broken invariant, not a consumer's mistake: it renders as a 500
with the stable code `ledger_error` and rolls back the whole transaction that tried to post.
"""

from __future__ import annotations

from disbalance.exceptions import ApplicationError, InvalidState, NotFound


class LedgerError(ApplicationError):
    code = "ledger_error"
    http_status = 500
    title = "Ledger error"


class LedgerImbalanced(LedgerError):
    """The entries of a posting do not sum to zero (or there are fewer than two)."""

    title = "Ledger transaction is not balanced"


class LedgerInvalidPosting(LedgerError):
    """A posting that can never be right: zero or non-decimal amounts, mixed services or currencies, no lock."""

    title = "Invalid ledger posting"


class LedgerImmutable(LedgerError):
    """Ledger transactions and entries are append-only: no update, no delete. Correct with a new transaction."""

    title = "Ledger rows are immutable"


class LedgerCorrupted(LedgerError):
    """A cached balance disagrees with its entries. Nothing is posted on top of a broken account."""

    title = "Ledger invariant violated"


class LedgerDuplicate(InvalidState):
    """The same operation (type + reference) is already in the ledger: callers may treat it as done."""

    title = "Already in the ledger"


class PayerNotFound(NotFound):
    """A statement asked for a payer (agency) the customer's service does not have."""

    title = "Payer not found"
