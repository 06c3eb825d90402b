"""The customer's timeline: one chronological view per customer and payer that explains its balance.

It joins the ledger (top-ups, charges, holds, captures, releases, refunds, corrections: the lines of the
reconciliation statement of the same payer and period), top-ups and their payment pages, Balance calls about the
customer (method, outcome, latency, a readable excerpt), Balance notifications of its orders and of its client
(Tid, what they changed), webhooks about it (delivery status), agency changes, support actions (who, why) and
mismatches.

The running balance is the statement's: a ledger row shows the statement line's `balance_after`, every other row
the balance at that moment (the last ledger row before it, or the opening balance). Ledger rows keep the
statement's order (ledger id); the other rows are merged in by time, so the column matches the statement at every
row whatever the filters show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from agencies.models import Agency
from balance_gateway.models import BalanceCall, BalanceNotification
from customers.models import AgencyAssignment, Customer
from disbalance.models import WebhookEvent
from disbalance.money import format_money
from payments.models import BalanceOrder, TopUp
from reconciliation.models import Mismatch
from support.customer_page import admin_url
from wallets.models import LedgerTransaction
from wallets.selectors import ReconciliationStatement, period_bounds, reconciliation_statement

# The filters of the page: each row belongs to one kind.
KINDS = {
    "money": gettext_lazy("Money (ledger)"),
    "topup": gettext_lazy("Top-ups and payment pages"),
    "balance_call": gettext_lazy("Balance calls"),
    "notification": gettext_lazy("Balance notifications"),
    "webhook": gettext_lazy("Webhooks"),
    "agency": gettext_lazy("Agency changes"),
    "support": gettext_lazy("Support actions"),
    "mismatch": gettext_lazy("Mismatches"),
}

LEDGER_TYPES = {
    "topup": gettext_lazy("Top-up"),
    "charge": gettext_lazy("Charge"),
    "hold": gettext_lazy("Hold"),
    "capture": gettext_lazy("Capture of a hold"),
    "release": gettext_lazy("Release of a hold"),
    "refund": gettext_lazy("Refund"),
    "adjustment": gettext_lazy("Correction"),
    "transfer": gettext_lazy("Transfer between payers"),
}

# Ledger references that point at a row of the payments admin.
_REFERENCE_ADMIN = {
    "charge": "admin:payments_charge_change",
    "hold": "admin:payments_hold_change",
    "refund": "admin:payments_refund_change",
    "topup": "admin:payments_topup_change",
}
EXCERPT_CHARS = 160


@dataclass
class TimelineRow:
    at: datetime
    kind: str
    title: str
    details: str = ""
    who: str = ""
    amount: Decimal | None = None
    balance: Decimal | None = None
    url: str | None = None
    transaction_id: str = ""

    @property
    def kind_label(self) -> str:
        return str(KINDS[self.kind])


@dataclass
class Timeline:
    statement: ReconciliationStatement
    rows: list[TimelineRow]


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= EXCERPT_CHARS else f"{text[:EXCERPT_CHARS - 1]}…"


def _ledger_rows(statement: ReconciliationStatement) -> list[TimelineRow]:
    users = dict(LedgerTransaction.objects.filter(public_id__in=[line.transaction_id for line in statement.lines])
                 .exclude(created_by=None).values_list("public_id", "created_by__username"))
    rows = []
    for line in statement.lines:
        title = str(LEDGER_TYPES.get(line.type, line.type))
        if line.product:
            title = f"{title}: {line.product}"
        url = None
        if line.reference_kind in _REFERENCE_ADMIN and line.reference_id:
            url = admin_url(_REFERENCE_ADMIN[line.reference_kind], line.reference_id)
        rows.append(TimelineRow(
            at=line.date, kind="money", title=title, details=line.description, who=users.get(line.transaction_id, ""),
            amount=line.amount, balance=line.balance_after, url=url, transaction_id=str(line.transaction_id),
        ))
    return rows


def _topup_rows(customer: Customer, payer: Agency | None, start: datetime, end: datetime) -> list[TimelineRow]:
    rows = []
    for topup in TopUp.objects.filter(customer=customer, payer_agency=payer, created_at__gte=start,
                                      created_at__lt=end).order_by("created_at"):
        details = [_("status: %(status)s") % {"status": topup.get_status_display()}]
        if topup.payment_url:
            details.append(_("payment page: %(url)s") % {"url": topup.payment_url})
        if topup.status_reason:
            details.append(topup.status_reason)
        rows.append(TimelineRow(
            at=topup.created_at, kind="topup",
            title=_("Top-up of %(amount)s requested") % {"amount": format_money(topup.amount)},
            details="; ".join(details), url=admin_url("admin:payments_topup_change", topup.pk),
        ))
    return rows


def _balance_call_rows(customer: Customer, start: datetime, end: datetime) -> list[TimelineRow]:
    calls = BalanceCall.objects.filter(operation__subject=f"customer:{customer.pk}", created_at__gte=start,
                                       created_at__lt=end).order_by("created_at", "id")
    return [TimelineRow(
        at=call.created_at, kind="balance_call",
        title=_("Balance call %(method)s: %(outcome)s, %(ms)s ms") % {
            "method": call.method, "outcome": call.get_outcome_display(), "ms": call.duration_ms},
        details=_excerpt(call.error_message or call.arguments),
        url=admin_url("admin:balance_gateway_balancecall_change", call.pk),
    ) for call in calls]


def _notification_rows(customer: Customer, payer: Agency | None, start: datetime,
                       end: datetime) -> list[TimelineRow]:
    orders = BalanceOrder.objects.filter(customer=customer, payer_agency=payer).select_related("service")
    order_keys = [f"{order.service.balance_service_id}:{order.pk}" for order in orders]
    notifications = BalanceNotification.objects.filter(received_at__gte=start, received_at__lt=end).filter(
        kind=BalanceNotification.Kind.ORDER, object_key__in=order_keys,
    ) | BalanceNotification.objects.filter(
        received_at__gte=start, received_at__lt=end, kind=BalanceNotification.Kind.CLIENT,
        object_key=str(customer.balance_client_id or "-"),
    )
    rows = []
    for notification in notifications.order_by("received_at", "id"):
        payload = notification.payload if isinstance(notification.payload, dict) else {}
        changed = ", ".join(f"{key}={value}" for key, value in sorted(payload.items())
                            if key not in ("Tid", "ServiceID", "ServiceOrderID", "ClientID", "Signal"))
        rows.append(TimelineRow(
            at=notification.received_at, kind="notification",
            title=_("Balance notification %(kind)s %(key)s, Tid %(tid)s: %(outcome)s") % {
                "kind": notification.get_kind_display(), "key": notification.object_key, "tid": notification.tid,
                "outcome": notification.get_outcome_display()},
            details=_excerpt(changed), url=admin_url("admin:balance_gateway_balancenotification_change",
                                                     notification.pk),
        ))
    return rows


def _webhook_rows(customer: Customer, start: datetime, end: datetime) -> list[TimelineRow]:
    events = WebhookEvent.objects.filter(service_id=customer.service_id, data__customer=customer.external_id,
                                         created_at__gte=start, created_at__lt=end).order_by("created_at")
    return [TimelineRow(
        at=event.created_at, kind="webhook",
        title=_("Webhook %(type)s: %(status)s") % {"type": event.type, "status": event.get_status_display()},
        details=_excerpt(event.data), url=admin_url("admin:disbalance_webhookevent_change", event.pk),
    ) for event in events]


def _agency_rows(customer: Customer, start: datetime, end: datetime) -> list[TimelineRow]:
    assignments = (AgencyAssignment.objects.filter(customer=customer, since__gte=start, since__lt=end)
                   .select_related("agency").order_by("since", "id"))
    return [TimelineRow(
        at=assignment.since, kind="agency",
        title=_("Payer changed to %(payer)s") % {
            "payer": assignment.agency.external_id if assignment.agency else _("the customer itself")},
        details=assignment.reason, who=assignment.changed_by,
    ) for assignment in assignments]


def _support_rows(customer: Customer, start: datetime, end: datetime) -> list[TimelineRow]:
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(Customer), object_id=str(customer.pk),
        action_time__gte=start, action_time__lt=end,
    ).select_related("user").order_by("action_time", "id")
    return [TimelineRow(at=entry.action_time, kind="support", title=_("Support action"),
                        details=entry.get_change_message(), who=entry.user.get_username())
            for entry in entries]


def _mismatch_rows(customer: Customer, start: datetime, end: datetime) -> list[TimelineRow]:
    rows = []
    for mismatch in Mismatch.objects.filter(customer=customer).select_related("last_fix_by", "resolved_by"):
        url = admin_url("admin:reconciliation_mismatch_change", mismatch.pk)
        kind = mismatch.get_kind_display()
        if start <= mismatch.detected_at < end:
            rows.append(TimelineRow(at=mismatch.detected_at, kind="mismatch", url=url, details=mismatch.summary,
                                    title=_("Mismatch found: %(kind)s") % {"kind": kind}))
        if mismatch.last_fix_at and start <= mismatch.last_fix_at < end:
            rows.append(TimelineRow(
                at=mismatch.last_fix_at, kind="mismatch", url=url, details=mismatch.last_fix_note,
                who=mismatch.last_fix_by.get_username() if mismatch.last_fix_by else "autofix",
                title=_("Mismatch fixed: %(kind)s") % {"kind": kind}))
        if mismatch.resolved_at and start <= mismatch.resolved_at < end:
            rows.append(TimelineRow(
                at=mismatch.resolved_at, kind="mismatch", url=url, details=mismatch.resolution,
                who=mismatch.resolved_by.get_username() if mismatch.resolved_by else _("system"),
                title=_("Mismatch resolved: %(kind)s") % {"kind": kind}))
    return rows


def customer_timeline(*, customer: Customer, payer: Agency | None, date_from: date, date_to: date,
                      kinds: set[str] | None = None) -> Timeline:
    """The timeline of `customer` under `payer` for the days `date_from`..`date_to`, oldest first, with only
    the rows of `kinds` (all when None); the running balance is computed before filtering."""
    statement = reconciliation_statement(customer=customer, payer=payer, date_from=date_from, date_to=date_to)
    start, end = period_bounds(date_from, date_to)
    others = [
        *_topup_rows(customer, payer, start, end), *_balance_call_rows(customer, start, end),
        *_notification_rows(customer, payer, start, end), *_webhook_rows(customer, start, end),
        *_agency_rows(customer, start, end), *_support_rows(customer, start, end),
        *_mismatch_rows(customer, start, end),
    ]
    others.sort(key=lambda row: row.at)
    ledger = _ledger_rows(statement)
    rows: list[TimelineRow] = []
    balance = statement.opening_balance
    position = 0
    for money_row in ledger:
        while position < len(others) and others[position].at < money_row.at:
            others[position].balance = balance
            rows.append(others[position])
            position += 1
        rows.append(money_row)
        balance = money_row.balance  # type: ignore[assignment]
    for row in others[position:]:
        row.balance = balance
        rows.append(row)
    if kinds is not None:
        rows = [row for row in rows if row.kind in kinds]
    return Timeline(statement=statement, rows=rows)
