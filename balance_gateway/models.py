"""Billing's side of the Balance link: the log of calls, received notifications, and the Balance identity that
customers and agencies share (the outbox of operations is the core's: `disbalance.models.OutboxOperation`).

The emulator keeps its own state elsewhere (`balance_gateway.emulator`), never in these tables.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


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
        "disbalance.OutboxOperation", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    request_id = models.CharField(max_length=100, blank=True, default="",
                                  help_text="X-Request-ID carried from the API call through the outbox")
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
