"""The mismatch queue: differences between billing and Balance that reconciliation found."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
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
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    # The check that found it (`reconciliation.registry`): no choices here, so that a new check needs no migration.
    kind = models.CharField(max_length=32)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    key = models.CharField(max_length=200, help_text="What differs, e.g. money_out:order:123")
    service = models.ForeignKey("disbalance.ConsumerService", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    customer = models.ForeignKey("customers.Customer", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="mismatches")
    agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="mismatches")
    order = models.ForeignKey("payments.BalanceOrder", null=True, blank=True, on_delete=models.PROTECT,
                              related_name="mismatches")
    operation = models.ForeignKey("disbalance.OutboxOperation", null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="mismatches")
    summary = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    detected_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    times_seen = models.PositiveIntegerField(default=1)
    fix_attempts = models.PositiveIntegerField(default=0)
    last_fix_at = models.DateTimeField(null=True, blank=True)
    last_fix_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+", help_text="Empty: fixed automatically by reconciliation")
    last_fix_note = models.CharField(max_length=500, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+", help_text="Empty: closed by the system")
    resolution = models.TextField(blank=True, default="")
    history = HistoricalRecords(get_user=history_user, table_name="balance_gateway_historicalmismatch")

    class Meta:
        # The tables keep the names they had when reconciliation lived in the gateway (moved without copying rows).
        db_table = "balance_gateway_mismatch"
        ordering = ["-detected_at", "-id"]
        verbose_name_plural = "mismatches"
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
