"""The support console: the dashboard search (each kind of id) and counts, the customer page's sections, the support
actions (a reason is required; with one, the domain change and both audit trails exist, with the user), the groups'
permissions (support vs billing-admin; ledger and tokens), and every admin page rendering for both groups."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db import transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from customers.models import AgencyAssignment, Customer
from disbalance.management.commands.setup_groups import (
    BILLING_ADMIN,
    BILLING_APPS,
    SUPPORT,
    group_permissions,
    groups_setup,
)
from disbalance.models import OutboxOperation, ServiceToken
from disbalance.services import service_token_issue
from payments.models import TopUp
from payments.services import orders_ensure
from reconciliation.models import Mismatch
from tests.factories import AgencyFactory, ConsumerServiceFactory, CustomerFactory
from tests.support.conftest import make_staff
from wallets.models import Account, LedgerEntry, LedgerTransaction
from wallets.services import wallet_credit_topup

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/dashboard/"


def page(customer) -> str:
    return reverse("admin:customers_customer_change", args=[customer.pk])


def action(customer, name: str, *args) -> str:
    return reverse(f"admin:customers_customer_{name}", args=[customer.pk, *args])


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def action_names(response) -> set[str]:
    """The bulk actions a changelist offers the user."""
    form = response.context["action_form"]
    return {name for name, _ in form.fields["action"].choices if name} if form is not None else set()


def wallet_balance(customer, agency) -> Decimal:
    account = Account.objects.filter(customer=customer, payer_agency=agency, kind=Account.Kind.WALLET).first()
    return account.balance if account else Decimal("0.00")


def credit(customer, agency, amount: str) -> None:
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=agency, amount=Decimal(amount), reference_kind="test",
                            reference_id=f"pay-{agency.pk if agency else 'self'}-{amount}")


def mismatch(customer, severity="critical", kind="order_ownership", n=1, **extra) -> Mismatch:
    return Mismatch.objects.create(
        kind=kind, severity=severity, key=f"{kind}:test:{customer.pk}:{n}", customer=customer, service=customer.service,
        summary=f"Order {n} in Balance has AgencyID 7 (billing 5)",
        details={"rows": [["AgencyID", "5", "7"]], "note": "Re-sending the order restores billing's values.",
                 "fix": "resend"}, **extra)


# --- the dashboard ------------------------------------------------------------------------------------------------

@pytest.fixture
def lookalikes(service, customer):
    """Customers whose ids or names contain the customer's: partial matches that must not hide the exact one."""
    return [
        CustomerFactory(service=service, external_id="dealer:201011", name="Demo Motors LLC North", inn="7709876500"),
        CustomerFactory(service=service, external_id="dealer:201012", name="Demo Motors South", inn="7709876501"),
    ]


@pytest.mark.parametrize("term", ["dealer:20101", "3000101", "7709876543", "demo motors llc", "  dealer:20101  "])
def test_search_by_each_kind_of_id_opens_the_customer(support_client, customer, lookalikes, term):
    response = support_client.get(DASHBOARD, {"q": term})
    assert response.status_code == 302 and response.url == page(customer)


def test_search_lists_exact_matches_first_then_partial(support_client, customer, lookalikes):
    response = support_client.get(DASHBOARD, {"q": "dealer:20101", "list": "1"})
    assert response.status_code == 200
    hits = response.context["hits"]
    assert [(hit.customer.external_id, hit.exact) for hit in hits] == [
        ("dealer:20101", True), ("dealer:201011", False), ("dealer:201012", False)]
    assert hits[0].matched == "external id"
    html = response.content.decode()
    assert html.index("dealer:201011") > html.index(page(customer))

    partial = support_client.get(DASHBOARD, {"q": "Motors"})  # no exact match, three partial ones: a list
    assert partial.status_code == 200 and len(partial.context["hits"]) == 3
    assert all(not hit.exact and hit.matched == "name" for hit in partial.context["hits"])

    by_inn_prefix = support_client.get(DASHBOARD, {"q": "77098765"})
    assert {hit.customer.pk for hit in by_inn_prefix.context["hits"]} == {customer.pk, *(c.pk for c in lookalikes)}

    only_one = support_client.get(DASHBOARD, {"q": "South"})  # one partial match and no exact one: opened
    assert only_one.status_code == 302 and only_one.url == page(lookalikes[1])


