"""The support dashboard (`/admin/dashboard/`): find a customer, see what needs attention, see recent actions.

- Search by external id, Balance client id, INN or name: exact matches first, then partial ones; when exactly one
  customer matches exactly (or, with no exact match, exactly one partially), the customer's page opens at once.
- Counts that matter, each linking to the filtered admin list: open mismatches by severity and kind, failed and
  stuck outbox operations, customers whose registration failed, blocked customers, top-ups waiting for payment
  for more than a day.
- Recent support actions, from the admin log (`LogEntry`).

The header of every admin page links here and carries the same search box (`templates/admin/base_site.html`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from agencies.models import Agency
from balance_gateway.models import RegistrationStatus
from customers.models import Customer
from disbalance.models import OutboxOperation
from payments.models import TopUp
from reconciliation.models import Mismatch
from reconciliation.registry import CHECKS

SEARCH_LIMIT = 50
RECENT_ACTIONS = 25
# An operation waiting this long past its due time, or running past its lease, is stuck (the sweep should have
# sent it); a top-up not paid within a day probably never will be.
STUCK_AFTER = timedelta(minutes=15)
TOPUP_OVERDUE_AFTER = timedelta(days=1)
# Balance client ids are bigints: longer digit strings are not ids (and would overflow the lookup).
_MAX_ID_DIGITS = 18


@dataclass(frozen=True)
class Hit:
    customer: Customer
    exact: bool
    matched: str  # what matched, e.g. "external id"


def _exact_matches(term: str) -> Q:
    query = Q(external_id=term) | Q(inn=term) | Q(name__iexact=term)
    if term.isdigit() and len(term) <= _MAX_ID_DIGITS:
        query |= Q(balance_client_id=int(term))
    return query


def _matched(customer: Customer, term: str, exact: bool) -> str:
    lowered = term.lower()
    checks = (
        (_("external id"), customer.external_id == term if exact else lowered in customer.external_id.lower()),
        (_("Balance client id"), str(customer.balance_client_id or "") == term),
        (_("INN"), customer.inn == term if exact else bool(customer.inn) and customer.inn.startswith(term)),
        (_("name"), customer.name.lower() == lowered if exact else lowered in customer.name.lower()),
    )
    return ", ".join(label for label, hit in checks if hit) or _("name")


def customers_find(term: str, limit: int = SEARCH_LIMIT) -> list[Hit]:
    """Customers matching `term` by external id, Balance client id, INN or name: exact matches first, then partial
    ones (external id or name containing the term, INN starting with it); at most `limit` in all."""
    term = term.strip()
    if not term:
        return []
    base: QuerySet[Customer] = Customer.objects.select_related("service", "agency")
    exact = list(base.filter(_exact_matches(term)).order_by("external_id", "id")[:limit])
    partial_query = Q(external_id__icontains=term) | Q(name__icontains=term) | Q(inn__startswith=term)
    partial = list(base.filter(partial_query).exclude(pk__in=[c.pk for c in exact])
                   .order_by("external_id", "id")[:max(limit - len(exact), 0)])
    return ([Hit(customer, True, _matched(customer, term, True)) for customer in exact]
            + [Hit(customer, False, _matched(customer, term, False)) for customer in partial])


def _only_one(hits: list[Hit]) -> Customer | None:
    """The customer to open directly: the only exact match, or the only match at all."""
    exact = [hit for hit in hits if hit.exact]
    if len(exact) == 1:
        return exact[0].customer
    if not exact and len(hits) == 1:
        return hits[0].customer
    return None


def _changelist(model: type, **filters: Any) -> str | None:
    """The admin list of `model` filtered by `filters` (plain field lookups), or None if it has no admin."""
    try:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    except NoReverseMatch:
        return None
    values = {key: value.isoformat() if isinstance(value, datetime) else value for key, value in filters.items()}
    return f"{url}?{urlencode(values)}" if values else url


@dataclass(frozen=True)
class Attention:
    label: str
    count: int
    url: str | None
    level: str = "warning"  # how to show a non-zero count: critical, warning or info


def attention_counts(now: datetime | None = None) -> dict[str, Any]:
    """What needs attention right now, each with the admin list that shows it."""
    now = now or timezone.now()
    open_mismatches = Mismatch.objects.filter(status=Mismatch.Status.OPEN)
    by_severity = dict(open_mismatches.values_list("severity").annotate(n=Count("id")).order_by())
    by_kind = dict(open_mismatches.values_list("kind").annotate(n=Count("id")).order_by())
    severity_labels = {Mismatch.Severity.CRITICAL: _("critical mismatches"),
                       Mismatch.Severity.WARNING: _("warning mismatches"), Mismatch.Severity.INFO: _("info mismatches")}
    mismatches = [
        Attention(severity_labels[severity], by_severity.get(severity, 0),
               _changelist(Mismatch, status__exact="open", severity__exact=severity),
               level={"critical": "critical", "warning": "warning"}.get(severity, "info"))
        for severity in (Mismatch.Severity.CRITICAL, Mismatch.Severity.WARNING, Mismatch.Severity.INFO)
    ]
    kinds = [Attention(label, by_kind.get(kind, 0), _changelist(Mismatch, status__exact="open", kind__exact=kind))
             for kind, label in ((check.kind, check.label) for check in CHECKS.values())]

    stuck_since = now - STUCK_AFTER
    operations = OutboxOperation.objects
    top_up_since = now - TOPUP_OVERDUE_AFTER
    waiting_statuses = (TopUp.Status.PENDING, TopUp.Status.AWAITING_PAYMENT)
    attention = [
        Attention(_("failed Balance operations"), operations.filter(status=OutboxOperation.Status.FAILED).count(),
               _changelist(OutboxOperation, status__exact="failed"), "critical"),
        Attention(_("operations waiting past their time"),
               operations.filter(status=OutboxOperation.Status.PENDING, next_attempt_at__lt=stuck_since).count(),
               _changelist(OutboxOperation, status__exact="pending", next_attempt_at__lt=stuck_since)),
        Attention(_("operations running past their lease"),
               operations.filter(status=OutboxOperation.Status.IN_PROGRESS, leased_until__lt=now).count(),
               _changelist(OutboxOperation, status__exact="in_progress", leased_until__lt=now)),
        Attention(_("customers whose registration failed"),
               Customer.objects.filter(status=RegistrationStatus.FAILED).count(),
               _changelist(Customer, status__exact="failed"), "critical"),
        Attention(_("agencies whose registration failed"),
               Agency.objects.filter(status=RegistrationStatus.FAILED).count(),
               _changelist(Agency, status__exact="failed")),
        Attention(_("blocked customers"), Customer.objects.filter(blocked=True).count(),
               _changelist(Customer, blocked__exact="1"), "info"),
        Attention(_("top-ups awaiting payment for over a day"),
               TopUp.objects.filter(status__in=waiting_statuses, created_at__lt=top_up_since).count(),
               _changelist(TopUp, status__in=",".join(waiting_statuses), created_at__lt=top_up_since), "info"),
    ]
    return {"mismatches": mismatches, "mismatch_kinds": kinds, "attention": attention,
            "mismatches_open": sum(by_severity.values()),
            "mismatch_queue_url": _changelist(Mismatch, status__exact="open")}


def recent_actions(limit: int = RECENT_ACTIONS) -> list[dict[str, Any]]:
    """The latest admin log entries of every user: when, who, what, on which object, with the message."""
    entries = LogEntry.objects.select_related("user", "content_type").order_by("-action_time", "-id")[:limit]
    rows = []
    for entry in entries:
        try:
            url = entry.get_admin_url()
        except NoReverseMatch:
            url = None
        rows.append({
            "time": entry.action_time,
            "user": entry.user.get_username(),
            "action": {ADDITION: _("added"), CHANGE: _("changed"), DELETION: _("deleted")}.get(entry.action_flag, "?"),
            "what": entry.content_type.name if entry.content_type else "",
            "object": entry.object_repr,
            "url": url if entry.action_flag != DELETION else None,
            "message": entry.get_change_message(),
        })
    return rows


def dashboard(request: HttpRequest) -> HttpResponse:
    """The support dashboard; `?q=` searches customers (one clear hit opens its page; `&list=1` always lists)."""
    term = request.GET.get("q", "").strip()
    hits: list[Hit] = []
    if term:
        hits = customers_find(term)
        customer = _only_one(hits)
        if customer is not None and not request.GET.get("list"):
            return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[customer.pk]))
    context = {
        **admin.site.each_context(request),
        "title": _("Support dashboard"),
        "q": term,
        "hits": hits,
        "hits_exact": sum(1 for hit in hits if hit.exact),
        "search_limit": SEARCH_LIMIT,
        "recent": recent_actions(),
        **attention_counts(),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)
