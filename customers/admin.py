"""Support UI for customers: find by external id, Balance client id, INN, name or e-mail; see history."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from customers.models import Customer
from customers.services import enqueue_sync


@admin.register(Customer)
class CustomerAdmin(SimpleHistoryAdmin):
    list_display = ("external_id", "name", "service", "kind", "status", "agency", "balance_client_id", "blocked",
                    "created_at")
    list_filter = ("service", "status", "kind", "blocked")
    search_fields = ("=external_id", "=balance_client_id", "=inn", "name", "email")
    list_select_related = ("service", "agency")
    readonly_fields = [f.name for f in Customer._meta.fields]
    actions = ["resync_with_balance"]
    history_list_display = ["status", "status_reason", "agency"]

    @admin.action(description="Sync with Balance again", permissions=["view"])
    def resync_with_balance(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        for customer in queryset:
            enqueue_sync(customer, update=customer.balance_client_id is not None)
        self.message_user(request, f"Queued a Balance sync for {queryset.count()} customer(s).", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers are registered by their consumer service through the API

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