def test_search_with_the_same_id_in_two_services_lists_both(support_client, customer):
    other = CustomerFactory(service=ConsumerServiceFactory(slug="realty"), external_id="dealer:20101")
    response = support_client.get(DASHBOARD, {"q": "dealer:20101"})
    assert response.status_code == 200
    assert {hit.customer.pk for hit in response.context["hits"]} == {customer.pk, other.pk}
    assert all(hit.exact for hit in response.context["hits"])


def test_search_without_a_match_says_so(support_client, customer):
    response = support_client.get(DASHBOARD, {"q": "dealer:99999"})
    assert response.status_code == 200 and response.context["hits"] == []
    assert "No customer matches" in response.content.decode()
    huge = support_client.get(DASHBOARD, {"q": "9" * 40})  # not a Balance client id: no overflow
    assert huge.status_code == 200 and huge.context["hits"] == []


def test_dashboard_counts_what_needs_attention(support_client, support_user, service, customer):
    now = timezone.now()
    mismatch(customer, "critical", n=1)
    mismatch(customer, "critical", n=2, kind="money_out")
    mismatch(customer, "warning", n=3, kind="money_in")
    Mismatch.objects.create(kind="money_in", severity="info", key="closed", customer=customer, summary="old",
                            status="resolved", resolved_at=now, resolution="system: no longer seen")
    subject = f"customer:{customer.pk}"
    OutboxOperation.objects.create(kind="customer.sync", subject=subject, status="failed", last_error="boom")
    OutboxOperation.objects.create(kind="customer.sync", subject=subject, status="pending",
                                   next_attempt_at=now - timedelta(hours=1))
    OutboxOperation.objects.create(kind="customer.sync", subject=subject, status="pending")  # due now: not stuck
    OutboxOperation.objects.create(kind="customer.sync", subject=subject, status="in_progress",
                                   leased_until=now - timedelta(minutes=1))
    CustomerFactory(service=service, status="failed", status_reason="Balance: INVALID_PARAM")
    CustomerFactory(service=service, blocked=True)
    CustomerFactory(service=service, blocked=True)
    with transaction.atomic():
        order = orders_ensure(customer=customer, payer=customer.agency)
    for age, status in ((timedelta(days=2), "awaiting_payment"), (timedelta(days=3), "pending"),
                        (timedelta(hours=2), "awaiting_payment"), (timedelta(days=5), "succeeded")):
        TopUp.objects.create(service=service, customer=customer, payer_agency=customer.agency, order=order,
                             amount=Decimal("10.00"), status=status, created_at=now - age,
                             expires_at=now + timedelta(days=1))
    LogEntry.objects.log_actions(support_user.pk, [customer], 2, change_message="Changed the agency. Reason: test")

    response = support_client.get(DASHBOARD)
    assert response.status_code == 200
    severities = {item.label: item.count for item in response.context["mismatches"]}
    assert severities == {"critical mismatches": 2, "warning mismatches": 1, "info mismatches": 0}
    critical = response.context["mismatches"][0]
    assert "status__exact=open" in critical.url and "severity__exact=critical" in critical.url
    kinds = {item.label: item.count for item in response.context["mismatch_kinds"]}
    assert kinds["order ownership"] == 1 and kinds["money out"] == 1 and kinds["money in"] == 1
    counts = {item.label: item.count for item in response.context["attention"]}
    assert counts == {
        "failed Balance operations": 1, "operations waiting past their time": 1,
        "operations running past their lease": 1, "customers whose registration failed": 1,
        "agencies whose registration failed": 0, "blocked customers": 2,
        "top-ups awaiting payment for over a day": 2,
    }
    # Every count links to an admin list that shows the same rows.
    for item in [*response.context["mismatches"], *response.context["attention"]]:
        listed = support_client.get(item.url)
        assert listed.status_code == 200, item.label
        if item.count:
            assert listed.context["cl"].result_count == item.count, item.label
    recent = response.context["recent"]
    assert recent[0]["user"] == "support" and recent[0]["message"] == "Changed the agency. Reason: test"
    assert recent[0]["url"] == page(customer)


