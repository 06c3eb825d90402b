"""Consumer services (the tenants), their API tokens, stored idempotent responses, webhook events and the
outbox of side-effect work."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords


def history_user(instance: object = None, request: object = None, **kwargs: object) -> object:
    """The staff user behind a change, for django-simple-history; API changes (by a service) have none."""
    user = getattr(request, "user", None) if request is not None else None
    if user is None:
        context_request = getattr(HistoricalRecords.context, "request", None)
        user = getattr(context_request, "user", None)
    return user if isinstance(user, AbstractBaseUser) and user.is_authenticated else None


class ConsumerService(models.Model):
    """A consumer service (tenant), e.g. `autoru`. Everything a consumer sees is scoped to its service."""

    slug = models.SlugField(max_length=64, unique=True, verbose_name=_("slug"))
    name = models.CharField(max_length=200, verbose_name=_("name"))
    balance_service_id = models.PositiveIntegerField(help_text=_("Balance ServiceID"),
                                                     verbose_name=_("balance service id"))
    currency = models.CharField(max_length=3, default="RUB", verbose_name=_("currency"))
    webhook_url = models.URLField(blank=True, default="", verbose_name=_("webhook url"))
    webhook_secret = models.CharField(max_length=128, blank=True, default="", verbose_name=_("webhook secret"))
    webhook_secret_previous = models.CharField(
        max_length=128, blank=True, default="",
        help_text=_("The secret before the last rotation: it signs too until `webhook_secret_previous_until`"),
        verbose_name=_("webhook secret previous"))
    webhook_secret_previous_until = models.DateTimeField(null=True, blank=True,
                                                         verbose_name=_("webhook secret previous until"))
    webhook_failing_since = models.DateTimeField(
        null=True, blank=True, help_text=_("First failed delivery since the last successful one"),
        verbose_name=_("webhook failing since"))
    webhook_disabled_at = models.DateTimeField(
        null=True, blank=True,
        help_text=_("Deliveries stopped after days of failure; support re-enables"),
        verbose_name=_("webhook disabled at"))
    webhook_lease_until = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text=_("A worker is delivering this service's events until then"), verbose_name=_("webhook lease until"))
    low_balance_default = models.DecimalField(
        max_digits=18, decimal_places=2, null=True, blank=True,
        help_text=_("`wallet.low_balance` threshold for customers that set none; empty: no alert by default"),
        verbose_name=_("low balance default"))
    is_active = models.BooleanField(default=True, verbose_name=_("is active"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        verbose_name = _("consumer service")
        verbose_name_plural = _("consumer services")
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ServiceToken(models.Model):
    """A bearer token of one service. Only the SHA-256 hash is stored; the token is shown once when issued."""

    service = models.ForeignKey(ConsumerService, on_delete=models.PROTECT, related_name="tokens",
                                verbose_name=_("service"))
    prefix = models.CharField(max_length=16, help_text=_("First characters, to tell tokens apart"),
                              verbose_name=_("prefix"))
    token_hash = models.CharField(max_length=64, unique=True, editable=False, verbose_name=_("token hash"))
    label = models.CharField(max_length=100, blank=True, default="", verbose_name=_("label"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked at"))
    last_used_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last used at"))

    class Meta:
        verbose_name = _("service token")
        verbose_name_plural = _("service tokens")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.service.slug}:{self.prefix}…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate() -> str:
        return f"dsb_{secrets.token_urlsafe(32)}"


class IdempotencyRecord(models.Model):
    """The first response to a POST with an `Idempotency-Key`, replayed for repeats (per service, per key)."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress", _("In Progress")
        DONE = "done", _("Done")

    service = models.ForeignKey(ConsumerService, on_delete=models.CASCADE, related_name="+", verbose_name=_("service"))
    key = models.CharField(max_length=255, verbose_name=_("key"))
    request_hash = models.CharField(max_length=64, verbose_name=_("request hash"))
    method = models.CharField(max_length=10, verbose_name=_("method"))
    path = models.CharField(max_length=500, verbose_name=_("path"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS,
                              verbose_name=_("status"))
    response_status = models.PositiveSmallIntegerField(null=True, blank=True, verbose_name=_("response status"))
    response_body = models.JSONField(null=True, blank=True, verbose_name=_("response body"))
    created_at = models.DateTimeField(default=timezone.now, verbose_name=_("created at"))
    completed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("completed at"))

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [models.UniqueConstraint(fields=["service", "key"], name="idempotency_key_unique_per_service")]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.service_id}:{self.key} [{self.status}]"


