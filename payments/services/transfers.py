"""Support's "move money between payers", made in Balance first and mirrored in the ledger (`PayerTransfer`).

Why this order and this path. The money of a customer's wallet under a payer is the money on that payer's wallet
order in Balance; a move only in billing's ledger would leave Balance's money where it was, and spending it later
under the new payer would be unpaid completion in Balance. So:

1. `payer_transfer_start` (one transaction, under the customer lock): billing's checks as before (reason, free
   money of the source wallet, a different payer), both wallet orders synced in Balance, no other move of them
   under way; the `PayerTransfer` row (`sending`) and an outbox operation `payments.payer_transfer`. Nothing is
   posted yet, so a refusal by Balance changes nothing in the ledger.
2. The outbox handler (run at once by the console through `outbox_process`, and by workers and the sweep if the
   console's process dies): `GetOrdersInfo` of the source order just before, then `CreateTransferMultiple` with
   `QtyOld` = Balance's consume now and `QtyNew` = `QtyOld` - the amount in the wallet product's units (one unit per
   rouble), the destination the payer's wallet order with `QtyDelta` 1. The figures sent are kept on the row first.
3. `payer_transfer_post` (one transaction): the ledger `transfer` (with support's name and reason), both wallet
   orders' `credited_qty` moved by the amount (so the NotifyOrder2 Balance sends next, with the new money on both
   orders, is neither a second cut nor a top-up), debt and blocks of both payers.

Crash-safe and idempotent: the transfer is a compare-and-set in Balance (`QtyOld` must equal its consume exactly),
so a repeat after an unknown outcome cannot move the money twice; before repeating, Balance's figures say whether
the first call happened (consume = `qty_new`: post it; = `qty_old`: ask again; anything else: `unsettled`, nothing
posted, and billing follows Balance's notifications again). While a row is `sending`, notifications of both orders
are answered "not found" (Balance re-sends them) and pulls wait (`money_in_flight`), as during an adoption.
Refusals (`NOT_EQUIVALENT_CLIENTS`, `NOT_ENOUGH_FUNDS`, `ORDERS_NOT_SYNCHRONIZED` after one re-read, a move across
agencies when `BALANCE_TRANSFER_ACROSS_AGENCIES` is off) end the row `refused` with a reason support reads.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from agencies.models import Agency
from balance_gateway.client import BalanceClient, TransferDestination, TransferSource
from balance_gateway.exceptions import BalanceFinalError
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.exceptions import InsufficientFunds, InvalidState, ValidationFailed
from disbalance.models import OutboxOperation
from disbalance.money import ZERO, format_amount
from disbalance.outbox import outbox_enqueue, outbox_handler, outbox_on_failure, outbox_process
from disbalance.reasons import required_reason
from overdrafts import services as overdrafts
from payments.models import BalanceOrder, OrderAdoption, PayerTransfer
from payments.services.orders import orders_ensure
from wallets.models import Account
from wallets.services import owner_key

PAYER_TRANSFER = "payments.payer_transfer"


def payer_name(payer: Agency | None) -> str:
    return payer.external_id if payer is not None else "the customer itself"


def money_in_flight_annotations() -> dict[str, Exists]:
    """`adopting` and `moving`, to annotate a query of wallet orders with: money is being moved onto or off the
    order in Balance (an adoption, a payer transfer) if either is true (`money_in_flight`)."""
    adopting = OrderAdoption.objects.filter(wallet_order_id=OuterRef("pk"),
                                            status=OrderAdoption.Status.TRANSFERRING)
    moving = PayerTransfer.objects.filter(Q(from_order_id=OuterRef("pk")) | Q(to_order_id=OuterRef("pk")),
                                          status=PayerTransfer.Status.SENDING)
    return {"adopting": Exists(adopting), "moving": Exists(moving)}


def money_in_flight(order_id: int) -> bool:
    """Whether money is being moved onto or off this wallet order in Balance (an adoption or a payer transfer):
    its notifications and pulls wait until billing has posted the move. One statement (`order_apply_balance_state`
    reads the same in its lock of the order, with `money_in_flight_annotations`)."""
    flags = BalanceOrder.objects.filter(pk=order_id).annotate(**money_in_flight_annotations()).values_list(
        "adopting", "moving").first()
    return flags is not None and any(flags)


def _wallet_order(customer: Customer, payer: Agency | None) -> BalanceOrder | None:
    key = f"wallet:{owner_key(customer_id=customer.pk, payer_agency_id=payer.pk if payer else None)}"
    return BalanceOrder.objects.filter(key=key).first()


def payer_transfer_destination_ready(*, customer: Customer, to_payer: Agency | None) -> bool:
    """Make sure the destination payer's wallet order exists and is synced in Balance: created (and its sync run
    at once) if need be. Returns whether it is synced now."""
    with transaction.atomic():
        order = orders_ensure(customer=lock_customer(customer.pk), payer=to_payer)
    if order.sync_status == BalanceOrder.SyncStatus.SYNCED:
        return True
    for operation_id in OutboxOperation.objects.filter(
            subject=f"customer:{customer.pk}", kind="orders.sync",
            status=OutboxOperation.Status.PENDING).values_list("pk", flat=True):
        outbox_process(operation_id=operation_id, ignore_schedule=True)
    order.refresh_from_db(fields=["sync_status"])
    return order.sync_status == BalanceOrder.SyncStatus.SYNCED


def _billing_checks(customer: Customer, from_payer: Agency | None, to_payer: Agency | None,
                    amount: Decimal) -> tuple[BalanceOrder, BalanceOrder | None]:
    """What billing says before Balance is asked: the amount, two different payers, the free money of the source
    wallet, the setting about moves across agencies, the source's wallet order in Balance. Returns the source and
    the destination wallet orders (None when the destination has none yet)."""
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0 or amount != amount.quantize(
            Decimal("0.01")):
        raise ValidationFailed("amount must be a positive amount with at most 2 places",
                               errors={"amount": ["Must be a positive amount with at most 2 decimal places."]})
    if (from_payer.pk if from_payer else None) == (to_payer.pk if to_payer else None):
        raise ValidationFailed("from and to payer are the same", errors={"to_payer": ["Must differ from from_payer."]})
    wallet = Account.objects.filter(customer=customer, kind=Account.Kind.WALLET,
                                    payer_agency=from_payer).values_list("balance", flat=True).first() or ZERO
    if amount > wallet:
        raise InsufficientFunds(f"{format_amount(amount)} exceeds the free {format_amount(wallet)} under "
                                f"{payer_name(from_payer)}")
    if not settings.BALANCE_TRANSFER_ACROSS_AGENCIES:
        raise InvalidState(
            f"Balance does not move money between orders of different agencies (BALANCE_TRANSFER_ACROSS_AGENCIES "
            f"is off), and the wallets under {payer_name(from_payer)} and {payer_name(to_payer)} are such orders. "
            f"The money stays under {payer_name(from_payer)}.")
    source = _wallet_order(customer, from_payer)
    if source is None or source.sync_status != BalanceOrder.SyncStatus.SYNCED:
        raise InvalidState(
            f"The wallet under {payer_name(from_payer)} has no order in Balance, so none of its money is in Balance "
            f"(it came from ledger-only corrections): there is nothing to move there.")
    return source, _wallet_order(customer, to_payer)


def payer_transfer_check(*, customer: Customer, from_payer: Agency | None, to_payer: Agency | None,
                         amount: Decimal) -> None:
    """Billing's checks alone (no lock, nothing written): the console runs them before it makes sure of the
    destination's wallet order, so that a move billing refuses creates nothing. `payer_transfer_start` repeats
    them under the lock."""
    _billing_checks(customer, from_payer, to_payer, amount)


@transaction.atomic
def payer_transfer_start(*, customer: Customer, from_payer: Agency | None, to_payer: Agency | None,
                         amount: Decimal, reason: str, by: AbstractBaseUser | None) -> PayerTransfer:
    """Billing's checks and the row that asks Balance (see the module's docstring); nothing is posted yet."""
    reason = required_reason(reason)
    customer = lock_customer(customer.pk)
    source, target = _billing_checks(customer, from_payer, to_payer, amount)
    if target is None or target.sync_status != BalanceOrder.SyncStatus.SYNCED:
        raise InvalidState(f"The wallet order under {payer_name(to_payer)} is not in Balance yet (its sync is "
                           f"waiting in the outbox): try again in a minute.")
    if money_in_flight(source.pk) or money_in_flight(target.pk):
        raise InvalidState("Another move of money on these wallet orders is still waiting for Balance: try again "
                           "when it is settled.")
    transfer = PayerTransfer.objects.create(
        service=customer.service, customer=customer, from_order=source, to_order=target, amount=amount,
        reason=reason, created_by=by)
    outbox_enqueue(kind=PAYER_TRANSFER, subject=f"customer:{customer.pk}", payload={"transfer_id": transfer.pk},
                   service=customer.service)
    return transfer


def payer_transfer_run(*, transfer: PayerTransfer) -> PayerTransfer:
    """Ask Balance now (the outbox operation of the transfer, at once) and return the row as it ends: `done`,
    `refused`, or still `sending` when Balance's answer is unknown (the outbox asks again later)."""
    for operation_id in OutboxOperation.objects.filter(
            kind=PAYER_TRANSFER, payload__transfer_id=transfer.pk,
            status=OutboxOperation.Status.PENDING).values_list("pk", flat=True):
        outbox_process(operation_id=operation_id, ignore_schedule=True)
    transfer.refresh_from_db()
    return transfer


