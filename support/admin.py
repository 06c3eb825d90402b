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
- "Adjust wallet" (`customers.adjust_wallet`, billing admins): `overdrafts.services.wallet_correct` (the ledger
  write, then debt and blocks; Balance is not changed, the page says so);
- "Move money between payers" (`customers.adjust_wallet`): `payments.services.payer_transfer_start` and
  `payer_transfer_run` (Balance's CreateTransferMultiple first, then the ledger transfer; a refusal is shown with
  Balance's reason and changes nothing);
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
from django.utils import formats
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from simple_history.admin import SimpleHistoryAdmin

from customers.models import Customer
from customers.services import agency_change, enqueue_sync
from disbalance.admin_kit import CsvExportMixin
from disbalance.exceptions import InsufficientFunds, InvalidState, ValidationFailed
from disbalance.models import OutboxOperation, WebhookEvent
from disbalance.money import format_amount, format_money
from disbalance.outbox import outbox_retry
from disbalance.webhooks import webhook_resend
from overdrafts import services as overdrafts
from payments.admin import orders_refresh, orders_sync, payer_label
from payments.models import BalanceOrder, PayerTransfer
from payments.services import (
    payer_transfer_check,
    payer_transfer_destination_ready,
    payer_transfer_run,
    payer_transfer_start,
    refund_create,
    topup_create,
)
from reconciliation.actions import mismatch_fix
from reconciliation.models import Mismatch
from support.customer_page import (
    PERM_ADJUST_WALLET,
    PERM_CHANGE_AGENCY,
    PERM_CREATE_PAYMENT_LINK,
    PERM_FIX_MISMATCH,
    PERM_REFUND_CHARGE,
    PERM_RESEND_WEBHOOKS,
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
from support.forms import (
    AdjustWalletForm,
    ChangeAgencyForm,
    MoveMoneyForm,
    PaymentLinkForm,
    PeriodForm,
    ReasonForm,
    RefundForm,
    ResendWebhooksForm,
    RetryOperationForm,
    TimelineForm,
)
from support.timeline import KINDS, customer_timeline
from wallets.exports import statement_csv, statement_csv_filename
from wallets.selectors import period_bounds, reconciliation_statement


def _posted(request: HttpRequest) -> Any:
    """The form data of a POST (even an empty one, so a missing reason is an error), None on GET."""
    return request.POST if request.method == "POST" else None


@admin.register(Customer)
class CustomerAdmin(CsvExportMixin, SimpleHistoryAdmin):
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
        (gettext_lazy("Balance"), {"fields": ("balance_client_id", "balance_person_id")}),
        (gettext_lazy("Contacts and legal details"), {"classes": ["collapse"], "fields": (
            "email", "phone", "inn", "kpp", "legal_address", "lname", "fname", "mname", "user_uids",
            "linked_user_uids")}),
        (gettext_lazy("Record"), {"classes": ["collapse"], "fields": ("id", "created_at", "updated_at")}),
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
            (PERM_CHANGE_AGENCY, "change_agency", _("Change agency…")),
            (PERM_ADJUST_WALLET, "adjust_wallet", _("Adjust wallet…")),
            (PERM_ADJUST_WALLET, "move_money", _("Move money between payers…")),
            (PERM_REFUND_CHARGE, "refund", _("Refund a charge…")),
            (PERM_CREATE_PAYMENT_LINK, "payment_link", _("Create a payment link…")),
            (PERM_RESEND_WEBHOOKS, "resend_webhooks", _("Re-send webhooks…")),
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
            "timeline_url": self._url("timeline", customer),
            "statement_url": self._url("statement", customer),
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
            path("<path:object_id>/timeline/", view(self.timeline_view), name=f"{info}_timeline"),
            path("<path:object_id>/statement/", view(self.statement_view), name=f"{info}_statement"),
            path("<path:object_id>/refund/", view(self.refund_view), name=f"{info}_refund"),
            path("<path:object_id>/payment-link/", view(self.payment_link_view), name=f"{info}_payment_link"),
            path("<path:object_id>/resend-webhooks/", view(self.resend_webhooks_view),
                 name=f"{info}_resend_webhooks"),
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
                    details: list[tuple[str, Any]] | None = None,
                    prepare: Callable[[Customer, dict[str, Any]], None] | None = None,
                    then: Callable[[str], tuple[str, int]] | None = None) -> HttpResponse:
        """Show the action's form; on a valid POST run `apply` (the service call) and log it in one transaction.

        `apply` returns the text for the admin log and the message. A refusal by the domain (invalid state,
        insufficient funds, validation) changes nothing and re-shows the form with the error. `prepare` runs
        before that transaction and `then` after it commits (where Balance may be called); `then` returns the
        message and its level, an ERROR re-showing the form.
        """
        if request.method == "POST" and form.is_valid():
            try:
                if prepare is not None:
                    prepare(customer, form.cleaned_data)
                with transaction.atomic():
                    message = apply(customer, form.cleaned_data)
                    self.log_change(request, customer, message)
            except (InvalidState, InsufficientFunds, ValidationFailed) as exc:
                self.message_user(request, _("Nothing was changed: %(error)s") % {"error": exc.message},
                                  messages.ERROR)
                for field, errors in (exc.extra.get("errors") or {}).items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                level = messages.SUCCESS
                if then is not None:
                    message, level = then(message)
                self.message_user(request, message, level)
                if level != messages.ERROR:
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
            "payers": [{"payer": payer_label(agency), "name": agency.name if agency else _("the customer itself"),
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
            return _("Changed the agency from %(old)s to %(new)s (since %(since)s). Reason: %(reason)s") % {
                "old": old, "new": payer_label(result.agency), "since": f"{result.since:%Y-%m-%d %H:%M:%S %Z}",
                "reason": data["reason"]}

        return self._run_action(
            request, customer, ChangeAgencyForm(_posted(request), customer=customer),
            title=_("Change the agency of %(customer)s") % {"customer": customer.external_id},
            submit=_("Change agency"), apply=apply,
            intro=_("Effective at once: from now on every charge is billed and reported under the new payer, and its "
                    "Balance orders are created through the outbox. Open holds stay with the payer they were made "
                    "under; the old payer's money stays its own (move it with \"Move money between payers\")."),
        )

    def adjust_wallet_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_ADJUST_WALLET)

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            payer = form.payer("payer")
            transaction_ = overdrafts.wallet_correct(customer=customer, payer=payer, amount=data["amount"],
                                                     reason=data["reason"], by=request.user,
                                                     balance_effect=data["balance_effect"])
            effect = (_("Balance is not changed: this mirrors a change already made in Balance.")
                      if data["balance_effect"] == overdrafts.MIRRORS_BALANCE else
                      _("Balance is not changed: its money on the payer's order stays as it is, billing only lets "
                        "less of it be spent."))
            return _("Adjusted the wallet under %(payer)s by %(amount)s (ledger transaction %(transaction)s). "
                     "%(effect)s Reason: %(reason)s") % {
                "payer": payer_label(payer), "amount": format_amount(data["amount"]),
                "transaction": transaction_.public_id, "effect": effect, "reason": data["reason"]}

        form = AdjustWalletForm(_posted(request), customer=customer)
        return self._run_action(
            request, customer, form, title=_("Adjust the wallet of %(customer)s") % {"customer": customer.external_id},
            submit=_("Post adjustment"), apply=apply,
            intro=_("A correction is a new ledger transaction (type adjustment) against the service's adjustments "
                    "account, with your name and reason; nothing is ever edited. Balance is not changed by it: "
                    "Balance's money on the payer's order stays as it is. So an adjustment may take money off "
                    "(billing then lets less be spent), or mirror a change already made in Balance; money that is "
                    "only in billing's ledger would be unpaid completion in Balance once spent, so an upward "
                    "ledger-only adjustment is refused."),
        )

    def move_money_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_ADJUST_WALLET)
        started: list[PayerTransfer] = []

        def prepare(customer: Customer, data: dict[str, Any]) -> None:
            payer_transfer_check(customer=customer, from_payer=form.payer("from_payer"),
                                 to_payer=form.payer("to_payer"), amount=data["amount"])
            if not payer_transfer_destination_ready(customer=customer, to_payer=form.payer("to_payer")):
                raise InvalidState(_("The wallet order under %(payer)s is not in Balance yet (its sync is waiting "
                                     "in the outbox): try again in a minute.") % {
                    "payer": payer_label(form.payer("to_payer"))})

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            source, target = form.payer("from_payer"), form.payer("to_payer")
            started.append(payer_transfer_start(customer=customer, from_payer=source, to_payer=target,
                                                amount=data["amount"], reason=data["reason"], by=request.user))
            return _("Asked Balance to move %(amount)s from %(source)s to %(target)s (transfer #%(id)s). "
                     "Reason: %(reason)s") % {"amount": format_amount(data["amount"]), "source": payer_label(source),
                                              "target": payer_label(target), "id": started[0].pk,
                                              "reason": data["reason"]}

        def then(asked: str) -> tuple[str, int]:
            transfer = payer_transfer_run(transfer=started[0])
            words = {"amount": format_amount(transfer.amount), "id": transfer.pk,
                     "source": payer_label(form.payer("from_payer")), "target": payer_label(form.payer("to_payer")),
                     "reason": transfer.reason, "error": transfer.balance_error}
            if transfer.status == PayerTransfer.Status.DONE:
                assert transfer.ledger_transaction is not None
                words["transaction"] = transfer.ledger_transaction.public_id
                message, level = _("Moved %(amount)s from %(source)s to %(target)s in Balance and in the ledger "
                                   "(transfer #%(id)s, ledger transaction %(transaction)s). Reason: %(reason)s"
                                   ) % words, messages.SUCCESS
            elif transfer.status == PayerTransfer.Status.REFUSED:
                message, level = _("Nothing was changed: %(error)s") % words, messages.ERROR
            elif transfer.status == PayerTransfer.Status.UNSETTLED:
                message, level = _("Transfer #%(id)s is unsettled: %(error)s") % words, messages.WARNING
            else:
                message, level = _("Balance has not answered yet: billing asks again by itself, and the money moves "
                                   "in the ledger once Balance confirms (transfer #%(id)s).") % words, messages.INFO
            self.log_change(request, customer, message)
            return message, level

        form = MoveMoneyForm(_posted(request), customer=customer)
        return self._run_action(
            request, customer, form,
            title=_("Move money between the payers of %(customer)s") % {"customer": customer.external_id},
            submit=_("Move money"), apply=apply, prepare=prepare, then=then,
            intro=_("Moves free money between two payers' wallets of this customer, e.g. to return an old agency's "
                    "money when the customer comes back to it. Balance is changed first: its money moves between "
                    "the two payers' wallet orders (CreateTransferMultiple); only when Balance has moved it, one "
                    "ledger transaction (type transfer) with your name and reason follows. If Balance refuses (it "
                    "moves money only between orders of one client and agency, and only money that is free there), "
                    "you see its reason and nothing is changed."),
        )

    def retry_operation_view(self, request: HttpRequest, object_id: str, operation_id: int) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_RETRY_OPERATION)
        operation = get_object_or_404(OutboxOperation, pk=operation_id, subject=f"customer:{customer.pk}")
        if operation.status not in RETRYABLE_STATUSES:
            self.message_user(request, _("Operation #%(id)s is %(status)s: nothing to retry.") % {
                "id": operation.pk, "status": operation.status}, messages.WARNING)
            return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[customer.pk]))

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            was = operation.status
            retried = outbox_retry(operation=operation)
            now = _(", now #%(id)s") % {"id": retried.pk} if retried.pk != operation.pk else ""
            message = _("Retried Balance operation #%(id)s (%(kind)s, was %(was)s%(now)s). Reason: %(reason)s") % {
                "id": operation.pk, "kind": operation.kind, "was": was, "now": now, "reason": data["reason"]}
            self.log_change(request, operation, message)
            return message

        return self._run_action(
            request, customer, RetryOperationForm(_posted(request), customer=customer),
            title=_("Retry Balance operation #%(id)s") % {"id": operation.pk}, submit=_("Retry now"), apply=apply,
            intro=_("The operation is sent again at once with its attempts reset; it reads the current state when "
                    "it runs, so repeating it is safe."),
            details=[(_("Kind"), operation.kind), (_("Status"), operation.status), (_("Attempts"), operation.attempts),
                     (_("Last error"), operation.last_error or "—"),
                     (_("Updated"), operation.updated_at.strftime("%Y-%m-%d %H:%M:%S"))],
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
        text = _("Fix of mismatch #%(id)s (%(kind)s): %(note)s") % {
            "id": mismatch.pk, "kind": mismatch.get_kind_display(), "note": result.note}
        self.log_change(request, result.mismatch, text)
        self.log_change(request, customer, text)
        if result.mismatch.status == Mismatch.Status.RESOLVED:
            self.message_user(request, _("%(text)s. Checked again with Balance: resolved.") % {"text": text},
                              messages.SUCCESS)
        elif result.ok:
            self.message_user(request, _("%(text)s. It stays open until reconciliation confirms the fix.") % {
                "text": text}, messages.INFO)
        else:
            self.message_user(request, _("Mismatch #%(id)s was not fixed: %(note)s") % {
                "id": mismatch.pk, "note": result.note}, messages.WARNING)
        return HttpResponseRedirect(page)

    # --- the console's pages: the timeline and the reconciliation statement -----------------------------------

    def _page_context(self, request: HttpRequest, customer: Customer, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request), "title": title, "opts": self.opts, "original": customer,
            "customer": customer, "customer_url": reverse("admin:customers_customer_change", args=[customer.pk]),
            "timeline_url": self._url("timeline", customer), "statement_url": self._url("statement", customer),
        }

    def timeline_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, f"{self.opts.app_label}.view_{self.opts.model_name}")
        form = TimelineForm(request.GET, customer=customer)
        context = self._page_context(request, customer, _("Timeline of %(customer)s") % {
            "customer": customer.external_id})
        context["form"] = form
        if form.is_valid():
            data = form.cleaned_data
            context["timeline"] = customer_timeline(
                customer=customer, payer=data["payer_agency"], date_from=data["date_from"], date_to=data["date_to"],
                kinds=set(data["kinds"]) if data["kinds"] else None)
            context["kinds"] = KINDS
        return TemplateResponse(request, "admin/customers/customer/timeline.html", context)

    def statement_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, f"{self.opts.app_label}.view_{self.opts.model_name}")
        form = PeriodForm(request.GET, customer=customer)
        context = self._page_context(request, customer, _("Reconciliation statement of %(customer)s") % {
            "customer": customer.external_id})
        context["form"] = form
        if form.is_valid():
            data = form.cleaned_data
            statement = reconciliation_statement(customer=customer, payer=data["payer_agency"],
                                                 date_from=data["date_from"], date_to=data["date_to"])
            if request.GET.get("format") == "csv":
                response = HttpResponse(statement_csv(statement), content_type="text/csv; charset=utf-8")
                response["Content-Disposition"] = f'attachment; filename="{statement_csv_filename(statement)}"'
                return response
            query = request.GET.copy()
            query["format"] = "csv"
            context.update(statement=statement, csv_url=f"{request.path}?{query.urlencode()}")
        return TemplateResponse(request, "admin/customers/customer/statement.html", context)

    # --- support actions that move money or reach the consumer -------------------------------------------------

    def refund_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_REFUND_CHARGE)

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            charge = data["charge"]
            refund = refund_create(charge=charge, amount=data["amount"], reason=data["reason"])
            return _("Refunded %(amount)s of charge %(charge)s (refund %(refund)s). Reason: %(reason)s") % {
                "amount": format_money(refund.amount), "charge": charge.pk, "refund": refund.pk,
                "reason": data["reason"]}

        return self._run_action(
            request, customer, RefundForm(_posted(request), customer=customer),
            title=_("Refund a charge of %(customer)s") % {"customer": customer.external_id},
            submit=_("Refund"), apply=apply,
            intro=_("The money goes back to the wallet of the payer the charge was made under (a ledger "
                    "transaction of type refund); the product's spend drops by the same amount and the next spend "
                    "report tells Balance. Refunds never exceed what was charged."),
        )

    def payment_link_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_CREATE_PAYMENT_LINK)

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            topup = topup_create(customer=customer, amount=data["amount"], return_url=data["return_url"] or "")
            return _("Created top-up %(topup)s of %(amount)s; its payment page appears on the top-up once Balance "
                     "answers. Reason: %(reason)s") % {
                "topup": topup.pk, "amount": format_money(topup.amount), "reason": data["reason"]}

        return self._run_action(
            request, customer, PaymentLinkForm(_posted(request), customer=customer),
            title=_("Create a payment link for %(customer)s") % {"customer": customer.external_id},
            submit=_("Create payment link"), apply=apply,
            intro=_("A top-up under the customer's current payer: Balance creates the request and its payment "
                    "page, which you can send to the customer. The money is credited when Balance reports it."),
        )

    def resend_webhooks_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        customer = self._customer_for(request, object_id, PERM_RESEND_WEBHOOKS)

        def apply(customer: Customer, data: dict[str, Any]) -> str:
            start, end = period_bounds(data["date_from"], data["date_to"])
            events = list(WebhookEvent.objects.filter(
                service_id=customer.service_id, data__customer=customer.external_id, created_at__gte=start,
                created_at__lt=end).order_by("created_at"))
            for event in events:
                webhook_resend(event=event, user=request.user)
            return _("Re-sent %(count)s webhook(s) from %(from)s to %(to)s. Reason: %(reason)s") % {
                "count": len(events), "from": formats.date_format(data["date_from"]),
                "to": formats.date_format(data["date_to"]), "reason": data["reason"]}

        return self._run_action(
            request, customer, ResendWebhooksForm(_posted(request), customer=customer),
            title=_("Re-send the webhooks of %(customer)s") % {"customer": customer.external_id},
            submit=_("Re-send"), apply=apply,
            intro=_("Every event about this customer in the period is delivered again to its service (the "
                    "consumer de-duplicates by event id)."),
        )

    def _back_to_page(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        """After a button on the customer page, go back to that page (the action works on one customer then)."""
        if RETURN_TO_PAGE in request.POST and len(ids := list(queryset.values_list("pk", flat=True))) == 1:
            return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[ids[0]]))
        return None

    @admin.action(description=gettext_lazy("Sync with Balance again"), permissions=["view"])
    def resync_with_balance(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        for customer in queryset:
            enqueue_sync(customer, update=True)
        self.message_user(request, _("Queued a Balance sync for %(n)s customer(s).") % {"n": queryset.count()},
                          messages.SUCCESS)

    @admin.action(description=gettext_lazy("Refresh orders from Balance"), permissions=["view"])
    def refresh_orders_from_balance(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        orders = BalanceOrder.objects.filter(customer__in=queryset)
        synced = list(orders.filter(sync_status=BalanceOrder.SyncStatus.SYNCED).select_related("service"))
        orders_refresh(self, request, synced, skipped=orders.count() - len(synced))
        return self._back_to_page(request, queryset)

    @admin.action(description=gettext_lazy("Sync orders to Balance"), permissions=["view"])
    def sync_orders_to_balance(self, request: HttpRequest, queryset: QuerySet[Customer]) -> HttpResponse | None:
        orders_sync(self, request, queryset.select_related("service"))
        return self._back_to_page(request, queryset)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # customers are registered by their consumer service through the API

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
