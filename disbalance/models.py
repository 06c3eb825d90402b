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

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    balance_service_id = models.PositiveIntegerField(help_text="Balance ServiceID")
    currency = models.CharField(max_length=3, default="RUB")
    webhook_url = models.URLField(blank=True, default="")
    webhook_secret = models.CharField(max_length=128, blank=True, default="")
    webhook_secret_previous = models.CharField(
        max_length=128, blank=True, default="",
        help_text="The secret before the last rotation: it signs too until `webhook_secret_previous_until`")
    webhook_secret_previous_until = models.DateTimeField(null=True, blank=True)
    webhook_failing_since = models.DateTimeField(
        null=True, blank=True, help_text="First failed delivery since the last successful one")
    webhook_disabled_at = models.DateTimeField(
        null=True, blank=True, help_text="Deliveries stopped after days of failure; support re-enables")
    webhook_lease_until = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="A worker is delivering this service's events until then")
    low_balance_default = models.DecimalField(
        max_digits=18, decimal_places=2, null=True, blank=True,
        help_text="`wallet.low_balance` threshold for customers that set none; empty: no alert by default")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ServiceToken(models.Model):
    """A bearer token of one service. Only the SHA-256 hash is stored; the token is shown once when issued."""

    service = models.ForeignKey(ConsumerService, on_delete=models.PROTECT, related_name="tokens")
    prefix = models.CharField(max_length=16, help_text="First characters, to tell tokens apart")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    label = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
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
        IN_PROGRESS = "in_progress"
        DONE = "done"

    service = models.ForeignKey(ConsumerService, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
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
        CUSTOMER_REGISTERED = "customer.registered", "customer.registered"
        CUSTOMER_REGISTRATION_FAILED = "customer.registration_failed", "customer.registration_failed"
        CUSTOMER_UPDATED = "customer.updated", "customer.updated"
        CUSTOMER_BLOCKED = "customer.blocked", "customer.blocked"
        CUSTOMER_UNBLOCKED = "customer.unblocked", "customer.unblocked"
        AGENCY_CHANGED = "agency.changed", "agency.changed"
        TOPUP_SUCCEEDED = "topup.succeeded", "topup.succeeded"
        TOPUP_FAILED = "topup.failed", "topup.failed"
        TOPUP_EXPIRED = "topup.expired", "topup.expired"
        MONEY_RECEIVED = "money.received", "money.received"
        CHARGE_SUCCEEDED = "charge.succeeded", "charge.succeeded"
        REFUND_SUCCEEDED = "refund.succeeded", "refund.succeeded"
        HOLD_CREATED = "hold.created", "hold.created"
        HOLD_CAPTURED = "hold.captured", "hold.captured"
        HOLD_RELEASED = "hold.released", "hold.released"
        HOLD_EXPIRED = "hold.expired", "hold.expired"
        WALLET_ADJUSTED = "wallet.adjusted", "wallet.adjusted"
        WALLET_TRANSFERRED = "wallet.transferred", "wallet.transferred"
        WALLET_LOW_BALANCE = "wallet.low_balance", "wallet.low_balance"
        OVERDRAFT_LIMIT_CHANGED = "overdraft.limit_changed", "overdraft.limit_changed"
        WEBHOOK_ENDPOINT_DISABLED = "webhook.endpoint_disabled", "webhook.endpoint_disabled"

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"
        SKIPPED = "skipped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(ConsumerService, on_delete=models.PROTECT, related_name="webhook_events")
    type = models.CharField(max_length=64, choices=Type.choices)
    # The customer by key, not by foreign key: the core knows no domain app (the layers point one way).
    customer_pk = models.BigIntegerField(null=True, blank=True, editable=False)
    customer_external_id = models.CharField(max_length=128, blank=True, default="")
    sequence = models.PositiveBigIntegerField(null=True, blank=True, help_text="Grows by one per customer")
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    dedup_key = models.CharField(max_length=200, blank=True, default="")
    request_id = models.CharField(max_length=100, blank=True, default="", help_text="X-Request-ID of the change")
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="HTTP attempts made, re-sends included")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="", help_text="Re-sends: who asked and when")
    operation = models.ForeignKey(
        "disbalance.OutboxOperation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Unused since deliveries left the outbox (kept for rows written before)",
    )

    class Meta:
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
        DELIVERED = "delivered"
        REFUSED = "refused", "refused (non-2xx answer)"
        UNREACHABLE = "unreachable", "unreachable (timeout, connection error)"

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="delivery_attempts")
    attempted_at = models.DateTimeField(default=timezone.now)
    url = models.CharField(max_length=500, blank=True, default="")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    request_id = models.CharField(max_length=100, blank=True, default="")

    class Meta:
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
        PENDING = "pending"
        IN_PROGRESS = "in_progress"
        DONE = "done"
        FAILED = "failed"

    class FailureKind(models.TextChoices):
        """Why the last attempt failed, as data (never parsed back out of `last_error`)."""

        NONE = "", "none"
        RETRYABLE = "retryable", "retryable (unreachable, busy, waiting for a dependency)"
        FINAL = "final", "final (refused: repeating cannot help)"
        CRASH = "crash", "crash (a bug in the handler)"
        NO_HANDLER = "no_handler", "no handler for the kind"

    kind = models.CharField(max_length=64, db_index=True)
    subject = models.CharField(max_length=100, db_index=True, help_text="What it is about, e.g. customer:12")
    dedup_key = models.CharField(max_length=200, blank=True, default="")
    service = models.ForeignKey("disbalance.ConsumerService", null=True, blank=True, on_delete=models.PROTECT)
    payload = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=100, blank=True, default="",
                                  help_text="X-Request-ID of the API call (or task) that wrote it")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=12)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    leased_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    failure_kind = models.CharField(max_length=16, choices=FailureKind.choices, blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had when the outbox lived in the gateway (moved without copying rows).
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
        return f"{self.kind} {self.subject} [{self.status}]"