def _explain(exc: BalanceFinalError, transfer: PayerTransfer) -> str:
    source = payer_name(transfer.from_order.payer_agency)
    if exc.code == "NOT_EQUIVALENT_CLIENTS":
        why = ("Balance moves money only between orders of one client, or of one agency: it does not allow this "
               "move between payers")
    elif exc.code == "NOT_ENOUGH_FUNDS":
        why = "Balance has less free money on the source order than asked (part of it is spent or not paid yet)"
    elif exc.code == "ORDERS_NOT_SYNCHRONIZED":
        why = "the order's money changed in Balance while moving it, twice; try again"
    else:
        why = "Balance refused the move"
    return f"{why} ({exc.code}: {exc.message[:200]}). The money stays under {source}."[:500]


@transaction.atomic
def payer_transfer_refuse(*, transfer_id: int, reason: str, status: str = PayerTransfer.Status.REFUSED) -> None:
    """End a row without posting anything: refused (Balance or billing said no) or unsettled."""
    transfer = PayerTransfer.objects.select_for_update().get(pk=transfer_id)
    if transfer.status != PayerTransfer.Status.SENDING:
        return
    transfer.status, transfer.balance_error, transfer.updated_at = status, reason[:500], timezone.now()
    transfer.save(update_fields=["status", "balance_error", "updated_at"])


