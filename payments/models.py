"""What consumers pay for and with: products, Balance orders (the unified account), top-ups, charges, holds
and refunds. Money itself moves only in the ledger (`wallets`); these rows are the operations behind it.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_HALF_UP, Decimal

from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from disbalance.models import history_user
from disbalance.money import MoneyField

QTY_PLACES = Decimal("0.000001")


class BalanceUnit(models.TextChoices):
    """The units Balance counts completions in; a product is set up with one of them and its price."""

    BUCKS = "Bucks", _("Bucks")
    MONEY = "Money", _("Money")
    DAYS = "Days", _("Days")
    SHOWS = "Shows", _("Shows")
    CLICKS = "Clicks", _("Clicks")
    UNITS = "Units", _("Units")


class Product(models.Model):
    """A product of a consumer service's catalog (placement or VAS), mapped to a Balance ProductID, with the
    product's unit and price in Balance (spend in money / price = the quantity reported, exact to 6 places)."""

    class Kind(models.TextChoices):
        PLACEMENT = "placement", _("Placement")
        VAS = "vas", _("VAS")

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="products",
                                verbose_name=_("service"))
    code = models.SlugField(max_length=64, verbose_name=_("code"))
    name = models.CharField(max_length=200, verbose_name=_("name"))
    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    balance_product_id = models.PositiveIntegerField(verbose_name=_("balance product id"))
    balance_unit = models.CharField(
        max_length=8, choices=BalanceUnit.choices, default=BalanceUnit.MONEY,
        help_text=_("The product's unit in Balance: completions are reported in it (UpdateCampaigns)"),
        verbose_name=_("balance unit")
    )
    balance_price = models.DecimalField(
        max_digits=18, decimal_places=6, default=Decimal("1"),
        help_text=_("Money per unit in Balance (1 for a product priced one unit per rouble)"),
        verbose_name=_("balance price")
    )
    is_active = models.BooleanField(default=True, verbose_name=_("is active"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
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
    money Balance reports on the order (ConsumeSum / consume_amount, never a *Qty), less the agency credit drawn
    on it (`CreditDraw`), that billing has credited to the wallet; `reported_qty` the cumulative spend (money)
    whose completion Balance last accepted. A completion Balance refused (UpdateCampaigns answered 0) sets
    `report_refused_at` and `report_error`: the order is not reported again until support (or reconciliation)
    clears it. Invariant: a notification is applied only if its
    Tid is greater than `last_tid`.
    """

    class Kind(models.TextChoices):
        WALLET = "wallet", _("Wallet")
        CHILD = "child", _("Child")

    class SyncStatus(models.TextChoices):
        PENDING = "pending", _("Pending")
        SYNCED = "synced", _("Synced")
        FAILED = "failed", _("Failed")

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("service"))
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="balance_orders",
                                 verbose_name=_("customer"))
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", verbose_name=_("payer agency"))
    kind = models.CharField(max_length=8, choices=Kind.choices, verbose_name=_("kind"))
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("product"))
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children",
                               verbose_name=_("parent"))
    key = models.CharField(max_length=100, unique=True,
                           help_text=_("wallet:c<customer>:p<payer> / child:…:<product>"), verbose_name=_("key"))
    sync_status = models.CharField(max_length=8, choices=SyncStatus.choices, default=SyncStatus.PENDING,
                                   verbose_name=_("sync status"))
    sync_error = models.CharField(max_length=500, blank=True, default="", verbose_name=_("sync error"))
    synced_client_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("synced client id"))
    synced_agency_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("synced agency id"))
    credited_qty = MoneyField(default=0,
                              help_text=_("Money on the order (ConsumeSum) already credited to the wallet"),
                              verbose_name=_("credited qty"))
    reported_qty = MoneyField(default=0, help_text=_("Cumulative completion Balance has accepted"),
                              verbose_name=_("reported qty"))
    reported_at = models.DateTimeField(null=True, blank=True, verbose_name=_("reported at"))
    report_refused_at = models.DateTimeField(null=True, blank=True, verbose_name=_("report refused at"))
    report_error = models.CharField(max_length=500, blank=True, default="", verbose_name=_("report error"))
    balance_consume_qty = MoneyField(default=0, help_text=_("Last money on the order seen from Balance"),
                                     verbose_name=_("balance consume qty"))
    balance_completion_qty = models.DecimalField(
        max_digits=24, decimal_places=6, default=0,
        help_text=_("Last CompletionQty seen from Balance, in the product's unit"),
        verbose_name=_("balance completion qty")
    )
    last_tid = models.BigIntegerField(default=0, verbose_name=_("last tid"))
    balance_refreshed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("balance refreshed at"))
    pulled_money = MoneyField(
        null=True, blank=True, verbose_name=_("pulled money"),
        help_text=_("Wallet money a pull credited ahead of the notifications (empty: they have caught up)"))
    pulled_at = models.DateTimeField(null=True, blank=True, verbose_name=_("pulled at"))
    read_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("read at"),
        help_text=_("When the last pull applied began reading Balance (a credit invoice drawn after it holds the "
                    "order's notifications until the next pull)"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("balance order")
        verbose_name_plural = _("balance orders")
        ordering = ["-id"]
        indexes = [models.Index(fields=["kind", "sync_status"])]

    def __str__(self) -> str:
        return _("order %(id)s (%(key)s)") % {"id": self.pk, "key": self.key}



class TopUp(models.Model):
    """A payment request in Balance for a customer's wallet (payer = the agency if any).

    pending (request not yet in Balance) -> awaiting_payment (payment_url set) -> succeeded (credited) |
    failed | expired. The credit itself is a `topup` ledger transaction made when Balance reports the money.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        AWAITING_PAYMENT = "awaiting_payment", _("Awaiting Payment")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        EXPIRED = "expired", _("Expired")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, verbose_name=_("id"))
    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("service"))
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="topups",
                                 verbose_name=_("customer"))
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", verbose_name=_("payer agency"))
    order = models.ForeignKey(BalanceOrder, on_delete=models.PROTECT, related_name="topups", verbose_name=_("order"))
    amount = MoneyField(verbose_name=_("amount"))
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, verbose_name=_("status"))
    status_reason = models.CharField(max_length=500, blank=True, default="", verbose_name=_("status reason"))
    return_url = models.URLField(max_length=2000, blank=True, default="", verbose_name=_("return url"))
    payment_url = models.URLField(max_length=2000, blank=True, default="", verbose_name=_("payment url"))
    balance_request_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("balance request id"))
    expires_at = models.DateTimeField(verbose_name=_("expires at"))
    created_at = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))
    succeeded_at = models.DateTimeField(null=True, blank=True, verbose_name=_("succeeded at"))

    class Meta:
        verbose_name = _("top-up")
        verbose_name_plural = _("top-ups")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"])]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive")]

    def __str__(self) -> str:
        return _("top-up %(amount)s %(status)s") % {"amount": self.amount, "status": self.get_status_display()}


