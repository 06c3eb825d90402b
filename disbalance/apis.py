"""The events feed: `GET /api/v1/events`, the same events (same ids) as the webhooks, newest first."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from disbalance import openapi_examples as examples
from disbalance.auth import current_service
from disbalance.events import events_for_service
from disbalance.models import WebhookEvent
from disbalance.openapi import filter_parameters, page_of, problems
from disbalance.pagination import CreatedNewestFirstCursorPagination, paginated_response, validated_filters

EVENT_EXAMPLE = {
    "id": "3f2b8c1a-6d4e-4f7a-9b2c-1e0d9c8b7a65", "type": "charge.succeeded", "created_at": "2026-12-02T08:00:00Z",
    "sequence": 42, "data": {"customer": "dealer:20101", "payer": None, "amount": "300.00", "balance": "900.00",
                             "held": "0.00", "currency": "RUB", "charge": "5f0f6a2c-3c8e-4f55-8a57-4d4a9a7e0c11",
                             "product": "placement"},
}


class EventSerializer(serializers.ModelSerializer):
    """An event: the same document as its webhook (same `id`)."""

    id = serializers.UUIDField(help_text="The same id as the webhook's `id` and `webhook-id` header")
    sequence = serializers.IntegerField(allow_null=True, help_text="Grows by one per customer; null for a "
                                                                   "service-wide event")
    type = serializers.ChoiceField(choices=WebhookEvent.Type.choices, help_text="The event type")
    created_at = serializers.DateTimeField(help_text="When the change happened (UTC)")
    data = serializers.DictField(help_text="`customer`, `payer`, and for money events `amount`, `balance` "
                                           "(the payer's balance right after), `held`, `currency`")

    class Meta:
        model = WebhookEvent
        fields = ["id", "type", "created_at", "sequence", "data"]


class EventFilter(filters.FilterSet):
    type = filters.ChoiceFilter(choices=WebhookEvent.Type.choices)
    customer = filters.CharFilter(help_text="The customer's external id")
    since = filters.IsoDateTimeFilter(help_text="Events created at or after this time")

    class Meta:
        model = WebhookEvent
        fields = ["type", "customer", "since"]


class EventListApi(APIView):
    @extend_schema(operation_id="events_list", parameters=filter_parameters(EventFilter),
                   examples=[examples.ok("one page", examples.page([EVENT_EXAMPLE]))],
                   responses={200: page_of(EventSerializer), **problems("not_found", missing=("cursor",))},
                   summary="The events feed",
                   description="Every event of the service, newest first, kept at least 30 days: the same ids as "
                   "the webhooks, so a consumer reconciles what it received and catches up after its own outage. "
                   "Filter by `type`, `customer` (external id) and `since`. Cursor pagination: follow `next` until "
                   "it is null.")
    def get(self, request: Request) -> Response:
        qs = events_for_service(service=current_service(request), **validated_filters(EventFilter, request))
        return paginated_response(request, qs, EventSerializer, view=self,
                                  pagination_class=CreatedNewestFirstCursorPagination)
