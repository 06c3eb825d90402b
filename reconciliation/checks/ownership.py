"""`order_ownership`: an order's ProductID or GroupServiceOrderID in Balance differ from what billing sends for it,
or a synced order is missing. Balance does not return an order's ClientID or AgencyID (GetOrdersInfo, version 2),
so every run re-asserts owner and payer by sending each synced order whole (CreateOrUpdateOrdersBatch, batched):
a change made behind billing's back is put right, and a refusal (`-1`, Balance's message) becomes a mismatch.
Fix: re-send the order (except an order with money in Balance: Balance refuses to change its owner)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from balance_gateway.client import BalanceClient, OrderInfo, OrderResult
from customers.models import Customer
from disbalance.outbox import OutboxRetry
from payments.models import BalanceOrder
from payments.services import order_spec, orders_resend
from reconciliation.findings import Checks, Finding, Severity, id_text, money, order_key
from reconciliation.models import Mismatch
from reconciliation.registry import NO_FIX, STAGE_CUSTOMERS, Check, FixContext, FixNotes, register
from reconciliation.stages import CustomerBatch

ORDER_OWNERSHIP = "order_ownership"
FIX_RESEND = "resend"  # re-send the order (CreateOrUpdateOrdersBatch through the outbox)


def _expected_product_id(order: BalanceOrder) -> int:
    return order.product.balance_product_id if order.product_id else int(settings.BALANCE_WALLET_PRODUCT_ID)


def reassert(client: BalanceClient, orders: list[BalanceOrder], batch_size: int) -> dict[int, OrderResult]:
    """Send each synced order whole again (CreateOrUpdateOrdersBatch: owner, payer, contract, group), in batches.
    An order's owner and payer cannot be read back from Balance, so billing re-asserts them: what was changed
    behind billing's back is put right, and what Balance refuses (`-1` with its message) is returned."""
    specs = []
    for order in orders:
        try:
            specs.append((order, order_spec(order)))
        except OutboxRetry:
            continue  # its customer or agency is not in Balance yet: the outbox's business
    results: dict[int, OrderResult] = {}
    for start in range(0, len(specs), batch_size):
        chunk = specs[start:start + batch_size]
        answers = client.create_or_update_orders_batch([spec for _, spec in chunk])
        results.update({order.pk: answer for (order, _), answer in zip(chunk, answers, strict=True)})
    return results


def _refused(checks: Checks, order: BalanceOrder, customer: Customer, result: OrderResult, base: dict) -> None:
    payer = order.payer_agency
    wanted = f"client {customer.balance_client_id}" + (f", agency {payer.balance_client_id}" if payer else "")
    checks.differ(Finding(
        kind=ORDER_OWNERSHIP, key=order_key(ORDER_OWNERSHIP, order.pk), severity=Severity.CRITICAL, fix=None,
        summary=f"Order {order.pk} ({order.key}): Balance refuses billing's owner and payer ({wanted})",
        rows=[[gettext_noop("owner and payer"), wanted, f"refused: {result.message}"[:300]]],
        note=("Balance refused the order as billing sends it (an order with money keeps its owner in Balance). "
              "Support: move the money in Balance (a transfer to an order of the right payer) or correct the "
              "order there, then Fix (sends the order again) or resolve with a comment."),
        **base,
    ))


