"""Support UI for the money core.

- Products: the catalog, kept by billing admins (editable through `product_create`, never deleted).
- Balance orders, top-ups, charges, holds and refunds: read-only for everyone, superusers included. Money moves only
  through services, from buttons: "Refresh from Balance" / "Sync to Balance" on orders, "Release now" on holds.

Searches take exact ids only (a charge id, `dealer:20101`, a Balance client id), compared typed so the database
uses its indexes: a term that is not a valid value for a field simply does not search that field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.utils import get_fields_from_path
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from balance_gateway.exceptions import BalanceError
from disbalance.admin_kit import ReadOnlyAdminMixin
from disbalance.exceptions import InvalidState
from disbalance.money import format_amount
from payments.models import BalanceOrder, Charge, CreditDraw, Hold, OrderAdoption, PayerTransfer, Product, Refund, TopUp
from payments.services import enqueue_orders_sync, hold_release, orders_pull, product_create

if TYPE_CHECKING:  # annotations only: other apps' models are reached through their selectors/services
    from customers.models import Customer

RELEASE_AT_ONCE_MAX = 100


# --- small display helpers (also used by the customer page) -------------------------------------------------

def payer_label(agency: Any) -> str:
    """Who pays: the agency's external id, or "self" when the customer pays itself."""
    return agency.external_id if agency is not None else str(_("self"))


def admin_change_url(obj: models.Model) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def admin_link(obj: models.Model | None, text: object = None) -> str:
    if obj is None:
        return "-"
    return format_html('<a href="{}">{}</a>', admin_change_url(obj), obj if text is None else text)


def metadata_table(data: object) -> str:
    """A consumer's metadata as a small key/value table (values that are not plain text as compact JSON)."""
    if not data:
        return "-"
    if not isinstance(data, dict):
        return format_html("<code>{}</code>", json.dumps(data, ensure_ascii=False, sort_keys=True))

    def text(value: object) -> str:
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    rows = format_html_join(
        "", "<tr><th scope='row'>{}</th><td>{}</td></tr>", ((key, text(data[key])) for key in sorted(data))
    )
    return format_html("<table class='metadata'><tbody>{}</tbody></table>", rows)


# --- actions shared with the customer page ----------------------------------------------------------------

def orders_refresh(model_admin: admin.ModelAdmin, request: HttpRequest, orders: Iterable[BalanceOrder],
                   skipped: int = 0) -> None:
    """Read the orders from Balance now and apply what changed (`orders_pull`); report the outcome."""
    orders = list(orders)
    not_synced = (" " + _("%(count)s order(s) not in Balance yet were skipped (sync them first).") % {"count": skipped}
                  if skipped else "")
    if not orders:
        model_admin.message_user(request, str(_("No order in Balance to refresh.")) + not_synced, messages.WARNING)
        return
    try:
        outcome = orders_pull(orders=orders)
    except BalanceError as exc:
        model_admin.message_user(
            request, _("Could not refresh from Balance (%(error)s). Try again later; nothing was lost.")
            % {"error": exc}, messages.ERROR
        )
        return
    level = messages.WARNING if outcome["missing"] or skipped else messages.SUCCESS
    missing = (_(", %(count)s not found in Balance") % {"count": outcome["missing"]}
               if outcome["missing"] else "")
    model_admin.message_user(
        request,
        _("Read %(orders)s order(s) from Balance: %(applied)s updated, %(stale)s already up to date")
        % {"orders": outcome["orders"], "applied": outcome["applied"], "stale": outcome["stale"]}
        + missing + "." + not_synced,
        level,
    )


def orders_sync(model_admin: admin.ModelAdmin, request: HttpRequest, customers: Iterable[Customer]) -> None:
    """Queue the Balance sync of the customers' orders that are not in Balance yet (`enqueue_orders_sync`)."""
    queued, nothing_waiting = 0, 0
    for customer in customers:
        waiting = BalanceOrder.objects.filter(customer=customer).exclude(sync_status=BalanceOrder.SyncStatus.SYNCED)
        if not waiting.exists():
            nothing_waiting += 1
            continue
        with transaction.atomic():
            enqueue_orders_sync(customer)
        queued += 1
    if queued:
        model_admin.message_user(request, _("Queued the Balance order sync for %(count)s customer(s).")
                                 % {"count": queued}, messages.SUCCESS)
    if nothing_waiting:
        model_admin.message_user(
            request, _("%(count)s customer(s) have no order waiting for Balance: nothing to sync.")
            % {"count": nothing_waiting}, messages.INFO
        )


