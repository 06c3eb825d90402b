"""Support UI for overdrafts: limits from Balance, overrides (who, when, why), debt and blocks, agency credit.

Nothing here writes a model itself: the add forms and actions call `overdrafts.services` with the staff user,
which checks the permissions again (`add_limitoverride`, `raise_limit` for a limit above the granted one,
`add_block` / `change_block` for blocks). Every action that changes something asks for a reason first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from balance_gateway.exceptions import BalanceError
from disbalance.admin_kit import ReasonForm, admin_link
from disbalance.exceptions import ApplicationError, ValidationFailed
from disbalance.money import format_amount
from overdrafts import selectors, services
from overdrafts.models import AgencyCredit, Block, LimitOverride, Overdraft

if TYPE_CHECKING:  # annotations only: other apps' models are reached through their selectors/services
    from customers.models import Customer


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationFailed):
        errors = exc.extra.get("errors") or {}
        details = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        return f"{exc.message} {details}".strip()
    if isinstance(exc, ApplicationError):
        return exc.message
    return str(exc)


# --- the reason form of actions -------------------------------------------------------------------------------

class UnblockForm(ReasonForm):
    new_due_at = forms.DateTimeField(
        required=False, label=_("New due date (UTC, optional)"),
        help_text=_("Grace for an overdue debt: moves its due date and lifts the overdue block. Format: "
                    "2025-01-31 18:00. Leave empty to lift only a manual block."),
    )


def reason_form(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, action: str,
                title: str, intro: str, form_class: type[ReasonForm] = ReasonForm) -> dict[str, Any] | TemplateResponse:
    """The intermediate page of an action: the selected rows and a form. Returns the cleaned data once posted."""
    if request.POST.get("post") == "yes":
        form = form_class(request.POST)
        if form.is_valid():
            return form.cleaned_data
    else:
        form = form_class()
    return TemplateResponse(request, "admin/overdrafts/action_form.html", {
        **model_admin.admin_site.each_context(request),
        "title": title, "intro": intro, "opts": model_admin.model._meta, "objects": list(queryset[:200]),
        "form": form, "action": action, "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    })


def block_customers(model_admin: admin.ModelAdmin, request: HttpRequest, customers: list[Customer],
                    reason: str) -> None:
    done = 0
    for customer in customers:
        try:
            services.customer_block(customer=customer, reason=reason, by=request.user)
            done += 1
        except (ApplicationError, PermissionDenied) as exc:
            model_admin.message_user(request, f"{customer.external_id}: {_error_text(exc)}", messages.ERROR)
    if done:
        model_admin.message_user(request, _("Blocked %(count)s customer(s) by hand.") % {"count": done},
                                 messages.SUCCESS)


def unblock_customers(model_admin: admin.ModelAdmin, request: HttpRequest, customers: list[Customer],
                      data: dict[str, Any]) -> None:
    done = 0
    for customer in customers:
        try:
            services.customer_unblock(customer=customer, reason=data["reason"], by=request.user,
                                      new_due_at=data.get("new_due_at"))
            done += 1
        except (ApplicationError, PermissionDenied) as exc:
            model_admin.message_user(request, f"{customer.external_id}: {_error_text(exc)}", messages.ERROR)
    if done:
        model_admin.message_user(request, _("Unblocked %(count)s customer(s) (what remains blocked is shown in the "
                                            "list).") % {"count": done}, messages.SUCCESS)


class ServiceModelForm(forms.ModelForm):
    """An add form whose model is written by a service: the model's own validation is the service's job."""

    def _post_clean(self) -> None:
        pass


class NoDeleteMixin:
    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)  # type: ignore[misc]
        actions.pop("delete_selected", None)
        return actions


# --- overdrafts -------------------------------------------------------------------------------------------------

@admin.register(Overdraft)
class OverdraftAdmin(NoDeleteMixin, SimpleHistoryAdmin):
    """A customer's overdraft: what Balance granted (history of every change), the effective limit, the debt
    from the ledger and its due date. Read-only; actions: refresh from Balance, block / unblock (reason)."""

    list_display = ("customer_link", "in_balance", "granted_limit", "banned", "effective_limit", "debt", "due_at",
                    "overdue", "blocked", "last_tid", "balance_refreshed_at")
    list_filter = ("in_balance", "banned", "customer__blocked", "customer__service")
    list_select_related = ("customer", "customer__service")
    search_fields = ("=customer__external_id", "=customer__balance_client_id")
    search_help_text = _("Customer id (e.g. dealer:20101) or Balance client id, exact")
    fields = ("customer_link", "in_balance", "granted_limit", "banned", "balance_spent", "balance_min_payment_term",
              "currency", "last_tid", "balance_refreshed_at", "auto_limit", "auto_set_at", "auto_error",
              "auto_refused_at", "effective_limit", "active_override", "debt",
              "debt_since", "due_at", "overdue", "blocked", "open_blocks", "created_at", "updated_at")
    readonly_fields = fields
    actions = ["refresh_from_balance", "block", "unblock"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description=_("customer"), ordering="customer__external_id")
    def customer_link(self, obj: Overdraft) -> str:
        return admin_link(obj.customer, obj.customer.external_id)

    @admin.display(description=_("effective limit"))
    def effective_limit(self, obj: Overdraft) -> str:
        return format_amount(selectors.overdraft_limit(customer=obj.customer))

    @admin.display(description=_("override"))
    def active_override(self, obj: Overdraft) -> str:
        override = selectors.active_override(customer=obj.customer)
        if override is None:
            return "-"
        if override.expires_at:
            return _("%(limit)s until %(until)s by %(user)s: %(reason)s") % {
                "limit": format_amount(override.limit), "until": f"{override.expires_at:%Y-%m-%d %H:%M}",
                "user": override.created_by, "reason": override.reason}
        return _("%(limit)s by %(user)s: %(reason)s") % {
            "limit": format_amount(override.limit), "user": override.created_by, "reason": override.reason}

    @admin.display(description=_("debt (ledger)"))
    def debt(self, obj: Overdraft) -> str:
        return format_amount(selectors.own_debt(customer_id=obj.customer_id))

    @admin.display(description=_("overdue"), boolean=True)
    def overdue(self, obj: Overdraft) -> bool:
        return selectors.debt_status(customer=obj.customer).overdue

    @admin.display(description=_("blocked"), boolean=True, ordering="customer__blocked")
    def blocked(self, obj: Overdraft) -> bool:
        return obj.customer.blocked

    @admin.display(description=_("open blocks"))
    def open_blocks(self, obj: Overdraft) -> str:
        blocks = selectors.open_blocks(customer=obj.customer)
        return "; ".join(
            _("%(kind)s: %(reason)s (by %(user)s)")
            % {"kind": b.get_kind_display(), "reason": b.reason, "user": b.created_by or _("system")}
            for b in blocks
        ) or "-"

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("overdrafts.view_overdraft")

    def has_block_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("overdrafts.add_block")

    def has_unblock_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("overdrafts.change_block")

    @admin.action(description=_("Refresh from Balance (GetOverdraftParams)"), permissions=["refresh"])
    def refresh_from_balance(self, request: HttpRequest, queryset: QuerySet[Overdraft]) -> None:
        customers = [o.customer for o in queryset.select_related("customer__service")]
        try:
            outcome = services.overdrafts_pull(customers=customers)
        except BalanceError as exc:
            self.message_user(request, _("Could not read from Balance (%(error)s); try again later.") % {"error": exc},
                              messages.ERROR)
            return
        level = messages.WARNING if outcome["failed"] or outcome["skipped"] else messages.SUCCESS
        self.message_user(request, _("Read %(customers)s customer(s) from Balance: %(auto_overdraft)s with "
                                     "auto-overdraft on, %(none)s without, %(failed)s failed, %(skipped)s skipped "
                                     "(served by an agency). Limits come from Balance's NotifyClient2.") % outcome,
                          level)

    @admin.action(description=_("Block by hand…"), permissions=["block"])
    def block(self, request: HttpRequest, queryset: QuerySet[Overdraft]) -> HttpResponse | None:
        result = reason_form(self, request, queryset, action="block", title=_("Block customers by hand"),
                             intro=_("Charges and holds of these customers will be refused (409 customer_blocked) "
                                     "until support unblocks them; a repayment does not unblock."))
        if isinstance(result, TemplateResponse):
            return result
        block_customers(self, request, [o.customer for o in queryset.select_related("customer")], result["reason"])
        return None

    @admin.action(description=_("Unblock…"), permissions=["unblock"])
    def unblock(self, request: HttpRequest, queryset: QuerySet[Overdraft]) -> HttpResponse | None:
        result = reason_form(self, request, queryset, action="unblock", title=_("Unblock customers"),
                             intro=_("Lifts manual blocks. An overdue block lifts itself when the debt is repaid; "
                                     "give a new due date to lift it now."), form_class=UnblockForm)
        if isinstance(result, TemplateResponse):
            return result
        unblock_customers(self, request, [o.customer for o in queryset.select_related("customer")], result)
        return None


# --- overrides --------------------------------------------------------------------------------------------------

UNCOVERED_WARNING = _(
    "The limit %(limit)s is above the %(granted)s Balance granted. Balance's auto-overdraft covers at most "
    "%(granted)s: spend beyond it is unpaid completion in Balance (reconciliation shows it as unpaid_completion) "
    "until the customer pays it."
)


class OverrideForm(ServiceModelForm):
    class Meta:
        model = LimitOverride
        fields = ("customer", "limit", "reason", "expires_at")
        help_texts = {
            "limit": _("At most the limit Balance granted; above it needs the 'raise limit' permission and an "
                       "expiry."),
            "expires_at": _("Optional when lowering; required when raising (UTC)."),
        }

    request: HttpRequest

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            services.overdraft_override_validate(
                customer=data["customer"], limit=data["limit"], reason=data.get("reason", ""),
                by=self.request.user, expires_at=data.get("expires_at"),
            )
        except (ApplicationError, PermissionDenied) as exc:
            raise forms.ValidationError(_error_text(exc)) from exc
        return data


@admin.register(LimitOverride)
class LimitOverrideAdmin(NoDeleteMixin, admin.ModelAdmin):
    """Support's overrides of overdraft limits: the audit trail (who, when, why, until when, who ended it).
    "Add" sets a new one through `overdraft_override_set`; rows are never edited; "End…" asks for a reason."""

    form = OverrideForm
    list_display = ("customer_link", "limit", "raises", "granted_when_set", "reason", "expires_at", "created_by",
                    "created_at", "active", "ended_at", "ended_by", "end_reason")
    list_filter = ("raises", ("ended_at", admin.EmptyFieldListFilter))
    list_select_related = ("customer", "created_by", "ended_by")
    search_fields = ("=customer__external_id",)
    raw_id_fields = ("customer",)
    actions = ["end"]

    def get_readonly_fields(self, request: HttpRequest, obj: LimitOverride | None = None) -> tuple:
        if obj is None:
            return ()
        return ("customer", "limit", "raises", "granted_when_set", "reason", "expires_at", "created_by",
                "created_at", "ended_at", "ended_by", "end_reason")

    def get_fields(self, request: HttpRequest, obj: LimitOverride | None = None) -> tuple:
        if obj is None:
            return ("customer", "limit", "reason", "expires_at")
        return self.get_readonly_fields(request, obj)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request = request  # type: ignore[attr-defined]
        return form

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description=_("customer"), ordering="customer__external_id")
    def customer_link(self, obj: LimitOverride) -> str:
        return admin_link(obj.customer, obj.customer.external_id)

    @admin.display(description=_("active"), boolean=True)
    def active(self, obj: LimitOverride) -> bool:
        return obj.active_at(timezone.now())

    def save_model(self, request: HttpRequest, obj: LimitOverride, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        created = services.overdraft_override_set(customer=data["customer"], limit=data["limit"],
                                                  reason=data["reason"], by=request.user,
                                                  expires_at=data.get("expires_at"))
        if created.raises:
            self.message_user(request, UNCOVERED_WARNING % {"granted": format_amount(created.granted_when_set),
                                                            "limit": format_amount(created.limit)},
                              messages.WARNING)
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if k != "_state"})
        obj._state.adding, obj._state.db = False, created._state.db

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        pass

    def has_end_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("overdrafts.change_limitoverride")

    @admin.action(description=_("End…"), permissions=["end"])
    def end(self, request: HttpRequest, queryset: QuerySet[LimitOverride]) -> HttpResponse | None:
        open_ones = queryset.filter(ended_at__isnull=True).select_related("customer")
        result = reason_form(self, request, open_ones, action="end", title=_("End overdraft overrides"),
                             intro=_("The limit Balance granted applies again to these customers."))
        if isinstance(result, TemplateResponse):
            return result
        for override in open_ones:
            services.overdraft_override_end(override=override, reason=result["reason"], by=request.user)
        self.message_user(request, _("Ended %(count)s override(s).") % {"count": len(open_ones)}, messages.SUCCESS)
        return None


# --- blocks -----------------------------------------------------------------------------------------------------

class BlockForm(ServiceModelForm):
    class Meta:
        model = Block
        fields = ("customer", "reason")


@admin.register(Block)
class BlockAdmin(NoDeleteMixin, admin.ModelAdmin):
    """Blocks, kept apart by kind: `overdue` (the system; lifted by repayment) and `manual` (support).
    "Add" blocks a customer by hand (`customer_block`); "Unblock…" asks for a reason (and optionally a new due
    date for an overdue debt)."""

    form = BlockForm
    list_display = ("customer_link", "kind", "reason", "created_by", "created_at", "open", "lifted_at", "lifted_by",
                    "lift_reason")
    list_filter = ("kind", ("lifted_at", admin.EmptyFieldListFilter))
    list_select_related = ("customer", "created_by", "lifted_by")
    search_fields = ("=customer__external_id",)
    raw_id_fields = ("customer",)
    actions = ["unblock"]

    def get_fields(self, request: HttpRequest, obj: Block | None = None) -> tuple:
        if obj is None:
            return ("customer", "reason")
        return self.get_readonly_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Block | None = None) -> tuple:
        if obj is None:
            return ()
        return ("customer", "kind", "reason", "created_by", "created_at", "lifted_at", "lifted_by", "lift_reason")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description=_("customer"), ordering="customer__external_id")
    def customer_link(self, obj: Block) -> str:
        return admin_link(obj.customer, obj.customer.external_id)

    @admin.display(description=_("open"), boolean=True)
    def open(self, obj: Block) -> bool:
        return obj.lifted_at is None

    def save_model(self, request: HttpRequest, obj: Block, form: forms.ModelForm, change: bool) -> None:
        created = services.customer_block(customer=form.cleaned_data["customer"], reason=form.cleaned_data["reason"],
                                          by=request.user)
        obj.__dict__.update({k: v for k, v in created.__dict__.items() if k != "_state"})
        obj._state.adding, obj._state.db = False, created._state.db

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        pass

    def has_unblock_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("overdrafts.change_block")

    @admin.action(description=_("Unblock…"), permissions=["unblock"])
    def unblock(self, request: HttpRequest, queryset: QuerySet[Block]) -> HttpResponse | None:
        open_ones = queryset.filter(lifted_at__isnull=True).select_related("customer")
        result = reason_form(self, request, open_ones, action="unblock", title=_("Unblock customers"),
                             intro=_("Lifts the manual blocks of these customers. An overdue block lifts itself "
                                     "when the debt is repaid; give a new due date to lift it now."),
                             form_class=UnblockForm)
        if isinstance(result, TemplateResponse):
            return result
        customers = list({b.customer_id: b.customer for b in open_ones}.values())
        unblock_customers(self, request, customers, result)
        return None


# --- agency credit ----------------------------------------------------------------------------------------------

@admin.register(AgencyCredit)
class AgencyCreditAdmin(NoDeleteMixin, admin.ModelAdmin):
    """The shared credit of agencies with postpaid contracts: limit, use (from the ledger), and what
    GetClientCreditLimits said. Read-only; "Refresh from Balance" reads the limits now."""

    list_display = ("agency", "contract_id", "credit_limit", "used", "balance_limit_total", "balance_limit_spent",
                    "balance_refreshed_at", "updated_at")
    list_select_related = ("agency",)
    search_fields = ("=agency__external_id", "=agency__balance_client_id")
    readonly_fields = ("agency", "contract_id", "credit_limit", "used", "balance_limit_total", "balance_limit_spent",
                       "balance_contract_id", "balance_refreshed_at", "updated_at")
    fields = readonly_fields
    actions = ["refresh_from_balance"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("overdrafts.view_agencycredit")

    @admin.action(description=_("Refresh from Balance (GetClientCreditLimits)"), permissions=["refresh"])
    def refresh_from_balance(self, request: HttpRequest, queryset: QuerySet[AgencyCredit]) -> None:
        agencies = [c.agency for c in queryset.select_related("agency__service")]
        outcome = services.agency_credits_pull(agencies=agencies)
        level = messages.WARNING if outcome["failed"] or outcome["skipped"] else messages.SUCCESS
        self.message_user(request, _("Read %(agencies)s agency credit(s): %(refreshed)s refreshed, %(failed)s failed, "
                                     "%(skipped)s skipped.") % outcome, level)
