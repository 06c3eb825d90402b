"""Support UI for consumer services and their tokens (tokens show only their prefix; the hash never leaves)."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from disbalance.admin_kit import CsvExportMixin
from disbalance.models import ConsumerService, IdempotencyRecord, ServiceToken, WebhookAttempt, WebhookEvent
from disbalance.services import service_token_issue, service_token_revoke
from disbalance.webhooks import (
    WebhookNotConfigured,
    standard_secret,
    webhook_endpoint_enable,
    webhook_resend,
    webhook_secret_rotate,
)

admin.site.site_header = _("Disbalance support")
admin.site.site_title = "Disbalance"
admin.site.index_title = _("Billing support console")


class ServiceTokenInline(admin.TabularInline):
    model = ServiceToken
    fields = ("prefix", "label", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ConsumerService)
class ConsumerServiceAdmin(SimpleHistoryAdmin):
    list_display = ("slug", "name", "balance_service_id", "currency", "webhook_url", "is_active", "created_at")
    search_fields = ("slug", "name", "balance_service_id")
    list_filter = ("is_active", "currency")
    inlines = [ServiceTokenInline]
    actions = ["issue_token", "webhooks_enable", "webhook_secret_rotate"]
    exclude = ("webhook_secret", "webhook_secret_previous", "webhook_lease_until")
    readonly_fields = ("webhook_failing_since", "webhook_disabled_at", "webhook_secret_previous_until")

    @admin.action(description=_("Re-enable webhooks (deliver what is waiting, in order)"), permissions=["change"])
    def webhooks_enable(self, request: HttpRequest, queryset: QuerySet[ConsumerService]) -> None:
        for service in queryset:
            webhook_endpoint_enable(service=service, user=request.user)
            self.log_change(request, service, "Webhooks re-enabled.")
        self.message_user(request, _("Webhooks re-enabled for %(count)s service(s).") % {"count": queryset.count()},
                          messages.SUCCESS)

    @admin.action(description=_("Rotate the webhook secret (the old one keeps signing for the overlap period)"),
                  permissions=["change"])
    def webhook_secret_rotate(self, request: HttpRequest, queryset: QuerySet[ConsumerService]) -> None:
        for service in queryset:
            service = webhook_secret_rotate(service=service)
            self.log_change(request, service, "Webhook secret rotated.")
            secret = service.webhook_secret
            self.message_user(
                request, _("New webhook secret for %(service)s (copy it now, it is not shown again): %(secret)s"
                           " (Standard Webhooks form: %(standard)s); the previous one signs too until %(until)s.")
                % {"service": service.slug, "secret": secret, "standard": standard_secret(secret),
                   "until": service.webhook_secret_previous_until},
                messages.WARNING,
            )

    @admin.action(description=_("Issue a new API token (shown once)"), permissions=["change"])
    def issue_token(self, request: HttpRequest, queryset: QuerySet[ConsumerService]) -> None:
        for service in queryset:
            result = service_token_issue(service=service, label=f"admin:{request.user}")
            self.message_user(
                request, _("New token for %(service)s (copy it now, it is not shown again): %(token)s")
                % {"service": service.slug, "token": result.raw_token},
                messages.WARNING,
            )

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    list_display = ("prefix", "service", "label", "created_at", "last_used_at", "revoked_at")
    list_filter = ("service", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("prefix", "service__slug", "label")
    fields = ("service", "prefix", "label", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    @admin.action(description=_("Revoke the selected tokens now"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ServiceToken]) -> None:
        for token in queryset:
            service_token_revoke(token=token)
        self.message_user(request, _("Revoked %(count)s token(s).") % {"count": queryset.count()}, messages.SUCCESS)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued with the service's "issue token" action or the command

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "service", "method", "path", "status", "response_status", "created_at")
    list_filter = ("status", "service")
    search_fields = ("key", "path")
    readonly_fields = [f.name for f in IdempotencyRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # A deleted record lets a retried POST move the money a second time; expired ones are purged by the job.
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


class WebhookAttemptInline(admin.TabularInline):
    """Every HTTP attempt of the event: when, the answer, how long it took, what the consumer said."""

    model = WebhookAttempt
    fields = ("attempted_at", "outcome", "status_code", "latency_ms", "response_excerpt", "error", "url",
              "request_id")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-attempted_at", "-id")

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(CsvExportMixin, admin.ModelAdmin):
    """Events and their webhook delivery; read-only except for the "Re-send" action (needs `change`)."""

    list_display = ("created_at", "service", "type", "customer_external_id", "sequence", "status", "attempts",
                    "last_status_code", "next_attempt_at")
    list_filter = ("service", "type", "status")
    list_select_related = ("service",)
    search_fields = ("=id", "=dedup_key", "=customer_external_id", "=request_id")
    search_help_text = _("Event id, dedup key, customer external id or request id (exact)")
    date_hierarchy = "created_at"
    fields = ("id", "service", "type", "customer_external_id", "sequence", "status", "created_at", "request_id",
              "dedup_key", "data_pretty", "attempts", "next_attempt_at", "last_status_code", "last_error",
              "delivered_at", "operation_link", "note")
    readonly_fields = fields
    inlines = [WebhookAttemptInline]
    actions = ["resend"]

    @admin.display(description=_("data"))
    def data_pretty(self, obj: WebhookEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, ensure_ascii=False, sort_keys=True))

    @admin.display(description=_("outbox operation"))
    def operation_link(self, obj: WebhookEvent) -> str:
        if obj.operation_id is None:
            return "-"
        url = reverse("admin:disbalance_outboxoperation_change", args=[obj.operation_id])
        return format_html('<a href="{}">#{} ({})</a>', url, obj.operation_id, obj.operation.get_status_display())

    @admin.action(description=_("Re-send the selected events"), permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        sent = 0
        for event in queryset.select_related("service"):
            try:
                webhook_resend(event=event, user=request.user)
            except WebhookNotConfigured as exc:
                self.message_user(request, f"{event.id}: {exc.message}", messages.ERROR)
                continue
            sent += 1
        if sent:
            self.message_user(request, _("%(count)s event(s) queued for delivery again.") % {"count": sent},
                              messages.SUCCESS)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # `change` on the list enables "Re-send"; an event itself is never edited (the form is view-only).
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class StaffUserAdmin(DjangoUserAdmin):
    """Staff users are deactivated, never deleted: deleting one would delete their admin log entries (the audit of
    what they did, e.g. the reasons of holds released from the admin) with them."""

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


if admin.site.is_registered(get_user_model()):
    admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), StaffUserAdmin)