# --- base classes -------------------------------------------------------------------------------------------

class ExactSearchMixin:
    """`search_fields` entries are exact lookups ("=field"), compared with a value of the field's own type.

    Django would compare `UPPER(field::text)` for each (no index, every row); here a term that fits a field's type
    filters on it exactly, and one that does not (a customer id typed into a UUID field) skips that field.
    """

    model: type[models.Model]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        query = Q()
        for spec in self.get_search_fields(request):  # type: ignore[attr-defined]
            lookup = spec.removeprefix("=")
            field = get_fields_from_path(self.model, lookup)[-1]
            try:
                value = field.to_python(term)
                field.run_validators(value)
            except (ValidationError, ValueError, TypeError):
                continue
            query |= Q(**{lookup: value})
        if not query:
            return queryset.none(), False
        return queryset.filter(query), False


class ReadOnlyMoneyAdmin(ReadOnlyAdminMixin, ExactSearchMixin, admin.ModelAdmin):
    """Money rows: no add, change or delete for anyone (superusers included), no `delete_selected`."""

    show_full_result_count = False
    date_hierarchy = "created_at"

    @admin.display(description=_("customer"), ordering="customer__external_id")
    def customer_link(self, obj: Any) -> str:
        return admin_link(obj.customer, obj.customer.external_id)

    @admin.display(description=_("payer"), ordering="payer_agency__external_id")
    def payer(self, obj: Any) -> str:
        return payer_label(obj.payer_agency)

    @admin.display(description=_("metadata"))
    def metadata_table(self, obj: Any) -> str:
        return metadata_table(obj.metadata)


# --- the catalog --------------------------------------------------------------------------------------------

def _product_set_active(product: Product, is_active: bool) -> None:
    """Admin-only stand-in for a missing `product_update` service: turn a product on or off for new spending.

    Existing holds and orders of the product are unaffected; the change is recorded in the product's history.
    """
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=product.pk)
        if product.is_active != is_active:
            product.is_active = is_active
            product.save(update_fields=["is_active"])


@admin.register(Product)
class ProductAdmin(SimpleHistoryAdmin):
    """The catalog: editable by billing admins, never deleted (charges and orders point at products).

    A product's service and code are its identity (ledger spend accounts and Balance child orders are keyed by the
    code), so they are fixed once created; turn a product off with `is_active` instead.
    """

    list_display = ("service", "code", "name", "kind", "balance_product_id", "balance_unit", "balance_price",
                    "is_active")
    list_filter = ("service", "kind", "is_active")
    search_fields = ("code", "name", "=balance_product_id")
    search_help_text = _("Code or name (contains), or Balance ProductID (exact)")
    list_select_related = ("service",)
    fields = ("service", "code", "name", "kind", "balance_product_id", "balance_unit", "balance_price", "is_active",
              "created_at")
    history_list_display = ["name", "kind", "balance_product_id", "is_active"]

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None) -> tuple[str, ...]:
        if obj is not None and obj.pk:
            return ("service", "code", "created_at")
        return ("created_at",)

    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        result = product_create(service=obj.service, code=obj.code, name=obj.name, kind=obj.kind,
                                balance_product_id=obj.balance_product_id, balance_unit=obj.balance_unit,
                                balance_price=obj.balance_price)
        _product_set_active(result.product, obj.is_active)
        obj.pk = result.product.pk
        obj.created_at = result.product.created_at
        obj._state.adding = False

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# --- Balance orders -----------------------------------------------------------------------------------------

class TopUpOfOrderInline(admin.TabularInline):
    model = TopUp
    fk_name = "order"
    fields = ("link", "amount", "status", "created_at", "succeeded_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-created_at",)
    verbose_name_plural = _("top-ups paid on this order")

    @admin.display(description=_("top-up"))
    def link(self, obj: TopUp) -> str:
        return admin_link(obj, obj.pk)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(BalanceOrder)
