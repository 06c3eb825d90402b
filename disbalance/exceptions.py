"""The error tree and the one DRF exception handler that renders application/problem+json (RFC 9457).

Domain code raises `ApplicationError` subclasses (each app has its own in `exceptions.py`); DRF and Django
errors are mapped onto the same stable codes. Unknown exceptions are left to Django (a 500 is a bug).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
ERROR_TYPE_BASE = "https://disbalance.dev/errors/"


class ApplicationError(Exception):
    """A domain error with a stable `code` and an HTTP status."""

    code = "invalid_state"
    http_status = 409
    title = "Invalid state"

    def __init__(self, message: str = "", *, code: str | None = None, http_status: int | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title
        if code:
            self.code = code
        if http_status:
            self.http_status = http_status
        self.extra = extra or {}


class ValidationFailed(ApplicationError):
    code = "validation_error"
    http_status = 400
    title = "Validation error"

    def __init__(self, message: str = "", *, errors: dict[str, list[str]] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        if errors:
            self.extra = {**self.extra, "errors": errors}


class NotFound(ApplicationError):
    code = "not_found"
    http_status = 404
    title = "Not found"


class InvalidState(ApplicationError):
    code = "invalid_state"
    http_status = 409
    title = "Invalid state"


class CustomerNotActive(ApplicationError):
    code = "customer_not_active"
    http_status = 409
    title = "Customer is not active"


class CustomerBlocked(ApplicationError):
    code = "customer_blocked"
    http_status = 409
    title = "Customer is blocked"


class InsufficientFunds(ApplicationError):
    code = "insufficient_funds"
    http_status = 402
    title = "Insufficient funds"


class IdempotencyKeyInUse(ApplicationError):
    code = "idempotency_key_in_use"
    http_status = 409
    title = "Idempotency key in use"


class IdempotencyKeyReused(ApplicationError):
    code = "idempotency_key_reused"
    http_status = 422
    title = "Idempotency key reused with a different request"


_DRF_CODES: list[tuple[type[Exception], str, str]] = [
    (drf_exceptions.NotAuthenticated, "unauthorized", "Unauthorized"),
    (drf_exceptions.AuthenticationFailed, "unauthorized", "Unauthorized"),
    (drf_exceptions.PermissionDenied, "forbidden", "Forbidden"),
    (drf_exceptions.NotFound, "not_found", "Not found"),
    (drf_exceptions.MethodNotAllowed, "method_not_allowed", "Method not allowed"),
    (drf_exceptions.NotAcceptable, "not_acceptable", "Not acceptable"),
    (drf_exceptions.UnsupportedMediaType, "unsupported_media_type", "Unsupported media type"),
    (drf_exceptions.Throttled, "rate_limited", "Too many requests"),
    (drf_exceptions.ParseError, "validation_error", "Malformed request"),
    (drf_exceptions.ValidationError, "validation_error", "Validation error"),
]


def problem_body(*, status: int, code: str, title: str, detail: str, extra: dict[str, Any] | None = None) -> dict:
    body: dict[str, Any] = {"type": ERROR_TYPE_BASE + code, "title": title, "status": status, "code": code,
                            "detail": detail}
    if extra:
        body.update(extra)
    return body


def problem_response(**kwargs: Any) -> JsonResponse:
    """A problem+json response for plain Django views and middleware."""
    return JsonResponse(problem_body(**kwargs), status=kwargs["status"], content_type=PROBLEM_CONTENT_TYPE)


def _flatten_errors(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for field, value in detail.items():
            if isinstance(value, dict):
                for sub, messages in _flatten_errors(value).items():
                    out[f"{field}.{sub}"] = messages
            elif isinstance(value, list):
                flat: list[str] = []
                for i, item in enumerate(value):
                    if isinstance(item, dict):
                        for sub, messages in _flatten_errors(item).items():
                            out[f"{field}[{i}].{sub}"] = messages
                    else:
                        flat.append(str(item))
                if flat:
                    out[str(field)] = flat
            else:
                out[str(field)] = [str(value)]
        return out
    if isinstance(detail, list):
        return {"non_field_errors": [str(item) for item in detail]}
    return {"non_field_errors": [str(detail)]}


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        body = problem_body(status=exc.http_status, code=exc.code, title=exc.title, detail=exc.message,
                            extra=exc.extra)
        return Response(body, status=exc.http_status, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code, title = "error", "Error"
    for cls, mapped_code, mapped_title in _DRF_CODES:
        if isinstance(exc, cls):
            code, title = mapped_code, mapped_title
            break
    extra: dict[str, Any] = {}
    if isinstance(exc, drf_exceptions.ValidationError):
        extra["errors"] = _flatten_errors(exc.detail)
        detail = "The request has invalid fields; see `errors`."
    else:
        detail = str(getattr(exc, "detail", exc))
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        response.status_code = 401
    response.data = problem_body(status=response.status_code, code=code, title=title, detail=detail, extra=extra)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response
