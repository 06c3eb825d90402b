"""Support UI for customers: find by external id, Balance client id, INN, name or e-mail; see history. The page's
read model is `support.customer_page`, the action forms are `support.forms`.

The customer page shows what support needs on one screen (template
`templates/admin/customers/customer/change_form.html`): the wallet per payer, the latest statement rows, open
holds, latest top-ups and charges, the Balance orders with their figures, the agency history, the open mismatches,
the outbox operations about the customer and the change history; with buttons to refresh the orders from Balance
or sync them to Balance.

Support actions, each on its own page with a required reason (`templates/admin/customers/customer/action_form.html`)
and recorded with the user twice: in the admin log (`LogEntry`) and in the domain's own audit (the assignment's
`changed_by_user`/`reason`, the ledger transaction's `created_by`/`reason`, the mismatch's `last_fix_by`):

- "Change agency" (`customers.change_agency`): `agency_change`, refused agencies shown as an error;
- "Adjust wallet" and "Move money between payers" (`customers.adjust_wallet`, billing admins):
  `overdrafts.services.wallet_correct` / `wallet_move_between_payers` (the ledger write, then debt and blocks);
- "Retry" a failed Balance operation of the customer (`customers.retry_operation`): `outbox_retry`;
- "Fix" an open mismatch (`reconciliation.fix_mismatch`, one click, no reason): `mismatch_fix`.

The custom permissions live on the Customer content type and are created, with the `support` and `billing-admin`
groups, by `manage.py setup_groups`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from simple_history.admin import SimpleHistoryAdmin

from customers.models import Customer
from customers.services import agency_change, enqueue_sync
from disbalance.exceptions import InsufficientFunds, InvalidState, ValidationFailed
from disbalance.models import OutboxOperation
from disbalance.money import format_amount
from disbalance.outbox import outbox_retry
from overdrafts import services as overdrafts
from payments.admin import orders_refresh, orders_sync, payer_label
from payments.models import BalanceOrder
from reconciliation.actions import mismatch_fix
from reconciliation.models import Mismatch
from support.customer_page import (
    PERM_ADJUST_WALLET,
    PERM_CHANGE_AGENCY,
    PERM_FIX_MISMATCH,
    PERM_RETRY_OPERATION,
    RETRYABLE_STATUSES,
    RETURN_TO_PAGE,
    admin_url,
    customer_agency_rows,
    customer_changes,
    customer_mismatches,
    customer_money,
    customer_payers,
)
from support.forms import AdjustWalletForm, ChangeAgencyForm, MoveMoneyForm, ReasonForm, RetryOperationForm


def _posted(request: HttpRequest) -> Any:
    """The form data of a POST (even an empty one, so a missing reason is an error), None on GET."""
    return request.POST if request.method == "POST" else None


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
            extra_context.update(self._support_context(request, customer))
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def _support_context(self, request: HttpRequest, customer: Customer) -> dict[str, Any]:
        """Agency history, open mismatches, change history, and the support actions this user may take."""
        user = request.user
        actions = [(label, self._url(name, customer)) for perm, name, label in (
            (PERM_CHANGE_AGENCY, "change_agency", "Change agency…"),
            (PERM_ADJUST_WALLET, "adjust_wallet", "Adjust wallet…"),
            (PERM_ADJUST_WALLET, "move_money", "Move money between payers…"),
        ) if user.has_perm(perm)]
        return {
            "agency_rows": customer_agency_rows(customer),
            "open_mismatches": customer_mismatches(customer),
            "mismatch_queue_url": admin_url("admin:reconciliation_mismatch_changelist",
                                            query=f"customer__id__exact={customer.pk}&status__exact=open"),
            "all_mismatches_url": admin_url("admin:reconciliation_mismatch_changelist",
                                            query=f"customer__id__exact={customer.pk}"),
            "can_fix_mismatch": user.has_perm(PERM_FIX_MISMATCH),
            "fix_mismatch_url": self._url("fix_mismatch", customer),
            "can_retry_operation": user.has_perm(PERM_RETRY_OPERATION),
            "change_rows": customer_changes(customer),
            "support_actions": actions,
        }

    # --- support actions: a page per action, a required reason, recorded with the user ---------------------

    def get_urls(self) -> list[Any]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"

        def view(func: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
            return self.admin_site.admin_view(func)

        return [
            path("<path:object_id>/change-agency/", view(self.change_agency_view), name=f"{info}_change_agency"),
            path("<path:object_id>/adjust-wallet/", view(self.adjust_wallet_view), name=f"{info}_adjust_wallet"),
            path("<path:object_id>/move-money/", view(self.move_money_view), name=f"{info}_move_money"),
            path("<path:object_id>/retry-operation/<int:operation_id>/", view(self.retry_operation_view),
                 name=f"{info}_retry_operation"),
            path("<path:object_id>/fix-mismatch/", view(self.fix_mismatch_view), name=f"{info}_fix_mismatch"),
            *super().get_urls(),
        ]

    def _url(self, name: str, customer: Customer, *args: Any) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{name}", args=[customer.pk, *args])

    def _customer_for(self, request: HttpRequest, object_id: str, permission: str) -> Customer:
        customer = self.get_object(request, unquote(object_id))
        if customer is None:
            raise Http404("No such customer.")
        if not self.has_view_permission(request, customer) or not request.user.has_perm(permission):
            raise PermissionDenied
        return customer

    def _run_action(self, request: HttpRequest, customer: Customer, form: ReasonForm, *, title: str, intro: str,
                    submit: str, apply: Callable[[Customer, dict[str, Any]], str],
                    details: list[tuple[str, Any]] | None = None) -> HttpResponse:
        """Show the action's form; on a valid POST run `apply` (the service call) and log it in one transaction.

        `apply` returns the text for the admin log and the message. A refusal by the domain (invalid state,
        insufficient funds, validation) changes nothing and re-shows the form with the error.
        """
        if request.method == "POST" and form.is_valid():
            try:
                with transaction.atomic():
                    message = apply(customer, form.cleaned_data)
                    self.log_change(request, customer, message)
            except (InvalidState, InsufficientFunds, ValidationFailed) as exc:
                self.message_user(request, f"Nothing was changed: {exc.message}", messages.ERROR)
                for field, errors in (exc.extra.get("errors") or {}).items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                self.message_user(request, message, messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[customer.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "intro": intro,
            "submit": submit,
            "form": form,
            "details": details or [],
            "opts": self.opts,
            "original": customer,
            "customer": customer,
            "customer_url": reverse("admin:customers_customer_change", args=[customer.pk]),
            "payers": [{"payer": payer_label(agency), "name": agency.name if agency else "the customer itself",
                        "free": format_amount(free), "current": (agency.pk if agency else None) == customer.agency_id}
                       for agency, free in customer_payers(customer)],
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/customers/customer/action_form.html", context)

    def change_agency_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_CHANGE_AGENCY)

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            old = payer_label(customer.agency)
            result = agency_change(customer=customer, agency=data["agency"], reason=data["reason"],
                                   changed_by=f"user:{request.user.get_username()}", user=request.user)
            return (f"Changed the agency from {old} to {payer_label(result.agency)} "
                    f"(since {result.since:%Y-%m-%d %H:%M:%S %Z}). Reason: {data['reason']}")

        return self._run_action(
            request, customer, ChangeAgencyForm(_posted(request), customer=customer),
            title=f"Change the agency of {customer.external_id}", submit="Change agency", apply=apply,
            intro="Effective at once: from now on every charge is billed and reported under the new payer, and its "
                  "Balance orders are created through the outbox. Open holds stay with the payer they were made "
                  "under; the old payer's money stays its own (move it with \"Move money between payers\").",
        )

    def adjust_wallet_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_ADJUST_WALLET)

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            payer = form.payer("payer")
            transaction_ = overdrafts.wallet_correct(customer=customer, payer=payer, amount=data["amount"],
                                                     reason=data["reason"], by=request.user)
            return (f"Adjusted the wallet under {payer_label(payer)} by {format_amount(data['amount'])} "
                    f"(ledger transaction {transaction_.public_id}). Reason: {data['reason']}")

        form = AdjustWalletForm(_posted(request), customer=customer)
        return self._run_action(
            request, customer, form, title=f"Adjust the wallet of {customer.external_id}", submit="Post adjustment",
            apply=apply,
            intro="A correction is a new ledger transaction (type adjustment) against the service's adjustments "
                  "account, with your name and reason; nothing is ever edited. Balance is not told.",
        )

    def move_money_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_ADJUST_WALLET)

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            source, target = form.payer("from_payer"), form.payer("to_payer")
            transaction_ = overdrafts.wallet_move_between_payers(
                customer=customer, from_payer=source, to_payer=target, amount=data["amount"], reason=data["reason"],
                by=request.user)
            return (f"Moved {format_amount(data['amount'])} from {payer_label(source)} to {payer_label(target)} "
                    f"(ledger transaction {transaction_.public_id}). Reason: {data['reason']}")

        form = MoveMoneyForm(_posted(request), customer=customer)
        return self._run_action(
            request, customer, form, title=f"Move money between the payers of {customer.external_id}",
            submit="Move money", apply=apply,
            intro="Moves free money between two payers' wallets of this customer, e.g. to return an old agency's "
                  "money when the customer comes back to it. One ledger transaction (type transfer) with your name "
                  "and reason.",
        )

    def retry_operation_view(self, request: HttpRequest, object_id: str, operation_id: int) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_RETRY_OPERATION)
        operation = get_object_or_404(OutboxOperation, pk=operation_id, subject=f"customer:{customer.pk}")
        if operation.status not in RETRYABLE_STATUSES:
            self.message_user(request, f"Operation #{operation.pk} is {operation.status}: nothing to retry.",
                              messages.WARNING)
            return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[customer.pk]))

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            was = operation.status
            retried = outbox_retry(operation=operation)
            message = (f"Retried Balance operation #{operation.pk} ({operation.kind}, was {was}"
                       f"{f', now #{retried.pk}' if retried.pk != operation.pk else ''}). Reason: {data['reason']}")
            self.log_change(request, operation, message)
            return message

        return self._run_action(
            request, customer, RetryOperationForm(_posted(request), customer=customer),
            title=f"Retry Balance operation #{operation.pk}", submit="Retry now", apply=apply,
            intro="The operation is sent again at once with its attempts reset; it reads the current state when "
                  "it runs, so repeating it is safe.",
            details=[("Kind", operation.kind), ("Status", operation.status), ("Attempts", operation.attempts),
                     ("Last error", operation.last_error or "—"),
                     ("Updated", operation.updated_at.strftime("%Y-%m-%d %H:%M:%S"))],
        )

    def fix_mismatch_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The "Fix" button of an open mismatch: `mismatch_fix` (Balance is called outside any transaction)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        customer = self._customer_for(request, object_id, PERM_FIX_MISMATCH)
        mismatch_id = request.POST.get("mismatch", "")
        if not mismatch_id.isdigit():
            raise Http404("No such mismatch.")
        mismatch = get_object_or_404(Mismatch, pk=int(mismatch_id), customer=customer)
        page = reverse("admin:customers_customer_change", args=[customer.pk]) + "#customer-mismatches"
        try:
            result = mismatch_fix(mismatch=mismatch, user=request.user)
        except InvalidState as exc:
            self.message_user(request, exc.message, messages.WARNING)
            return HttpResponseRedirect(page)
        text = f"Fix of mismatch #{mismatch.pk} ({mismatch.get_kind_display()}): {result.note}"
        self.log_change(request, result.mismatch, text)
        self.log_change(request, customer, text)
        if result.mismatch.status == Mismatch.Status.RESOLVED:
            self.message_user(request, f"{text}. Checked again with Balance: resolved.", messages.SUCCESS)
        elif result.ok:
            self.message_user(request, f"{text}. It stays open until reconciliation confirms the fix.",
                              messages.INFO)
        else:
            self.message_user(request, f"Mismatch #{mismatch.pk} was not fixed: {result.note}", messages.WARNING)
        return HttpResponseRedirect(page)

    def _back_to_page(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        """After a button on the customer page, go back to that page (the action works on one customer then)."""
        if RETURN_TO_PAGE in request.POST and len(ids := list(queryset.values_list("pk", flat=True))) == 1:
            return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[ids[0]]))
        return None

    @admin.action(description="Sync with Balance again", permissions=["view"])
    def resync_with_balance(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        for customer in queryset:
            enqueue_sync(customer, update=True)
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
