"""Billing's side of the Balance link: the outbox of operations, the log of calls, received notifications,
and the Balance identity that customers and agencies share.

The emulator keeps its own state elsewhere (`balance_gateway.emulator`), never in these tables.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from simple_history.models import HistoricalRecords

from disbalance.models import history_user


class RegistrationStatus(models.TextChoices):
    REGISTERING = "registering"
    ACTIVE = "active"
    FAILED = "failed"


class BalanceParty(models.Model):
    """What a customer and an agency have in common: a Balance client, its person (payer) and its sync state.

    `status` goes registering -> active once the client, the person and the user links exist in Balance;
    `failed` carries `status_reason` and is retried by the system (and by support from the admin).
    """

    name = models.CharField(max_length=255)
    email = models.CharField(max_length=254, blank=True, default="")
    phone = models.CharField(max_length=64, blank=True, default="")
    inn = models.CharField("INN", max_length=12, blank=True, default="")
    kpp = models.CharField("KPP", max_length=9, blank=True, default="")
    legal_address = models.CharField(max_length=500, blank=True, default="")
    long_name = models.CharField("full legal name", max_length=500, blank=True, default="")
    postal_address = models.CharField(max_length=500, blank=True, default="")
    postcode = models.CharField(max_length=16, blank=True, default="")
    lname = models.CharField("last name", max_length=100, blank=True, default="")
    fname = models.CharField("first name", max_length=100, blank=True, default="")
    mname = models.CharField("middle name", max_length=100, blank=True, default="")
    status = models.CharField(max_length=16, choices=RegistrationStatus.choices, default=RegistrationStatus.REGISTERING)
    status_reason = models.CharField(max_length=500, blank=True, default="")
    balance_client_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    balance_person_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True

    IS_AGENCY = False

    @property
    def person_type(self) -> str:
        return "ur"

    @property
    def balance_key(self) -> str:
        """Billing's own key for the Balance client: SERVICE_CLIENT_ID when Balance honours it, and the marker
        at the end of the client's NAME by which it is found again after an unknown outcome."""
        prefix = "agency" if self.IS_AGENCY else "customer"
        return f"{settings.BALANCE_CLIENT_MARKER_PREFIX}:{prefix}:{self.pk}"


class OutboxOperation(models.Model):
    """One piece of Balance (or webhook) work, written in the same transaction as the domain change.

    Sent by a Celery task after commit and re-sent by the periodic sweep; every handler is safe to repeat
    (it looks state up before creating). Retries use capped exponential backoff with jitter; after
    `max_attempts` the operation is `failed` and waits for a retry from the admin.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        IN_PROGRESS = "in_progress"
        DONE = "done"
        FAILED = "failed"

    kind = models.CharField(max_length=64, db_index=True)
    subject = models.CharField(max_length=100, db_index=True, help_text="What it is about, e.g. customer:12")
    dedup_key = models.CharField(max_length=200, blank=True, default="")
    service = models.ForeignKey("disbalance.ConsumerService", null=True, blank=True, on_delete=models.PROTECT)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=12)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    leased_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="outbox_due_idx")]
        constraints = [
            # At most one waiting operation per dedup key: a second PATCH while the first sync still waits
            # adds nothing (the handler reads the current state when it runs).
            models.UniqueConstraint(
                fields=["dedup_key"],
                condition=Q(status="pending") & ~Q(dedup_key=""),
                name="outbox_one_pending_per_dedup_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject} [{self.status}]"


class BalanceCall(models.Model):
    """Every call billing made to Balance: method, key arguments, duration, outcome, error. For the admin."""

    class Outcome(models.TextChoices):
        OK = "ok"
        FAULT = "fault"
        HTTP_ERROR = "http_error"
        CONNECTION_ERROR = "connection_error"
        TIMEOUT = "timeout"
        LOST_RESPONSE = "lost_response"
        BAD_RESPONSE = "bad_response"

    method = models.CharField(max_length=64, db_index=True)
    arguments = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    operation = models.ForeignKey(
        OutboxOperation, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.method} {self.outcome}"


class BalanceNotification(models.Model):
    """A notification received from Balance, stored before it is applied (dj-stripe's WebhookEventTrigger).

    (kind, object_key, tid) is unique: a duplicate is answered and ignored by the database itself.
    Only a Tid greater than the last applied one for the object is applied.
    """

    class Kind(models.TextChoices):
        ORDER = "order"
        CLIENT = "client"

    class Outcome(models.TextChoices):
        RECEIVED = "received"
        APPLIED = "applied"
        STALE = "stale"
        UNKNOWN_OBJECT = "unknown_object"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    object_key = models.CharField(max_length=100, help_text="ServiceID:ServiceOrderID, or ClientID")
    tid = models.BigIntegerField()
    payload = models.JSONField(default=dict)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RECEIVED)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_key", "tid"], name="notification_unique_tid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_key} tid={self.tid} [{self.outcome}]"


class Mismatch(models.Model):
    """A difference between billing and Balance found by reconciliation (`balance_gateway.reconciliation`).

    `key` names what differs (`money_out:order:123`); at most one OPEN mismatch per key, so a re-run updates the
    open row (`last_seen_at`, `times_seen`, `details`) instead of adding one. `details` holds what billing has and
    what Balance has (`rows`: [field, billing, balance]) and a note for support. A mismatch is closed by support
    (`resolved_by` set, `resolution` = their comment) or by the system when a later run no longer finds it
    (`resolved_by` None, `resolution` "system: ..."). A difference found again after that opens a new row.
    """

    class Kind(models.TextChoices):
        ORDER_OWNERSHIP = "order_ownership", "order ownership"
        MONEY_IN = "money_in", "money in"
        MONEY_OUT = "money_out", "money out"
        UNPAID_COMPLETION = "unpaid_completion", "unpaid completion"
        CUSTOMER_DATA = "customer_data", "customer/agency data"
        STALE_OPERATION = "stale_operation", "stale operation"

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    kind = models.CharField(max_length=32, choices=Kind.choices)
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
    operation = models.ForeignKey(OutboxOperation, null=True, blank=True, on_delete=models.SET_NULL,
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
    history = HistoricalRecords(get_user=history_user)

    class Meta:
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
