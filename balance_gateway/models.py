"""Billing's side of the Balance link: the log of calls, received notifications, and the Balance identity that
customers and agencies share (the outbox of operations is the core's: `disbalance.models.OutboxOperation`).

The emulator keeps its own state elsewhere (`balance_gateway.emulator`), never in these tables.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class RegistrationStatus(models.TextChoices):
    REGISTERING = "registering", _("Registering")
    ACTIVE = "active", _("Active")
    FAILED = "failed", _("Failed")


class BalanceParty(models.Model):
    """What a customer and an agency have in common: a Balance client, its person (payer) and its sync state.

    `status` goes registering -> active once the client, the person and the user links exist in Balance;
    `failed` carries `status_reason` and is retried by the system (and by support from the admin).
    """

    name = models.CharField(max_length=255, verbose_name=_("name"))
    email = models.CharField(max_length=254, blank=True, default="", verbose_name=_("email"))
    phone = models.CharField(max_length=64, blank=True, default="", verbose_name=_("phone"))
    inn = models.CharField(_("INN"), max_length=12, blank=True, default="")
    kpp = models.CharField(_("KPP"), max_length=9, blank=True, default="")
    legal_address = models.CharField(max_length=500, blank=True, default="", verbose_name=_("legal address"))
    long_name = models.CharField(_("full legal name"), max_length=500, blank=True, default="")
    postal_address = models.CharField(max_length=500, blank=True, default="", verbose_name=_("postal address"))
    postcode = models.CharField(max_length=16, blank=True, default="", verbose_name=_("postcode"))
    lname = models.CharField(_("last name"), max_length=100, blank=True, default="")
    fname = models.CharField(_("first name"), max_length=100, blank=True, default="")
    mname = models.CharField(_("middle name"), max_length=100, blank=True, default="")
    status = models.CharField(max_length=16, choices=RegistrationStatus.choices,
                              default=RegistrationStatus.REGISTERING, verbose_name=_("status"))
    status_reason = models.CharField(max_length=500, blank=True, default="", verbose_name=_("status reason"))
    balance_client_id = models.BigIntegerField(null=True, blank=True, db_index=True,
                                               verbose_name=_("balance client id"))
    balance_person_id = models.BigIntegerField(null=True, blank=True, verbose_name=_("balance person id"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))

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
        OK = "ok", _("OK")
        FAULT = "fault", _("Fault")
        HTTP_ERROR = "http_error", _("HTTP error")
        CONNECTION_ERROR = "connection_error", _("Connection Error")
        TIMEOUT = "timeout", _("Timeout")
        LOST_RESPONSE = "lost_response", _("Lost Response")
        BAD_RESPONSE = "bad_response", _("Bad Response")

    method = models.CharField(max_length=64, db_index=True, verbose_name=_("method"))
    arguments = models.JSONField(default=dict, blank=True, verbose_name=_("arguments"))
    outcome = models.CharField(max_length=20, choices=Outcome.choices, verbose_name=_("outcome"))
    error_code = models.CharField(max_length=64, blank=True, default="", verbose_name=_("error code"))
    error_message = models.TextField(blank=True, default="", verbose_name=_("error message"))
    duration_ms = models.PositiveIntegerField(default=0, verbose_name=_("duration ms"))
    operation = models.ForeignKey(
        "disbalance.OutboxOperation", null=True, blank=True, on_delete=models.SET_NULL, related_name="calls",
        verbose_name=_("operation")
    )
    request_id = models.CharField(max_length=100, blank=True, default="",
                                  help_text=_("X-Request-ID carried from the API call through the outbox"),
                                  verbose_name=_("request id"))
    created_at = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("balance call")
        verbose_name_plural = _("balance calls")
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.method} {self.outcome}"


class BalanceNotification(models.Model):
    """A notification received from Balance, stored before it is applied (dj-stripe's WebhookEventTrigger).

    (kind, object_key, tid) is unique: a duplicate is answered and ignored by the database itself.
    Only a Tid greater than the last applied one for the object is applied.
    """

    class Kind(models.TextChoices):
        ORDER = "order", _("Order")
        CLIENT = "client", _("Client")

    class Outcome(models.TextChoices):
        RECEIVED = "received", _("Received")
        APPLIED = "applied", _("Applied")
        STALE = "stale", _("Stale")
        UNKNOWN_OBJECT = "unknown_object", _("Unknown Object")

    kind = models.CharField(max_length=10, choices=Kind.choices, verbose_name=_("kind"))
    object_key = models.CharField(max_length=100, help_text=_("ServiceID:ServiceOrderID, or ClientID"),
                                  verbose_name=_("object key"))
    tid = models.BigIntegerField(verbose_name=_("tid"))
    payload = models.JSONField(default=dict, verbose_name=_("payload"))
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RECEIVED,
                               verbose_name=_("outcome"))
    received_at = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("received at"))
    applied_at = models.DateTimeField(null=True, blank=True, verbose_name=_("applied at"))

    class Meta:
        verbose_name = _("balance notification")
        verbose_name_plural = _("balance notifications")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_key", "tid"], name="notification_unique_tid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_key} tid={self.tid} [{self.outcome}]"