class Charge(models.Model):
    """Money spent on a product: immediately, or by capturing a hold (`hold` set).

    Invariant: 0 <= refunded_amount <= amount. The ledger holds the money side (`charge`/`capture` transaction).
    """

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", _("Succeeded")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, verbose_name=_("id"))
    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("service"))
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="charges",
                                 verbose_name=_("customer"))
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", verbose_name=_("payer agency"))
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="charges", verbose_name=_("product"))
    amount = MoneyField(verbose_name=_("amount"))
    refunded_amount = MoneyField(default=0, verbose_name=_("refunded amount"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUCCEEDED, verbose_name=_("status"))
    description = models.CharField(max_length=500, blank=True, default="", verbose_name=_("description"))
    metadata = models.JSONField(default=dict, blank=True, verbose_name=_("metadata"))
    hold = models.OneToOneField("Hold", null=True, blank=True, on_delete=models.PROTECT, related_name="charge",
                                verbose_name=_("hold"))
    created_at = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("charge")
        verbose_name_plural = _("charges")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="charge_amount_positive"),
            models.CheckConstraint(condition=Q(refunded_amount__gte=0) & Q(refunded_amount__lte=F("amount")),
                                   name="charge_refunds_within_amount"),
        ]

    def __str__(self) -> str:
        return _("charge %(amount)s %(product)s") % {"amount": self.amount, "product": self.product_id}


