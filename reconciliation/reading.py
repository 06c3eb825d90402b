"""Reading Balance for a run: a client that counts its calls, reads repeated after a retryable error, batches."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from balance_gateway.client import BalanceClient, ClientInfo, OrderInfo
from balance_gateway.retry import read_with_retry
from payments.models import BalanceOrder
from reconciliation.findings import ReconcileReport, setting

T = TypeVar("T")


class CountingClient(BalanceClient):
    """The gateway client, counting calls per method for the report (every call is also in BalanceCall)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls[method] += 1
        return super()._call(method, *args, **kwargs)


def read(function: Callable[..., T], *args: Any) -> T:
    """A read from Balance, repeated briefly after a retryable error (reads are always safe to repeat)."""
    retries = setting("RECONCILE_CALL_RETRIES", 2)
    return read_with_retry(function, *args, pauses=[0.2 * 2**attempt for attempt in range(retries)])


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclass
class Run:
    client: CountingClient
    report: ReconcileReport
    batch_size: int
    autofix: bool
    persons: str  # "changed" | "all" | "none"
    now: datetime
    limits: dict[tuple[int, int | None], Decimal] = field(default_factory=dict)
    related: dict[str, dict[int, Any]] = field(default_factory=dict)


def orders_info(run: Run, orders: list[BalanceOrder]) -> dict[tuple[int, int], OrderInfo]:
    found: dict[tuple[int, int], OrderInfo] = {}
    keys = [(order.service.balance_service_id, order.pk) for order in orders]
    for chunk in chunks(keys, run.batch_size):
        for info in read(run.client.get_orders_info, list(chunk)):
            found[(info.service_id, int(info.service_order_id))] = info
    return found


def clients_info(run: Run, client_ids: list[int]) -> dict[int, ClientInfo]:
    found: dict[int, ClientInfo] = {}
    for chunk in chunks(sorted(set(client_ids)), run.batch_size):
        for info in read(run.client.get_client_by_id_batch, list(chunk)):
            found[info.client_id] = info
    return found
