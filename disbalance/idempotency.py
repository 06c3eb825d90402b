"""The generic `Idempotency-Key` mechanism of the consumer API.

A POST with a key first claims (service, key) through a unique constraint, in its own short transaction.
The view then runs inside one transaction that also stores its response, so the effect and the stored
response commit together: a crash leaves neither, and a stale claim can be taken over later.
Repeats with the same body replay the stored response (`Idempotent-Replayed: true`); a different body is
`422 idempotency_key_reused`; a repeat while the first is still running is `409 idempotency_key_in_use`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from disbalance.exceptions import (
    ApplicationError,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    ValidationFailed,
    problem_exception_handler,
)
from disbalance.models import ConsumerService, IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


def request_fingerprint(request: Request) -> str:
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    raw = f"{request.method}\n{request.path}\n{body}"
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.response_body, status=record.response_status)
    if record.response_status and record.response_status >= 400:
        response.content_type = "application/problem+json"
    response[REPLAYED_HEADER] = "true"
    return response


def _claim(service: ConsumerService, key: str, fingerprint: str, request: Request) -> IdempotencyRecord | Response:
    """Claim the key, or answer for an earlier request that holds it."""
    try:
        with transaction.atomic():
            return IdempotencyRecord.objects.create(
                service=service, key=key, request_hash=fingerprint, method=request.method or "",
                path=request.path[:500],
            )
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.filter(service=service, key=key).first()
    if record is None:  # the holder gave up and deleted its claim in between: try once more
        return _claim(service, key, fingerprint, request)
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was used with a different request; use a new key for a new request."
        )
    if record.status == IdempotencyRecord.Status.DONE:
        return _replay(record)
    stale_before = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_STALE_SECONDS)
    if record.created_at < stale_before:
        # The first request died without committing anything: take the claim over, atomically.
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, status=IdempotencyRecord.Status.IN_PROGRESS, created_at=record.created_at
        ).update(created_at=timezone.now())
        if taken:
            record.refresh_from_db()
            return record
    raise IdempotencyKeyInUse(f"A request with Idempotency-Key {key!r} is still being processed; retry later.")


def _complete(record: IdempotencyRecord, response: Response) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status=IdempotencyRecord.Status.DONE,
        response_status=response.status_code,
        response_body=_jsonable(response.data),
        completed_at=timezone.now(),
    )


def idempotent(*, required: bool) -> Callable:
    """Decorate a DRF view's `post`. `required=True` for POSTs that move money."""

    def decorator(view_method: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view_method)
        def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
            key = request.headers.get(HEADER)
            if key is None:
                if required:
                    raise ValidationFailed(
                        f"The {HEADER} header is required for this request.",
                        errors={HEADER: ["This header is required."]},
                    )
                return view_method(view, request, *args, **kwargs)
            if not _KEY_RE.match(key):
                raise ValidationFailed(
                    f"{HEADER} must be 1 to 255 printable ASCII characters.",
                    errors={HEADER: ["1 to 255 printable ASCII characters."]},
                )
            fingerprint = request_fingerprint(request)
            claimed = _claim(view.request.user.service, key, fingerprint, request)
            if isinstance(claimed, Response):
                return claimed
            record = claimed
            try:
                with transaction.atomic():
                    response = view_method(view, request, *args, **kwargs)
                    if response.status_code < 500:
                        _complete(record, response)
                return response
            except (ApplicationError, APIException) as exc:
                problem = problem_exception_handler(exc, {"view": view, "request": request})
                if problem is not None and problem.status_code < 500:
                    _complete(record, problem)
                    return problem
                IdempotencyRecord.objects.filter(pk=record.pk).delete()
                raise
            except BaseException:
                IdempotencyRecord.objects.filter(pk=record.pk).delete()
                raise

        wrapper.idempotent_required = required  # type: ignore[attr-defined]
        return wrapper

    return decorator


def purge_expired_keys() -> int:
    cutoff = timezone.now() - timedelta(days=settings.IDEMPOTENCY_KEY_TTL_DAYS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
