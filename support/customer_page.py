"""The customer support page's read model: what the page shows, gathered from customers, agencies, wallets,
payments, overdrafts, the outbox and reconciliation (the admin view in `support.admin` only renders it)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Case, F, IntegerField, Value, When
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from agencies.models import Agency
from customers.models import AgencyAssignment, Customer
from customers.selectors import customer_agency_history
from disbalance.models import OutboxOperation
from disbalance.money import ZERO, format_amount
from overdrafts.selectors import effective_overdraft_limit
from payments.admin import payer_label
from payments.models import BalanceOrder, Charge, Hold, TopUp
from reconciliation.models import Mismatch
from reconciliation.registry import CHECKS
from wallets.models import Account
from wallets.selectors import statement, statement_row, wallet_summary

STATEMENT_ROWS = 50
OPEN_HOLDS_ROWS = 50
LATEST_ROWS = 10
ORDERS_ROWS = 100
OUTBOX_ROWS = 20
AGENCY_HISTORY_ROWS = 50
MISMATCH_ROWS = 50
CHANGE_HISTORY_ROWS = 20
REFUNDABLE_ROWS = 200
# Return to the customer page after an action started from its buttons (instead of the changelist).
RETURN_TO_PAGE = "_customer_page"

# Custom permissions (created on the Customer content type by `manage.py setup_groups`) and the reconciliation's.
PERM_CHANGE_AGENCY = "customers.change_agency"
PERM_ADJUST_WALLET = "customers.adjust_wallet"  # wallet adjustments and moves between payers
PERM_RETRY_OPERATION = "customers.retry_operation"
PERM_FIX_MISMATCH = "reconciliation.fix_mismatch"
PERM_REFUND_CHARGE = "customers.refund_charge"
PERM_CREATE_PAYMENT_LINK = "customers.create_payment_link"
PERM_RESEND_WEBHOOKS = "customers.resend_webhooks"
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
            "name": agency.name if agency else _("the customer pays itself"),
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
        # A finding's fixed row labels and note are stored in English and marked in the checks (gettext_noop).
        differences = [[_(str(label)) if label else "", str(billing), str(balance)]
                       for label, billing, balance in (row for row in details.get("rows") or []
                                                       if isinstance(row, list | tuple) and len(row) == 3)]
        rows.append({
            "obj": mismatch,
            "kind": mismatch.get_kind_display(),
            "differences": differences,
            "note": _(str(details["note"])) if details.get("note") else "",
            "fixable": bool(details.get("fix")) or _always_fixable(mismatch.kind),
            "last_fix_by": (mismatch.last_fix_by.get_username() if mismatch.last_fix_by else _("autofix"))
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
        return agencies.get(value, _("agency #%(id)s") % {"id": value})
    if isinstance(value, bool):
        return _("yes") if value else _("no")
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
            "what": {"+": _("registered"), "-": _("deleted")}.get(record.history_type, _("changed")),
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


def refundable_charges(customer: Customer) -> list[Charge]:
    """The customer's charges with something left to refund, newest first."""
    return list(Charge.objects.filter(customer=customer, refunded_amount__lt=F("amount"))
                .select_related("product", "payer_agency").order_by("-created_at")[:REFUNDABLE_ROWS])