class Hold(models.Model):
    """Money reserved for a product until captured, released or expired (each happens at most once).

    Invariant: status `held` <=> the amount sits in the payer's `holds` account; captured_amount <= amount.
    The hold stays with the payer it was made under, even after an agency change.
    """

    class Status(models.TextChoices):
        HELD = "held", _("Held")
        CAPTURED = "captured", _("Captured")
        RELEASED = "released", _("Released")
        EXPIRED = "expired", _("Expired")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, verbose_name=_("id"))
    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("service"))
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="holds",
                                 verbose_name=_("customer"))
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", verbose_name=_("payer agency"))
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="holds", verbose_name=_("product"))
    amount = MoneyField(verbose_name=_("amount"))
    captured_amount = MoneyField(default=0, verbose_name=_("captured amount"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.HELD, verbose_name=_("status"))
    description = models.CharField(max_length=500, blank=True, default="", verbose_name=_("description"))
    metadata = models.JSONField(default=dict, blank=True, verbose_name=_("metadata"))
    expires_at = models.DateTimeField(verbose_name=_("expires at"))
    created_at = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("created at"))
    closed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("closed at"))

    class Meta:
        verbose_name = _("hold")
        verbose_name_plural = _("holds")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(condition=Q(captured_amount__gte=0) & Q(captured_amount__lte=F("amount")),
                                   name="hold_capture_within_amount"),
        ]

    def __str__(self) -> str:
        return _("hold %(amount)s %(status)s") % {"amount": self.amount, "status": self.get_status_display()}


