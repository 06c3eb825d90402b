"""The generic `Idempotency-Key` mechanism of the consumer API.

A POST with a key claims (service, key) through a unique constraint (`INSERT ... ON CONFLICT DO NOTHING`) in the
same transaction as the view's effect and its stored response: the claim, the effect and the response commit
together, and a crash or an error leaves none of them. A concurrent request with the same key waits on the unique
index until the first one commits (then it replays its response) or rolls back (then it claims the key itself).
A view's error answer (4xx) is stored too, in a short transaction of its own after the effect rolled back.
Money services decorated with `atomic_service` join this transaction without a savepoint: it is rolled back
whole on any error.
Repeats with the same body replay the stored response (`Idempotent-Replayed: true`); a different body is
`422 idempotency_key_reused`; a key held by a request that committed its claim without finishing (records of
an older version) is `409 idempotency_key_in_use` until it goes stale.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
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


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.response_body, status=record.response_status)
    if record.response_status and record.response_status >= 400:
        response.content_type = "application/problem+json"
    response[REPLAYED_HEADER] = "true"
    return response


# One statement, and no savepoint: a taken key is not an error that would abort the transaction.
_CLAIM_SQL = (
    'INSERT INTO "disbalance_idempotencyrecord" ("service_id", "key", "request_hash", "method", "path", "status", '
    '"created_at") VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING "id"'
)


def _insert_claim(service: ConsumerService, key: str, fingerprint: str, request: Request) -> int | None:
    """Insert the claim unless the key is taken; its id, or None if taken (PostgreSQL and SQLite alike)."""
    params = (service.pk, key, fingerprint, request.method or "", request.path[:500],
              IdempotencyRecord.Status.IN_PROGRESS, connection.ops.adapt_datetimefield_value(timezone.now()))
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _claim(service: ConsumerService, key: str, fingerprint: str, request: Request) -> IdempotencyRecord | Response:
    """Claim the key inside the caller's transaction, or answer for an earlier request that holds it."""
    for _ in range(3):
        record_id = _insert_claim(service, key, fingerprint, request)
        if record_id is not None:
            return IdempotencyRecord(pk=record_id, service=service, key=key, request_hash=fingerprint)
        record = IdempotencyRecord.objects.filter(service=service, key=key).first()
        if record is not None:
            break
        # the holder rolled back (or its claim was purged) in between: try again
    else:
        raise IdempotencyKeyInUse(f"A request with Idempotency-Key {key!r} is still being processed; retry later.")
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was used with a different request; use a new key for a new request."
        )
    if record.status == IdempotencyRecord.Status.DONE:
        return _replay(record)
    stale_before = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_STALE_SECONDS)
    if record.created_at < stale_before:
        # A claim committed without its answer (an older version claimed in a transaction of its own) and whose
        # request died: take it over, atomically.
        taken = IdempotencyRecord.objects.filter(
            pk=record.pk, status=IdempotencyRecord.Status.IN_PROGRESS, created_at=record.created_at
        ).update(created_at=timezone.now())
        if taken:
            record.refresh_from_db()
            return record
    raise IdempotencyKeyInUse(f"A request with Idempotency-Key {key!r} is still being processed; retry later.")


# Written in SQL like the claim: on the charge path an ORM UPDATE compiled per request cost more CPU than the
# statement itself (issue 12). The body is JSON text, which the column (jsonb on PostgreSQL) takes as it is.
_COMPLETE_SQL = (
    'UPDATE "disbalance_idempotencyrecord" SET "status" = %s, "response_status" = %s, "response_body" = %s, '
    '"completed_at" = %s WHERE "id" = %s'
)


def _complete(record: IdempotencyRecord, response: Response) -> None:
    params = (IdempotencyRecord.Status.DONE, response.status_code, json.dumps(response.data, cls=DjangoJSONEncoder),
              connection.ops.adapt_datetimefield_value(timezone.now()), record.pk)
    with connection.cursor() as cursor:
        cursor.execute(_COMPLETE_SQL, params)


# True while an idempotent view runs directly in the request's transaction (see `atomic_service`).
_request_transaction: ContextVar[bool] = ContextVar("idempotent_request_transaction", default=False)


def atomic_service(func: Callable) -> Callable:
    """`transaction.atomic` for a money service, except that called by an idempotent view directly in the
    request's transaction it joins that transaction without a savepoint (two statements fewer): the request
    rolls back whole, its claim included, on any error the service raises, and stores the error answer after."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with service_atomic():
            return func(*args, **kwargs)

    return wrapper


def service_atomic() -> transaction.Atomic:
    """The atomic block of `atomic_service`, for a service that opens it itself (only on one of its paths)."""
    joins = _request_transaction.get() and len(connection.atomic_blocks) == 1
    return transaction.atomic(savepoint=not joins)


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
            service = view.request.user.service
            view_error: BaseException | None = None
            try:
                with transaction.atomic():
                    claimed = _claim(service, key, fingerprint, request)
                    if isinstance(claimed, Response):
                        return claimed
                    joined = _request_transaction.set(True)
                    try:
                        response = view_method(view, request, *args, **kwargs)
                    except (ApplicationError, APIException) as exc:
                        view_error = exc
                        raise
                    finally:
                        _request_transaction.reset(joined)
                    if response.status_code < 500:
                        _complete(claimed, response)
                    return response
            except (ApplicationError, APIException) as exc:
                if exc is not view_error:
                    raise  # the claim's own answer (422, 409): nothing to store
                problem = problem_exception_handler(exc, {"view": view, "request": request})
                if problem is None or problem.status_code >= 500:
                    raise
                # The effect rolled back with the claim; store the error answer under the key.
                with transaction.atomic():
                    claimed = _claim(service, key, fingerprint, request)
                    if isinstance(claimed, Response):
                        return claimed  # another request with the key answered in between
                    _complete(claimed, problem)
                return problem

        wrapper.idempotent_required = required  # type: ignore[attr-defined]
        return wrapper

    return decorator


def purge_expired_keys() -> int:
    cutoff = timezone.now() - timedelta(days=settings.IDEMPOTENCY_KEY_TTL_DAYS)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