class BalanceOrderAdmin(ReadOnlyMoneyAdmin):
    """Billing's mirror of Balance orders, with the figures on both sides; refresh or sync them with a button."""

    list_display = ("service_order_id", "customer_link", "kind", "product", "payer", "sync_status",
                    "credited_qty", "reported_qty", "balance_consume_qty", "balance_completion_qty", "last_tid",
                    "balance_refreshed_at")
    list_filter = ("kind", "sync_status", "service")
    list_select_related = ("customer", "product", "payer_agency", "service")
    search_fields = ("=id", "=customer__external_id", "=customer__balance_client_id")
    search_help_text = _("ServiceOrderID, customer id (e.g. dealer:20101) or Balance ClientID, exact")
    fields = ("service_order_id", "balance_key", "key", "service", "customer_link", "payer", "kind", "product",
              "parent_link", "sync_status", "sync_error", "synced_client_id", "synced_agency_id", "credited_qty",
              "balance_consume_qty", "reported_qty", "reported_at", "balance_completion_qty", "last_tid",
              "balance_refreshed_at", "created_at")
    readonly_fields = fields
    inlines = [TopUpOfOrderInline]
    actions = ["refresh_from_balance", "sync_to_balance"]

    @admin.display(description=_("ServiceOrderID"), ordering="id")
    def service_order_id(self, obj: BalanceOrder) -> int:
        return obj.pk

    @admin.display(description=_("Balance key (ServiceID:ServiceOrderID)"))
    def balance_key(self, obj: BalanceOrder) -> str:
        return f"{obj.service.balance_service_id}:{obj.pk}"

    @admin.display(description=_("wallet order (GroupServiceOrderID)"))
    def parent_link(self, obj: BalanceOrder) -> str:
        return admin_link(obj.parent)

    @admin.action(description=_("Refresh from Balance"), permissions=["view"])
    def refresh_from_balance(self, request: HttpRequest, queryset: QuerySet[BalanceOrder]) -> None:
        synced = list(queryset.filter(sync_status=BalanceOrder.SyncStatus.SYNCED).select_related("service"))
        orders_refresh(self, request, synced, skipped=queryset.count() - len(synced))

    @admin.action(description=_("Sync to Balance (queue the customers' unsynced orders)"), permissions=["view"])
    def sync_to_balance(self, request: HttpRequest, queryset: QuerySet[BalanceOrder]) -> None:
        customers = {order.customer_id: order.customer for order in queryset.select_related("customer__service")}
        orders_sync(self, request, customers.values())


# --- top-ups, charges, holds, refunds -----------------------------------------------------------------------

@admin.register(OrderAdoption)
class OrderAdoptionAdmin(ReadOnlyMoneyAdmin):
    """Legacy orders adopted by `manage.py adopt_orders` (docs/migrating.md): read-only, the command writes them."""

    list_display = ("service_order_id", "customer_link", "payer", "status", "free_money", "reason", "adopted_at")
    list_filter = ("status", "service")
    list_select_related = ("customer", "payer_agency")
    search_fields = ("=service_order_id", "=customer__external_id")
    search_help_text = _("Legacy ServiceOrderID or customer id (e.g. dealer:20101), exact")
    fields = ("service", "service_order_id", "customer_link", "payer", "product", "status", "reason", "free_money",
              "qty_old", "qty_new", "expected_consume_amount", "expected_completion_amount", "wallet_order_link",
              "ledger_transaction", "created_at", "updated_at", "adopted_at")
    readonly_fields = fields
    actions = None

    @admin.display(description=_("wallet order"))
    def wallet_order_link(self, obj: OrderAdoption) -> str:
        return admin_link(obj.wallet_order) if obj.wallet_order else "—"


