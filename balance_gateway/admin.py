"""Support UI for the Balance link: outbox operations (with "retry now"), the call log and notifications."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from balance_gateway.models import BalanceCall, BalanceNotification
from disbalance.admin_kit import CsvExportMixin, ReadOnlyAdminMixin
from disbalance.models import OutboxOperation
from disbalance.outbox import outbox_retry


class ReadOnlyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


class BalanceCallInline(admin.TabularInline):
    model = BalanceCall
    fields = ("created_at", "method", "outcome", "error_code", "error_message", "duration_ms", "request_id")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(OutboxOperation)
class OutboxOperationAdmin(CsvExportMixin, ReadOnlyAdmin):
    list_display = ("id", "kind", "subject", "status", "attempts", "next_attempt_at", "failure_kind", "short_error",
                    "updated_at")
    list_filter = ("status", "failure_kind", "kind", "service")
    search_fields = ("subject", "kind", "dedup_key", "last_error", "=request_id")
    readonly_fields = ("kind", "subject", "service", "request_id", "status", "attempts", "max_attempts",
                       "next_attempt_at",
                       "leased_until", "failure_kind", "last_error", "payload", "result", "created_at", "updated_at",
                       "done_at")
    inlines = [BalanceCallInline]
    actions = ["retry_now"]
    date_hierarchy = "created_at"

    @admin.display(description=_("last error"))
    def short_error(self, obj: OutboxOperation) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error

    @admin.action(description=_("Retry now"), permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboxOperation]) -> None:
        retried = 0
        for operation in queryset.exclude(status__in=[OutboxOperation.Status.DONE]):
            outbox_retry(operation=operation)
            self.log_change(request, operation, f"Retried from the outbox list (was {operation.status}).")
            retried += 1
        self.message_user(request, _("%(count)s operation(s) queued again.") % {"count": retried}, messages.SUCCESS)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("customers.retry_operation")


@admin.register(BalanceCall)
class BalanceCallAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "method", "outcome", "error_code", "duration_ms", "operation")
    list_filter = ("outcome", "method")
    search_fields = ("method", "error_code", "error_message", "arguments", "=request_id")
    readonly_fields = [f.name for f in BalanceCall._meta.fields]
    date_hierarchy = "created_at"


@admin.register(BalanceNotification)
class BalanceNotificationAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "kind", "object_key", "tid", "outcome", "applied_at")
    list_filter = ("kind", "outcome")
    search_fields = ("object_key",)
    readonly_fields = [f.name for f in BalanceNotification._meta.fields]