@transaction.atomic
def payer_transfer_post(*, transfer_id: int) -> PayerTransfer:
    """Balance moved the money: the ledger transfer and both orders' `credited_qty`, once."""
    customer_id = PayerTransfer.objects.values_list("customer_id", flat=True).get(pk=transfer_id)
    customer = lock_customer(customer_id)
    transfer = PayerTransfer.objects.select_for_update(of=("self",)).select_related(
        "from_order__payer_agency", "to_order__payer_agency", "created_by").get(pk=transfer_id)
    if transfer.status != PayerTransfer.Status.SENDING:
        return transfer
    transaction_ = overdrafts.wallet_move_between_payers(
        customer=customer, from_payer=transfer.from_order.payer_agency, to_payer=transfer.to_order.payer_agency,
        amount=transfer.amount, reason=transfer.reason, by=transfer.created_by, reference_kind="payer_transfer",
        reference_id=str(transfer.pk), funds_checked=True)
    # A pull's mark (`pulled_money`, empty stays empty) moves with the money, so Balance's next notification of the
    # source is not taken for one sent before the pull.
    BalanceOrder.objects.filter(pk=transfer.from_order_id).update(credited_qty=F("credited_qty") - transfer.amount,
                                                                  pulled_money=F("pulled_money") - transfer.amount)
    BalanceOrder.objects.filter(pk=transfer.to_order_id).update(credited_qty=F("credited_qty") + transfer.amount,
                                                                pulled_money=F("pulled_money") + transfer.amount)
    transfer.status, transfer.ledger_transaction, transfer.updated_at = (
        PayerTransfer.Status.DONE, transaction_, timezone.now())
    transfer.save(update_fields=["status", "ledger_transaction", "updated_at"])
    return transfer


