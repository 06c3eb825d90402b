"""`unpaid_completion`: per (customer, payer) pot, i.e. the wallet order and its children. Balance's view:
sum(completion_amount) - sum(consume_amount) (money fields of GetOrdersInfo; agency credit drawn is money on the
order there) beyond what covers it in Balance: the auto-overdraft billing set (ClientLimit) for the customer's own
pot, nothing under an agency. Billing's view: the payer's wallet account below zero beyond billing's overdraft or
credit limit. It works against a real Balance too; the emulator's `UnpaidQty` is Balance's figure.
Support's fix (never automatic): re-pull the wallet order and re-report its children."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from agencies.models import Agency
from balance_gateway.client import OrderInfo
from customers.models import Customer
from disbalance.money import ZERO
from overdrafts import selectors as overdrafts
from overdrafts.models import Overdraft
from payments.models import BalanceOrder
from payments.services import orders_pull, orders_rereport
from reconciliation.findings import Checks, Finding, Severity, money, payer_key
from reconciliation.reading import Run
from reconciliation.registry import NO_FIX, STAGE_CUSTOMERS, Check, FixContext, FixNotes, register
from reconciliation.stages import CustomerBatch

UNPAID_COMPLETION = "unpaid_completion"
FIX_REFRESH = "refresh"  # re-pull the wallet and re-report the children (support only)


def unpaid_key(customer_id: int, payer_agency_id: int | None) -> str:
    return f"{UNPAID_COMPLETION}:customer:{customer_id}:payer:{payer_key(payer_agency_id)}"


def _spend_limit(run: Run, customer: Customer, payer: Agency | None) -> Decimal:
    """The overdraft or credit that covers the pot's spend beyond its money (billing's view, cached per run).

    Read-only, and not `overdrafts.services.spend_limit`: that one guards *new* spending, so it answers 0 for the
    customer's own pot once the customer has moved to an agency (the debt made before the move is still covered
    by its overdraft in Balance) and raises `CustomerBlocked` for an overdue customer, the very ones to reconcile.
    """
    cache_key = (customer.pk, payer.pk if payer else None)
    if cache_key not in run.limits:
        if payer is not None:
            limit = overdrafts.agency_credit_room(customer=customer, agency=payer)
        else:
            overdraft = Overdraft.objects.filter(customer_id=customer.pk).first()
            limit = (overdrafts.overdraft_limit(customer=customer, overdraft=overdraft) if customer.agency_id is None
                     else overdrafts.granted_limit(overdraft=overdraft))
        run.limits[cache_key] = limit
    return run.limits[cache_key]


def _balance_cover(customer: Customer, payer: Agency | None) -> Decimal:
    """What covers completion beyond the money in Balance: for the customer's own pot, the auto-overdraft Balance
    accepted from billing (`Overdraft.auto_limit`, SetOverdraftParams' ClientLimit); under an agency nothing, since
    the agency's credit invoices put money on the order (counted in consume_amount already)."""
    if payer is not None:
        return ZERO
    auto_limit = Overdraft.objects.filter(customer_id=customer.pk).values_list("auto_limit", flat=True).first()
    return auto_limit or ZERO


def _check_unpaid(run: Run, checks: Checks, customer: Customer, wallet: BalanceOrder,
                  members: list[tuple[BalanceOrder, OrderInfo | None]], wallet_balance: Decimal | None,
                  billing_spend: Decimal) -> None:
    key = unpaid_key(customer.pk, wallet.payer_agency_id)
    known = [(order, info) for order, info in members if info is not None]
    balance_money = sum((info.consume_amount for order, info in known if order.kind == BalanceOrder.Kind.WALLET
                         or settings.BALANCE_GROUP_REPORTING == "enqueue"), ZERO)
    balance_spent = sum((info.completion_amount for _, info in known), ZERO)
    balance_excess = max(ZERO, balance_spent - balance_money)
    billing_excess = max(ZERO, -wallet_balance) if wallet_balance is not None else ZERO
    if not known and wallet_balance is None:
        return
    if balance_excess == 0 and billing_excess == 0:
        checks.equal(key)
        return
    limit = _spend_limit(run, customer, wallet.payer_agency)
    cover = _balance_cover(customer, wallet.payer_agency)
    balance_unpaid = max(ZERO, balance_excess - cover)
    billing_unpaid = max(ZERO, billing_excess - limit)
    if balance_unpaid == 0 and billing_unpaid == 0:
        checks.equal(key)
        return
    payer = wallet.payer_agency.external_id if wallet.payer_agency else "self"
    credited = sum((order.credited_qty for order, _ in members), ZERO)
    worst = max(balance_unpaid, billing_unpaid)
    where = "Balance" if balance_unpaid >= billing_unpaid else "billing"
    checks.differ(Finding(
        kind=UNPAID_COMPLETION, key=key, severity=Severity.CRITICAL,
        summary=f"{customer.external_id} (payer {payer}): {money(worst)} spent beyond money and overdraft "
                f"({where})",
        rows=[[gettext_noop("money in (consume_amount)"), money(credited), money(balance_money)],
              ["spent (completion_amount)", money(billing_spend), money(balance_spent)],
              ["wallet", money(wallet_balance), money(balance_money - balance_spent)],
              ["overdraft / credit limit (billing's) / auto-overdraft (Balance's)", money(limit), money(cover)],
              ["unpaid completion", money(billing_unpaid), money(balance_unpaid)]],
        note=("Spend beyond the payer's money and overdraft is money the company loses. If a money_out or money_in "
              "mismatch of the same orders is open, fixing it may clear this one; otherwise the payer owes it: "
              "arrange payment, then resolve with a comment."),
        fix=None, service_id=customer.service_id, customer_id=customer.pk, order_id=wallet.pk,
        data={"wallet_order_id": wallet.pk},
    ))


def compare(run: Run, batch: CustomerBatch, checks: Checks) -> None:
    for order in batch.orders:
        if order.kind != BalanceOrder.Kind.WALLET:
            continue
        members = [order, *batch.children.get(order.pk, [])]
        pairs = [(m, batch.info(m)) for m in members]
        pot = (order.customer_id, order.payer_agency_id)
        _check_unpaid(run, checks, batch.by_id[order.customer_id], order, pairs, batch.wallets.get(pot),
                      batch.spend_by_payer.get(pot, ZERO))


def fix(context: FixContext, mismatches: list) -> FixNotes:
    notes: FixNotes = {}
    for mismatch in mismatches:
        order = mismatch.order
        if order is None:
            notes[mismatch.pk] = (False, NO_FIX)
            continue
        children = list(order.children.filter(sync_status=BalanceOrder.SyncStatus.SYNCED))
        outcome = orders_pull(orders=[order], client=context.client)
        accepted = orders_rereport(orders=children, client=context.client)
        notes[mismatch.pk] = (True, (
            f"re-pulled the wallet order ({outcome['applied']} applied) and re-reported "
            f"{sum(accepted.values())} child order(s); if Balance still shows unpaid completion, the payer "
            "owes it: resolve with a comment once handled"))
    return notes


register(Check(kind=UNPAID_COMPLETION, label=_("unpaid completion"), stages=(STAGE_CUSTOMERS,), compare=compare,
               autofix=False, fix=fix, always_fixable=True))
