"""What consumers pay for and with: products, Balance orders (the unified account), top-ups, charges, holds
and refunds. Money itself moves only in the ledger (`wallets`); these rows are the operations behind it.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from disbalance.models import history_user
from disbalance.money import MoneyField

QTY_PLACES = Decimal("0.000001")


class BalanceUnit(models.TextChoices):
    """The units Balance counts completions in; a product is set up with one of them and its price."""

    BUCKS = "Bucks"
    MONEY = "Money"
    DAYS = "Days"
    SHOWS = "Shows"
    CLICKS = "Clicks"
    UNITS = "Units"


class Product(models.Model):
    """A product of a consumer service's catalog (placement or VAS), mapped to a Balance ProductID, with the
    product's unit and price in Balance (spend in money / price = the quantity reported, exact to 6 places)."""

    class Kind(models.TextChoices):
        PLACEMENT = "placement"
        VAS = "vas"

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="products")
    code = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    balance_product_id = models.PositiveIntegerField()
    balance_unit = models.CharField(
        max_length=8, choices=BalanceUnit.choices, default=BalanceUnit.MONEY,
        help_text="The product's unit in Balance: completions are reported in it (UpdateCampaigns)",
    )
    balance_price = models.DecimalField(
        max_digits=18, decimal_places=6, default=Decimal("1"),
        help_text="Money per unit in Balance (1 for a product priced one unit per rouble)",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["service", "code"]
        constraints = [models.UniqueConstraint(fields=["service", "code"], name="product_code_unique_per_service")]

    def __str__(self) -> str:
        return f"{self.service.slug}:{self.code}"

    def units_for(self, money: Decimal) -> Decimal:
        """Money spent as a quantity of this product's unit, exact to 6 places."""
        return (money / self.balance_price).quantize(QTY_PLACES, rounding=ROUND_HALF_UP)


class BalanceOrder(models.Model):
    """Billing's mirror of one Balance order (ServiceOrderID = this row's id).

    For each customer and payer there is one `wallet` order (payments land there) and one `child` order per
    product (completions are reported there, `GroupServiceOrderID` = the wallet order). `credited_qty` is the
    money Balance reports on the order (ConsumeSum / consume_amount, never a *Qty) that billing has credited to
    the wallet; `reported_qty` the cumulative spend (money) whose completion Balance last accepted. A completion
    Balance refused (UpdateCampaigns answered 0) sets `report_refused_at` and `report_error`: the order is not
    reported again until support (or reconciliation) clears it. Invariant: a notification is applied only if its
    Tid is greater than `last_tid`.
    """

    class Kind(models.TextChoices):
        WALLET = "wallet"
        CHILD = "child"

    class SyncStatus(models.TextChoices):
        PENDING = "pending"
        SYNCED = "synced"
        FAILED = "failed"

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="balance_orders")
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    key = models.CharField(max_length=100, unique=True, help_text="wallet:c<customer>:p<payer> / child:…:<product>")
    sync_status = models.CharField(max_length=8, choices=SyncStatus.choices, default=SyncStatus.PENDING)
    sync_error = models.CharField(max_length=500, blank=True, default="")
    synced_client_id = models.BigIntegerField(null=True, blank=True)
    synced_agency_id = models.BigIntegerField(null=True, blank=True)
    credited_qty = MoneyField(default=0, help_text="Money on the order (ConsumeSum) already credited to the wallet")
    reported_qty = MoneyField(default=0, help_text="Cumulative completion Balance has accepted")
    reported_at = models.DateTimeField(null=True, blank=True)
    report_refused_at = models.DateTimeField(null=True, blank=True)
    report_error = models.CharField(max_length=500, blank=True, default="")
    balance_consume_qty = MoneyField(default=0, help_text="Last money on the order seen from Balance")
    balance_completion_qty = models.DecimalField(
        max_digits=24, decimal_places=6, default=0,
        help_text="Last CompletionQty seen from Balance, in the product's unit",
    )
    last_tid = models.BigIntegerField(default=0)
    balance_refreshed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["kind", "sync_status"])]

    def __str__(self) -> str:
        return f"order {self.pk} ({self.key})"



class TopUp(models.Model):
    """A payment request in Balance for a customer's wallet (payer = the agency if any).

    pending (request not yet in Balance) -> awaiting_payment (payment_url set) -> succeeded (credited) |
    failed | expired. The credit itself is a `topup` ledger transaction made when Balance reports the money.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        AWAITING_PAYMENT = "awaiting_payment"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="topups")
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    order = models.ForeignKey(BalanceOrder, on_delete=models.PROTECT, related_name="topups")
    amount = MoneyField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=500, blank=True, default="")
    return_url = models.URLField(max_length=2000, blank=True, default="")
    payment_url = models.URLField(max_length=2000, blank=True, default="")
    balance_request_id = models.BigIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"])]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive")]

    def __str__(self) -> str:
        return f"top-up {self.amount} {self.status}"


class Charge(models.Model):
    """Money spent on a product: immediately, or by capturing a hold (`hold` set).

    Invariant: 0 <= refunded_amount <= amount. The ledger holds the money side (`charge`/`capture` transaction).
    """

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="charges")
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="charges")
    amount = MoneyField()
    refunded_amount = MoneyField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUCCEEDED)
    description = models.CharField(max_length=500, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    hold = models.OneToOneField("Hold", null=True, blank=True, on_delete=models.PROTECT, related_name="charge")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="charge_amount_positive"),
            models.CheckConstraint(condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=F("amount")),
                                   name="charge_refunds_within_amount"),
        ]

    def __str__(self) -> str:
        return f"charge {self.amount} {self.product_id}"


class Hold(models.Model):
    """Money reserved for a product until captured, released or expired (each happens at most once).

    Invariant: status `held` <=> the amount sits in the payer's `holds` account; captured_amount <= amount.
    The hold stays with the payer it was made under, even after an agency change.
    """

    class Status(models.TextChoices):
        HELD = "held"
        CAPTURED = "captured"
        RELEASED = "released"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="holds")
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="holds")
    amount = MoneyField()
    captured_amount = MoneyField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.HELD)
    description = models.CharField(max_length=500, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(condition=Q(captured_amount__gte=0) & Q(captured_amount__lte=F("amount")),
                                   name="hold_capture_within_amount"),
        ]

    def __str__(self) -> str:
        return f"hold {self.amount} {self.status}"


class Refund(models.Model):
    """Money given back for (part of) a charge; the sum of a charge's refunds never exceeds the charge."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="refunds")
    amount = MoneyField()
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return f"refund {self.amount}"


