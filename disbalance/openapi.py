"""Schema helpers, so the OpenAPI document says what the API really answers.

- `problems(...)`: the error responses of an operation, served as `application/problem+json` with the `Problem`
  component and one example per error code (the examples are real answers of the API; `tests/api` compares them
  with what the API returns).
- `page_of(Serializer)`: the `{next, previous, results}` envelope of a cursor-paginated list, and
  `PAGE_PARAMETERS` (`cursor`, `limit`) for its query.
- `IDEMPOTENCY_KEY_REQUIRED` / `IDEMPOTENCY_KEY_OPTIONAL`: the `Idempotency-Key` header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from disbalance.exceptions import ERROR_TYPE_BASE, PROBLEM_CONTENT_TYPE


class ProblemSerializer(serializers.Serializer):
    """An error (RFC 9457 problem details). Branch on `code`, which is stable; `title` and `detail` are for people."""

    type = serializers.CharField(help_text="A URI naming the error kind: `https://disbalance.dev/errors/<code>`")
    title = serializers.CharField(help_text="Short summary of the error kind")
    status = serializers.IntegerField(help_text="The HTTP status code")
    code = serializers.CharField(help_text="Stable error code, e.g. `insufficient_funds`")
    detail = serializers.CharField(help_text="What went wrong in this request")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text="`validation_error` only: messages per field (`legal.inn`) or header (`Idempotency-Key`)",
    )


@dataclass(frozen=True)
class ErrorCode:
    status: int
    title: str
    meaning: str
    detail: str
    errors: dict[str, list[str]] | None = None

    def example(self, code: str) -> dict[str, Any]:
        body: dict[str, Any] = {"type": ERROR_TYPE_BASE + code, "title": self.title, "status": self.status,
                                "code": code, "detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


# Every error code an operation can answer, with a real answer of the API as its example.
ERRORS: dict[str, ErrorCode] = {
    "validation_error": ErrorCode(
        400, "Validation error", "invalid body, query parameter or header",
        "The request has invalid fields; see `errors`.", {"amount": ["must not exceed 1000000000000.00"]}),
    "unauthorized": ErrorCode(401, "Unauthorized", "no, unknown or revoked token", "Invalid or revoked token."),
    "insufficient_funds": ErrorCode(
        402, "Insufficient funds", "the amount is more than `available`",
        "300.00 exceeds the available 0.00"),
    "not_found": ErrorCode(
        404, "Customer not found", "no such object for this service (another service's object is 404 too)",
        "No customer 'dealer:404'."),
    "customer_blocked": ErrorCode(
        409, "Customer is blocked", "the customer is blocked or its debt is overdue: spending is refused",
        "Customer 'dealer:777' is blocked: spending is refused until repaid."),
    "customer_not_active": ErrorCode(
        409, "Customer is not active", "the customer's registration in Balance has not completed (or failed)",
        "Customer 'dealer:777' is registering, not active."),
    "invalid_state": ErrorCode(
        409, "Hold is not held", "the object is not in a state that allows the operation",
        "Hold 0d87c23c-2ea0-4cda-b974-244cbc72f907 is captured."),
    "idempotency_key_in_use": ErrorCode(
        409, "Idempotency key in use", "a request with the same `Idempotency-Key` is still running: retry later",
        "A request with Idempotency-Key 'charge-1' is still being processed; retry later."),
    "payload_too_large": ErrorCode(
        413, "Payload too large", "the body is larger than the limit (1 MiB by default)",
        "Request body is larger than 1048576 bytes."),
    "unsupported_media_type": ErrorCode(
        415, "Unsupported media type", "the body is not `application/json`",
        'Unsupported media type "text/plain" in request.'),
    "idempotency_key_reused": ErrorCode(
        422, "Idempotency key reused with a different request", "the same `Idempotency-Key` with another body",
        "Idempotency-Key 'charge-1' was used with a different request; use a new key for a new request."),
    "rate_limited": ErrorCode(
        429, "Too many requests", "over the service's request rate: retry after `Retry-After` seconds",
        "Request was throttled. Expected available in 12 seconds."),
    "upstream_unavailable": ErrorCode(
        503, "Balance is unavailable", "Balance could not be reached", "Balance is unavailable"),
}

# `not_found` examples per kind of object a path names (and a list's bad cursor): real answers of the API.
_UUID = "6f1c2b9e-8d43-4a5e-9b1a-3c2d4e5f6a7b"
NOT_FOUND: dict[str, tuple[str, str]] = {
    "customer": ("Customer not found", "No customer 'dealer:404'."),
    "agency": ("Agency not found", "No agency 'agency:404'."),
    "topup": ("Not found", f"No top-up '{_UUID}'."),
    "charge": ("Not found", f"No charge '{_UUID}'."),
    "hold": ("Not found", f"No hold '{_UUID}'."),
    "cursor": ("Not found", "Invalid cursor"),
}

# Every operation can answer these.
ALWAYS = ("validation_error", "unauthorized", "rate_limited")
# Idempotent POSTs add these (the key is claimed before the operation runs).
IDEMPOTENCY = ("idempotency_key_in_use", "idempotency_key_reused")
# Operations with a JSON body add these.
BODY = ("payload_too_large", "unsupported_media_type")


def problem_example(code: str) -> dict[str, Any]:
    return ERRORS[code].example(code)


def _examples(code: str, missing: tuple[str, ...]) -> list[OpenApiExample]:
    status = ERRORS[code].status
    if code != "not_found":
        return [OpenApiExample(code, value=problem_example(code), status_codes=[str(status)], response_only=True,
                               media_type=PROBLEM_CONTENT_TYPE)]
    return [
        OpenApiExample(f"not_found ({kind})", value={**problem_example(code), "title": NOT_FOUND[kind][0],
                                                     "detail": NOT_FOUND[kind][1]},
                       status_codes=[str(status)], response_only=True, media_type=PROBLEM_CONTENT_TYPE)
        for kind in missing
    ]


def problems(*codes: str, missing: tuple[str, ...] = ("customer",)) -> dict[tuple[int, str], OpenApiResponse]:
    """Error responses for `extend_schema(responses=...)`: `Problem` as application/problem+json, grouped by
    status, with one example per code. `validation_error`, `unauthorized` and `rate_limited` are always included.
    `missing` names what a `not_found` is about (`customer`, `agency`, `topup`, `charge`, `hold`, `cursor`)."""
    wanted = [code for code in ERRORS if code in {*ALWAYS, *codes}]
    unknown = set(codes) - set(ERRORS)
    if unknown:
        raise ValueError(f"unknown error codes: {sorted(unknown)}")
    by_status: dict[int, list[str]] = {}
    for code in wanted:
        by_status.setdefault(ERRORS[code].status, []).append(code)
    return {
        (status, PROBLEM_CONTENT_TYPE): OpenApiResponse(
            ProblemSerializer,
            description="; ".join(f"`{code}`: {ERRORS[code].meaning}" for code in group),
            examples=[example for code in group for example in _examples(code, missing)],
        )
        for status, group in sorted(by_status.items())
    }


_IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"^[\x21-\x7e]{1,255}$"}
IDEMPOTENCY_KEY_REQUIRED = OpenApiParameter(
    "Idempotency-Key", _IDEMPOTENCY_KEY_SCHEMA, OpenApiParameter.HEADER, required=True,
    description="Required (this POST moves money): 1 to 255 printable ASCII characters, a new one per intended "
    "operation. A repeat with the same key and body replays the first response (`Idempotent-Replayed: true`); "
    "with another body it is `422 idempotency_key_reused`; while the first runs, `409 idempotency_key_in_use`.",
)
IDEMPOTENCY_KEY_OPTIONAL = OpenApiParameter(
    "Idempotency-Key", _IDEMPOTENCY_KEY_SCHEMA, OpenApiParameter.HEADER, required=False,
    description="Optional: 1 to 255 printable ASCII characters. A repeat with the same key and body replays the "
    "first response (`Idempotent-Replayed: true`).",
)

PAGE_PARAMETERS = [
    OpenApiParameter("cursor", str, OpenApiParameter.QUERY, required=False,
                     description="Opaque cursor from `next` or `previous` of the previous page; an invalid one is "
                     "`404 not_found`"),
    OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": 500}, OpenApiParameter.QUERY,
                     required=False, description="Page size, 1 to 500 (default 50; larger values are cut to 500)"),
]

_PAGES: dict[type[serializers.Serializer], type[serializers.Serializer]] = {}


def page_of(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The serializer of one page of a cursor-paginated list of `serializer_class`: `{next, previous, results}`
    (component `Paginated<Name>List`)."""
    if serializer_class not in _PAGES:
        name = serializer_class.__name__.removesuffix("Serializer")
        _PAGES[serializer_class] = type(f"Paginated{name}ListSerializer", (serializers.Serializer,), {
            "__doc__": f"One page of {name} objects, newest first. Follow `next` until it is null.",
            "__module__": __name__,
            "next": serializers.URLField(allow_null=True, help_text="URL of the next (older) page; null on the last"),
            "previous": serializers.URLField(allow_null=True, help_text="URL of the previous (newer) page; null on "
                                             "the first"),
            "results": serializer_class(many=True),
        })
    return _PAGES[serializer_class]


def filter_parameters(filterset_class: type) -> list[OpenApiParameter]:
    """Query parameters of a FilterSet plus `cursor` and `limit`, for `extend_schema(parameters=...)` on lists."""
    params = []
    for name, field in filterset_class.base_filters.items():
        choices = getattr(field, "extra", {}).get("choices")
        if isinstance(field, filters.IsoDateTimeFilter):
            schema: Any = OpenApiTypes.DATETIME
        elif field.extra.get("max_length"):
            schema = {"type": "string", "maxLength": field.extra["max_length"]}
        else:
            schema = str
        params.append(OpenApiParameter(
            name, schema, OpenApiParameter.QUERY, required=False, description=field.extra.get("help_text", "") or "",
            enum=[value for value, _ in choices] if choices else None,
        ))
    return params + PAGE_PARAMETERS


__all__ = [
    "ERRORS", "IDEMPOTENCY_KEY_OPTIONAL", "IDEMPOTENCY_KEY_REQUIRED", "PAGE_PARAMETERS", "OpenApiExample",
    "ProblemSerializer", "filter_parameters", "page_of", "problem_example", "problems",
]