@admin.register(CreditDraw)
class CreditDrawAdmin(ReadOnlyMoneyAdmin):
    """Agency credit drawn in Balance (credit invoices) for a customer's wallet order: read-only, written by the
    `credit.draw` outbox handler. `refused` carries Balance's message (the spend it should cover is unpaid
    completion in Balance: reconciliation shows it); `unknown` needs support to look the request up in Balance."""

    list_display = ("id", "order_link", "agency", "amount", "status", "request_id", "invoice_id", "error",
                    "created_at")
    list_filter = ("status",)
    list_select_related = ("order", "agency")
    search_fields = ("=order__id", "=request_id", "=invoice_id", "=agency__external_id")
    search_help_text = _("Wallet order id, Balance request or invoice id, or agency id (e.g. agency:1), exact")
    fields = ("order_link", "agency", "contract_id", "amount", "status", "request_id", "invoice_id",
              "limit_spent_before", "error", "created_at", "updated_at")
    readonly_fields = fields
    actions = None

    @admin.display(description=_("Balance order"))
    def order_link(self, obj: CreditDraw) -> str:
        return admin_link(obj.order)


@admin.register(PayerTransfer)
class PayerTransferAdmin(ReadOnlyMoneyAdmin):
    """Support's moves of money between a customer's payers, made in Balance (`payments.services.transfers`):
    read-only, the customer page's "Move money between payers" writes them."""

    list_display = ("id", "customer_link", "from_payer", "to_payer", "amount", "status", "balance_error",
                    "created_by", "created_at")
    list_filter = ("status", "service")
    list_select_related = ("customer", "from_order__payer_agency", "to_order__payer_agency", "created_by")
    search_fields = ("=customer__external_id",)
    search_help_text = _("Customer id (e.g. dealer:20101), exact")
    fields = ("service", "customer_link", "from_payer", "to_payer", "amount", "reason", "created_by", "status",
              "balance_error", "qty_old", "qty_new", "from_order", "to_order", "ledger_transaction", "created_at",
              "updated_at")
    readonly_fields = fields
    actions = None

    @admin.display(description=_("From payer"))
    def from_payer(self, obj: PayerTransfer) -> str:
        return payer_label(obj.from_order.payer_agency)

    @admin.display(description=_("To payer"))
    def to_payer(self, obj: PayerTransfer) -> str:
        return payer_label(obj.to_order.payer_agency)


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyMoneyAdmin):
    list_display = ("id", "customer_link", "payer", "amount", "status", "balance_request_id", "created_at",
                    "succeeded_at", "expires_at")
    list_filter = ("status", "service")
    list_select_related = ("customer", "payer_agency")
    search_fields = ("=id", "=customer__external_id", "=balance_request_id")
    search_help_text = _("Top-up id, customer id (e.g. dealer:20101) or Balance request id, exact")
    fields = ("id", "service", "customer_link", "payer", "order_link", "amount", "status", "status_reason",
              "balance_request_id", "payment_url", "return_url", "created_at", "updated_at", "expires_at",
              "succeeded_at")
    readonly_fields = fields
    actions = None

    @admin.display(description=_("Balance order"))
    def order_link(self, obj: TopUp) -> str:
        return admin_link(obj.order)


class RefundInline(admin.TabularInline):
    model = Refund
    fields = ("link", "amount", "reason", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    @admin.display(description=_("refund"))
    def link(self, obj: Refund) -> str:
        return admin_link(obj, obj.pk)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Charge)
class ChargeAdmin(ReadOnlyMoneyAdmin):
    list_display = ("id", "customer_link", "product", "payer", "amount", "refunded_amount", "status", "description",
                    "created_at")
    list_filter = ("status", "service", "product")
    list_select_related = ("customer", "product", "payer_agency")
    search_fields = ("=id", "=customer__external_id")
    search_help_text = _("Charge id or customer id (e.g. dealer:20101), exact")
    fields = ("id", "service", "customer_link", "payer", "product", "amount", "refunded_amount", "status",
              "description", "metadata_table", "hold_link", "created_at")
    readonly_fields = fields
    inlines = [RefundInline]
    actions = None

    @admin.display(description=_("captured from hold"))
    def hold_link(self, obj: Charge) -> str:
        return admin_link(obj.hold, obj.hold_id) if obj.hold_id else "-"


