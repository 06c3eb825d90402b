"""The mismatch queue: differences between billing and Balance that reconciliation found."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from disbalance.models import history_user
from reconciliation.registry import CHECKS


class Mismatch(models.Model):
    """A difference between billing and Balance found by reconciliation (`reconciliation.run`).

    `key` names what differs (`money_out:order:123`); at most one OPEN mismatch per key, so a re-run updates the
    open row (`last_seen_at`, `times_seen`, `details`) instead of adding one. `details` holds what billing has and
    what Balance has (`rows`: [field, billing, balance]) and a note for support. A mismatch is closed by support
    (`resolved_by` set, `resolution` = their comment) or by the system when a later run no longer finds it
    (`resolved_by` None, `resolution` "system: ..."). A difference found again after that opens a new row.
    """

    class Severity(models.TextChoices):
        INFO = "info", _("Info")
        WARNING = "warning", _("Warning")
        CRITICAL = "critical", _("Critical")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        RESOLVED = "resolved", _("Resolved")

    # The check that found it (`reconciliation.registry`): no choices here, so that a new check needs no migration.
    kind = models.CharField(max_length=32, verbose_name=_("kind"))
    severity = models.CharField(max_length=16, choices=Severity.choices, verbose_name=_("severity"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, verbose_name=_("status"))
    key = models.CharField(max_length=200, help_text=_("What differs, e.g. money_out:order:123"), verbose_name=_("key"))
    service = models.ForeignKey("disbalance.ConsumerService", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+", verbose_name=_("service"))
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="mismatches", verbose_name=_("customer"))
    agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="mismatches", verbose_name=_("agency"))
    order = models.ForeignKey("payments.BalanceOrder", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="mismatches", verbose_name=_("order"))
    operation = models.ForeignKey("disbalance.OutboxOperation", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="mismatches", verbose_name=_("operation"))
    summary = models.CharField(max_length=300, verbose_name=_("summary"))
    details = models.JSONField(default=dict, blank=True, verbose_name=_("details"))
    detected_at = models.DateTimeField(default=timezone.now, verbose_name=_("detected at"))
    last_seen_at = models.DateTimeField(default=timezone.now, verbose_name=_("last seen at"))
    times_seen = models.PositiveIntegerField(default=1, verbose_name=_("times seen"))
    fix_attempts = models.PositiveIntegerField(default=0, verbose_name=_("fix attempts"))
    last_fix_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last fix at"))
    last_fix_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+",
                                    help_text=_("Empty: fixed automatically by reconciliation"),
                                    verbose_name=_("last fix by"))
    last_fix_note = models.CharField(max_length=500, blank=True, default="", verbose_name=_("last fix note"))
    resolved_at = models.DateTimeField(null=True, blank=True, verbose_name=_("resolved at"))
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+", help_text=_("Empty: closed by the system"),
                                    verbose_name=_("resolved by"))
    resolution = models.TextField(blank=True, default="", verbose_name=_("resolution"))
    history = HistoricalRecords(get_user=history_user, table_name="balance_gateway_historicalmismatch")

    class Meta:
        # The tables keep the names they had when reconciliation lived in the gateway (moved without copying rows).
        verbose_name = _("mismatch")
        db_table = "balance_gateway_mismatch"
        ordering = ["-detected_at", "-id"]
        verbose_name_plural = _("mismatches")
        permissions = [("fix_mismatch", "Can fix a mismatch (re-sync with Balance)"),
                       ("resolve_mismatch", "Can resolve a mismatch with a comment")]
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(status="open"), name="mismatch_one_open_per_key"),
            models.CheckConstraint(
                condition=Q(status="open", resolved_at__isnull=True)
                | Q(status="resolved", resolved_at__isnull=False) & ~Q(resolution=""),
                name="mismatch_resolution_matches_status",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "kind"], name="mismatch_status_kind"),
            models.Index(fields=["customer", "status"], name="mismatch_customer_status"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.summary}"

    def get_kind_display(self) -> str:
        """The registered check's label (a kind no longer registered shows as stored)."""
        check = CHECKS.get(self.kind)
        return check.label if check is not None else self.kind
