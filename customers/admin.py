"""Support UI for customers: find by external id, Balance client id, INN, name or e-mail; see history.

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
  `wallet_adjust` / `wallet_transfer`;
- "Retry" a failed Balance operation of the customer (`customers.retry_operation`): `outbox_retry`;
- "Fix" an open mismatch (`reconciliation.fix_mismatch`, one click, no reason): `mismatch_fix`.

The custom permissions live on the Customer content type and are created, with the `support` and `billing-admin`
groups, by `manage.py setup_groups`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from simple_history.admin import SimpleHistoryAdmin

from agencies.models import Agency, Contract
from balance_gateway.models import RegistrationStatus
from customers.models import AgencyAssignment, Customer
from customers.services import agency_change, customer_agency_history, enqueue_sync
from disbalance.exceptions import InsufficientFunds, InvalidState, ValidationFailed
from disbalance.models import OutboxOperation
from disbalance.money import ZERO, format_amount
from disbalance.outbox import outbox_retry
from overdrafts import services as overdrafts
from overdrafts.selectors import effective_overdraft_limit
from payments.admin import orders_refresh, orders_sync, payer_label
from payments.models import BalanceOrder, Charge, Hold, TopUp
from reconciliation.actions import mismatch_fix
from reconciliation.models import Mismatch
from reconciliation.registry import CHECKS
from wallets.models import Account
from wallets.selectors import statement, statement_row, wallet_summary
from wallets.services import wallet_adjust, wallet_transfer

STATEMENT_ROWS = 50
OPEN_HOLDS_ROWS = 50
LATEST_ROWS = 10
ORDERS_ROWS = 100
OUTBOX_ROWS = 20
AGENCY_HISTORY_ROWS = 50
MISMATCH_ROWS = 50
CHANGE_HISTORY_ROWS = 20
# Return to the customer page after an action started from its buttons (instead of the changelist).
RETURN_TO_PAGE = "_customer_page"

# Custom permissions (created on the Customer content type by `manage.py setup_groups`) and the reconciliation's.
PERM_CHANGE_AGENCY = "customers.change_agency"
PERM_ADJUST_WALLET = "customers.adjust_wallet"  # wallet adjustments and moves between payers
PERM_RETRY_OPERATION = "customers.retry_operation"
PERM_FIX_MISMATCH = "reconciliation.fix_mismatch"
# Operations support may send again from the customer page (`outbox_retry` ignores done / running ones anyway).
RETRYABLE_STATUSES = (OutboxOperation.Status.FAILED, OutboxOperation.Status.PENDING)

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


def admin_url(viewname: str, *args: Any, query: str = "") -> str | None:
    """An admin page's URL, or None when that page does not exist (e.g. its model is not registered)."""
    try:
        url = reverse(viewname, args=args)
    except NoReverseMatch:
        return None
    return f"{url}?{query}" if query else url


def customer_agency_rows(customer: Customer) -> list[dict[str, Any]]:
    """The agency history: who paid when, who switched it and why (newest first)."""
    rows = []
    for assignment in customer_agency_history(customer)[:AGENCY_HISTORY_ROWS]:
        agency = assignment.agency
        rows.append({
            "payer": payer_label(agency),
            "name": agency.name if agency else "the customer pays itself",
            "url": admin_url("admin:agencies_agency_change", agency.pk) if agency else None,
            "since": assignment.since,
            "until": assignment.until,
            "changed_by": assignment.changed_by,
            "reason": assignment.reason,
        })
    return rows


_SEVERITY_RANK = Case(
    When(severity=Mismatch.Severity.CRITICAL, then=Value(0)),
    When(severity=Mismatch.Severity.WARNING, then=Value(1)),
    default=Value(2), output_field=IntegerField(),
)


def _always_fixable(kind: str) -> bool:
    """`mismatch_fix` can always act on these kinds; the others only when reconciliation recorded a fix in
    `details` (an order with money in Balance cannot be re-sent to another owner: support resolves it)."""
    check = CHECKS.get(kind)
    return check is not None and check.always_fixable


