"""Support UI for customers: find by external id, Balance client id, INN, name or e-mail; see history.

The customer page also shows the customer's money on one screen (template
`templates/admin/customers/customer/change_form.html`): the wallet per payer, the latest statement rows, open
holds, latest top-ups and charges, the Balance orders with their figures, and the outbox operations about the
customer; with buttons to refresh the orders from Balance or sync them to Balance.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from simple_history.admin import SimpleHistoryAdmin

from balance_gateway.models import OutboxOperation
from customers.models import Customer
from customers.services import enqueue_sync
from disbalance.money import format_amount
from overdrafts.selectors import effective_overdraft_limit
from payments.admin import orders_refresh, orders_sync, payer_label
from payments.models import BalanceOrder, Charge, Hold, TopUp
from wallets.selectors import statement, statement_row, wallet_summary

STATEMENT_ROWS = 50
OPEN_HOLDS_ROWS = 50
LATEST_ROWS = 10
ORDERS_ROWS = 100
OUTBOX_ROWS = 20
# Return to the customer page after an action started from its buttons (instead of the changelist).
RETURN_TO_PAGE = "_customer_page"

# Ledger references that point at a row of the payments admin.
_REFERENCE_ADMIN = {
    "charge": "admin:payments_charge_change",
    "hold": "admin:payments_hold_change",
    "refund": "admin:payments_refund_change",
    "topup": "admin:payments_topup_change",
}


def _reference_url(kind: str, reference_id: str) -> str | None:
    if kind in _REFERENCE_ADMIN and reference_id:
        return reverse(_REFERENCE_ADMIN[kind], args=[reference_id])
    if kind == "balance_order":  # "<order id>@<Tid>": money Balance reported without a top-up
        order_id = reference_id.partition("@")[0]
        if order_id.isdigit():
            return reverse("admin:payments_balanceorder_change", args=[order_id])
    return None


def _short(reference_id: str) -> str:
    """UUIDs shortened to their first 8 digits on the page (the full id is in the link and its title)."""
    return f"{reference_id[:8]}…" if len(reference_id) == 36 and reference_id.count("-") == 4 else reference_id


def customer_money(customer: Customer) -> dict[str, Any]:
    """Everything the money section of the customer page shows, as plain values (amounts already formatted)."""
    summary = wallet_summary(customer, overdraft_limit=effective_overdraft_limit(customer=customer))
    wallet = {
        "currency": summary.currency,
        "payer": summary.payer or "self",
        "balance": format_amount(summary.balance),
        "held": format_amount(summary.held),
        "available": format_amount(summary.available),
        "overdraft_limit": format_amount(summary.overdraft_limit),
        "other_payers": [{"payer": other.payer or "self", "balance": format_amount(other.balance)}
                         for other in summary.other_payers],
    }

    # The statement's queryset, sliced in the database (the whole statement of a big customer is never loaded).
    entries = list(statement(customer)[:STATEMENT_ROWS + 1])
    statement_lines = []
    for entry in entries[:STATEMENT_ROWS]:
        row = statement_row(entry)  # type: ignore[arg-type]
        kind, reference_id = row.reference["kind"], row.reference["id"]
        statement_lines.append({
            "id": row.id,
            "type": row.type,
            "amount": format_amount(row.amount),
            "balance_after": format_amount(row.balance_after),
            "held_change": format_amount(row.held_change) if row.held_change else "",
            "payer": row.payer or "self",
            "reference": f"{kind} {_short(reference_id)}".strip(),
            "reference_full": f"{kind} {reference_id}".strip(),
            "reference_url": _reference_url(kind, reference_id),
            "description": row.reason or row.description,
            "created_at": row.created_at,
        })

    def amounts(obj: Any, *names: str) -> dict[str, Any]:
        return {"obj": obj, "payer": payer_label(obj.payer_agency),
                **{name: format_amount(getattr(obj, name)) for name in names}}

    holds = (Hold.objects.filter(customer=customer, status=Hold.Status.HELD)
             .select_related("product", "payer_agency").order_by("expires_at")[:OPEN_HOLDS_ROWS])
    topups = TopUp.objects.filter(customer=customer).select_related("payer_agency")[:LATEST_ROWS]
    charges = Charge.objects.filter(customer=customer).select_related("product", "payer_agency")[:LATEST_ROWS]
    orders = (BalanceOrder.objects.filter(customer=customer).select_related("product", "payer_agency", "service")
              .order_by("id")[:ORDERS_ROWS])
    operations = OutboxOperation.objects.filter(subject=f"customer:{customer.pk}").order_by("-id")[:OUTBOX_ROWS]
    return {
        "wallet": wallet,
        "statement_lines": statement_lines,
        "statement_more": len(entries) > STATEMENT_ROWS,
        "statement_rows_max": STATEMENT_ROWS,
        "open_holds": [amounts(hold, "amount") for hold in holds],
        "latest_topups": [amounts(topup, "amount") for topup in topups],
        "latest_charges": [amounts(charge, "amount", "refunded_amount") for charge in charges],
        "balance_orders": [
            amounts(order, "credited_qty", "reported_qty", "balance_consume_qty", "balance_completion_qty")
            for order in orders
        ],
        "outbox_operations": list(operations),
        "outbox_subject": f"customer:{customer.pk}",
        "latest_rows_max": LATEST_ROWS,
        "outbox_rows_max": OUTBOX_ROWS,
    }


@admin.register(Customer)
class CustomerAdmin(SimpleHistoryAdmin):
    list_display = ("external_id", "name", "service", "kind", "status", "agency", "balance_client_id", "blocked",
                    "created_at")
    list_filter = ("service", "status", "kind", "blocked")
    search_fields = ("=external_id", "=balance_client_id", "=inn", "name", "email")
    list_select_related = ("service", "agency")
    readonly_fields = [f.name for f in Customer._meta.fields]
    # Every field, the ones support reads first; the money section of the page comes from `customer_money`.
    fieldsets = [
        (None, {"fields": ("external_id", "name", "service", "kind", "agency", "status", "status_reason",
                           "blocked")}),
        ("Balance", {"fields": ("balance_client_id", "balance_person_id")}),
        ("Contacts and legal details", {"classes": ["collapse"], "fields": (
            "email", "phone", "inn", "kpp", "legal_address", "lname", "fname", "mname", "user_uids",
            "linked_user_uids")}),
        ("Record", {"classes": ["collapse"], "fields": ("id", "created_at", "updated_at")}),
    ]
    actions = ["resync_with_balance", "refresh_orders_from_balance", "sync_orders_to_balance"]
    history_list_display = ["status", "status_reason", "agency"]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = dict(extra_context or {})
        customer = self.get_object(request, unquote(object_id))
        if customer is not None and request.method == "GET":
            actions = self.get_actions(request)
            extra_context.update(customer_money(customer))
            extra_context["money_actions"] = [
                (name, actions[name][2]) for name in ("refresh_orders_from_balance", "sync_orders_to_balance")
                if name in actions
            ]
            extra_context["return_to_page"] = RETURN_TO_PAGE
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def _back_to_page(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        """After a button on the customer page, go back to that page (the action works on one customer then)."""
        if RETURN_TO_PAGE in request.POST and len(ids := list(queryset.values_list("pk", flat=True))) == 1:
            return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[ids[0]]))
        return None

    @admin.action(description="Sync with Balance again", permissions=["view"])
    def resync_with_balance(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        for customer in queryset:
            enqueue_sync(customer, update=customer.balance_client_id is not None)
        self.message_user(request, f"Queued a Balance sync for {queryset.count()} customer(s).", messages.SUCCESS)

    @admin.action(description="Refresh orders from Balance", permissions=["view"])
    def refresh_orders_from_balance(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        orders = BalanceOrder.objects.filter(customer__in=queryset)
        synced = list(orders.filter(sync_status=BalanceOrder.SyncStatus.SYNCED).select_related("service"))
        orders_refresh(self, request, synced, skipped=orders.count() - len(synced))
        return self._back_to_page(request, queryset)

    @admin.action(description="Sync orders to Balance", permissions=["view"])
    def sync_orders_to_balance(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        orders_sync(self, request, queryset.select_related("service"))
        return self._back_to_page(request, queryset)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers are registered by their consumer service through the API

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