def test_dashboard_and_header_need_staff(client, customer):
    response = client.get(DASHBOARD, {"q": "dealer:20101"})
    assert response.status_code == 302 and "/admin/login/" in response.url


# --- the customer page --------------------------------------------------------------------------------------------

def test_customer_page_shows_agency_history_mismatches_and_changes(support_client, customer, agency_b, service):
    customer.agency = agency_b
    customer.name = "Demo Motors Group LLC"
    customer.save()
    AgencyAssignment.objects.filter(customer=customer).update(until=timezone.now())
    AgencyAssignment.objects.create(customer=customer, agency=agency_b, since=timezone.now(), changed_by="user:anna",
                                    reason="signed with Beta Ads (SUP-12)")
    critical = mismatch(customer, "critical", n=1)
    warning = mismatch(customer, "warning", n=2, kind="money_in")
    mismatch(CustomerFactory(service=service), n=3)  # another customer's: not shown
    operation = OutboxOperation.objects.create(kind="customer.sync", subject=f"customer:{customer.pk}",
                                               status="failed", last_error="BalanceFinalError: bad INN",
                                               failure_kind="final")

    response = support_client.get(page(customer))
    assert response.status_code == 200
    html = response.content.decode()

    agencies = response.context["agency_rows"]
    assert [(row["payer"], row["changed_by"], row["reason"]) for row in agencies] == [
        ("agency:b", "user:anna", "signed with Beta Ads (SUP-12)"), ("agency:a", "service:autoru", "registration")]
    assert agencies[0]["until"] is None and agencies[1]["until"] is not None
    assert 'id="customer-agencies"' in html and "in force" in html

    rows = response.context["open_mismatches"]
    assert [row["obj"] for row in rows] == [critical, warning]  # the most severe first
    assert rows[0]["differences"] == [["AgencyID", "5", "7"]] and rows[0]["fixable"]
    assert f'value="{critical.pk}"' in html and "fix-mismatch" in html  # the Fix button
    assert reverse("admin:reconciliation_mismatch_change", args=[critical.pk]) in html
    assert f"customer__id__exact={customer.pk}&amp;status__exact=open" in html  # the queue, filtered

    changes = response.context["change_rows"]
    assert changes[0]["what"] == "changed"
    assert {(c["field"], c["old"], c["new"]) for c in changes[0]["changes"]} == {
        ("agency", "agency:a", "agency:b"), ("name", "Demo Motors LLC", "Demo Motors Group LLC")}
    assert changes[-1]["what"] == "registered"
    assert 'id="customer-history"' in html

    assert action(customer, "retry_operation", operation.pk) in html
    assert action(customer, "change_agency") in html
    assert action(customer, "adjust_wallet") not in html and action(customer, "move_money") not in html


def test_a_viewer_without_support_permissions_gets_no_buttons(client, customer, groups):
    viewer = make_staff("viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_customer"))
    client.force_login(viewer)
    mismatch(customer)
    OutboxOperation.objects.create(kind="customer.sync", subject=f"customer:{customer.pk}", status="failed")
    html = client.get(page(customer)).content.decode()
    assert "fix-mismatch" not in html and "Retry…" not in html and action(customer, "change_agency") not in html
    assert client.get(action(customer, "change_agency")).status_code == 403