class WebhookEvent(models.Model):
    """One event of a consumer service (`charge.succeeded`, ...), written in the transaction of the change.

    The same row is the feed (`GET /api/v1/events`) and the webhook: the `id` in the body never changes between
    attempts, so a consumer de-duplicates by it and reconciles what it received against the feed. `sequence`
    grows by one per customer (gapless, assigned under the customer's lock); service-wide events (an endpoint
    disabled) have no customer and no sequence. Money events carry in `data` the customer's external id, the
    payer, the amount and the payer's resulting `balance` (wallet + held), so a consumer applies them without
    calling back.

    Delivery: `status` is `pending` until a 2xx answer (`delivered`), `failed` when the retry window passed
    (support can re-send), `skipped` when the service had no webhook URL. Every HTTP attempt is a
    `WebhookAttempt`. `dedup_key`, when not empty, is unique: "once per fact".
    """

    class Type(models.TextChoices):
        CUSTOMER_REGISTERED = "customer.registered", _("customer.registered")
        CUSTOMER_REGISTRATION_FAILED = "customer.registration_failed", _("customer.registration_failed")
        CUSTOMER_UPDATED = "customer.updated", _("customer.updated")
        CUSTOMER_BLOCKED = "customer.blocked", _("customer.blocked")
        CUSTOMER_UNBLOCKED = "customer.unblocked", _("customer.unblocked")
        AGENCY_CHANGED = "agency.changed", _("agency.changed")
        TOPUP_SUCCEEDED = "topup.succeeded", _("topup.succeeded")
        TOPUP_FAILED = "topup.failed", _("topup.failed")
        TOPUP_EXPIRED = "topup.expired", _("topup.expired")
        MONEY_RECEIVED = "money.received", _("money.received")
        CHARGE_SUCCEEDED = "charge.succeeded", _("charge.succeeded")
        REFUND_SUCCEEDED = "refund.succeeded", _("refund.succeeded")
        HOLD_CREATED = "hold.created", _("hold.created")
        HOLD_CAPTURED = "hold.captured", _("hold.captured")
        HOLD_RELEASED = "hold.released", _("hold.released")
        HOLD_EXPIRED = "hold.expired", _("hold.expired")
        WALLET_ADJUSTED = "wallet.adjusted", _("wallet.adjusted")
        WALLET_TRANSFERRED = "wallet.transferred", _("wallet.transferred")
        WALLET_LOW_BALANCE = "wallet.low_balance", _("wallet.low_balance")
        OVERDRAFT_LIMIT_CHANGED = "overdraft.limit_changed", _("overdraft.limit_changed")
        WEBHOOK_ENDPOINT_DISABLED = "webhook.endpoint_disabled", _("webhook.endpoint_disabled")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")
        SKIPPED = "skipped", _("Skipped")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False, verbose_name=_("id"))
    service = models.ForeignKey(ConsumerService, on_delete=models.PROTECT, related_name="webhook_events",
                                verbose_name=_("service"))
    type = models.CharField(max_length=64, choices=Type.choices, verbose_name=_("type"))
    # The customer by key, not by foreign key: the core knows no domain app (the layers point one way).
    customer_pk = models.BigIntegerField(null=True, blank=True, editable=False, verbose_name=_("customer pk"))
    customer_external_id = models.CharField(max_length=128, blank=True, default="",
                                            verbose_name=_("customer external id"))
    sequence = models.PositiveBigIntegerField(null=True, blank=True,
                                              help_text=_("Grows by one per customer"), verbose_name=_("sequence"))
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder, verbose_name=_("data"))
    dedup_key = models.CharField(max_length=200, blank=True, default="", verbose_name=_("dedup key"))
    request_id = models.CharField(max_length=100, blank=True, default="",
                                  help_text=_("X-Request-ID of the change"), verbose_name=_("request id"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True, verbose_name=_("created at"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, verbose_name=_("status"))
    attempts = models.PositiveIntegerField(default=0,
                                           help_text=_("HTTP attempts made, re-sends included"),
                                           verbose_name=_("attempts"))
    next_attempt_at = models.DateTimeField(null=True, blank=True, verbose_name=_("next attempt at"))
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True, verbose_name=_("last status code"))
    last_error = models.TextField(blank=True, default="", verbose_name=_("last error"))
    delivered_at = models.DateTimeField(null=True, blank=True, verbose_name=_("delivered at"))
    note = models.TextField(blank=True, default="", help_text=_("Re-sends: who asked and when"), verbose_name=_("note"))
    operation = models.ForeignKey(
        "disbalance.OutboxOperation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text=_("Unused since deliveries left the outbox (kept for rows written before)"),
        verbose_name=_("operation")
    )

    class Meta:
        verbose_name = _("webhook event")
        verbose_name_plural = _("webhook events")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["service", "status", "customer_pk", "sequence"], name="webhookevent_delivery"),
            models.Index(fields=["service", "-created_at"], name="webhookevent_feed"),
            models.Index(fields=["service", "customer_external_id", "-created_at"], name="webhookevent_feed_customer"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key"], condition=~models.Q(dedup_key=""), name="webhookevent_unique_dedup_key"
            ),
            models.UniqueConstraint(
                fields=["customer_pk", "sequence"], condition=Q(customer_pk__isnull=False),
                name="webhookevent_unique_customer_sequence",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} [{self.status}]"


