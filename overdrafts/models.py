"""Overdrafts and agency credit: what Balance granted, support's overrides, the debt clock, blocks, and the
shared credit of an agency's postpaid contract.

Sign convention: every limit, credit and debt here is a non-negative amount. The money itself lives only in the
ledger (`wallets`); these rows hold limits, dates and flags, never balances of their own (the debt shown is always
read from the ledger).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from disbalance.models import history_user
from disbalance.money import MoneyField


class Overdraft(models.Model):
    """A customer's overdraft as Balance reports it, and the clock of the customer's own (direct) debt.

    One row per customer, created when Balance first reports an overdraft for it or when its balance first goes
    below zero. Balance's figures (`granted_limit`, `balance_spent`, `balance_min_payment_term`, `banned`) are
    stored exactly as received, also for a customer served by an agency: they are never *used* while the
    customer has an agency (`overdrafts.selectors.overdraft_limit` returns 0 then).

    `last_tid` is the Tid of the last NotifyClient2 applied: a notification applies only with a greater Tid. The
    periodic GetOverdraftParams pull carries no Tid and overwrites the figures without moving it.

    The debt clock: `debt_since` is when the customer's balance under itself as payer (wallet + held) went below
    zero; `due_at = debt_since + OVERDRAFT_PAYMENT_TERM_DAYS` (or a later date support granted as grace). Both
    are cleared when that balance is back at zero or above. Invariant: `debt_since` and `due_at` are both set or
    both empty, and set only while the ledger shows a debt (re-established by every money movement of the
    customer and by the periodic check).

    Auto-overdraft (how Balance covers the spend below zero, see `overdrafts.services.auto_overdraft`):
    `auto_limit` is the ClientLimit Balance last accepted from billing (SetOverdraftParams); `auto_error` and
    `auto_refused_at` keep Balance's refusal for support (cleared by the next accepted call).
    """

    customer = models.OneToOneField("customers.Customer", on_delete=models.PROTECT, related_name="overdraft",
                                    verbose_name=_("customer"))
    in_balance = models.BooleanField(default=False,
                                     help_text=_("Balance has an overdraft for the client"),
                                     verbose_name=_("in balance"))
    granted_limit = MoneyField(default=0, help_text=_("OverdraftLimit granted by Balance"),
                               verbose_name=_("granted limit"))
    balance_spent = MoneyField(default=0,
                               help_text=_("OverdraftSpent as Balance last reported it (for support)"),
                               verbose_name=_("balance spent"))
    balance_min_payment_term = models.DateField(
        null=True, blank=True, help_text=_("MinPaymentTerm as Balance last reported it (for support)"),
        verbose_name=_("balance min payment term")
    )
    banned = models.BooleanField(default=False, help_text=_("OverdraftBan: no new overdraft spending"),
                                 verbose_name=_("banned"))
    currency = models.CharField(max_length=3, blank=True, default="", verbose_name=_("currency"))
    last_tid = models.BigIntegerField(default=0, help_text=_("Tid of the last NotifyClient2 applied"),
                                      verbose_name=_("last tid"))
    balance_refreshed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("balance refreshed at"))
    debt_since = models.DateTimeField(null=True, blank=True, verbose_name=_("debt since"))
    due_at = models.DateTimeField(null=True, blank=True, verbose_name=_("due at"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))
    auto_limit = MoneyField(null=True, blank=True, verbose_name=_("auto-overdraft limit"),
                            help_text=_("ClientLimit of the auto-overdraft billing last set in Balance (empty: never)"))
    auto_set_at = models.DateTimeField(null=True, blank=True, verbose_name=_("auto-overdraft set at"))
    auto_error = models.CharField(max_length=500, blank=True, default="", verbose_name=_("auto-overdraft error"),
                                  help_text=_("Balance's refusal of the last SetOverdraftParams (empty: accepted)"))
    auto_refused_at = models.DateTimeField(null=True, blank=True, verbose_name=_("auto-overdraft refused at"))
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        verbose_name = _("overdraft")
        verbose_name_plural = _("overdrafts")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(granted_limit__gte=0), name="overdraft_granted_not_negative"),
            models.CheckConstraint(condition=Q(auto_limit__isnull=True) | Q(auto_limit__gte=0),
                                   name="overdraft_auto_limit_not_negative"),
            models.CheckConstraint(
                condition=Q(debt_since__isnull=True, due_at__isnull=True)
                | Q(debt_since__isnull=False, due_at__isnull=False),
                name="overdraft_debt_dates_together",
            ),
        ]
        indexes = [models.Index(fields=["due_at"], name="overdraft_due_at")]

    def __str__(self) -> str:
        return _("overdraft of customer %(id)s") % {"id": self.customer_id}


class LimitOverride(models.Model):
    """Support's override of a customer's overdraft limit. The rows are the audit trail: who, when, why.

    A *lowering* override (`raises=False`, the limit was at most the granted one when set) caps the limit:
    effective = min(limit, granted). A *raising* override (`raises=True`) needs the `overdrafts.raise_limit`
    permission, a reason and an expiry; until it expires, effective = max(limit, granted). At most one override
    per customer is open (`ended_at` empty); setting a new one ends the previous one. Rows are never deleted;
    ending one fills `ended_at`, `ended_by` and `end_reason`.
    """

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="limit_overrides",
                                 verbose_name=_("customer"))
    limit = MoneyField(verbose_name=_("limit"))
    raises = models.BooleanField(help_text=_("Above the limit Balance granted when it was set"),
                                 verbose_name=_("raises"))
    granted_when_set = MoneyField(help_text=_("The limit Balance had granted when the override was set"),
                                  verbose_name=_("granted when set"))
    reason = models.CharField(max_length=500, verbose_name=_("reason"))
    expires_at = models.DateTimeField(null=True, blank=True, verbose_name=_("expires at"))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+",
                                   verbose_name=_("created by"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    ended_at = models.DateTimeField(null=True, blank=True, verbose_name=_("ended at"))
    ended_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="+", verbose_name=_("ended by"))
    end_reason = models.CharField(max_length=500, blank=True, default="", verbose_name=_("end reason"))

    class Meta:
        verbose_name = _("limit override")
        verbose_name_plural = _("limit overrides")
        ordering = ["-created_at", "-id"]
        permissions = [("raise_limit", "Can set an overdraft limit above the one Balance granted")]
        constraints = [
            models.CheckConstraint(condition=Q(limit__gte=0), name="limit_override_not_negative"),
            models.CheckConstraint(condition=~Q(reason=""), name="limit_override_reason_required"),
            models.CheckConstraint(condition=Q(raises=False) | Q(expires_at__isnull=False),
                                   name="limit_override_raise_expires"),
            models.UniqueConstraint(fields=["customer"], condition=Q(ended_at__isnull=True),
                                    name="limit_override_one_open_per_customer"),
        ]

    def __str__(self) -> str:
        return _("override %(limit)s for customer %(id)s") % {"limit": self.limit, "id": self.customer_id}

    def active_at(self, moment) -> bool:  # type: ignore[no-untyped-def]
        return self.ended_at is None and (self.expires_at is None or self.expires_at > moment)


class Block(models.Model):
    """One reason a customer is blocked (charges and holds get `409 customer_blocked`), kept apart by kind.

    `overdue`: set by the system when the debt's due date passed; lifted by the system as soon as the debt is
    repaid (or by support giving a new due date). `manual`: set and lifted by support only, never undone by a
    repayment. Invariant: `customer.blocked` is True exactly while the customer has an open block (`lifted_at`
    empty); at most one open block per (customer, kind). Rows are the history: never deleted.
    """

    class Kind(models.TextChoices):
        OVERDUE = "overdue", _("Overdue")
        MANUAL = "manual", _("Manual")

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="blocks",
                                 verbose_name=_("customer"))
    kind = models.CharField(max_length=10, choices=Kind.choices, verbose_name=_("kind"))
    reason = models.CharField(max_length=500, verbose_name=_("reason"))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+", help_text=_("Empty: the system"), verbose_name=_("created by"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    lifted_at = models.DateTimeField(null=True, blank=True, verbose_name=_("lifted at"))
    lifted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="+", verbose_name=_("lifted by"))
    lift_reason = models.CharField(max_length=500, blank=True, default="", verbose_name=_("lift reason"))

    class Meta:
        verbose_name = _("block")
        verbose_name_plural = _("blocks")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["overdue", "manual"]), name="block_kind_valid"),
            models.CheckConstraint(condition=~Q(reason=""), name="block_reason_required"),
            models.UniqueConstraint(fields=["customer", "kind"], condition=Q(lifted_at__isnull=True),
                                    name="block_one_open_per_kind"),
        ]

    def __str__(self) -> str:
        return _("%(kind)s block of customer %(id)s") % {"kind": self.get_kind_display(), "id": self.customer_id}


class AgencyCredit(models.Model):
    """The credit of an agency's postpaid contract, shared by all the agency's customers (of its one service).

    The row is the lock that makes the shared limit atomic: every spend under the agency locks it (after the
    customer, a fixed order) and checks the spend against `credit_limit` minus what the agency's *other*
    customers use, read from the ledger under that lock. "Used" by a customer = max(0, -its wallet under the
    agency) (held money counts: it is reserved). `used` here is the total as of the last money movement under
    the agency (for support; enforcement always re-reads the ledger).

    `credit_limit` is the figure last used: GetClientCreditLimits' LIMIT_TOTAL for the contract when that was
    read after the contract itself was refreshed, else the contract's CREDIT_LIMIT. `balance_*` keep what
    GetClientCreditLimits last said.
    """

    agency = models.OneToOneField("agencies.Agency", on_delete=models.PROTECT, related_name="credit",
                                  verbose_name=_("agency"))
    contract_id = models.BigIntegerField(null=True, blank=True,
                                         help_text=_("Balance contract the credit comes from"),
                                         verbose_name=_("contract id"))
    credit_limit = MoneyField(default=0, verbose_name=_("credit limit"))
    used = MoneyField(default=0, verbose_name=_("used"))
    balance_limit_total = MoneyField(null=True, blank=True, verbose_name=_("balance limit total"))
    balance_limit_spent = MoneyField(null=True, blank=True, verbose_name=_("balance limit spent"))
    balance_contract_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("balance contract id"))
    balance_refreshed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("balance refreshed at"))
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("agency credit")
        verbose_name_plural = _("agency credits")
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(credit_limit__gte=0) & Q(used__gte=0),
                                   name="agency_credit_not_negative"),
        ]

    def __str__(self) -> str:
        return _("credit of agency %(id)s") % {"id": self.agency_id}
