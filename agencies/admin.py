"""Support UI for agencies and their contracts (as read from Balance), with change history."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from agencies.models import Agency, Contract
from agencies.services import enqueue_sync


class ContractInline(admin.TabularInline):
    model = Contract
    fields = ("balance_contract_id", "number", "active", "payment_type", "credit_limit", "valid_from", "valid_to",
              "refreshed_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Agency)
class AgencyAdmin(SimpleHistoryAdmin):
    list_display = ("external_id", "name", "service", "status", "balance_client_id", "contracts_refreshed_at")
    list_filter = ("service", "status")
    search_fields = ("=external_id", "=balance_client_id", "=inn", "name", "email")
    readonly_fields = [f.name for f in Agency._meta.fields]
    inlines = [ContractInline]
    actions = ["resync_with_balance"]

    @admin.action(description=_("Sync with Balance again (client, person, contracts)"), permissions=["view"])
    def resync_with_balance(self, request: HttpRequest, queryset: QuerySet[Agency]) -> None:
        for agency in queryset:
            enqueue_sync(agency, update=agency.balance_client_id is not None)
        self.message_user(request, _("Queued a Balance sync for %(count)s agency(ies).") % {"count": queryset.count()},
                          messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