def test_billing_admin_sees_the_money_actions(billing_client, customer):
    html = billing_client.get(page(customer)).content.decode()
    for name in ("change_agency", "adjust_wallet", "move_money"):
        assert action(customer, name) in html


# --- change agency --------------------------------------------------------------------------------------------------

def test_change_agency_needs_a_reason_and_changes_nothing_without_one(support_client, customer, agency_b):
    form = support_client.get(action(customer, "change_agency"))
    assert form.status_code == 200
    assert "agency:b — Beta Ads" in form.content.decode()

    for reason in ("", "   "):
        response = support_client.post(action(customer, "change_agency"), {"agency": agency_b.pk, "reason": reason})
        assert response.status_code == 200
        assert response.context["form"].errors == {"reason": ["This field is required."]}
    missing_agency = support_client.post(action(customer, "change_agency"), {"reason": "because"})
    assert "agency" in missing_agency.context["form"].errors
    customer.refresh_from_db()
    assert customer.agency_id != agency_b.pk
    assert AgencyAssignment.objects.filter(customer=customer).count() == 1
    assert not LogEntry.objects.exists()


def test_change_agency_with_a_reason_is_recorded_with_the_user(support_client, support_user, customer, agency_a,
                                                               agency_b):
    response = support_client.post(action(customer, "change_agency"),
                                   {"agency": agency_b.pk, "reason": "Signed with Beta Ads, ticket SUP-12"},
                                   follow=True)
    assert response.redirect_chain[-1][0] == page(customer)
    assert any("from agency:a to agency:b" in message for message in messages_of(response))
    customer.refresh_from_db()
    assert customer.agency == agency_b

    current = AgencyAssignment.objects.get(customer=customer, until__isnull=True)
    assert (current.agency, current.changed_by, current.changed_by_user, current.reason) == (
        agency_b, "user:support", support_user, "Signed with Beta Ads, ticket SUP-12")
    entry = LogEntry.objects.get()
    assert entry.user == support_user and entry.object_id == str(customer.pk)
    assert "Reason: Signed with Beta Ads, ticket SUP-12" in entry.change_message
    assert customer.history.latest().history_user == support_user

    # Back to no agency, and the page lists the whole story.
    support_client.post(action(customer, "change_agency"), {"agency": "none", "reason": "Pays directly now"})
    customer.refresh_from_db()
    assert customer.agency is None
    rows = support_client.get(page(customer)).context["agency_rows"]
    assert [(row["payer"], row["reason"]) for row in rows] == [
        ("self", "Pays directly now"), ("agency:b", "Signed with Beta Ads, ticket SUP-12"),
        ("agency:a", "registration")]


def test_change_agency_refused_by_the_domain_shows_the_error(support_client, customer, service):
    no_contract = AgencyFactory(service=service, external_id="agency:nc", name="No Contract Ltd")
    form = support_client.get(action(customer, "change_agency")).content.decode()
    assert "agency:nc — No Contract Ltd (no active contract)" in form
    response = support_client.post(action(customer, "change_agency"), {"agency": no_contract.pk, "reason": "try"})
    assert response.status_code == 200
    assert any("no active contract" in message for message in messages_of(response))
    customer.refresh_from_db()
    assert customer.agency.external_id == "agency:a"
    assert AgencyAssignment.objects.filter(customer=customer).count() == 1 and not LogEntry.objects.exists()

    same = support_client.post(action(customer, "change_agency"), {"agency": customer.agency_id, "reason": "x"})
    assert "already the customer's payer" in same.context["form"].errors["agency"][0]
    other_service = AgencyFactory(external_id="agency:elsewhere")  # not offered, not accepted
    foreign = support_client.post(action(customer, "change_agency"), {"agency": other_service.pk, "reason": "x"})
    assert "agency" in foreign.context["form"].errors


# --- wallet adjustments and moves (billing-admin only) --------------------------------------------------------------

