"""`money_in`: the order's ConsumeQty in Balance differs from billing's `credited_qty` (usually a lost
notification). Fix: re-pull the order, which credits (or mirrors) the difference."""

from __future__ import annotations

from typing import Any

from balance_gateway.client import BalanceClient, OrderInfo
from payments.models import BalanceOrder
from payments.services import OrderState, order_apply_balance_state, orders_pull
from reconciliation.findings import Checks, Finding, Severity, money, order_key
from reconciliation.models import Mismatch
from reconciliation.registry import NO_FIX, STAGE_CUSTOMERS, Check, FixContext, FixNotes, register
from reconciliation.stages import CustomerBatch

MONEY_IN = "money_in"
FIX_PULL = "pull"  # re-read the order from Balance and apply it (credits lost money in)


def _check_money_in(checks: Checks, order: BalanceOrder, info: OrderInfo) -> None:
    key = order_key(MONEY_IN, order.pk)
    if info.consume_qty == order.credited_qty:
        checks.equal(key)
        return
    more_in_balance = info.consume_qty > order.credited_qty
    if info.tid > order.last_tid:
        fix: str | None = FIX_PULL
        note = ("Balance has money billing has not credited (a lost notification?): re-pulling the order credits "
                "the difference." if more_in_balance else
                "Balance took money off the order: re-pulling the order mirrors it in the wallet.")
    else:
        fix = None
        note = (f"Balance's Tid {info.tid} is not newer than the one billing applied ({order.last_tid}), so a "
                "re-pull changes nothing: support must check the order in Balance.")
    checks.differ(Finding(
        kind=MONEY_IN, key=key, severity=Severity.WARNING if more_in_balance else Severity.CRITICAL,
        summary=f"Order {order.pk} ({order.key}): ConsumeQty in Balance {money(info.consume_qty)}, billing "
                f"credited {money(order.credited_qty)}",
        rows=[["ConsumeQty", money(order.credited_qty), money(info.consume_qty)],
              ["Tid", str(order.last_tid), str(info.tid)]],
        note=note, fix=fix, service_id=order.service_id, customer_id=order.customer_id, order_id=order.pk,
        data={"consume_qty": money(info.consume_qty), "completion_qty": money(info.completion_qty),
              "tid": info.tid},
    ))


def compare(run: Any, batch: CustomerBatch, checks: Checks) -> None:
    for order in batch.orders:
        info = batch.info(order)
        if info is not None:
            _check_money_in(checks, order, info)


def _fix_pull(client: BalanceClient, mismatches: list[Mismatch],
              infos: dict[int, OrderInfo | None]) -> dict[int, tuple[bool, str]]:
    notes: dict[int, tuple[bool, str]] = {}
    fresh = [m for m in mismatches if m.order_id not in infos or infos[m.order_id] is None]
    if fresh:
        outcome = orders_pull(orders=[m.order for m in fresh if m.order is not None], client=client)
        for m in fresh:
            notes[m.pk] = (outcome["applied"] > 0, f"re-pulled from Balance: {outcome}")
    for mismatch in mismatches:
        info = infos.get(mismatch.order_id)  # type: ignore[arg-type]
        if info is None or mismatch.pk in notes:
            continue
        # The figures were read from Balance moments ago: applying them is what orders_pull would do.
        outcome = order_apply_balance_state(order_id=mismatch.order_id, state=OrderState(  # type: ignore[arg-type]
            consume_qty=info.consume_qty, completion_qty=info.completion_qty, tid=info.tid))
        notes[mismatch.pk] = (outcome == "applied", f"re-pulled from Balance: {outcome}")
    return notes


def fix(context: FixContext, mismatches: list) -> FixNotes:
    if not context.by_support:
        return _fix_pull(context.client, mismatches, context.infos or {})
    notes: FixNotes = {}
    for mismatch in mismatches:
        if mismatch.order is None:
            notes[mismatch.pk] = (False, NO_FIX)
            continue
        outcome = orders_pull(orders=[mismatch.order], client=context.client)
        notes[mismatch.pk] = (True, f"re-pulled from Balance: {outcome['applied']} applied, "
                                    f"{outcome['stale']} already applied")
    return notes


register(Check(kind=MONEY_IN, label="money in", stages=(STAGE_CUSTOMERS,), compare=compare, autofix=True, fix=fix))