class WebhookAttempt(models.Model):
    """One HTTP attempt to deliver an event: what the consumer answered and how long it took (support's view)."""

    class Outcome(models.TextChoices):
        DELIVERED = "delivered", _("Delivered")
        REFUSED = "refused", _("refused (non-2xx answer)")
        UNREACHABLE = "unreachable", _("unreachable (timeout, connection error)")

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="delivery_attempts",
                              verbose_name=_("event"))
    attempted_at = models.DateTimeField(default=timezone.now, verbose_name=_("attempted at"))
    url = models.CharField(max_length=500, blank=True, default="", verbose_name=_("url"))
    outcome = models.CharField(max_length=16, choices=Outcome.choices, verbose_name=_("outcome"))
    status_code = models.PositiveSmallIntegerField(null=True, blank=True, verbose_name=_("status code"))
    latency_ms = models.PositiveIntegerField(default=0, verbose_name=_("latency ms"))
    response_excerpt = models.TextField(blank=True, default="", verbose_name=_("response excerpt"))
    error = models.TextField(blank=True, default="", verbose_name=_("error"))
    request_id = models.CharField(max_length=100, blank=True, default="", verbose_name=_("request id"))

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.outcome} {self.status_code or ''}"


class OutboxOperation(models.Model):
    """One piece of side-effect work (a Balance call, a webhook), written in the same transaction as the domain change.

    Sent by a Celery task after commit and re-sent by the periodic sweep; every handler is safe to repeat
    (it looks state up before creating). Retries use capped exponential backoff with jitter; after
    `max_attempts` the operation is `failed` and waits for a retry from the admin.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        IN_PROGRESS = "in_progress", _("In Progress")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    class FailureKind(models.TextChoices):
        """Why the last attempt failed, as data (never parsed back out of `last_error`)."""

        NONE = "", _("none")
        RETRYABLE = "retryable", _("retryable (unreachable, busy, waiting for a dependency)")
        FINAL = "final", _("final (refused: repeating cannot help)")
        CRASH = "crash", _("crash (a bug in the handler)")
        NO_HANDLER = "no_handler", _("no handler for the kind")

    kind = models.CharField(max_length=64, db_index=True, verbose_name=_("kind"))
    subject = models.CharField(max_length=100, db_index=True,
                               help_text=_("What it is about, e.g. customer:12"), verbose_name=_("subject"))
    dedup_key = models.CharField(max_length=200, blank=True, default="", verbose_name=_("dedup key"))
    service = models.ForeignKey("disbalance.ConsumerService", null=True, blank=True, on_delete=models.PROTECT,
                                verbose_name=_("service"))
    payload = models.JSONField(default=dict, blank=True, verbose_name=_("payload"))
    request_id = models.CharField(max_length=100, blank=True, default="",
                                  help_text=_("X-Request-ID of the API call (or task) that wrote it"),
                                  verbose_name=_("request id"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, verbose_name=_("status"))
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    max_attempts = models.PositiveIntegerField(default=12, verbose_name=_("max attempts"))
    next_attempt_at = models.DateTimeField(default=timezone.now, verbose_name=_("next attempt at"))
    leased_until = models.DateTimeField(null=True, blank=True, verbose_name=_("leased until"))
    last_error = models.TextField(blank=True, default="", verbose_name=_("last error"))
    failure_kind = models.CharField(max_length=16, choices=FailureKind.choices, blank=True, default="",
                                    verbose_name=_("failure kind"))
    result = models.JSONField(null=True, blank=True, verbose_name=_("result"))
    created_at = models.DateTimeField(default=timezone.now, editable=False, verbose_name=_("created at"))
    updated_at = models.DateTimeField(default=timezone.now, verbose_name=_("updated at"))
    done_at = models.DateTimeField(null=True, blank=True, verbose_name=_("done at"))

    class Meta:
        # The table keeps the name it had when the outbox lived in the gateway (moved without copying rows).
        verbose_name = _("outbox operation")
        verbose_name_plural = _("outbox operations")
        db_table = "balance_gateway_outboxoperation"
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
        return f"{self.kind} {self.subject} [{self.get_status_display()}]"