def test_support_cannot_adjust_or_move_money(support_client, customer, agency_a):
    credit(customer, agency_a, "100.00")
    for name in ("adjust_wallet", "move_money"):
        assert support_client.get(action(customer, name)).status_code == 403
    assert support_client.post(action(customer, "adjust_wallet"),
                               {"payer": "self", "amount": "50.00", "reason": "x"}).status_code == 403
    assert support_client.post(action(customer, "move_money"), {
        "from_payer": agency_a.pk, "to_payer": "self", "amount": "50.00", "reason": "x"}).status_code == 403
    assert LedgerTransaction.objects.count() == 1 and not LogEntry.objects.exists()


def test_adjust_wallet_needs_a_reason_and_records_the_user(billing_client, billing_admin, customer, agency_a):
    before = LedgerTransaction.objects.count()
    mirrors, ledger_only = {"balance_effect": "mirrors_balance"}, {"balance_effect": "ledger_only"}
    for data in ({"payer": "self", "amount": "150.00", "reason": "", **mirrors},
                 {"payer": "self", "amount": "0", "reason": "zero", **mirrors},
                 {"payer": "self", "amount": "1.005", "reason": "three places", **mirrors},
                 {"payer": "999999", "amount": "10.00", "reason": "unknown payer", **mirrors},
                 {"payer": "self", "amount": "10.00", "reason": "no Balance effect said"},
                 # money only in billing's ledger would be unpaid completion in Balance once spent
                 {"payer": "self", "amount": "10.00", "reason": "goodwill", **ledger_only}):
        response = billing_client.post(action(customer, "adjust_wallet"), data)
        assert response.status_code == 200 and response.context["form"].errors, data
    assert "balance_effect" in response.context["form"].errors
    assert any("unpaid completion in Balance" in m for m in messages_of(response))
    assert LedgerTransaction.objects.count() == before and not LogEntry.objects.exists()

    form = billing_client.get(action(customer, "adjust_wallet")).content.decode()
    assert "Balance is not changed" in form and "An adjustment never changes Balance" in form
    response = billing_client.post(action(customer, "adjust_wallet"),
                                   {"payer": agency_a.pk, "amount": "150.00", "reason": "Paid by bank transfer BT-7",
                                    **mirrors}, follow=True)
    assert response.redirect_chain[-1][0] == page(customer)
    assert any("Balance is not changed: this mirrors a change already made in Balance" in m
               for m in messages_of(response))
    tx = LedgerTransaction.objects.get(type="adjustment")
    assert (tx.created_by, tx.reason, tx.customer, tx.payer_agency) == (
        billing_admin, "Paid by bank transfer BT-7", customer, agency_a)
    assert wallet_balance(customer, agency_a) == Decimal("150.00")
    entry = LogEntry.objects.get()
    assert entry.user == billing_admin and str(tx.public_id) in entry.change_message

    billing_client.post(action(customer, "adjust_wallet"),
                        {"payer": agency_a.pk, "amount": "-200.00", "reason": "Credited twice", **ledger_only})
    assert LedgerTransaction.objects.filter(type="adjustment").first().description == (
        "Balance not changed: a correction of billing's ledger only")
    assert wallet_balance(customer, agency_a) == Decimal("-50.00")  # a correction may go below zero
    call_command("verify_ledger")