@admin.register(Hold)
class HoldAdmin(ReadOnlyMoneyAdmin):
    """Holds; "Release now" gives held money back (needs the `change_hold` permission; the form stays read-only)."""

    list_display = ("id", "customer_link", "product", "payer", "amount", "captured_amount", "status", "expires_at",
                    "created_at", "closed_at")
    list_filter = ("status", "service", "product")
    list_select_related = ("customer", "product", "payer_agency")
    search_fields = ("=id", "=customer__external_id")
    search_help_text = _("Hold id or customer id (e.g. dealer:20101), exact")
    fields = ("id", "service", "customer_link", "payer", "product", "amount", "captured_amount", "status",
              "description", "metadata_table", "charge_link", "expires_at", "created_at", "closed_at")
    readonly_fields = fields
    actions = ["release_now"]

    @admin.display(description=_("charge (capture)"))
    def charge_link(self, obj: Hold) -> str:
        charge = Charge.objects.filter(hold=obj).first()
        return admin_link(charge, charge.pk) if charge else "-"

    def has_release_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.change_hold")

    @admin.action(description=_("Release now (give the held money back)"), permissions=["release"])
    def release_now(self, request: HttpRequest, queryset: QuerySet[Hold]) -> HttpResponse | None:
        """Asks for confirmation and a reason first; then releases each hold still held, in its own transaction."""
        held = queryset.filter(status=Hold.Status.HELD).select_related("customer", "product", "payer_agency")
        not_held = queryset.exclude(status=Hold.Status.HELD).count()
        if request.POST.get("post") != "yes":
            if not held.exists():
                self.message_user(request, _("None of the selected holds is held: nothing to release."),
                                  messages.WARNING)
                return None
            if held.count() > RELEASE_AT_ONCE_MAX:
                self.message_user(request, _("Release at most %(max)s holds at a time.") % {"max": RELEASE_AT_ONCE_MAX},
                                  messages.ERROR)
                return None
            return TemplateResponse(request, "admin/payments/hold/release_confirmation.html", {
                **self.admin_site.each_context(request),
                "title": _("Release holds?"),
                "opts": self.model._meta,
                "holds": held,
                "not_held": not_held,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            })
        reason = request.POST.get("reason", "").strip()
        if not reason:
            self.message_user(request, _("A reason is required to release holds: nothing was released."),
                              messages.ERROR)
            return None
        released = 0
        for hold in held:
            try:
                hold_release(hold=hold)
            except InvalidState as exc:
                self.message_user(request, _("Hold %(id)s: %(error)s") % {"id": hold.pk, "error": exc.message},
                                  messages.ERROR)
                continue
            self.log_change(request, hold, f"Released from the admin: {reason}")
            released += 1
        if released:
            self.message_user(request, _("Released %(count)s hold(s); the money is back in the wallet.")
                              % {"count": released},
                              messages.SUCCESS)
        if not_held:
            self.message_user(request, _("%(count)s selected hold(s) were not held and were skipped.")
                              % {"count": not_held}, messages.INFO)
        return None


@admin.register(Refund)
class RefundAdmin(ReadOnlyMoneyAdmin):
    list_display = ("id", "charge_link", "customer_link", "product", "amount", "reason", "created_at")
    list_filter = ("charge__service", "charge__product")
    list_select_related = ("charge__customer", "charge__product")
    search_fields = ("=id", "=charge__id", "=charge__customer__external_id")
    search_help_text = _("Refund id, charge id or customer id (e.g. dealer:20101), exact")
    fields = ("id", "charge_link", "customer_link", "product", "amount", "reason", "created_at")
    readonly_fields = fields
    actions = None

    @admin.display(description=_("charge"))
    def charge_link(self, obj: Refund) -> str:
        return admin_link(obj.charge, f"{obj.charge_id} ({format_amount(obj.charge.amount)})")

    @admin.display(description=_("customer"), ordering="charge__customer__external_id")
    def customer_link(self, obj: Refund) -> str:
        return admin_link(obj.charge.customer, obj.charge.customer.external_id)

    @admin.display(description=_("product"), ordering="charge__product__code")
    def product(self, obj: Refund) -> str:
        return str(obj.charge.product)
