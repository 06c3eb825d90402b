"""Adoption of a consumer's legacy Balance orders: the state of each (`OrderAdoption`) and the one place where an
adopted order's free money is posted as an opening balance (`adoption_post_opening_balance`).

The run that reads the file and talks to Balance is `payments.adopting`; these are its writes. Order of a money
adoption: `adoption_start_transfer` (state `transferring`, committed) -> `CreateTransferMultiple` in Balance
(outside any transaction) -> `adoption_post_opening_balance` (ledger + wallet order + state `adopted`, in one
transaction). While a row is `transferring`, its wallet order's notifications are answered "not found" (Balance
re-sends them) and pulls wait, so the money the transfer brings is never credited twice (once as a top-up).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from agencies.models import Agency
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.models import ConsumerService
from disbalance.money import ZERO, format_amount
from overdrafts import services as overdrafts
from payments.models import BalanceOrder, OrderAdoption, Product
from wallets import services as ledger


@dataclass(frozen=True)
class LegacyFigures:
    """A legacy order as Balance showed it when the adoption was decided (GetOrdersInfo money fields)."""

    consume_qty: Decimal
    completion_qty: Decimal
    consume_amount: Decimal
    completion_amount: Decimal

    @property
    def free_money(self) -> Decimal:
        return self.consume_amount - self.completion_amount


def adoption_in_flight(order_id: int) -> bool:
    """Whether a transfer of legacy money into this wallet order may be under way (its money is not settled)."""
    return OrderAdoption.objects.filter(wallet_order_id=order_id, status=OrderAdoption.Status.TRANSFERRING).exists()


def _row(service: ConsumerService, service_order_id: str) -> OrderAdoption:
    row = OrderAdoption.objects.select_for_update().filter(service=service, service_order_id=service_order_id).first()
    return row or OrderAdoption(service=service, service_order_id=service_order_id)


@transaction.atomic
def adoption_refuse(*, service: ConsumerService, service_order_id: str, reason: str, customer: Customer | None = None,
                    payer_agency: Agency | None = None, product: Product | None = None) -> tuple[OrderAdoption, bool]:
    """Record that the order was not adopted and why (nothing moved, nothing posted). Returns the row and whether
    anything changed (the same refusal again changes nothing). An adopted or in-flight row is never refused here."""
    row = _row(service, service_order_id)
    if row.pk and row.status != OrderAdoption.Status.REFUSED:
        raise ValueError(f"legacy order {service_order_id} is {row.status}, not refusable")
    reason = reason[:500]
    same = (row.pk and row.reason == reason and row.customer_id == (customer.pk if customer else None)
            and row.payer_agency_id == (payer_agency.pk if payer_agency else None))
    if same:
        return row, False
    row.status, row.reason = OrderAdoption.Status.REFUSED, reason
    row.customer, row.payer_agency, row.product = customer, payer_agency, product
    row.updated_at = timezone.now()
    row.save()
    return row, True


@transaction.atomic
def adoption_start_transfer(*, service: ConsumerService, service_order_id: str, customer: Customer,
                            payer_agency: Agency | None, product: Product, wallet_order: BalanceOrder,
                            figures: LegacyFigures) -> OrderAdoption:
    """Record the transfer about to be asked (state `transferring`), before Balance is called: a run killed after
    this point finds the row and settles it from what Balance shows."""
    row = _row(service, service_order_id)
    if row.pk and row.status == OrderAdoption.Status.ADOPTED:
        raise ValueError(f"legacy order {service_order_id} is already adopted")
    row.customer, row.payer_agency, row.product, row.wallet_order = customer, payer_agency, product, wallet_order
    row.status, row.reason = OrderAdoption.Status.TRANSFERRING, ""
    row.qty_old, row.qty_new = figures.consume_qty, figures.completion_qty
    row.free_money = figures.free_money
    # After the transfer the order keeps exactly its completed money.
    row.expected_consume_amount = row.expected_completion_amount = figures.completion_amount
    row.updated_at = timezone.now()
    row.save()
    return row


@transaction.atomic
def adoption_abandon_transfer(*, adoption_id: int, reason: str) -> OrderAdoption:
    """The transfer did not happen and will not (Balance refused it, or the order's money changed): `refused`."""
    row = OrderAdoption.objects.select_for_update().get(pk=adoption_id)
    if row.status != OrderAdoption.Status.TRANSFERRING:
        return row
    row.status, row.reason, row.updated_at = OrderAdoption.Status.REFUSED, reason[:500], timezone.now()
    row.save(update_fields=["status", "reason", "updated_at"])
    return row


@transaction.atomic
def adoption_post_opening_balance(*, adoption_id: int) -> OrderAdoption:
    """THE place an adopted order's money enters billing: a `migration` ledger transaction of its free money
    into the payer's wallet of the customer (reference: the legacy order), the wallet order's credited money
    raised by the same amount (Balance now shows it there), the overdraft hooks as for any money in, and the row
    `adopted`. Idempotent: an adopted row is returned unchanged."""
    customer_id = OrderAdoption.objects.values_list("customer_id", flat=True).get(pk=adoption_id)
    customer = lock_customer(customer_id)
    row = OrderAdoption.objects.select_for_update(of=("self",)).select_related("payer_agency").get(pk=adoption_id)
    if row.status == OrderAdoption.Status.ADOPTED:
        return row
    if row.status != OrderAdoption.Status.TRANSFERRING and row.free_money > 0:
        raise ValueError(f"legacy order {row.service_order_id} is {row.status}: no transfer to post")
    if row.free_money > 0:
        wallet = BalanceOrder.objects.select_for_update().get(pk=row.wallet_order_id)
        row.ledger_transaction = ledger.wallet_credit_opening_balance(
            customer=customer, payer_agency=row.payer_agency, amount=row.free_money,
            reference_id=f"{customer.service.balance_service_id}-{row.service_order_id}",
            description=f"Opening balance: free money of Balance order {row.service_order_id} "
                        f"({format_amount(row.free_money)}), moved to order {wallet.pk}",
        )
        wallet.credited_qty += row.free_money
        wallet.balance_consume_qty = wallet.credited_qty
        wallet.balance_refreshed_at = timezone.now()
        wallet.save(update_fields=["credited_qty", "balance_consume_qty", "balance_refreshed_at"])
        overdrafts.after_money_in(customer=customer, payer=row.payer_agency)
    row.status, row.reason = OrderAdoption.Status.ADOPTED, ""
    row.adopted_at = row.updated_at = timezone.now()
    row.save()
    return row


@transaction.atomic
def adoption_record_empty(*, service: ConsumerService, service_order_id: str, customer: Customer,
                          payer_agency: Agency | None, product: Product, wallet_order: BalanceOrder | None,
                          figures: LegacyFigures) -> OrderAdoption:
    """An order with nothing free (fully spent): adopted with no transfer and no posting, so that reconciliation
    watches it like the others."""
    row = _row(service, service_order_id)
    if row.pk and row.status == OrderAdoption.Status.ADOPTED:
        return row
    row.customer, row.payer_agency, row.product, row.wallet_order = customer, payer_agency, product, wallet_order
    row.qty_old = row.qty_new = figures.consume_qty
    row.free_money = ZERO
    row.expected_consume_amount = figures.consume_amount
    row.expected_completion_amount = figures.completion_amount
    row.status, row.reason = OrderAdoption.Status.ADOPTED, ""
    row.adopted_at = row.updated_at = timezone.now()
    row.save()
    return row
