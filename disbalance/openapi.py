"""Schema helpers: the problem+json body and the error responses every endpoint documents."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ProblemSerializer(serializers.Serializer):
    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    code = serializers.CharField(help_text="Stable error code, e.g. `insufficient_funds`")
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


_DESCRIPTIONS = {
    400: "validation_error: invalid body, query or header",
    401: "unauthorized: no, wrong or revoked token",
    402: "insufficient_funds: amount > available",
    404: "not_found: no such object for this service",
    409: "invalid_state / customer_not_active / customer_blocked / idempotency_key_in_use",
    413: "payload_too_large",
    415: "unsupported_media_type: send application/json",
    422: "idempotency_key_reused: same key, different body",
    429: "rate_limited",
    503: "upstream_unavailable: Balance is unreachable",
}


def problems(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=...)`; 400, 401 and 429 are always included."""
    wanted = sorted({400, 401, 429, *statuses})
    return {status: OpenApiResponse(ProblemSerializer, description=_DESCRIPTIONS[status]) for status in wanted}


IDEMPOTENCY_KEY_REQUIRED = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=True,
    description="1 to 255 characters, unique per request; a repeat replays the first response.",
)
IDEMPOTENCY_KEY_OPTIONAL = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Optional; a repeat with the same key and body replays the first response.",
)

__all__ = ["IDEMPOTENCY_KEY_OPTIONAL", "IDEMPOTENCY_KEY_REQUIRED", "OpenApiExample", "ProblemSerializer", "problems"]


def filter_parameters(filterset_class: type) -> list[OpenApiParameter]:
    """Query parameters of a FilterSet, for `extend_schema(parameters=...)` on plain APIViews."""
    params = []
    for name, field in filterset_class.base_filters.items():
        choices = getattr(field, "extra", {}).get("choices")
        params.append(OpenApiParameter(
            name, str, OpenApiParameter.QUERY, required=False, description=field.extra.get("help_text", "") or "",
            enum=[value for value, _ in choices] if choices else None,
        ))
    params.append(OpenApiParameter("limit", int, OpenApiParameter.QUERY, required=False,
                                   description="Page size, 1 to 500 (default 50)"))
    params.append(OpenApiParameter("cursor", str, OpenApiParameter.QUERY, required=False,
                                   description="Cursor from `next` or `previous`"))
    return params
