"""Support UI for reconciliation: the mismatch queue, with "Fix" and "Resolve with comment"."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from balance_gateway.exceptions import BalanceError
from disbalance.admin_kit import CsvExportMixin, admin_link
from disbalance.exceptions import ApplicationError
from reconciliation.actions import mismatch_fix, mismatch_resolve
from reconciliation.models import Mismatch

# --- the mismatch queue -------------------------------------------------------------------------------------------

MISMATCH_ACTION_MAX = 100
_SEVERITY_COLORS = {"critical": "#ba2121", "warning": "#b36b00", "info": "#417690"}


@admin.register(Mismatch)
class MismatchAdmin(CsvExportMixin, SimpleHistoryAdmin):
    """The queue of differences between billing and Balance found by reconciliation.

    Read-only; two actions (also buttons on a mismatch's page), each recorded with the user in the history and the
    admin log: "Fix" (the right re-sync for the kind, `mismatch_fix`) and "Resolve with comment"
    (`mismatch_resolve`, through a page that asks for the comment). Permissions: view, plus
    `reconciliation.fix_mismatch` / `reconciliation.resolve_mismatch` (superusers have both).
    """

    list_display = ("id", "severity_badge", "kind", "status", "customer_link", "summary", "times_seen",
                    "detected_at", "last_seen_at", "fix_state")
    list_display_links = ("id", "summary")
    list_filter = ("status", "kind", "severity", "service")
    list_select_related = ("customer", "agency", "order", "service", "last_fix_by", "resolved_by")
    search_help_text = _("Exact customer external id, Balance client id, order or operation id, or mismatch key.")
    search_fields = ("key",)
    show_full_result_count = False
    date_hierarchy = "detected_at"
    actions = ["fix_selected", "resolve_selected"]
    history_list_display = ["status", "fix_attempts", "last_fix_note", "resolution"]
    change_form_template = "admin/reconciliation/mismatch/change_form.html"
    fieldsets = [
        (None, {"fields": ("summary", "kind", "severity", "status", "links")}),
        (_("Billing vs Balance"), {"fields": ("details_table", "note")}),
        (_("Seen"), {"fields": ("detected_at", "last_seen_at", "times_seen", "key")}),
        (_("Fix and resolution"), {"fields": ("fix_attempts", "last_fix_at", "last_fix_by", "last_fix_note",
                                           "resolved_at", "resolved_by", "resolution")}),
    ]
    readonly_fields = ("summary", "kind", "severity", "status", "links", "details_table", "note", "detected_at",
                       "last_seen_at", "times_seen", "key", "fix_attempts", "last_fix_at", "last_fix_by",
                       "last_fix_note", "resolved_at", "resolved_by", "resolution")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Mismatch]:
        return super().get_queryset(request).select_related(*self.list_select_related, "operation")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        query = Q(key=term) | Q(customer__external_id=term) | Q(agency__external_id=term)
        if term.isdigit() and len(term) < 19:
            number = int(term)
            query |= (Q(customer__balance_client_id=number) | Q(agency__balance_client_id=number)
                      | Q(order_id=number) | Q(operation_id=number))
        return queryset.filter(query), False

    # --- permissions: read-only rows, actions by permission ---

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_fix_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm("reconciliation.fix_mismatch")

    def has_resolve_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm("reconciliation.resolve_mismatch")

    # --- columns and fields ---

    @admin.display(description=_("severity"), ordering="severity")
    def severity_badge(self, obj: Mismatch) -> str:
        return format_html('<strong style="color:{}">{}</strong>', _SEVERITY_COLORS.get(obj.severity, "inherit"),
                           obj.get_severity_display())

    @admin.display(description=_("customer"), ordering="customer__external_id")
    def customer_link(self, obj: Mismatch) -> str:
        if obj.customer is not None:
            return admin_link(obj.customer, obj.customer.external_id)
        if obj.agency is not None:
            return admin_link(obj.agency, _("agency %(id)s") % {"id": obj.agency.external_id})
        return "-"

    @admin.display(description=_("fix"))
    def fix_state(self, obj: Mismatch) -> str:
        if obj.status == Mismatch.Status.RESOLVED:
            by = obj.resolved_by.get_username() if obj.resolved_by else _("system")
            return format_html(_("resolved by {}"), by)
        if not obj.fix_attempts:
            return "-"
        by = obj.last_fix_by.get_username() if obj.last_fix_by else _("autofix")
        return format_html(_("{} fix(es), last by {}: {}"), obj.fix_attempts, by, obj.last_fix_note[:60])

    @admin.display(description=_("links"))
    def links(self, obj: Mismatch) -> str:
        items = []
        if obj.customer is not None:
            items.append((_("customer"), admin_link(obj.customer, _("%(id)s (Balance client %(client)s)") % {
                "id": obj.customer.external_id, "client": obj.customer.balance_client_id})))
        if obj.agency is not None:
            items.append((_("agency"), admin_link(obj.agency, _("%(id)s (Balance client %(client)s)") % {
                "id": obj.agency.external_id, "client": obj.agency.balance_client_id})))
        if obj.order is not None:
            items.append((_("Balance order"), admin_link(obj.order, f"{obj.order.pk} ({obj.order.key})")))
        if obj.operation is not None:
            items.append((_("outbox operation"), admin_link(obj.operation, obj.operation)))
        if obj.service is not None:
            items.append((_("service"), obj.service.slug))
        if not items:
            return "-"
        rows = format_html_join("", "<tr><th scope='row'>{}</th><td>{}</td></tr>", items)
        return format_html("<table><tbody>{}</tbody></table>", rows)

    @admin.display(description=_("what differs"))
    def details_table(self, obj: Mismatch) -> str:
        rows = obj.details.get("rows") or []
        if not rows:
            return "-"
        body = format_html_join("", "<tr><th scope='row'>{}</th><td>{}</td><td>{}</td></tr>",
                                ((gettext(r[0]), r[1] if r[1] != "" else "—", r[2] if r[2] != "" else "—")
                                 for r in rows if len(r) == 3))
        return format_html("<table><thead><tr><th></th><th>{}</th><th>{}</th></tr></thead>"
                           "<tbody>{}</tbody></table>", _("billing"), _("Balance"), body)

    @admin.display(description=_("note for support"))
    def note(self, obj: Mismatch) -> str:
        note = obj.details.get("note")
        return gettext(note) if note else "-"

    # --- actions (list) and buttons (page) ---

    @admin.action(description=_("Fix (re-sync with Balance)"), permissions=["fix"])
    def fix_selected(self, request: HttpRequest, queryset: QuerySet[Mismatch]) -> None:
        selected = list(queryset.filter(status=Mismatch.Status.OPEN)[:MISMATCH_ACTION_MAX + 1])
        if len(selected) > MISMATCH_ACTION_MAX:
            self.message_user(request, _("Fix at most %(max)s mismatches at a time.") % {"max": MISMATCH_ACTION_MAX},
                              messages.ERROR)
            return
        for mismatch in selected:
            self._fix(request, mismatch)
        if not selected:
            self.message_user(request, _("None of the selected mismatches is open: nothing to fix."),
                              messages.WARNING)

    def _fix(self, request: HttpRequest, mismatch: Mismatch) -> None:
        try:
            result = mismatch_fix(mismatch=mismatch, user=request.user)
        except (ApplicationError, BalanceError) as exc:
            self.message_user(request, _("Mismatch %(id)s: %(error)s") % {"id": mismatch.pk, "error": exc},
                              messages.ERROR)
            return
        self.log_change(request, mismatch, f"Fix: {result.note}")
        state = (_("resolved") if result.mismatch.status == Mismatch.Status.RESOLVED
                 else _("still open until re-checked"))
        level = messages.SUCCESS if result.ok else messages.WARNING
        self.message_user(request, _("Mismatch %(id)s: %(note)s (%(state)s).") % {
            "id": mismatch.pk, "note": gettext(result.note) if result.note else "", "state": state}, level)

    @admin.action(description=_("Resolve with comment…"), permissions=["resolve"])
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet[Mismatch]) -> HttpResponse | None:
        selected = list(queryset.filter(status=Mismatch.Status.OPEN).select_related("customer")
                        [:MISMATCH_ACTION_MAX + 1])
        if not selected:
            self.message_user(request, _("None of the selected mismatches is open: nothing to resolve."),
                              messages.WARNING)
            return None
        if len(selected) > MISMATCH_ACTION_MAX:
            self.message_user(request, _("Resolve at most %(max)s mismatches at a time.")
                              % {"max": MISMATCH_ACTION_MAX},
                              messages.ERROR)
            return None
        comment = request.POST.get("comment", "").strip()
        if request.POST.get("post") == "yes" and comment:
            self._resolve(request, selected, comment)
            return None
        return self._resolve_page(request, selected, error=request.POST.get("post") == "yes",
                                  action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME)

    def _resolve(self, request: HttpRequest, mismatches: list[Mismatch], comment: str) -> None:
        resolved = 0
        for mismatch in mismatches:
            try:
                mismatch_resolve(mismatch=mismatch, user=request.user, comment=comment)
            except ApplicationError as exc:
                self.message_user(request, _("Mismatch %(id)s: %(error)s") % {"id": mismatch.pk, "error": exc},
                                  messages.ERROR)
                continue
            self.log_change(request, mismatch, f"Resolved: {comment}")
            resolved += 1
        if resolved:
            self.message_user(request, _("Resolved %(count)s mismatch(es).") % {"count": resolved}, messages.SUCCESS)

    def _resolve_page(self, request: HttpRequest, mismatches: list[Mismatch], *, error: bool,
                      action_checkbox_name: str = "", form_action: str = "") -> TemplateResponse:
        return TemplateResponse(request, "admin/reconciliation/mismatch/resolve.html", {
            **self.admin_site.each_context(request),
            "title": _("Resolve mismatches with a comment"),
            "opts": self.model._meta,
            "mismatches": mismatches,
            "error": _("A comment is required: say what was done or why the difference is accepted.") if error else "",
            "comment": request.POST.get("comment", ""),
            "action_checkbox_name": action_checkbox_name,
            "form_action": form_action,
        })

    def get_urls(self) -> list[URLPattern]:
        return [
            path("<path:object_id>/fix/", self.admin_site.admin_view(self.fix_view),
                 name="reconciliation_mismatch_fix"),
            path("<path:object_id>/resolve/", self.admin_site.admin_view(self.resolve_view),
                 name="reconciliation_mismatch_resolve"),
            *super().get_urls(),
        ]

    def _object_or_404(self, request: HttpRequest, object_id: str) -> Mismatch:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such mismatch.")
        return obj

    def _page_url(self, obj: Mismatch) -> str:
        return reverse("admin:reconciliation_mismatch_change", args=[obj.pk])

    def fix_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:reconciliation_mismatch_change", args=[object_id]))
        if not self.has_fix_permission(request):
            raise PermissionDenied
        obj = self._object_or_404(request, object_id)
        self._fix(request, obj)
        return HttpResponseRedirect(self._page_url(obj))

    def resolve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_resolve_permission(request):
            raise PermissionDenied
        obj = self._object_or_404(request, object_id)
        if obj.status != Mismatch.Status.OPEN:
            self.message_user(request, _("Mismatch %(id)s is already resolved.") % {"id": obj.pk}, messages.WARNING)
            return HttpResponseRedirect(self._page_url(obj))
        comment = request.POST.get("comment", "").strip()
        if request.method == "POST" and comment:
            self._resolve(request, [obj], comment)
            return HttpResponseRedirect(self._page_url(obj))
        return self._resolve_page(request, [obj], error=request.method == "POST",
                                  form_action=reverse("admin:reconciliation_mismatch_resolve", args=[obj.pk]))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = dict(extra_context or {})
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and obj.status == Mismatch.Status.OPEN:
            extra_context["can_fix"] = self.has_fix_permission(request)
            extra_context["can_resolve"] = self.has_resolve_permission(request)
        return super().change_view(request, object_id, form_url, extra_context=extra_context)