def test_move_money_between_payers(billing_client, billing_admin, customer, agency_a, agency_b):
    credit(customer, agency_a, "300.00")
    form = billing_client.get(action(customer, "move_money")).content.decode()
    assert "agency:a — Alpha Media · free 300.00 · current payer" in form

    same = billing_client.post(action(customer, "move_money"), {
        "from_payer": agency_a.pk, "to_payer": agency_a.pk, "amount": "10.00", "reason": "x"})
    assert "to_payer" in same.context["form"].errors
    no_reason = billing_client.post(action(customer, "move_money"), {
        "from_payer": agency_a.pk, "to_payer": "self", "amount": "10.00", "reason": ""})
    assert "reason" in no_reason.context["form"].errors
    too_much = billing_client.post(action(customer, "move_money"), {
        "from_payer": agency_a.pk, "to_payer": "self", "amount": "300.01", "reason": "all of it"})
    assert too_much.status_code == 200 and any("Nothing was changed" in m for m in messages_of(too_much))
    assert wallet_balance(customer, agency_a) == Decimal("300.00") and not LogEntry.objects.exists()

    # Money that never came through Balance (no wallet order there): Balance cannot move it, billing says so and
    # changes nothing. The move through Balance is tested in test_payer_transfer.py.
    ledger_only = billing_client.post(action(customer, "move_money"), {
        "from_payer": agency_a.pk, "to_payer": "self", "amount": "120.00", "reason": "Agency A returned it, SUP-9"})
    assert any("has no order in Balance" in m for m in messages_of(ledger_only)), messages_of(ledger_only)
    assert (wallet_balance(customer, agency_a), wallet_balance(customer, None)) == (Decimal("300.00"),
                                                                                   Decimal("0.00"))
    assert not LedgerTransaction.objects.filter(type="transfer").exists() and not LogEntry.objects.exists()
    call_command("verify_ledger")


# --- retry an operation ------------------------------------------------------------------------------------------

def test_retry_a_failed_operation(support_client, support_user, service, balance, run_outbox):
    from customers.services import CustomerData, customer_register

    customer = customer_register(service=service, external_id="dealer:1", data=CustomerData(
        kind="company", name="Retry Motors", legal={"inn": "7700000011", "legal_address": "Moscow", "kpp": "770101001",
                                                    "long_name": "Limited Liability Company",
                                                    "postal_address": "Moscow", "postcode": "101000"})).customer
    operation = OutboxOperation.objects.get(subject=f"customer:{customer.pk}")
    OutboxOperation.objects.filter(pk=operation.pk).update(status="failed", attempts=12, last_error="boom")
    assert customer.status == "registering"

    form = support_client.get(action(customer, "retry_operation", operation.pk))
    assert form.status_code == 200 and "boom" in form.content.decode()
    no_reason = support_client.post(action(customer, "retry_operation", operation.pk), {"reason": ""})
    assert "reason" in no_reason.context["form"].errors
    operation.refresh_from_db()
    assert operation.status == "failed" and not LogEntry.objects.exists()

    response = support_client.post(action(customer, "retry_operation", operation.pk),
                                   {"reason": "Balance fixed the INN check"})
    assert response.status_code == 302
    run_outbox()
    operation.refresh_from_db()
    customer.refresh_from_db()
    assert operation.status == "done" and customer.status == "active"
    entries = LogEntry.objects.filter(user=support_user)
    assert {entry.content_type.model for entry in entries} == {"customer", "outboxoperation"}
    assert all("Reason: Balance fixed the INN check" in entry.change_message for entry in entries)

    done = support_client.get(action(customer, "retry_operation", operation.pk), follow=True)
    assert any("nothing to retry" in message for message in messages_of(done))
    other = CustomerFactory(service=service)
    assert support_client.get(action(other, "retry_operation", operation.pk)).status_code == 404


# --- fix a mismatch -------------------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)  # the re-send runs after commit, as in production
def test_fix_a_mismatch_from_the_customer_page(support_client, support_user, mismatched, emulator, service):
    customer, order, row = mismatched
    html = support_client.get(page(customer)).content.decode()
    assert f'name="mismatch" value="{row.pk}"' in html

    response = support_client.post(action(customer, "fix_mismatch"), {"mismatch": row.pk}, follow=True)
    assert any("resolved" in message for message in messages_of(response))
    row.refresh_from_db()
    assert row.status == "resolved" and row.last_fix_by == support_user and row.fix_attempts == 1
    state = {int(o["ServiceOrderID"]): o for o in emulator.state()["orders"]}
    assert int(state[order.pk]["ProductID"]) == settings.BALANCE_WALLET_PRODUCT_ID  # billing's values are back
    assert LogEntry.objects.filter(user=support_user, object_id=str(row.pk)).exists()
    assert LogEntry.objects.filter(user=support_user, object_id=str(customer.pk)).exists()
    assert response.context["open_mismatches"] == []

    again = support_client.post(action(customer, "fix_mismatch"), {"mismatch": row.pk}, follow=True)
    assert any("already resolved" in message for message in messages_of(again))