def check_ownership(checks: Checks, order: BalanceOrder, customer: Customer, info: OrderInfo | None,
                    reasserted: OrderResult | None = None) -> None:
    key = order_key(ORDER_OWNERSHIP, order.pk)
    base: dict[str, Any] = {"service_id": customer.service_id, "customer_id": customer.pk, "order_id": order.pk,
                            "data": {"sync_status": order.sync_status},
                            # A pending order is on its way to Balance through the outbox already.
                            "autofix_blocked": order.sync_status == BalanceOrder.SyncStatus.PENDING}
    if info is None:
        if order.sync_status == BalanceOrder.SyncStatus.SYNCED:
            checks.differ(Finding(
                kind=ORDER_OWNERSHIP, key=key, severity=Severity.CRITICAL, fix=FIX_RESEND,
                summary=f"Order {order.pk} ({order.key}) is synced in billing but missing in Balance",
                rows=[[gettext_noop("order in Balance"), "synced", "missing"]],
                note=gettext_noop("Re-sending creates it again (orders are keyed by billing's ServiceOrderID)."),
                **base,
            ))
        return  # not in Balance yet (pending or failed): the outbox's business, see stale operations
    payer = order.payer_agency
    if payer is not None and payer.balance_client_id is None:
        return  # the agency is not in Balance yet: nothing to compare with
    if reasserted is not None and not reasserted.ok:
        _refused(checks, order, customer, reasserted, base)
        return
    # GetOrdersInfo has no ClientID or AgencyID: an order's owner and payer cannot be read back, only its
    # product and group; re-sending the whole order (CreateOrUpdateOrdersBatch) re-asserts them all.
    expected = {
        "ProductID": id_text(_expected_product_id(order)),
        "GroupServiceOrderID": id_text(order.parent_id),
    }
    actual = {
        "ProductID": id_text(info.product_id),
        "GroupServiceOrderID": id_text(info.group_service_order_id),
    }
    differing = [name for name in expected if expected[name] != actual[name]]
    if not differing:
        checks.equal(key)
        return
    rows = [[name, expected[name], actual[name]] for name in differing]
    owner_changed = "ProductID" in differing
    fix: str | None = FIX_RESEND
    note = gettext_noop("Re-sending the order to Balance restores billing's values.")
    if owner_changed and info.consume_amount > 0:
        fix = None
        note = (f"Balance does not change the ProductID of an order that has money (consume_amount "
                f"{money(info.consume_amount)}), so re-sending cannot fix this. Support: move the money in Balance "
                "(transfer to an order of the right payer) or correct the order there, then resolve with a comment.")
        rows.append(["money on the order", money(order.credited_qty), money(info.consume_amount)])
    what = ", ".join(f"{name} {actual[name]} (billing {expected[name]})" for name in differing)
    checks.differ(Finding(
        kind=ORDER_OWNERSHIP, key=key, severity=Severity.CRITICAL if owner_changed else Severity.WARNING,
        summary=f"Order {order.pk} ({order.key}) in Balance has {what}", rows=rows, note=note, fix=fix, **base,
    ))


def compare(run: Any, batch: CustomerBatch, checks: Checks) -> None:
    synced = [o for o in batch.orders if o.sync_status == BalanceOrder.SyncStatus.SYNCED and batch.info(o) is not None]
    results = reassert(run.client, synced, run.batch_size)
    for order in batch.orders:
        check_ownership(checks, order, batch.by_id[order.customer_id], batch.info(order), results.get(order.pk))


def _fix_resend(mismatches: list[Mismatch]) -> dict[int, tuple[bool, str]]:
    with_order = [m for m in mismatches if m.order is not None]
    operations = {op.subject: op for op in orders_resend(orders=[m.order for m in with_order])}  # type: ignore[misc]
    notes = {m.pk: (False, "no order") for m in mismatches if m.order is None}
    for mismatch in with_order:
        operation = operations.get(f"customer:{mismatch.order.customer_id}")  # type: ignore[union-attr]
        notes[mismatch.pk] = (True, f"order re-sent to Balance (outbox operation {operation.pk if operation else '?'})")
    return notes


def _resend_refusal(order: BalanceOrder) -> str:
    """Why re-sending cannot fix the order (Balance refuses it as billing sends it, or its product differs while
    it holds money), or "" when it can. The order is sent whole once, directly: that is the attempt."""
    order = BalanceOrder.objects.select_related("customer", "payer_agency", "product", "service").get(pk=order.pk)
    with BalanceClient() as client:
        results = reassert(client, [order], 1)
        infos = client.get_orders_info([(order.service.balance_service_id, order.pk)])
    result = results.get(order.pk)
    if result is not None and not result.ok:
        return f"Balance refuses the order as billing sends it: {result.message}"
    checks = Checks()
    check_ownership(checks, order, order.customer, infos[0] if infos else None)
    finding = checks.findings.get(order_key(ORDER_OWNERSHIP, order.pk))
    if finding is not None and finding.fix is None:
        return finding.note
    return ""


def fix(context: FixContext, mismatches: list) -> FixNotes:
    if not context.by_support:
        return _fix_resend(mismatches)
    notes: FixNotes = {}
    for mismatch in mismatches:
        if mismatch.order is None:
            notes[mismatch.pk] = (False, NO_FIX)
            continue
        refusal = _resend_refusal(mismatch.order)
        if refusal:
            notes[mismatch.pk] = (False, f"not re-sent: {refusal}")
            continue
        operation = orders_resend(orders=[mismatch.order])[0]
        notes[mismatch.pk] = (True, f"order re-sent to Balance (outbox operation {operation.pk})")
    return notes


register(Check(kind=ORDER_OWNERSHIP, label=_("order ownership"), stages=(STAGE_CUSTOMERS,), compare=compare,
               autofix=True, fix=fix))
