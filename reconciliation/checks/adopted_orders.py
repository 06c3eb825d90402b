"""`adopted_order`: a legacy order adopted by `adopt_orders` (payments.OrderAdoption) whose money in Balance is no
longer what the adoption left there. After adoption the order keeps exactly its completed money (consume =
completion, nothing free); more money on it (someone paid onto the old order) or more completion (the consumer still
reports spend on it directly) is a difference, compared from the money fields like billing's own orders. An
adoption left `transferring` by an interrupted run is shown too (re-run `adopt_orders` to settle it). No fix:
support checks the order in Balance and the consumer's cut-over (docs/migrating.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from balance_gateway.client import OrderInfo
from payments.models import OrderAdoption
from reconciliation.findings import Checks, Finding, Severity, money
from reconciliation.reading import chunks, read
from reconciliation.registry import STAGE_CUSTOMERS, Check, register
from reconciliation.stages import CustomerBatch

ADOPTED_ORDER = "adopted_order"
# An adoption still `transferring` after this long was interrupted (a run takes seconds per batch).
IN_FLIGHT_GRACE = timedelta(minutes=10)


def adopted_key(adoption: OrderAdoption) -> str:
    return f"{ADOPTED_ORDER}:service:{adoption.service_id}:order:{adoption.service_order_id}"


def _finding(adoption: OrderAdoption, summary: str, rows: list[list[str]], note: str, severity: str,
             data: dict[str, Any] | None = None) -> Finding:
    return Finding(kind=ADOPTED_ORDER, key=adopted_key(adoption), severity=severity, summary=summary, rows=rows,
                   note=note, service_id=adoption.service_id, customer_id=adoption.customer_id,
                   order_id=adoption.wallet_order_id, data=data or {})


def _compare(checks: Checks, adoption: OrderAdoption, info: OrderInfo | None, now: Any) -> None:
    key = adopted_key(adoption)
    soid = adoption.service_order_id
    if adoption.status == OrderAdoption.Status.TRANSFERRING:
        if now - adoption.updated_at < IN_FLIGHT_GRACE:
            checks.equal(key)
            return
        checks.differ(_finding(
            adoption, f"Legacy order {soid}: its adoption was interrupted",
            [[gettext_noop("adoption"), "transferring", "—"]],
            "A run of adopt_orders stopped between asking Balance to move the money and posting it: run the same "
            "file again, it settles the order from what Balance shows.", Severity.WARNING))
        return
    if info is None:
        checks.differ(_finding(
            adoption, f"Legacy order {soid}: not found in Balance",
            [[gettext_noop("order"), "adopted", "not found"]], "Balance no longer has the adopted order.",
            Severity.CRITICAL))
        return
    if (info.consume_amount == adoption.expected_consume_amount
            and info.completion_amount == adoption.expected_completion_amount):
        checks.equal(key)
        return
    checks.differ(_finding(
        adoption, f"Legacy order {soid}: money changed in Balance after its adoption",
        [[gettext_noop("money on the order (consume_amount)"), money(adoption.expected_consume_amount),
          money(info.consume_amount)],
         ["completion (completion_amount)", money(adoption.expected_completion_amount),
          money(info.completion_amount)]],
        "The order's money moved to billing's wallet when it was adopted. New money or completion on it means the "
        "consumer (or someone in Balance) still uses the old order directly: that money is outside billing. Check "
        "the consumer's cut-over (docs/migrating.md, step 5) and the order in Balance.", Severity.CRITICAL,
        {"consume_amount": money(info.consume_amount), "completion_amount": money(info.completion_amount)}))


def compare(run: Any, batch: CustomerBatch, checks: Checks) -> None:
    adoptions = list(OrderAdoption.objects.filter(
        customer_id__in=[c.pk for c in batch.customers],
        status__in=[OrderAdoption.Status.ADOPTED, OrderAdoption.Status.TRANSFERRING]).select_related("service"))
    if not adoptions:
        return
    keys = [(a.service.balance_service_id, a.service_order_id) for a in adoptions]
    infos: dict[tuple[int, str], OrderInfo] = {}
    for chunk in chunks(keys, run.batch_size):
        for info in read(run.client.get_orders_info, list(chunk)):
            infos[(info.service_id, str(info.service_order_id))] = info
    for adoption, key in zip(adoptions, keys, strict=True):
        _compare(checks, adoption, infos.get(key), run.now)


register(Check(kind=ADOPTED_ORDER, label=_("adopted legacy order"), stages=(STAGE_CUSTOMERS,), compare=compare))