def customer_mismatches(customer: Customer) -> list[dict[str, Any]]:
    """The customer's open mismatches, the most severe first, with what differs as [what, billing, Balance]."""
    mismatches = (Mismatch.objects.filter(customer=customer, status=Mismatch.Status.OPEN)
                  .select_related("order", "last_fix_by").annotate(severity_rank=_SEVERITY_RANK)
                  .order_by("severity_rank", "-detected_at", "-id")[:MISMATCH_ROWS])
    rows = []
    for mismatch in mismatches:
        details = mismatch.details if isinstance(mismatch.details, dict) else {}
        differences = [[str(cell) for cell in row] for row in details.get("rows") or []
                       if isinstance(row, list | tuple) and len(row) == 3]
        rows.append({
            "obj": mismatch,
            "kind": mismatch.get_kind_display(),
            "differences": differences,
            "note": str(details.get("note") or ""),
            "fixable": bool(details.get("fix")) or _always_fixable(mismatch.kind),
            "last_fix_by": (mismatch.last_fix_by.get_username() if mismatch.last_fix_by else "autofix")
            if mismatch.last_fix_at else "",
            "url": admin_url("admin:reconciliation_mismatch_change", mismatch.pk),
        })
    return rows


# Fields whose changes the page does not list (they change with every save).
_HISTORY_HIDDEN = ["updated_at"]


def _history_value(field: str, value: Any, agencies: dict[int, str]) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if field == "agency":
        return agencies.get(value, f"agency #{value}")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    text = str(value)
    return text if len(text) <= 80 else f"{text[:79]}…"


def customer_changes(customer: Customer) -> list[dict[str, Any]]:
    """The change history (django-simple-history): when, who, and each field's old and new value, newest first.

    Saves that changed nothing but `updated_at` are left out; `user` is empty for changes made through the API
    or by the system (registration, Balance sync), whose own trail is the agency history and the outbox.
    """
    records = list(customer.history.select_related("history_user")
                   .order_by("-history_date", "-history_id")[:CHANGE_HISTORY_ROWS + 1])
    changes = []
    for index, record in enumerate(records[:CHANGE_HISTORY_ROWS]):
        older = records[index + 1] if index + 1 < len(records) else None
        if older is None and record.history_type == "~":
            older = record.prev_record
        delta = []
        if record.history_type == "~" and older is not None:
            delta = record.diff_against(older, excluded_fields=_HISTORY_HIDDEN).changes
            if not delta:
                continue
        changes.append((record, delta))
    agency_ids = {value for _, delta in changes for change in delta if change.field == "agency"
                  for value in (change.old, change.new) if value}
    agencies = dict(Agency.objects.filter(pk__in=agency_ids).values_list("pk", "external_id"))
    rows = []
    for record, delta in changes:
        rows.append({
            "date": record.history_date,
            "user": record.history_user.get_username() if record.history_user else "",
            "what": {"+": "registered", "-": "deleted"}.get(record.history_type, "changed"),
            "reason": record.history_change_reason or "",
            "changes": [{"field": Customer._meta.get_field(change.field).verbose_name,
                         "old": _history_value(change.field, change.old, agencies),
                         "new": _history_value(change.field, change.new, agencies)} for change in delta],
        })
    return rows


def customer_payers(customer: Customer) -> list[tuple[Agency | None, Decimal]]:
    """Every payer the customer has or had (itself first), with the free money in its wallet under that payer."""
    balances = dict(Account.objects.filter(customer=customer, kind=Account.Kind.WALLET)
                    .values_list("payer_agency_id", "balance"))
    agency_ids = {*balances, customer.agency_id,
                  *AgencyAssignment.objects.filter(customer=customer).values_list("agency_id", flat=True)}
    agency_ids.discard(None)
    agencies = Agency.objects.filter(pk__in=agency_ids).order_by("external_id")
    return [(None, balances.get(None, ZERO)), *((agency, balances.get(agency.pk, ZERO)) for agency in agencies)]


# --- the support actions' forms (each has a required reason) ---------------------------------------------------

class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=500, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Required. Kept with the change (and in the admin log) so the next person knows why.",
    )

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.customer = customer


def _payer_choice(agency: Agency | None) -> str:
    return "self" if agency is None else str(agency.pk)


