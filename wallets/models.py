"""The ledger: accounts, and append-only double-entry transactions whose entries sum to zero.

Every money movement is one `LedgerTransaction` with two or more `LedgerEntry` rows; the signed amounts of its
entries sum to exactly zero, so the sum over all entries of all accounts is always zero (money is conserved).
Rows are never updated or deleted (the ORM refuses it, and on PostgreSQL a trigger refuses it as well);
corrections are new transactions (`adjustment`, `transfer`) with a reason.

All writes go through `wallets.services` (`ledger_post` and the `wallet_*` operations); `manage.py verify_ledger`
checks every invariant stated here at any time.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from disbalance.money import MoneyField
from wallets.exceptions import LedgerImmutable


class Account(models.Model):
    """One account of the ledger. Sign convention: an account's balance is the plain sum of its entries' amounts.

    Customer-level accounts (per customer and payer; `payer_agency` None means the customer pays itself):
      * `wallet`  the customer's free money under that payer; `available` is computed from it. May go below
                  zero only within an overdraft. Top-up: wallet +X / clearing -X. Charge: wallet -X / spend +X.
      * `holds`   money reserved by open holds (never negative). Hold: wallet -X / holds +X. Release: holds -X /
                  wallet +X. Capture c of a hold h: holds -h / spend +c / wallet +(h-c), in one transaction.
      * `spend`   per product too: the cumulative completed money of that child order in Balance (never negative),
                  what is reported with UpdateCampaigns. Refund: spend -X / wallet +X.
    Service-level accounts (no customer):
      * `clearing`     the other side of the money received from Balance (its balance is minus all money in).
      * `adjustments`  the other side of support corrections.

    Invariant: for `cached` accounts (wallet, holds, spend) `balance == sum(entries.amount)`, and each entry's
    `balance_after` is the running sum up to it. They are written under the customer's lock, so they are never a
    hot row. `clearing` and `adjustments` are service-wide and would be a hot row under load: their `balance`
    column is NOT maintained (always 0, `cached=False`); their figure is always `sum(entries.amount)`.
    """

    class Kind(models.TextChoices):
        WALLET = "wallet", _("Wallet")
        HOLDS = "holds", _("Holds")
        SPEND = "spend", _("Spend")
        CLEARING = "clearing", _("Clearing")
        ADJUSTMENTS = "adjustments", _("Adjustments")

    CUSTOMER_KINDS: ClassVar[tuple[str, ...]] = (Kind.WALLET, Kind.HOLDS, Kind.SPEND)
    SERVICE_KINDS: ClassVar[tuple[str, ...]] = (Kind.CLEARING, Kind.ADJUSTMENTS)
    CACHED_KINDS: ClassVar[tuple[str, ...]] = CUSTOMER_KINDS

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("service"))
    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_accounts",
        verbose_name=_("customer")
    )
    payer_agency = models.ForeignKey(
        "agencies.Agency", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text=_("Who pays: the agency, or empty when the customer pays itself"), verbose_name=_("payer agency")
    )
    # The payments app will own a Product model; until it is wired, the product is its code.
    product_code = models.CharField(max_length=64, null=True, blank=True, verbose_name=_("product code"))
    currency = models.CharField(max_length=3, verbose_name=_("currency"))
    balance = MoneyField(default=0, help_text=_("Cached sum of the entries (only when `cached`)"),
                         verbose_name=_("balance"))
    cached = models.BooleanField(help_text=_("Whether `balance` is maintained; otherwise it is always sum(entries)"),
                                 verbose_name=_("cached"))
    key = models.CharField(max_length=255, unique=True, verbose_name=_("key"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("account")
        verbose_name_plural = _("accounts")
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["wallet", "holds", "spend", "clearing", "adjustments"]),
                name="ledger_account_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["wallet", "holds", "spend"], customer__isnull=False)
                | Q(kind__in=["clearing", "adjustments"], customer__isnull=True, payer_agency__isnull=True),
                name="ledger_account_owner_matches_kind",
            ),
            models.CheckConstraint(
                condition=(Q(kind="spend") & Q(product_code__isnull=False) & ~Q(product_code=""))
                | (~Q(kind="spend") & Q(product_code__isnull=True)),
                name="ledger_account_product_only_on_spend",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["wallet", "holds", "spend"], cached=True)
                | Q(kind__in=["clearing", "adjustments"], cached=False, balance=0),
                name="ledger_account_cached_matches_kind",
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["holds", "spend"]) | Q(balance__gte=0),
                name="ledger_account_holds_spend_not_negative",
            ),
        ]
        indexes = [models.Index(fields=["customer", "kind"], name="ledger_account_customer_kind")]

    def __str__(self) -> str:
        return self.key


class ImmutableQuerySet(models.QuerySet):
    """Ledger rows are append-only: bulk updates and deletes raise instead of touching the database."""

    def update(self, **kwargs: Any) -> int:
        raise LedgerImmutable(f"{self.model.__name__} rows are append-only: update refused")

    def _update(self, values: Any) -> int:
        raise LedgerImmutable(f"{self.model.__name__} rows are append-only: update refused")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise LedgerImmutable(f"{self.model.__name__} rows are append-only: delete refused")

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]

    def _raw_delete(self, using: str) -> int:
        raise LedgerImmutable(f"{self.model.__name__} rows are append-only: delete refused")


class ImmutableModel(models.Model):
    """Insert once, never update or delete (the ORM refuses; PostgreSQL triggers refuse raw SQL too)."""

    objects = ImmutableQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerImmutable(f"{type(self).__name__} rows are append-only: update refused")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise LedgerImmutable(f"{type(self).__name__} rows are append-only: delete refused")


class LedgerTransaction(ImmutableModel):
    """One money movement: two or more entries whose signed amounts sum to exactly zero. Immutable.

    `public_id` is what consumers and support see (the statement's `id`). `reference_kind` + `reference_id` name
    the business object (e.g. "charge" + its UUID); a (service, type, reference) is posted at most once.
    `adjustment` and `transfer` need a `reason` (and normally `created_by`).
    """

    class Type(models.TextChoices):
        TOPUP = "topup", _("Top-up")
        CHARGE = "charge", _("Charge")
        HOLD = "hold", _("Hold")
        CAPTURE = "capture", _("Capture")
        RELEASE = "release", _("Release")
        REFUND = "refund", _("Refund")
        ADJUSTMENT = "adjustment", _("Adjustment")
        TRANSFER = "transfer", _("Transfer")
        # opening balance: free money of an order adopted from a consumer's Balance past
        MIGRATION = "migration", _("Migration")

    REASON_REQUIRED: ClassVar[tuple[str, ...]] = (Type.ADJUSTMENT, Type.TRANSFER)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name=_("public id"))
    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="+",
                                verbose_name=_("service"))
    type = models.CharField(max_length=16, choices=Type.choices, verbose_name=_("type"))
    customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_transactions",
        verbose_name=_("customer")
    )
    payer_agency = models.ForeignKey(
        "agencies.Agency", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        verbose_name=_("payer agency")
    )
    reference_kind = models.CharField(max_length=32, blank=True, default="", verbose_name=_("reference kind"))
    reference_id = models.CharField(max_length=64, blank=True, default="", verbose_name=_("reference id"))
    description = models.CharField(max_length=500, blank=True, default="", verbose_name=_("description"))
    reason = models.CharField(max_length=500, blank=True, default="", verbose_name=_("reason"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        verbose_name=_("created by")
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("ledger transaction")
        verbose_name_plural = _("ledger transactions")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(type__in=["topup", "charge", "hold", "capture", "release", "refund", "adjustment",
                                      "transfer", "migration"]),
                name="ledger_transaction_type_valid",
            ),
            models.CheckConstraint(
                condition=~Q(type__in=["adjustment", "transfer"]) | ~Q(reason=""),
                name="ledger_transaction_reason_required",
            ),
            models.UniqueConstraint(
                fields=["service", "type", "reference_kind", "reference_id"],
                condition=~Q(reference_id=""),
                name="ledger_transaction_reference_once",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "id"], name="ledger_txn_customer_id"),
            models.Index(fields=["reference_kind", "reference_id"], name="ledger_txn_reference"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"


class LedgerEntry(ImmutableModel):
    """One leg of a transaction: a signed, non-zero amount on one account. Immutable.

    `balance_after` is the account's balance right after this entry (for cached accounts; None otherwise), so
    the entries of a cached account ordered by id form a chain: previous balance_after + amount = balance_after.
    """

    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries",
                                    verbose_name=_("transaction"))
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries", verbose_name=_("account"))
    amount = MoneyField(verbose_name=_("amount"))
    balance_after = MoneyField(null=True, blank=True, verbose_name=_("balance after"))

    class Meta:
        verbose_name = _("ledger entry")
        ordering = ["id"]
        verbose_name_plural = _("ledger entries")
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_entry_amount_not_zero"),
            models.UniqueConstraint(fields=["transaction", "account"], name="ledger_entry_one_per_account"),
        ]
        indexes = [models.Index(fields=["account", "id"], name="ledger_entry_account_id")]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.amount}"
