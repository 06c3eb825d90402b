"""The admin toolkit every app's support UI uses: read-only admins, the reason form of support actions, links,
CSV export of lists."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV


class ReadOnlyAdminMixin:
    """No add, change or delete for anyone (superusers included), so no `delete_selected` either. Rows that are
    facts (ledger, money, calls, notifications, outbox) change only through services."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)  # type: ignore[misc]
        actions.pop("delete_selected", None)
        return actions


class ReasonForm(forms.Form):
    """A support action's reason: required, kept with the change and in the admin log."""

    reason = forms.CharField(
        label=_("Reason"), max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text=_("Required. Kept with the change (and in the admin log) so the next person knows why."),
    )


def admin_link(obj: Any, text: object = None) -> str:
    """A link to the object's admin page (`-` for None), showing `text` or the object."""
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj if text is None else text)


class CsvExportMixin(ExportMixin):
    """An "Export" button on a changelist: one click downloads, as CSV, the rows the list shows under its current
    filters, search and date drill-down (django-import-export, export only; every model field as a column)."""

    export_formats = [CSV]
    skip_export_form = True

    def get_export_filename(self, request: HttpRequest, queryset: Any, file_format: Any) -> str:
        stamp = timezone.now().strftime("%Y-%m-%d-%H%M%S")
        return f"{self.opts.model_name}-{stamp}.{file_format.get_extension()}"  # type: ignore[attr-defined]
