"""Agency credit drawn in Balance: credit invoices on the agency's postpaid contract (outbox `credit.draw`).

A customer under a postpaid agency may spend beyond the money on its wallet order, against the agency's credit
(`overdrafts.services.spend_limit`). Balance knows no such thing as spending on credit: spend beyond the money on
the orders is unpaid completion. What puts the credit on the order is a **credit invoice**: a request by the
agency's client for the wallet order (CreateRequest2, QtyIsAmount=1), then CreateInvoice {RequestID, Credit: 1,
ContractID: the agency's postpaid contract, PersonID: the agency's person}, which puts the money on the order at
once, within the contract's LIMIT_TOTAL less LIMIT_SPENT.

How much: per wallet order (customer, agency), the credit needed is max(0, -the wallet's balance) (held money
counts as spent, as in the agency's `used` figure), less the credit already drawn for it (`CreditDraw` rows that
count). The difference is drawn, one `CreditDraw` row per draw. The draw is enqueued by the hook payments' money
operations already run inside their transaction (`overdrafts.services.after_spend` -> `on_agency_money_movement`),
so it follows the spend closely; eventual consistency is enough: the end state has no unpaid completion.

Not twice: a request after an unknown outcome is harmless while unpaid, but an invoice is money. Each draw row has
one request; before CreateInvoice the contract's LIMIT_SPENT is read and kept on the row and the row is marked
`invoicing` (committed), so that an unknown outcome is looked up on the next try: LIMIT_SPENT grown by exactly the
amount means the invoice was made; unchanged means it was not (invoice again, same request); anything else is
`unknown`, for support. All draws of one agency run one at a time (the outbox subject is the agency) and a draw
left `invoicing` is resolved before any other draw of the agency is invoiced, so nothing else moves LIMIT_SPENT
in between (only the agency paying its invoices, which lowers it: `unknown`, never a second invoice).

The money a draw puts on the order comes back by NotifyOrder2 / GetOrdersInfo like any money on the order; it is
the agency's credit, not wallet money: `order_state` counts as wallet money Balance's money less the draws that
count, and leaves the order's notifications unapplied while a draw's invoice is in flight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from agencies.models import Agency
from balance_gateway.client import BalanceClient, RequestItem
from balance_gateway.exceptions import BalanceError, BalanceFinalError, BalanceRetryableError, BalanceUnknownOutcome
from customers.models import Customer
from disbalance.models import OutboxOperation
from disbalance.money import ZERO
from disbalance.outbox import OutboxFinalError, OutboxRetry, outbox_enqueue, outbox_handler
from overdrafts import selectors as overdraft_selectors
from overdrafts.services import on_agency_money_movement
from payments.models import BalanceOrder, CreditDraw
from wallets.models import Account
from wallets.services import owner_key

logger = logging.getLogger(__name__)

CREDIT_DRAW = "credit.draw"
Status = CreditDraw.Status


# --- reads ------------------------------------------------------------------------------------------------------

def credit_drawn(*, order_id: int) -> Decimal:
    """Credit put (or possibly put) on the wallet order by draws: never wallet money."""
    total = CreditDraw.objects.filter(order_id=order_id, status__in=CreditDraw.COUNTING
                                      ).aggregate(total=Sum("amount"))["total"]
    return total if total is not None else ZERO


def credit_drawn_since(*, order_id: int, since: datetime | None) -> bool:
    """A draw on the order counted after `since` (when Balance was read; None: ever): Balance's figures read before
    it may not include its money yet."""
    draws = CreditDraw.objects.filter(order_id=order_id, status__in=CreditDraw.COUNTING)
    return (draws if since is None else draws.filter(updated_at__gt=since)).exists()


def orders_drawn_unread() -> QuerySet:
    """Ids of wallet orders with a credit invoice drawn since Balance was last read for them (`BalanceOrder.read_at`):
    their notifications wait for the next pull (`order_apply_balance_state`)."""
    return CreditDraw.objects.filter(status__in=CreditDraw.COUNTING).filter(
        Q(order__read_at__isnull=True) | Q(updated_at__gt=F("order__read_at"))).values("order_id")


# Called with the orders that just got a credit invoice and the open client: payments' order state registers the
# pull that reads their figures with the invoice in them (a registry, as the pull's module imports this one).
_after_draw: list[Callable[[list[BalanceOrder], BalanceClient], object]] = []


def on_credit_drawn(func: Callable[[list[BalanceOrder], BalanceClient], object]
                    ) -> Callable[[list[BalanceOrder], BalanceClient], object]:
    _after_draw.append(func)
    return func


def credit_draw_in_flight(order_id: int) -> bool:
    """A credit invoice on the order is being made (or its answer was lost): Balance's money on the order may or
    may not include it yet, so the order's money waits until the draw is settled."""
    return CreditDraw.objects.filter(order_id=order_id, status=Status.INVOICING).exists()


