"""`money_out`: the order's completion in Balance (in the product's unit) differs from billing's cumulative spend
(the spend account / the product's price; 0 for wallet orders), or Balance refused the last completion report
(UpdateCampaigns answered 0: shown with the reason, never autofixed). Spend newer than the last accepted report
is the reporting job's lag, not a mismatch,
unless it has waited longer than RECONCILE_REPORT_LAG_MINUTES. Fix: re-report the cumulative spend."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Max
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from balance_gateway.client import OrderInfo
from disbalance.money import ZERO
from payments.models import BalanceOrder
from payments.services import orders_rereport, spend_account_key
from reconciliation.findings import Checks, Finding, Severity, batch_size_default, money, order_key, setting
from reconciliation.registry import NO_FIX, STAGE_CUSTOMERS, Check, FixContext, FixNotes, register
from reconciliation.stages import CustomerBatch
from wallets.models import LedgerEntry

MONEY_OUT = "money_out"
FIX_REPORT = "report"  # re-send the cumulative completion (UpdateCampaigns)


def _expected_completion(order: BalanceOrder, money: Decimal) -> Decimal:
    """Billing's spend as Balance counts it: in the child's product unit (the wallet order completes nothing)."""
    if order.product is None:
        return Decimal(0)
    return order.product.units_for(money)


def _check_money_out(checks: Checks, order: BalanceOrder, info: OrderInfo, spend: Decimal,
                     spend_changed_at: Callable[[], datetime | None], now: datetime) -> None:
    key = order_key(MONEY_OUT, order.pk)
    expected = _expected_completion(order, spend)
    if order.report_refused_at is not None:
        checks.differ(Finding(
            kind=MONEY_OUT, key=key, severity=Severity.CRITICAL,
            summary=f"Order {order.pk} ({order.key}): Balance refused its completion report "
                    f"({order.report_refused_at:%Y-%m-%d %H:%M} UTC)",
            rows=[[gettext_noop("completion (cumulative)"), str(expected), str(info.completion_qty)],
                  ["last accepted report (money)", money(order.reported_qty), ""]],
            note=(f"{order.report_error or 'UpdateCampaigns answered 0.'} Check the order in Balance (blocked or "
                  "stopped?), then re-report (the Fix button): it sends the cumulative spend again and clears "
                  "the refusal. Never re-sent automatically."),
            fix=None, service_id=order.service_id, customer_id=order.customer_id, order_id=order.pk,
        ))
        return
    if info.completion_qty == expected:
        checks.equal(key)
        return
    if order.kind == BalanceOrder.Kind.CHILD and info.completion_qty == _expected_completion(order, order.reported_qty):
        # Balance has what billing last reported; newer spend waits for the reporting job (every minute).
        changed_at = spend_changed_at()
        lag = timedelta(minutes=setting("RECONCILE_REPORT_LAG_MINUTES", 30))
        if changed_at is None or changed_at > now - lag:
            checks.equal(key)
            return
        note = (f"Spend changed at {changed_at:%Y-%m-%d %H:%M} UTC and is still not reported: is the spend_report "
                "job running? Re-reporting sends the cumulative spend now.")
    elif order.kind == BalanceOrder.Kind.WALLET:
        note = gettext_noop("Billing never reports completions on a wallet order: re-reporting sets it back to 0.")
    else:
        note = ("Balance's completion differs from what billing reported (changed in Balance, or a report was "
                "lost, or Balance has not processed it yet): re-reporting sends billing's cumulative spend, which "
                "Balance applies as a correction.")
    checks.differ(Finding(
        kind=MONEY_OUT, key=key, severity=Severity.CRITICAL,
        summary=f"Order {order.pk} ({order.key}): completion in Balance {info.completion_qty}, "
                f"billing's spend {expected} ({money(spend)})",
        rows=[[gettext_noop("completion (cumulative, product units)"), str(expected), str(info.completion_qty)],
              ["last accepted report (money)", money(order.reported_qty), ""]],
        note=note, fix=FIX_REPORT, service_id=order.service_id, customer_id=order.customer_id, order_id=order.pk,
    ))


def _spend_changed_at(account_id: int | None) -> datetime | None:
    if account_id is None:
        return None
    return LedgerEntry.objects.filter(account_id=account_id).aggregate(at=Max("transaction__created_at"))["at"]


def compare(run: Any, batch: CustomerBatch, checks: Checks) -> None:
    for order in batch.orders:
        info = batch.info(order)
        if info is None:
            continue
        account_id, spent = (batch.spend.get(spend_account_key(order), (None, ZERO))
                             if order.kind == BalanceOrder.Kind.CHILD else (None, ZERO))
        _check_money_out(checks, order, info, spent, lambda a=account_id: _spend_changed_at(a), run.now)


def fix(context: FixContext, mismatches: list) -> FixNotes:
    with_order = [m for m in mismatches if m.order is not None]
    notes: FixNotes = {m.pk: (False, NO_FIX) for m in mismatches if m.order is None}
    accepted = orders_rereport(orders=[m.order for m in with_order], client=context.client,
                               batch_size=batch_size_default())
    for mismatch in with_order:
        ok = accepted.get(mismatch.order_id, False)
        notes[mismatch.pk] = (ok, "re-reported the cumulative spend" if ok else "Balance refused the completion report")
    return notes


register(Check(kind=MONEY_OUT, label=_("money out"), stages=(STAGE_CUSTOMERS,), compare=compare, autofix=True,
               fix=fix))
