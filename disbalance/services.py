"""Writes for consumer services and their tokens."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from disbalance.models import ConsumerService, ServiceToken, hash_token


@dataclass(frozen=True)
class ServiceCreateResult:
    service: ConsumerService
    created: bool
    changed: list[str]


@transaction.atomic
def service_create(
    *, slug: str, name: str, balance_service_id: int, currency: str = "RUB", webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> ServiceCreateResult:
    """Create a consumer service, or bring an existing one up to date (idempotent by slug)."""
    service = ConsumerService.objects.select_for_update().filter(slug=slug).first()
    wanted = {"name": name, "balance_service_id": balance_service_id, "currency": currency}
    if webhook_url is not None:
        wanted["webhook_url"] = webhook_url
    if webhook_secret is not None:
        wanted["webhook_secret"] = webhook_secret
    if service is None:
        service = ConsumerService(slug=slug, **wanted)
        if not service.webhook_secret:
            service.webhook_secret = ServiceToken.generate()
        service.full_clean()
        service.save()
        return ServiceCreateResult(service=service, created=True, changed=[])
    changed = [field for field, value in wanted.items() if getattr(service, field) != value]
    for field in changed:
        setattr(service, field, wanted[field])
    if changed:
        service.full_clean()
        service.save(update_fields=changed)
    return ServiceCreateResult(service=service, created=False, changed=changed)


@dataclass(frozen=True)
class TokenIssueResult:
    token: ServiceToken
    raw_token: str


@transaction.atomic
def service_token_issue(*, service: ConsumerService, label: str = "", raw_token: str | None = None) -> TokenIssueResult:
    """Issue a new token; the raw value is returned once and only its hash is kept."""
    raw = raw_token or ServiceToken.generate()
    token = ServiceToken.objects.create(service=service, prefix=raw[:12], token_hash=hash_token(raw), label=label)
    return TokenIssueResult(token=token, raw_token=raw)


@transaction.atomic
def service_token_revoke(*, token: ServiceToken) -> ServiceToken:
    """Revoke at once: the next request with this token is 401."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token