class Refund(models.Model):
    """Money given back for (part of) a charge; the sum of a charge's refunds never exceeds the charge."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, verbose_name=_("id"))
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="refunds", verbose_name=_("charge"))
    amount = MoneyField(verbose_name=_("amount"))
    reason = models.CharField(max_length=500, verbose_name=_("reason"))
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("refund")
        verbose_name_plural = _("refunds")
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return _("refund %(amount)s") % {"amount": self.amount}


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
        TRANSFERRING = "transferring", _("Transferring")
        ADOPTED = "adopted", _("Adopted")
        REFUSED = "refused", _("Refused")

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("service"))
    service_order_id = models.CharField(max_length=40,
                                        help_text=_("The consumer's own ServiceOrderID in Balance"),
                                        verbose_name=_("service order id"))
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="order_adoptions", verbose_name=_("customer"))
    payer_agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+", verbose_name=_("payer agency"))
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("product"))
    wallet_order = models.ForeignKey(BalanceOrder, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="adoptions", verbose_name=_("wallet order"))
    status = models.CharField(max_length=16, choices=Status.choices, verbose_name=_("status"))
    reason = models.CharField(max_length=500, blank=True, default="", verbose_name=_("reason"))
    qty_old = models.DecimalField(max_digits=24, decimal_places=6, default=0,
                                  help_text=_("The legacy order's consume (its units) when the transfer was asked"),
                                  verbose_name=_("qty old"))
    qty_new = models.DecimalField(max_digits=24, decimal_places=6, default=0,
                                  help_text=_("What the transfer leaves on it: its completion (its units)"),
                                  verbose_name=_("qty new"))
    free_money = MoneyField(default=0,
                            help_text=_("Paid minus completed (money fields): the opening balance"),
                            verbose_name=_("free money"))
    expected_consume_amount = MoneyField(default=0,
                                         help_text=_("Money Balance should keep showing on the order"),
                                         verbose_name=_("expected consume amount"))
    expected_completion_amount = MoneyField(default=0,
                                            help_text=_("Completion (money) Balance should keep showing"),
                                            verbose_name=_("expected completion amount"))
    ledger_transaction = models.OneToOneField("wallets.LedgerTransaction", null=True, blank=True,
                                              on_delete=models.PROTECT, related_name="+",
                                              verbose_name=_("ledger transaction"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))
    adopted_at = models.DateTimeField(null=True, blank=True, verbose_name=_("adopted at"))

    class Meta:
        verbose_name = _("order adoption")
        verbose_name_plural = _("order adoptions")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "service_order_id"], name="adoption_once_per_order"),
            models.CheckConstraint(condition=Q(free_money__gte=0), name="adoption_free_money_not_negative"),
        ]
        indexes = [models.Index(fields=["wallet_order", "status"])]

    def __str__(self) -> str:
        return _("legacy order %(id)s (%(status)s)") % {"id": self.service_order_id,
                                                          "status": self.get_status_display()}


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
        SENDING = "sending", _("Sending")
        DONE = "done", _("Done")
        REFUSED = "refused", _("Refused")
        UNSETTLED = "unsettled", _("Unsettled")

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("service"))
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payer_transfers",
                                 verbose_name=_("customer"))
    from_order = models.ForeignKey(BalanceOrder, on_delete=models.PROTECT, related_name="+",
                                   verbose_name=_("from order"))
    to_order = models.ForeignKey(BalanceOrder, on_delete=models.PROTECT, related_name="+", verbose_name=_("to order"))
    amount = MoneyField(verbose_name=_("amount"))
    reason = models.CharField(max_length=500, verbose_name=_("reason"))
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                   verbose_name=_("created by"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SENDING,
                              verbose_name=_("status"))
    balance_error = models.CharField(max_length=500, blank=True, default="", verbose_name=_("Balance error"))
    qty_old = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True,
                                  help_text=_("The source order's consume (its units) the transfer was asked with"),
                                  verbose_name=_("qty old"))
    qty_new = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True,
                                  help_text=_("What the transfer leaves on the source order (its units)"),
                                  verbose_name=_("qty new"))
    ledger_transaction = models.OneToOneField("wallets.LedgerTransaction", null=True, blank=True,
                                              on_delete=models.PROTECT, related_name="+",
                                              verbose_name=_("ledger transaction"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("payer transfer")
        verbose_name_plural = _("payer transfers")
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="payer_transfer_amount_positive")]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return _("transfer %(id)s of %(amount)s (%(status)s)") % {"id": self.pk, "amount": self.amount,
                                                                   "status": self.get_status_display()}


class CreditDraw(models.Model):
    """One draw on an agency's postpaid credit in Balance for a customer's wallet order under that agency: a
    request (CreateRequest2 by the agency's client, QtyIsAmount=1) and a **credit invoice** on it (CreateInvoice
    Credit=1, the agency's contract and person), which puts `amount` on the wallet order at once.

    The money a draw puts on the order is the agency's credit, never wallet money: billing's wallet money on the
    order is Balance's money less the draws that count (`COUNTING`). Sign convention: `amount` is positive.

    pending (row written, no request yet) -> requested (`request_id` known) -> invoicing (CreateInvoice sent, its
    outcome not yet known: the order's notifications wait) -> invoiced (`invoice_id` known, or the invoice found
    by its effect on the contract's LIMIT_SPENT) | refused (Balance said no: `error`, for support; nothing drawn)
    | unknown (after a lost answer the figures could not tell: support decides; counted as drawn, the safe side).
    Invariant: at most one draw per order is unfinished (pending / requested / invoicing), so a lost answer is
    resolved before anything is drawn again.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        REQUESTED = "requested", _("Requested")
        INVOICING = "invoicing", _("Invoicing")
        INVOICED = "invoiced", _("Invoiced")
        REFUSED = "refused", _("Refused")
        UNKNOWN = "unknown", _("Unknown")

    UNFINISHED = (Status.PENDING, Status.REQUESTED, Status.INVOICING)
    COUNTING = (Status.INVOICING, Status.INVOICED, Status.UNKNOWN)

    order = models.ForeignKey(BalanceOrder, on_delete=models.PROTECT, related_name="credit_draws",
                              verbose_name=_("order"))
    agency = models.ForeignKey("agencies.Agency", on_delete=models.PROTECT, related_name="+",
                               verbose_name=_("agency"))
    contract_id = models.BigIntegerField(help_text=_("The agency's postpaid contract in Balance"),
                                         verbose_name=_("contract id"))
    amount = MoneyField(verbose_name=_("amount"))
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING,
                              verbose_name=_("status"))
    request_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("Balance request id"))
    invoice_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("Balance invoice id"))
    limit_spent_before = MoneyField(null=True, blank=True, verbose_name=_("LIMIT_SPENT before"),
                                    help_text=_("The contract's LIMIT_SPENT read just before CreateInvoice was sent"))
    error = models.CharField(max_length=500, blank=True, default="", verbose_name=_("error"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("credit draw")
        verbose_name_plural = _("credit draws")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_draw_amount_positive"),
            models.UniqueConstraint(fields=["order"], condition=Q(status__in=["pending", "requested", "invoicing"]),
                                    name="credit_draw_one_unfinished_per_order"),
        ]

    def __str__(self) -> str:
        return _("credit draw %(id)s of %(amount)s on order %(order)s (%(status)s)") % {
            "id": self.pk, "amount": self.amount, "order": self.order_id, "status": self.get_status_display()}