def _wallet_balance(*, customer_id: int, agency_id: int) -> Decimal:
    balance = Account.objects.filter(customer_id=customer_id, payer_agency_id=agency_id, kind=Account.Kind.WALLET
                                     ).values_list("balance", flat=True).first()
    return balance if balance is not None else ZERO


def credit_needed(*, order: BalanceOrder) -> Decimal:
    """Credit still to draw for the wallet order: max(0, -wallet) less what was drawn."""
    assert order.payer_agency_id is not None
    spent_beyond = max(ZERO, -_wallet_balance(customer_id=order.customer_id, agency_id=order.payer_agency_id))
    return max(ZERO, spent_beyond - credit_drawn(order_id=order.pk))


def _wallet_order(customer_id: int, agency_id: int) -> BalanceOrder | None:
    key = f"wallet:{owner_key(customer_id=customer_id, payer_agency_id=agency_id)}"
    return BalanceOrder.objects.select_related("service", "payer_agency").filter(key=key).first()


# --- enqueue (inside the money transaction) ---------------------------------------------------------------------

@on_agency_money_movement
def credit_draw_enqueue(customer: Customer, agency: Agency) -> OutboxOperation | None:
    """After a money movement under an agency: draw credit in Balance if the wallet now needs more than drawn."""
    order = _wallet_order(customer.pk, agency.pk)  # None on the first spend: the charge creates it after this hook
    if order is None:
        if _wallet_balance(customer_id=customer.pk, agency_id=agency.pk) >= 0:
            return None
    elif credit_needed(order=order) <= 0 and not CreditDraw.objects.filter(
            order=order, status__in=CreditDraw.UNFINISHED).exists():
        return None
    return outbox_enqueue(kind=CREDIT_DRAW, subject=f"agency:{agency.pk}",
                          payload={"customer_id": customer.pk, "agency_id": agency.pk}, service=customer.service,
                          dedup_key=f"{CREDIT_DRAW}:{customer.pk}:{agency.pk}")


# --- the handler ------------------------------------------------------------------------------------------------

def _update(draw: CreditDraw, **fields: Any) -> None:
    fields["updated_at"] = timezone.now()
    for name, value in fields.items():
        setattr(draw, name, value)
    CreditDraw.objects.filter(pk=draw.pk).update(**fields)


def _limit_spent(client: BalanceClient, agency: Agency, contract_id: int) -> Decimal | None:
    limits = client.get_client_credit_limits(client_id=agency.balance_client_id,  # type: ignore[arg-type]
                                             product_id=settings.BALANCE_WALLET_PRODUCT_ID)
    found = next((lim for lim in limits.limits if lim.contract_id == contract_id), None)
    return found.limit_spent if found is not None else None


def _look_up(client: BalanceClient, draw: CreditDraw, agency: Agency) -> str:
    """After CreateInvoice's answer was lost: `invoiced`, `not_invoiced` or `unknown`, from LIMIT_SPENT."""
    now = _limit_spent(client, agency, draw.contract_id)
    if now is None or draw.limit_spent_before is None:
        return "unknown"
    grown = now - draw.limit_spent_before
    if grown == draw.amount:
        return "invoiced"
    if grown == 0:
        return "not_invoiced"
    return "unknown"


def _invoice(client: BalanceClient, draw: CreditDraw, agency: Agency) -> dict[str, Any]:
    """CreateInvoice (Credit=1) on the draw's request, LIMIT_SPENT kept first so that a lost answer can be
    looked up."""
    before = _limit_spent(client, agency, draw.contract_id)
    if before is None:
        _update(draw, status=Status.REFUSED, error=f"contract {draw.contract_id} has no credit limit in Balance "
                                                   "(GetClientCreditLimits lists it not)")
        return {"refused": draw.error}
    _update(draw, status=Status.INVOICING, limit_spent_before=before)
    try:
        invoice_id = client.create_invoice(request_id=draw.request_id,  # type: ignore[arg-type]
                                           person_id=agency.balance_person_id,  # type: ignore[arg-type]
                                           contract_id=draw.contract_id, credit=True,
                                           paysys_id=settings.BALANCE_CREDIT_PAYSYS_ID or None)
    except BalanceFinalError as exc:
        _update(draw, status=Status.REFUSED, error=str(exc)[:500])
        logger.warning("credit invoice refused by Balance", extra={"draw": draw.pk, "error": str(exc)})
        return {"refused": str(exc)[:500]}
    except BalanceUnknownOutcome:
        raise  # stays `invoicing`: the next try looks it up
    except BalanceRetryableError:
        _update(draw, status=Status.REQUESTED)  # the call did not go through: nothing was invoiced
        raise
    _update(draw, status=Status.INVOICED, invoice_id=invoice_id, error="")
    return {"invoiced": str(draw.amount), "invoice_id": invoice_id}