def test_fix_needs_the_permission_and_a_post(client, customer, groups):
    row = mismatch(customer)
    viewer = make_staff("viewer")
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_customer", "view_mismatch"]))
    client.force_login(viewer)
    assert client.post(action(customer, "fix_mismatch"), {"mismatch": row.pk}).status_code == 403
    client.force_login(make_staff("helper", "support"))
    assert client.get(action(customer, "fix_mismatch")).status_code == 405
    assert client.post(action(customer, "fix_mismatch"), {"mismatch": "x"}).status_code == 404
    row.refresh_from_db()
    assert row.fix_attempts == 0


# --- groups and permissions -------------------------------------------------------------------------------------------

def test_setup_groups_is_idempotent_and_leaves_other_apps_grants(db):
    first = groups_setup()
    support = Group.objects.get(name=SUPPORT)
    overdraft_grant = Permission.objects.filter(content_type__app_label="overdrafts").exclude(
        codename__startswith="view_").first()
    if overdraft_grant is not None:
        support.permissions.add(overdraft_grant)  # e.g. granted by the overdrafts migration
    stray = Permission.objects.get(codename="change_ledgertransaction")
    support.permissions.add(stray)  # added by hand in a managed app: taken away again
    second = groups_setup()
    third = groups_setup()
    assert second == third and first[BILLING_ADMIN] >= first[SUPPORT]
    codes = set(support.permissions.values_list("content_type__app_label", "codename"))
    assert ("wallets", "change_ledgertransaction") not in codes
    if overdraft_grant is not None:
        assert ("overdrafts", overdraft_grant.codename) in codes
    specs = group_permissions()
    assert set(specs[SUPPORT]) < set(specs[BILLING_ADMIN])


def test_group_permissions(support_user, billing_admin):
    for perm in ("customers.view_customer", "wallets.view_ledgertransaction", "disbalance.view_servicetoken",
                 "reconciliation.view_mismatch", "customers.change_agency", "customers.retry_operation",
                 "reconciliation.fix_mismatch", "reconciliation.resolve_mismatch"):
        assert support_user.has_perm(perm) and billing_admin.has_perm(perm), perm
    for perm in ("customers.adjust_wallet", "payments.add_product", "payments.change_product",
                 "disbalance.add_consumerservice", "disbalance.change_servicetoken", "payments.change_hold"):
        assert not support_user.has_perm(perm), perm
    for perm in ("customers.adjust_wallet", "payments.add_product", "payments.change_product",
                 "disbalance.add_consumerservice", "disbalance.change_consumerservice",
                 "disbalance.change_servicetoken"):
        assert billing_admin.has_perm(perm), perm
    assert not billing_admin.has_perm("payments.change_hold")  # releasing holds is not part of either group


def test_ledger_rows_are_read_only_for_everyone(support_client, billing_client, admin_client, customer, agency_a):
    credit(customer, agency_a, "100.00")
    tx = LedgerTransaction.objects.get()
    entry = LedgerEntry.objects.filter(transaction=tx).first()
    account = Account.objects.filter(customer=customer).first()
    for client in (support_client, billing_client, admin_client):
        for model, obj in (("ledgertransaction", tx), ("ledgerentry", entry), ("account", account)):
            change = reverse(f"admin:wallets_{model}_change", args=[obj.pk])
            view = client.get(change)
            assert view.status_code == 200 and 'name="_save"' not in view.content.decode(), model
            assert client.post(change, {"reason": "edited"}).status_code == 403, model
            assert client.get(reverse(f"admin:wallets_{model}_add")).status_code == 403, model
            assert client.post(reverse(f"admin:wallets_{model}_delete", args=[obj.pk]),
                               {"post": "yes"}).status_code == 403, model
    assert LedgerTransaction.objects.get().reason == tx.reason


