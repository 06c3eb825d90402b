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
    """One event for a consumer service's webhook, e.g. `topup.succeeded`, written in the domain transaction.

    Delivery is at-least-once: the outbox operation in `operation` POSTs it after commit and retries with
    backoff; a consumer may therefore receive the same event more than once (a lost answer, a re-send from the
    admin) and must de-duplicate by `id`, which is the `id` in the body and never changes between attempts.
    `status`: `pending` until a 2xx answer (`delivered`), `failed` when the outbox gives up (support can
    re-send), `skipped` when the service had no webhook URL. `dedup_key`, when not empty, is unique: it lets
    domain code emit "once per fact" (e.g. `topup.succeeded:<top-up id>`).
    """

    class Type(models.TextChoices):
        CUSTOMER_REGISTERED = "customer.registered", "customer.registered"
        CUSTOMER_REGISTRATION_FAILED = "customer.registration_failed", "customer.registration_failed"
        TOPUP_SUCCEEDED = "topup.succeeded", "topup.succeeded"
        TOPUP_FAILED = "topup.failed", "topup.failed"
        WALLET_LOW_BALANCE = "wallet.low_balance", "wallet.low_balance"
        CUSTOMER_BLOCKED = "customer.blocked", "customer.blocked"
        CUSTOMER_UNBLOCKED = "customer.unblocked", "customer.unblocked"
        AGENCY_CHANGED = "agency.changed", "agency.changed"
        HOLD_EXPIRED = "hold.expired", "hold.expired"

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"
        SKIPPED = "skipped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    service = models.ForeignKey(ConsumerService, on_delete=models.PROTECT, related_name="webhook_events")
    type = models.CharField(max_length=64, choices=Type.choices)
    data = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    dedup_key = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="HTTP attempts made, re-sends included")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="", help_text="Re-sends: who asked and when")
    operation = models.ForeignKey(
        "disbalance.OutboxOperation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The outbox operation of the latest delivery",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["service", "status"], name="webhookevent_service_status")]
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key"], condition=~models.Q(dedup_key=""), name="webhookevent_unique_dedup_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} [{self.status}]"


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