def _settle(client: BalanceClient, draw: CreditDraw, agency: Agency, order: BalanceOrder) -> dict[str, Any]:
    """Take an unfinished draw to its end."""
    if draw.status == Status.INVOICING:
        found = _look_up(client, draw, agency)
        if found == "invoiced":
            _update(draw, status=Status.INVOICED, error="invoice found by LIMIT_SPENT after a lost answer")
            return {"invoiced": str(draw.amount), "looked_up": True}
        if found == "unknown":
            _update(draw, status=Status.UNKNOWN,
                    error="CreateInvoice's answer was lost and the contract's LIMIT_SPENT cannot tell whether the "
                          f"invoice was made: check request {draw.request_id} in Balance")
            return {"unknown": draw.pk}
        _update(draw, status=Status.REQUESTED)
    if draw.status == Status.PENDING:
        request = client.create_request2(
            payer_client_id=agency.balance_client_id,  # type: ignore[arg-type]
            items=[RequestItem(service_id=order.service.balance_service_id, service_order_id=order.pk,
                               amount=draw.amount)])
        _update(draw, status=Status.REQUESTED, request_id=request.request_id)
    return _invoice(client, draw, agency)


@outbox_handler(CREDIT_DRAW)
def credit_draw_in_balance(operation: OutboxOperation) -> dict[str, Any]:
    """Outbox handler: settle any unfinished draw of the agency (oldest first), then draw what the customer's
    wallet order still needs. Safe to repeat (see the module docstring)."""
    agency = Agency.objects.select_related("service").get(pk=operation.payload["agency_id"])
    order = _wallet_order(operation.payload["customer_id"], agency.pk)
    if order is None:
        raise OutboxRetry("the customer has no wallet order under the agency yet")
    if order.sync_status != BalanceOrder.SyncStatus.SYNCED:
        if order.sync_status == BalanceOrder.SyncStatus.FAILED:
            raise OutboxFinalError(f"the wallet order is not in Balance: {order.sync_error}")
        raise OutboxRetry("the wallet order is not in Balance yet")
    if agency.balance_client_id is None or agency.balance_person_id is None:
        raise OutboxRetry(f"agency {agency.external_id} has no Balance client or person yet")
    results: dict[str, Any] = {}
    drawn: dict[int, BalanceOrder] = {}
    with BalanceClient() as client:
        try:
            # A draw of the agency left unfinished (a lost answer) first: LIMIT_SPENT must move for it alone.
            for draw in CreditDraw.objects.filter(agency=agency, status__in=CreditDraw.UNFINISHED
                                                  ).select_related("order__service").order_by("id"):
                results[f"draw:{draw.pk}"] = _settle(client, draw, agency, draw.order)
                if draw.status == Status.INVOICED:
                    drawn[draw.order.pk] = draw.order
            need = credit_needed(order=order)
            if need <= 0:
                return results or {"drawn": "0.00"}
            contract = overdraft_selectors.postpaid_contract(agency=agency)
            if contract is None:
                return {**results, "skipped": "the agency has no active postpaid contract"}
            try:
                with transaction.atomic():
                    draw = CreditDraw.objects.create(order=order, agency=agency,
                                                     contract_id=contract.balance_contract_id, amount=need)
            except IntegrityError as exc:  # an unfinished draw of the order appeared meanwhile: the next try
                raise OutboxRetry("another draw of the order is unfinished") from exc
            results[f"draw:{draw.pk}"] = _settle(client, draw, agency, order)
            if draw.status == Status.INVOICED:
                drawn[order.pk] = order
        finally:
            _read_after_draws(client, list(drawn.values()))
    return results


def _read_after_draws(client: BalanceClient, orders: list[BalanceOrder]) -> None:
    """Read the orders that just got an invoice at once, so that their notifications (held until Balance is read
    after a draw) go on; a failure leaves it to the periodic pull (`orders_pull` includes such orders)."""
    if not orders:
        return
    for hook in _after_draw:
        try:
            hook(orders, client)
        except BalanceError as exc:
            logger.warning("pull after a credit invoice failed; the periodic pull reads the orders",
                           extra={"orders": [o.pk for o in orders], "error": str(exc)[:200]})