def test_support_cannot_add_change_or_revoke_tokens(support_client, billing_client, service):
    token = ServiceToken.objects.get(pk=service_token_issue(service=service, label="main").token.pk)
    changelist = reverse("admin:disbalance_servicetoken_changelist")
    change = reverse("admin:disbalance_servicetoken_change", args=[token.pk])

    listing = support_client.get(changelist)
    assert listing.status_code == 200 and "revoke" not in action_names(listing)
    refused = support_client.post(changelist, {"action": "revoke", "_selected_action": [token.pk]})
    assert refused.status_code in (200, 302)
    view = support_client.get(change)
    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    assert support_client.post(change, {"label": "mine"}).status_code == 403
    assert support_client.get(reverse("admin:disbalance_servicetoken_add")).status_code == 403
    assert support_client.get(reverse("admin:disbalance_consumerservice_add")).status_code == 403
    services = support_client.get(reverse("admin:disbalance_consumerservice_changelist"))
    assert "issue_token" not in action_names(services)
    assert support_client.post(reverse("admin:disbalance_consumerservice_change", args=[service.pk]),
                               {"name": "Hijacked"}).status_code == 403
    token.refresh_from_db()
    service.refresh_from_db()
    assert token.revoked_at is None and token.label == "main" and service.name == "Auto.ru"

    # A billing admin can.
    assert "revoke" in action_names(billing_client.get(changelist))
    billing_client.post(changelist, {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert billing_client.get(reverse("admin:disbalance_consumerservice_add")).status_code == 200


def test_support_cannot_release_holds(support_client):
    listing = support_client.get(reverse("admin:payments_hold_changelist"))
    assert listing.status_code == 200
    assert "release_now" not in action_names(listing)


# --- every page renders ---------------------------------------------------------------------------------------------

def _model_pages(model_admin) -> list[str]:
    opts = model_admin.model._meta
    urls = [reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")]
    obj = model_admin.model._default_manager.order_by("pk").first()
    if obj is not None:
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
        try:
            urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[obj.pk]))
        except NoReverseMatch:
            pass
    return urls


def test_every_page_renders(support_client, billing_client, customer, agency_a, agency_b, service):
    credit(customer, agency_a, "500.00")
    row = mismatch(customer)
    operation = OutboxOperation.objects.create(kind="customer.sync", subject=f"customer:{customer.pk}",
                                               status="failed", last_error="boom")
    service_token_issue(service=service, label="main")
    support_client.post(action(customer, "change_agency"), {"agency": agency_b.pk, "reason": "render test"})
    pages = ["/admin/", DASHBOARD, f"{DASHBOARD}?q=dealer&list=1", f"{DASHBOARD}?q=nothing-like-it", page(customer),
             action(customer, "change_agency"), action(customer, "retry_operation", operation.pk),
             reverse("admin:reconciliation_mismatch_change", args=[row.pk])]
    for model_admin in admin.site._registry.values():
        if model_admin.model._meta.app_label in BILLING_APPS:
            pages += _model_pages(model_admin)
    outside = [url for model_admin in admin.site._registry.values()
               if model_admin.model._meta.app_label not in BILLING_APPS for url in _model_pages(model_admin)]
    for client, extra in ((support_client, []),
                          (billing_client, [action(customer, "adjust_wallet"), action(customer, "move_money")])):
        for url in pages + extra:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
        for url in outside:  # users and groups: not the console's business
            assert client.get(url).status_code == 403, url
    assert Customer.objects.get(pk=customer.pk).agency == agency_b