def _record_figures(transfer: PayerTransfer, qty_old: Decimal | None, qty_new: Decimal | None) -> None:
    PayerTransfer.objects.filter(pk=transfer.pk).update(qty_old=qty_old, qty_new=qty_new, updated_at=timezone.now())
    transfer.qty_old, transfer.qty_new = qty_old, qty_new


@outbox_handler(PAYER_TRANSFER)
def payer_transfer_to_balance(operation: OutboxOperation) -> dict:
    """Outbox handler: read the source order, ask `CreateTransferMultiple`, post or refuse (module docstring)."""
    transfer = PayerTransfer.objects.select_related("service", "from_order__payer_agency").get(
        pk=operation.payload["transfer_id"])
    if transfer.status != PayerTransfer.Status.SENDING:
        return {"status": transfer.status}
    service_id = transfer.service.balance_service_id
    with BalanceClient() as client:
        for attempt in range(2):
            infos = client.get_orders_info([(service_id, transfer.from_order_id)])
            if not infos:
                payer_transfer_refuse(transfer_id=transfer.pk, reason=f"Balance does not know the source order "
                                      f"{transfer.from_order_id}: nothing was moved.")
                return {"status": "refused"}
            consume = infos[0].consume_qty
            if transfer.qty_old is not None:
                # An earlier attempt asked and its outcome is unknown: Balance's figures say whether it happened.
                if consume == transfer.qty_new:
                    payer_transfer_post(transfer_id=transfer.pk)
                    return {"status": "done", "settled": "after an unknown outcome"}
                if consume != transfer.qty_old:
                    payer_transfer_refuse(
                        transfer_id=transfer.pk, status=PayerTransfer.Status.UNSETTLED,
                        reason=f"Balance's answer was lost and the order changed since (consume {consume}, asked "
                               f"with {transfer.qty_old} -> {transfer.qty_new}): nothing was posted; billing follows "
                               f"Balance's own figures for both orders. Check them before moving again.")
                    return {"status": "unsettled"}
            else:
                # The wallet product is priced one unit per rouble: the amount is the quantity to move.
                qty_new = consume - transfer.amount
                if qty_new < 0:
                    payer_transfer_refuse(transfer_id=transfer.pk, reason=(
                        f"Balance has less free money on the source order than asked: it shows "
                        f"{format_amount(infos[0].consume_amount)} there, {format_amount(transfer.amount)} asked. "
                        f"The money stays under {payer_name(transfer.from_order.payer_agency)}."))
                    return {"status": "refused"}
                _record_figures(transfer, consume, qty_new)
            try:
                client.create_transfer_multiple(
                    sources=[TransferSource(service_id, transfer.from_order_id, transfer.qty_old,  # type: ignore[arg-type]
                                            transfer.qty_new)],  # type: ignore[arg-type]
                    destinations=[TransferDestination(service_id, transfer.to_order_id, Decimal(1))])
            except BalanceFinalError as exc:
                if exc.code == "ORDERS_NOT_SYNCHRONIZED" and attempt == 0:
                    _record_figures(transfer, None, None)  # this call moved nothing: read again, ask again
                    continue
                payer_transfer_refuse(transfer_id=transfer.pk, reason=_explain(exc, transfer))
                return {"status": "refused", "code": exc.code}
            payer_transfer_post(transfer_id=transfer.pk)
            return {"status": "done"}
    return {"status": "sending"}  # pragma: no cover - the loop returns


@outbox_on_failure(PAYER_TRANSFER)
def payer_transfer_failed(operation: OutboxOperation, error: str, final: bool) -> None:
    """The outbox gave up (Balance unreachable for every attempt): the row stops holding the orders'
    notifications back; whatever Balance did then reaches billing through them."""
    if final:
        payer_transfer_refuse(transfer_id=operation.payload["transfer_id"], status=PayerTransfer.Status.UNSETTLED,
                              reason=f"Balance could not be asked ({error[:300]}): nothing was posted; billing "
                                     f"follows Balance's own figures for both orders.")
