"""`money_in`: a wallet order's money in Balance (its money fields: consume_amount, plus the children's with
"enqueue" group reporting), less the agency credit billing drew on it (credit invoices are not wallet money),
differs from billing's `credited_qty` (usually a lost notification). Fix: re-pull the
order, which credits money that came in; less money in Balance is for support (a pull never takes money back)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from balance_gateway.client import BalanceClient, OrderInfo
from disbalance.money import ZERO
from payments.models import BalanceOrder
from payments.services import (
    OrderState,
    credit_drawn,
    order_apply_balance_state,
    orders_pull,
    wallet_money_from_info,
)
from reconciliation.findings import Checks, Finding, Severity, money, order_key
from reconciliation.models import Mismatch
from reconciliation.registry import NO_FIX, STAGE_CUSTOMERS, Check, FixContext, FixNotes, register
from reconciliation.stages import CustomerBatch

MONEY_IN = "money_in"
FIX_PULL = "pull"  # re-read the order from Balance and apply it (credits lost money in)


def _check_money_in(checks: Checks, order: BalanceOrder, info: OrderInfo, children: list[OrderInfo]) -> None:
    """A wallet order's money in Balance (its money fields, never a *Qty) against what billing credited. A
    child's consume is what covers it, not wallet money: not compared."""
    key = order_key(MONEY_IN, order.pk)
    if order.kind != BalanceOrder.Kind.WALLET:
        checks.equal(key)
        return
    balance_money = wallet_money_from_info(info, children)
    credit = credit_drawn(order_id=order.pk) if order.payer_agency_id else ZERO
    balance_money -= credit  # agency credit drawn on the order (credit invoices) is not wallet money
    if balance_money == order.credited_qty:
        checks.equal(key)
        return
    more_in_balance = balance_money > order.credited_qty
    if more_in_balance:
        fix: str | None = FIX_PULL
        note = ("Balance has money billing has not credited (a lost notification?): re-pulling the order credits "
                "the difference.")
    else:
        fix = None
        note = ("Balance shows less money on the order than billing credited (taken off in Balance, or a "
                "notification billing has not received yet): a pull never takes money back, so support must check "
                "the order in Balance.")
    checks.differ(Finding(
        kind=MONEY_IN, key=key, severity=Severity.WARNING if more_in_balance else Severity.CRITICAL,
        summary=f"Order {order.pk} ({order.key}): money in Balance {money(balance_money)}, billing "
                f"credited {money(order.credited_qty)}",
        rows=[[gettext_noop("money on the order (consume_amount)"), money(order.credited_qty), money(balance_money)]],
        note=note, fix=fix, service_id=order.service_id, customer_id=order.customer_id, order_id=order.pk,
        data={"consume_amount": money(balance_money), "completion_qty": str(info.completion_qty)},
    ))


def _children_infos(batch: CustomerBatch, wallet: BalanceOrder) -> list[OrderInfo]:
    return [info for child in batch.children.get(wallet.pk, []) if (info := batch.info(child)) is not None]


def compare(run: Any, batch: CustomerBatch, checks: Checks) -> None:
    for order in batch.orders:
        info = batch.info(order)
        if info is not None:
            _check_money_in(checks, order, info, _children_infos(batch, order))


def _fix_pull(client: BalanceClient, mismatches: list[Mismatch],
              infos: dict[int, OrderInfo | None]) -> dict[int, tuple[bool, str]]:
    notes: dict[int, tuple[bool, str]] = {}
    # An order paid by an agency is read again rather than given the figures read earlier: a credit invoice drawn
    # since would be taken off money that may not include it (orders_pull knows when it read; these do not).
    fresh = [m for m in mismatches if m.order_id not in infos or infos[m.order_id] is None
             or (m.order is not None and m.order.payer_agency_id is not None)]
    if fresh:
        outcome = orders_pull(orders=[m.order for m in fresh if m.order is not None], client=client)
        for m in fresh:
            notes[m.pk] = (outcome["applied"] > 0, f"re-pulled from Balance: {outcome}")
    for mismatch in mismatches:
        info = infos.get(mismatch.order_id)  # type: ignore[arg-type]
        if info is None or mismatch.pk in notes:
            continue
        # The figures were read from Balance moments ago: applying them is what orders_pull would do.
        order = mismatch.order
        if order is None or order.kind != BalanceOrder.Kind.WALLET:
            notes[mismatch.pk] = (False, "only a wallet order's money is pulled")
            continue
        children = [i for c in BalanceOrder.objects.filter(parent=order) if (i := infos.get(c.pk)) is not None]
        outcome = order_apply_balance_state(order_id=order.pk, state=OrderState(
            consume_money=wallet_money_from_info(info, children), completion_qty=info.completion_qty, tid=None))
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


register(Check(kind=MONEY_IN, label=_("money in"), stages=(STAGE_CUSTOMERS,), compare=compare, autofix=True, fix=fix))
