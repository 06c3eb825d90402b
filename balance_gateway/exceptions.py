"""Errors of the Balance gateway.

The tree says what the caller may do next:

- `BalanceFinalError`: Balance answered and refused (a fault such as `INVALID_PARAM`, `NOT_FOUND`, or a
  `[code, message]` result with a non-zero code). Repeating the same call cannot help.
- `BalanceRetryableError`: the call did not go through (connection refused, connect timeout, HTTP 503/408/429,
  `REQUEST_IS_LOCKED`, `INTERNAL_ERROR`). Nothing was applied as far as billing can tell; repeat later.
- `BalanceUnknownOutcome` (a retryable error): the request reached Balance but no usable answer came back
  (read timeout, connection dropped after sending, HTTP 500/502/504, an answer that cannot be parsed).
  The call may have been applied: look the state up before repeating anything that is not idempotent.
"""

from __future__ import annotations


class BalanceError(Exception):
    """A failed call to Balance. `method` is the short name ("CreateClient"), `code` Balance's code or ours."""

    retryable = False
    default_code = "BALANCE_ERROR"

    def __init__(self, message: str = "", *, method: str = "", code: str = "", outcome: str = "") -> None:
        self.method = method
        self.code = code or self.default_code
        self.message = message
        # The BalanceCall outcome this error was recorded with (fault, http_error, timeout, ...).
        self.outcome = outcome
        super().__init__(message)

    def __str__(self) -> str:
        where = f"{self.method} " if self.method else ""
        return f"{where}{self.code}: {self.message}" if self.message else f"{where}{self.code}"


class BalanceFinalError(BalanceError):
    """Balance refused the call; repeating it unchanged cannot help."""

    default_code = "UNKNOWN_FAULT"


class BalanceRetryableError(BalanceError):
    """The call did not go through; it is safe to try again later."""

    retryable = True
    default_code = "UNAVAILABLE"


class BalanceUnknownOutcome(BalanceRetryableError):
    """The request was sent but its answer was lost: the call may or may not have been applied."""

    default_code = "UNKNOWN_OUTCOME"


class PartyAmbiguous(BalanceFinalError):
    """Several Balance objects match what billing looks for (its client's marker, its person): support decides;
    billing never guesses. `candidates` are the Balance ids found."""

    default_code = "AMBIGUOUS"

    def __init__(self, message: str = "", *, method: str = "", candidates: list[int] | None = None) -> None:
        super().__init__(message, method=method, code=self.default_code, outcome="ok")
        self.candidates = list(candidates or [])
