"""Every support action that changes something about a customer needs a reason and leaves an audit row.

The actions are read from the admin registry (list actions of every ModelAdmin, and the customer page's own action
views), so a new one fails `test_every_admin_action_is_classified` until it is put in `REASONED` (and gets a case
in `CASES`) or in `WITHOUT_REASON` with why it needs none.

For each case, as a superuser: without a reason (missing, empty, blank) nothing changes anywhere in the database;
with one, the change happens and the reason is stored in a row it created or changed, with the user (the admin log
or the domain's own audit: the ledger transaction's `created_by`, the assignment's `changed_by_user`, the block's
`created_by`...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.db import transaction
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from agencies.models import Contract
from customers.models import AgencyAssignment, Customer
from disbalance.models import OutboxOperation
from reconciliation.checks.party_data import CUSTOMER_DATA
from reconciliation.models import Mismatch
from tests.factories import AgencyFactory, CustomerFactory
from tests.security.support import db_snapshot, snapshot_diff

pytestmark = pytest.mark.django_db

REASON = "security suite: customer called, ticket 4711"

# (model label, action or view name): support actions that change a customer's money, payer, blocks, limits or
# Balance operations. Each needs a reason and has a case in CASES.
REASONED = {
    ("customers.customer", "change_agency"),
    ("customers.customer", "adjust_wallet"),
    ("customers.customer", "move_money"),
    ("customers.customer", "retry_operation"),
    ("customers.customer", "refund"),
    ("customers.customer", "payment_link"),
    ("customers.customer", "resend_webhooks"),
    ("payments.hold", "release_now"),
    ("overdrafts.overdraft", "block"),
    ("overdrafts.overdraft", "unblock"),
    ("overdrafts.block", "unblock"),
    ("overdrafts.limitoverride", "end"),
    ("reconciliation.mismatch", "resolve_selected"),
    ("reconciliation.mismatch", "resolve"),
}

# Actions without a reason, and why none is needed.
WITHOUT_REASON = {
    ("customers.customer", "resync_with_balance"): "re-sends billing's own data to Balance (idempotent sync)",
    ("customers.customer", "refresh_orders_from_balance"): "reads Balance's figures, applied like notifications",
    ("customers.customer", "sync_orders_to_balance"): "queues the creation of missing orders in Balance",
    ("customers.customer", "fix_mismatch"): "one-click re-sync of what reconciliation found; audited with the user "
                                            "in the mismatch (last_fix_by/last_fix_note) and the admin log",
    ("reconciliation.mismatch", "fix_selected"): "the same fix from the mismatch queue",
    ("reconciliation.mismatch", "fix"): "the same fix, as a button on the mismatch's page",
    ("agencies.agency", "resync_with_balance"): "re-sends the agency to Balance (idempotent sync)",
    ("overdrafts.overdraft", "refresh_from_balance"): "reads Balance's overdraft (GetOverdraftParams)",
    ("overdrafts.agencycredit", "refresh_from_balance"): "reads Balance's credit limits",
    ("payments.balanceorder", "refresh_from_balance"): "reads Balance's figures, applied like notifications",
    ("payments.balanceorder", "sync_to_balance"): "queues the creation of missing orders in Balance",
    ("disbalance.outboxoperation", "retry_now"): "re-queues an operation of the Balance link (not a "
                                                      "customer action; the customer page's retry asks a reason)",
    ("disbalance.webhookevent", "resend"): "re-delivers an event to the consumer (at-least-once anyway)",
    ("disbalance.consumerservice", "issue_token"): "service administration, not a customer action",
    ("disbalance.consumerservice", "webhooks_enable"): "service administration: resumes deliveries to the consumer's"
                                                       " endpoint (audited in the admin log)",
    ("disbalance.consumerservice", "webhook_secret_rotate"): "service administration, not a customer action",
    ("disbalance.servicetoken", "revoke"): "service administration, not a customer action",
    ("customers.customer", "timeline"): "a page that only reads (the customer's timeline)",
    ("customers.customer", "statement"): "a page that only reads (the reconciliation statement and its CSV)",
    ("customers.customer", "export"): "downloads the list as CSV (reads only)",
    ("reconciliation.mismatch", "export"): "downloads the list as CSV (reads only)",
    ("disbalance.outboxoperation", "export"): "downloads the list as CSV (reads only)",
    ("disbalance.webhookevent", "export"): "downloads the list as CSV (reads only)",
}

# Admin views that are not actions (Django's own, django-simple-history's).
_STANDARD_VIEWS = {"changelist", "add", "change", "delete", "history", "autocomplete", "simple_history",
                   "password_change"}


def _superuser_request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _registered_actions(user) -> set[tuple[str, str]]:
    request = _superuser_request(user)
    found = set()
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        found |= {(label, name) for name in model_admin.get_actions(request) if name != "delete_selected"}
        # Action pages an admin adds to its own URLs (the customer page's support actions).
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        for pattern in model_admin.get_urls():
            name = pattern.name or ""
            if name.startswith(prefix) and name[len(prefix):] not in _STANDARD_VIEWS:
                found.add((label, name[len(prefix):]))
    return found


def test_every_admin_action_is_classified(admin_user):
    found = _registered_actions(admin_user)
    unknown = found - REASONED - set(WITHOUT_REASON)
    assert not unknown, (
        f"admin actions not classified: {sorted(unknown)}. Put each in REASONED (needs a reason, add a case to "
        f"CASES) or in WITHOUT_REASON with why it needs none, in {__name__}"
    )
    assert REASONED <= set(CASES), sorted(REASONED - set(CASES))


# --- the world the actions work on --------------------------------------------------------------------------------

@dataclass
class Console:
    customer: Any  # served by agency_a, with money under agency_a and an open hold
    direct: Any  # pays itself; has an overdraft, an override and a manual block
    agency_a: Any
    agency_b: Any
    hold: Any
    operation: Any
    mismatch: Any
    override: Any
    charge: Any


def _with_contract(agency, service):
    Contract.objects.create(agency=agency, balance_contract_id=agency.pk + 9000, number=f"C-{agency.pk}",
                            active=True, payment_type="prepaid", services=[service.balance_service_id])
    return agency


@pytest.fixture
def console(service, products, admin_user, settings) -> Console:
    from customers.services import enqueue_sync
    from disbalance.models import WebhookEvent
    from overdrafts.services import (
        BalanceOverdraft,
        customer_block,
        overdraft_apply_balance_params,
        overdraft_override_set,
    )
    from payments.models import BalanceOrder
    from payments.services import charge_create, hold_create
    from wallets.services import owner_key, wallet_credit_topup

    settings.BALANCE_URL = "http://127.0.0.1:9/xmlrpc"  # work an action queues goes nowhere
    agency_a = _with_contract(AgencyFactory(service=service, external_id="agency:a"), service)
    agency_b = _with_contract(AgencyFactory(service=service, external_id="agency:b"), service)
    customer = CustomerFactory(service=service, external_id="dealer:1", agency=agency_a)
    AgencyAssignment.objects.create(customer=customer, agency=agency_a, since=customer.created_at,
                                    changed_by="service:autoru", reason="registration")
    direct = CustomerFactory(service=service, external_id="dealer:direct")
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=agency_a, amount=Decimal("500.00"))
        wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("100.00"))
    # Both payers' wallet orders are in Balance, so that a move between them is asked of Balance (which is
    # unreachable here: the move waits in the outbox, recorded with its reason).
    for payer in (agency_a, None):
        key = owner_key(customer_id=customer.pk, payer_agency_id=payer.pk if payer else None)
        BalanceOrder.objects.create(service=service, customer=customer, payer_agency=payer, kind="wallet",
                                    key=f"wallet:{key}", sync_status="synced")
    hold = hold_create(customer=customer, product=products["placement"], amount=Decimal("50.00"))
    charge = charge_create(customer=customer, product=products["placement"], amount=Decimal("40.00"))
    # A webhook about the customer to re-send (nobody listens at that address: deliveries wait for a retry).
    service.webhook_url = "http://127.0.0.1:9/hooks"
    service.save(update_fields=["webhook_url"])
    WebhookEvent.objects.create(service=service, type="topup.succeeded", status="delivered",
                                data={"customer": customer.external_id})
    with transaction.atomic():
        operation = enqueue_sync(customer, update=True)
    OutboxOperation.objects.filter(pk=operation.pk).update(status=OutboxOperation.Status.FAILED,
                                                           last_error="Balance said no")
    mismatch = Mismatch.objects.create(kind=CUSTOMER_DATA, severity=Mismatch.Severity.WARNING,
                                       key=f"customer_data:customer:{customer.pk}", service=service,
                                       customer=customer, summary="e-mail differs")
    overdraft_apply_balance_params(customer_id=direct.pk, params=BalanceOverdraft(
        limit=Decimal("300.00"), spent=Decimal("0.00"), min_payment_term=None, banned=False, currency="RUB"))
    override = overdraft_override_set(customer=direct, limit=Decimal("100.00"), reason="initial", by=admin_user)
    customer_block(customer=direct, reason="initial block", by=admin_user)
    return Console(customer=customer, direct=direct, agency_a=agency_a, agency_b=agency_b, hold=hold,
                   operation=OutboxOperation.objects.get(pk=operation.pk), mismatch=mismatch, override=override,
                   charge=charge)


# --- the cases ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    url: Callable[[Console], str]
    data: Callable[[Console, str | None], dict]  # the form, with the reason (None: no reason field at all)


def _customer_view(name: str, *extra: Callable[[Console], Any]) -> Callable[[Console], str]:
    return lambda c: reverse(f"admin:customers_customer_{name}", args=[c.customer.pk, *(f(c) for f in extra)])


def _with_reason(fields: dict, reason: str | None, key: str = "reason") -> dict:
    return fields if reason is None else {**fields, key: reason}


def _action(model: str, obj: Callable[[Console], Any], name: str, key: str = "reason") -> Case:
    return Case(
        url=lambda c: reverse(f"admin:{model}_changelist"),
        data=lambda c, reason: _with_reason({"action": name, "_selected_action": [obj(c).pk], "post": "yes"},
                                            reason, key),
    )


def _overdraft(c: Console) -> Any:
    from overdrafts.models import Overdraft

    return Overdraft.objects.get(customer=c.direct)


def _block(c: Console) -> Any:
    from overdrafts.models import Block

    return Block.objects.get(customer=c.direct, lifted_at__isnull=True)


CASES: dict[tuple[str, str], Case] = {
    ("customers.customer", "change_agency"): Case(
        _customer_view("change_agency"), lambda c, r: _with_reason({"agency": str(c.agency_b.pk)}, r)),
    ("customers.customer", "adjust_wallet"): Case(
        _customer_view("adjust_wallet"), lambda c, r: _with_reason({"payer": "self", "amount": "25.00",
                                                           "balance_effect": "mirrors_balance"}, r)),
    ("customers.customer", "move_money"): Case(
        _customer_view("move_money"),
        lambda c, r: _with_reason({"from_payer": str(c.agency_a.pk), "to_payer": "self", "amount": "30.00"}, r)),
    ("customers.customer", "retry_operation"): Case(
        _customer_view("retry_operation", lambda c: c.operation.pk), lambda c, r: _with_reason({}, r)),
    ("customers.customer", "refund"): Case(
        _customer_view("refund"), lambda c, r: _with_reason({"charge": str(c.charge.pk), "amount": "15.00"}, r)),
    ("customers.customer", "payment_link"): Case(
        _customer_view("payment_link"), lambda c, r: _with_reason({"amount": "700.00"}, r)),
    ("customers.customer", "resend_webhooks"): Case(
        _customer_view("resend_webhooks"),
        lambda c, r: _with_reason({"date_from": f"{timezone.localdate():%Y-%m-%d}",
                                   "date_to": f"{timezone.localdate():%Y-%m-%d}"}, r)),
    ("payments.hold", "release_now"): _action("payments_hold", lambda c: c.hold, "release_now"),
    ("overdrafts.overdraft", "block"): Case(
        # the direct customer is blocked by the fixture: the tests lift that block first (`_lift_block`)
        lambda c: reverse("admin:overdrafts_overdraft_changelist"),
        lambda c, r: _with_reason({"action": "block", "_selected_action": [_overdraft(c).pk], "post": "yes"}, r)),
    ("overdrafts.overdraft", "unblock"): _action("overdrafts_overdraft", _overdraft, "unblock"),
    ("overdrafts.block", "unblock"): _action("overdrafts_block", _block, "unblock"),
    ("overdrafts.limitoverride", "end"): _action("overdrafts_limitoverride", lambda c: c.override, "end"),
    ("reconciliation.mismatch", "resolve_selected"): _action("reconciliation_mismatch", lambda c: c.mismatch,
                                                              "resolve_selected", key="comment"),
    ("reconciliation.mismatch", "resolve"): Case(
        lambda c: reverse("admin:reconciliation_mismatch_resolve", args=[c.mismatch.pk]),
        lambda c, r: _with_reason({}, r, "comment")),
}

IGNORED_IN_DIFF = {"sessions.session"}


def _texts(rows: list[dict]) -> str:
    return "\n".join(str(v) for row in rows for v in row.values() if isinstance(v, str))


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}:{k[1]}")
@pytest.mark.parametrize("reason", [None, "", "   "], ids=["no reason", "empty reason", "blank reason"])
def test_without_a_reason_nothing_changes(console, admin_client, key, reason):
    case = CASES[key]
    if key == ("overdrafts.overdraft", "block"):
        _lift_block(console)
    before = db_snapshot()
    response = admin_client.post(case.url(console), case.data(console, reason))
    assert response.status_code in (200, 302), response.status_code
    changes = {k: v for k, v in snapshot_diff(before, db_snapshot()).items() if k not in IGNORED_IN_DIFF}
    assert changes == {}, f"{key} changed {sorted(changes)} without a reason"


def _lift_block(c: Console) -> None:
    from overdrafts.services import customer_unblock

    customer_unblock(customer=c.direct, reason="setup", by=_superuser())


def _superuser():
    from django.contrib.auth.models import User

    return User.objects.filter(is_superuser=True).first()


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}:{k[1]}")
def test_with_a_reason_the_change_is_audited_with_the_user_and_the_reason(console, admin_client, admin_user, key):
    case = CASES[key]
    if key == ("overdrafts.overdraft", "block"):
        _lift_block(console)
    logs_before = set(LogEntry.objects.values_list("pk", flat=True))
    before = db_snapshot()
    response = admin_client.post(case.url(console), case.data(console, REASON))
    assert response.status_code in (200, 302), response.status_code
    changes = {k: v for k, v in snapshot_diff(before, db_snapshot()).items() if k not in IGNORED_IN_DIFF}
    domain = {k: v for k, v in changes.items() if k != "admin.logentry"}
    assert domain, f"{key} with a reason changed nothing"
    touched = [row for change in changes.values() for row in change["created"] + [n for _, n in change["changed"]]]
    assert REASON in _texts(touched), f"{key}: the reason is stored nowhere"
    new_logs = LogEntry.objects.exclude(pk__in=logs_before).filter(user=admin_user)
    by_user = any(value == admin_user.pk for row in touched for name, value in row.items()
                  if name.endswith(("_by_id", "_user_id", "created_by_id")))
    assert new_logs.exists() or by_user, f"{key}: no audit row names the user"


def test_the_customer_page_lists_only_actions_the_user_may_take(console, client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_customer"))
    client.force_login(viewer)
    page = client.get(reverse("admin:customers_customer_change", args=[console.customer.pk]))
    assert page.status_code == 200
    for name in ("change_agency", "adjust_wallet", "move_money"):
        url = reverse(f"admin:customers_customer_{name}", args=[console.customer.pk])
        assert url not in page.content.decode()
        assert client.post(url, {"reason": REASON}).status_code == 403
    assert Customer.objects.get(pk=console.customer.pk).agency_id == console.agency_a.pk