class PayersForm(ReasonForm):
    """A form choosing among the customer's payers (`customer_payers`)."""

    payer_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, customer=customer, **kwargs)
        payers = customer_payers(customer)
        self.payers = {_payer_choice(agency): agency for agency, _ in payers}
        current = _payer_choice(customer.agency)
        choices = [(_payer_choice(agency), f"{payer_label(agency)} — {agency.name if agency else 'the customer itself'}"
                    f" · free {format_amount(free)}{' · current payer' if _payer_choice(agency) == current else ''}")
                   for agency, free in payers]
        for name in self.payer_fields:
            self.fields[name].choices = choices

    def payer(self, name: str) -> Agency | None:
        return self.payers[self.cleaned_data[name]]


NO_AGENCY = "none"


class ChangeAgencyForm(ReasonForm):
    agency = forms.ChoiceField(label="New payer",
                               help_text="An agency of the customer's service, or none (the customer pays itself).")
    field_order = ["agency", "reason"]

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, customer=customer, **kwargs)
        agencies = list(Agency.objects.filter(service_id=customer.service_id).order_by("external_id"))
        with_contract = set(Contract.objects.filter(agency__service_id=customer.service_id, active=True)
                            .values_list("agency_id", flat=True))
        self.agencies = {str(agency.pk): agency for agency in agencies}

        def label(agency: Agency) -> str:
            notes = [note for note, shown in (
                ("current payer", agency.pk == customer.agency_id),
                ("not registered in Balance", agency.status != RegistrationStatus.ACTIVE),
                ("no active contract", agency.pk not in with_contract),
            ) if shown]
            suffix = f" ({', '.join(notes)})" if notes else ""
            return f"{agency.external_id} — {agency.name}{suffix}"

        self.fields["agency"].choices = [
            ("", "— choose the new payer —"),
            (NO_AGENCY, "No agency: the customer pays itself" + (" (current)" if customer.agency_id is None else "")),
            *((str(agency.pk), label(agency)) for agency in agencies),
        ]

    def clean_agency(self) -> Agency | None:
        value = self.cleaned_data["agency"]
        agency = None if value == NO_AGENCY else self.agencies[value]
        if (agency.pk if agency else None) == self.customer.agency_id:
            raise forms.ValidationError("That is already the customer's payer: choose another.")
        return agency


class AdjustWalletForm(PayersForm):
    payer = forms.ChoiceField(help_text="Whose wallet of this customer the correction goes to.")
    amount = forms.DecimalField(
        max_digits=18, decimal_places=2,
        help_text="Signed: 100.00 credits the wallet, -100.00 takes money off it (it may go below zero).",
    )
    field_order = ["payer", "amount", "reason"]
    payer_fields = ("payer",)

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Must not be zero.")
        return amount


class MoveMoneyForm(PayersForm):
    from_payer = forms.ChoiceField(label="From payer", help_text="Its free money only (never held money).")
    to_payer = forms.ChoiceField(label="To payer")
    amount = forms.DecimalField(max_digits=18, decimal_places=2, min_value=Decimal("0.01"))
    field_order = ["from_payer", "to_payer", "amount", "reason"]
    payer_fields = ("from_payer", "to_payer")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("from_payer") and data.get("from_payer") == data.get("to_payer"):
            self.add_error("to_payer", "Must differ from the payer the money comes from.")
        return data


class RetryOperationForm(ReasonForm):
    pass


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
            transaction_ = wallet_adjust(customer=customer, payer_agency=payer, amount=data["amount"],
                                         reason=data["reason"], created_by=request.user)
            # Debt and blocks follow the money at once (a repayment by correction unblocks now, not at the next check).
            hook = overdrafts.after_money_in if data["amount"] > 0 else overdrafts.after_spend
            hook(customer=customer, payer=payer)
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
            transaction_ = wallet_transfer(customer=customer, from_payer=source, to_payer=target,
                                           amount=data["amount"], reason=data["reason"], created_by=request.user)
            overdrafts.after_spend(customer=customer, payer=source)
            overdrafts.after_money_in(customer=customer, payer=target)
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
