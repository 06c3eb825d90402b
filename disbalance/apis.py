"""The events feed: `GET /api/v1/events`, the same events (same ids) as the webhooks, newest first."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from disbalance.auth import current_service
from disbalance.events import events_for_service
from disbalance.models import WebhookEvent
from disbalance.openapi import filter_parameters, problems
from disbalance.pagination import CreatedNewestFirstCursorPagination, paginated_response, validated_filters


class EventSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(help_text="The same id as the webhook's `id` and `webhook-id` header")
    sequence = serializers.IntegerField(allow_null=True, help_text="Grows by one per customer; null for a "
                                                                   "service-wide event")
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
                   responses={200: EventSerializer(many=True), **problems()},
                   summary="The events feed, newest first (kept at least 30 days): catch up after an outage")
    def get(self, request: Request) -> Response:
        qs = events_for_service(service=current_service(request), **validated_filters(EventFilter, request))
        return paginated_response(request, qs, EventSerializer, view=self,
                                  pagination_class=CreatedNewestFirstCursorPagination)
