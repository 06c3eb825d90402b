"""The one way to repeat a Balance read after a retryable error (reads are always safe to repeat)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from balance_gateway.exceptions import BalanceRetryableError

T = TypeVar("T")


def read_with_retry(call: Callable[..., T], *args: Any, pauses: Sequence[float]) -> T:
    """`call(*args)`, repeated after a `BalanceRetryableError` once per pause (sleeping it first); the last
    attempt's error is raised. Final errors are raised at once: repeating cannot help.

    Writes are not repeated here: the outbox owns their retries (with backoff, and only for handlers that are
    safe to repeat).
    """
    for pause in pauses:
        try:
            return call(*args)
        except BalanceRetryableError:
            time.sleep(pause)
    return call(*args)