class OrderAdoption(models.Model):
    """One order a consumer had in Balance before billing (a "legacy" order, under the consumer's own
    ServiceOrderID), adopted by `manage.py adopt_orders`: its free money (paid minus completed, from the money
    fields) is moved in Balance into billing's wallet order of (customer, payer) with `CreateTransferMultiple`
    (exact `QtyOld`), and enters the ledger as an opening balance (a `migration` transaction).

    States: `transferring` (the transfer is asked or may have happened: notifications of the wallet order wait
    until it is settled) -> `adopted` (money moved and posted once; `ledger_transaction` is the posting, none when
    nothing was free) | `refused` (owner, payer or money did not match: `reason`; nothing moved, nothing posted;
    a later run checks it again). Invariant: an `adopted` row with `free_money` > 0 has exactly one `migration`
    transaction, and after it Balance should show the legacy order with `expected_consume_amount` and
    `expected_completion_amount` (reconciliation's `adopted_order` check compares them).
    """

    class Status(models.TextChoices):
        TRANSFERRING = "transferring"
        ADOPTED = "adopted"
        REFUSED = "refused"

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+")
    service_order_id = models.CharField(max_length=40, help_text="The consumer's own ServiceOrderID in Balance")
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="order_adoptions")
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    wallet_order = models.ForeignKey(BalanceOrder, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="adoptions")
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.CharField(max_length=500, blank=True, default="")
    qty_old = models.DecimalField(max_digits=24, decimal_places=6, default=0,
                                  help_text="The legacy order's consume (its units) when the transfer was asked")
    qty_new = models.DecimalField(max_digits=24, decimal_places=6, default=0,
                                  help_text="What the transfer leaves on it: its completion (its units)")
    free_money = MoneyField(default=0, help_text="Paid minus completed (money fields): the opening balance")
    expected_consume_amount = MoneyField(default=0, help_text="Money Balance should keep showing on the order")
    expected_completion_amount = MoneyField(default=0, help_text="Completion (money) Balance should keep showing")
    ledger_transaction = models.OneToOneField("wallets.LedgerTransaction", null=True, blank=True,
                                              on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    adopted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "service_order_id"], name="adoption_once_per_order"),
            models.CheckConstraint(condition=Q(free_money__gte=0), name="adoption_free_money_not_negative"),
        ]
        indexes = [models.Index(fields=["wallet_order", "status"])]

    def __str__(self) -> str:
        return f"legacy order {self.service_order_id} ({self.status})"


class PayerTransfer(models.Model):
    """Support's move of free money from a customer's wallet under one payer to its wallet under another, made in
    Balance (`CreateTransferMultiple` between the two wallet orders) and mirrored in the ledger once Balance has
    done it (`payments.services.transfers`).

    States: `sending` (asked or about to be asked: while a row is `sending`, notifications and pulls of both wallet
    orders wait, so that Balance's new figures are never counted as a top-up or a cut) -> `done` (Balance moved the
    money; `ledger_transaction` is the `transfer` posting, and both orders' `credited_qty` moved by `amount` in the
    same transaction, so Balance's NotifyOrder2 that follows changes nothing) | `refused` (Balance or billing said
    no: `balance_error` says why; nothing was posted) | `unsettled` (an unknown outcome that Balance's figures could
    not settle: nothing was posted, the orders' notifications apply again, so billing follows whatever Balance did).
    `qty_old`/`qty_new` are the figures sent (the source's consume in its units, exact to 6 places), kept so that
    a repeat after an unknown outcome can tell whether the first one happened.
    """

    class Status(models.TextChoices):
        SENDING = "sending"
        DONE = "done"
        REFUSED = "refused"
        UNSETTLED = "unsettled"

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payer_transfers")
    from_order = models.ForeignKey(BalanceOrder, on_delete=models.PROTECT, related_name="+")
    to_order = models.ForeignKey(BalanceOrder, on_delete=models.PROTECT, related_name="+")
    amount = MoneyField()
    reason = models.CharField(max_length=500)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENDING)
    balance_error = models.CharField(max_length=500, blank=True, default="")
    qty_old = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True,
                                  help_text="The source order's consume (its units) the transfer was asked with")
    qty_new = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True,
                                  help_text="What the transfer leaves on the source order (its units)")
    ledger_transaction = models.OneToOneField("wallets.LedgerTransaction", null=True, blank=True,
                                              on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="payer_transfer_amount_positive")]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"transfer {self.pk} of {self.amount} ({self.status})"
