"""Reconciliation with Balance (the emulator over HTTP): sabotage behind billing's back is found, fixed (support's
button or autofix) and closed by the next run, with who did what in the history; plus each kind of mismatch, the
command, the periodic job, and the admin queue."""

from __future__ import annotations

import dataclasses
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from agencies.models import Agency
from agencies.services import agency_contracts_refresh
from balance_gateway.client import BalanceClient
from balance_gateway.services import client_name, person_spec
from customers.models import Customer
from disbalance.exceptions import InvalidState, ValidationFailed
from disbalance.models import OutboxOperation
from payments.models import BalanceOrder, TopUp
from payments.services import orders_pull, product_create, spend_report
from reconciliation.actions import mismatch_fix, mismatch_resolve
from reconciliation.models import Mismatch
from reconciliation.run import reconcile
from tests.customers.test_api import COMPANY

CUSTOMER = "/api/v1/customers/dealer:20101"
SERVICE_ID = 7


def post(api, path, body=None):
    import uuid

    return api.post(path, body or {}, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


@pytest.fixture
def products(service):
    return {code: product_create(service=service, code=code, name=code.title(), kind=kind,
                                 balance_product_id=pid).product
            for code, kind, pid in (("placement", "placement", 503162), ("boost", "vas", 503163))}


def make_agency(api, emulator, run_outbox, external_id, inn):
    body = {"external_id": external_id, "name": f"Agency {external_id}", "legal": {
        "inn": inn, "legal_address": "Moscow", "kpp": "770101001", "long_name": "Limited Liability Company",
        "postal_address": "Moscow", "postcode": "101000"}}
    assert api.post("/api/v1/agencies", body, format="json").status_code == 201
    run_outbox()
    agency = Agency.objects.get(external_id=external_id)
    assert agency.status == "active", agency.status_reason
    emulator.create_contract(agency.balance_client_id, payment_type="prepaid", services=[SERVICE_ID])
    agency_contracts_refresh(agency=agency)
    return agency


def register(api, run_outbox, **extra):
    assert api.post("/api/v1/customers", {**COMPANY, **extra}, format="json").status_code == 201
    run_outbox()
    customer = Customer.objects.get(external_id=COMPANY["external_id"])
    assert customer.status == "active", customer.status_reason
    return customer


def pay(api, emulator, run_outbox, amount, *, wait=None):
    """A top-up paid in the emulator; credited by the live notification (`wait`) or by the pull job."""
    response = post(api, f"{CUSTOMER}/topups", {"amount": amount})
    assert response.status_code == 201, response.content
    run_outbox()
    topup = TopUp.objects.get(pk=response.json()["id"])
    emulator.pay_request(topup.balance_request_id)
    if wait is not None:
        assert wait.wait_notifications_idle(timeout=10)
    else:
        orders_pull()
    topup.refresh_from_db()
    return topup


def charge(api, product, amount):
    response = post(api, f"{CUSTOMER}/charges", {"product": product, "amount": amount})
    assert response.status_code == 201, response.content


def child(customer, product):
    return BalanceOrder.objects.get(customer=customer, kind="child", product=product)


def emulator_orders(emulator):
    return {int(o["ServiceOrderID"]): o for o in emulator.state()["orders"]}


def open_keys():
    return set(Mismatch.objects.filter(status="open").values_list("key", flat=True))


def support_user(*perms):
    user = User.objects.create_user("support", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="reconciliation",
                                                         codename__in=["view_mismatch", *perms]))
    return User.objects.get(pk=user.pk)  # fresh: no permission cache


# --- the acceptance scenario ------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_sabotage_is_found_fixed_and_closed_with_who_did_what(api, emulator, run_outbox, balance_live, products,
                                                               client):
    agency_a = make_agency(api, emulator, run_outbox, "agency:a", "7700000001")
    customer = register(api, run_outbox, agency="agency:a")
    assert pay(api, emulator, run_outbox, "1000.00", wait=balance_live).status == "succeeded"
    charge(api, "placement", "300.00")
    charge(api, "boost", "100.00")
    run_outbox()
    spend_report()
    placement, boost = child(customer, products["placement"]), child(customer, products["boost"])
    wallet_order = placement.parent

    consistent = reconcile(autofix=False)
    assert sum(consistent.found.values()) == 0, Mismatch.objects.values_list("summary", flat=True)
    assert consistent.customers == 1 and consistent.orders == 3 and consistent.agencies == 1

    # Behind billing's back: another agency on an order, a lost notification, a corrupted completion.
    agency_b = make_agency(api, emulator, run_outbox, "agency:b", "7700000002")
    emulator.update_order(SERVICE_ID, boost.pk, {"AgencyID": agency_b.balance_client_id})
    emulator.drop_next_notifications(1)
    lost = pay(api, emulator, run_outbox, "500.00", wait=balance_live)
    assert lost.status == "awaiting_payment"
    emulator.update_order(SERVICE_ID, placement.pk, {"CompletionQty": "999.00"})

    out = io.StringIO()
    call_command("reconcile", "--no-autofix", "--no-progress", stdout=out)
    ownership, money_in, money_out = (f"order_ownership:order:{boost.pk}", f"money_in:order:{wallet_order.pk}",
                                      f"money_out:order:{placement.pk}")
    assert open_keys() == {ownership, money_in, money_out}, out.getvalue()
    assert "order ownership" in out.getvalue() and "Open mismatches now: 3" in out.getvalue()
    # Balance does not return an order's owner: the run re-asserts it, and Balance refuses to move an order
    # with money to another payer, which is how the change is found (with Balance's own message).
    row = Mismatch.objects.get(key=ownership)
    [[what, wanted, answer]] = row.details["rows"]
    assert (what, wanted) == ("owner and payer",
                              f"client {customer.balance_client_id}, agency {agency_a.balance_client_id}")
    assert answer.startswith("refused:") and "equivalent" in answer
    assert row.severity == "critical" and row.customer == customer and row.order == boost

    # A re-run records nothing twice.
    call_command("reconcile", "--no-autofix", "--no-progress", stdout=io.StringIO())
    assert Mismatch.objects.count() == 3
    assert Mismatch.objects.get(key=ownership).times_seen == 2

    # Support puts the order right in Balance, then fixes the ownership one from the admin queue.
    emulator.update_order(SERVICE_ID, boost.pk, {"AgencyID": agency_a.balance_client_id})
    user = support_user("fix_mismatch")
    client.force_login(user)
    response = client.post("/admin/reconciliation/mismatch/", {"action": "fix_selected",
                                                               "_selected_action": [row.pk]}, follow=True)
    assert response.status_code == 200
    assert emulator_orders(emulator)[boost.pk]["AgencyID"] == agency_a.balance_client_id
    row.refresh_from_db()
    assert row.last_fix_by == user and row.fix_attempts == 1
    assert row.status == "resolved" and row.resolved_by is None  # the re-check right after the fix closed it
    assert row.resolution.startswith("system: no longer seen (after the fix by support")
    assert LogEntry.objects.filter(user=user, object_id=str(row.pk)).exists()

    # The hourly run fixes the safe ones itself; the next run sees them gone and closes them.
    call_command("reconcile", "--no-progress", stdout=io.StringIO())
    assert open_keys() == {money_in, money_out}
    assert Decimal(emulator_orders(emulator)[placement.pk]["CompletionQty"]) == Decimal("300")
    lost.refresh_from_db()
    assert lost.status == "succeeded"
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == "1100.00"
    out = io.StringIO()
    call_command("reconcile", "--no-progress", stdout=out)
    assert open_keys() == set(), out.getvalue()
    assert "Open mismatches now: 0" in out.getvalue()

    # The history says who did what.
    history = [(h.history_change_reason, h.history_user, h.status)
               for h in Mismatch.objects.get(key=ownership).history.order_by("history_id")]
    assert history == [("detected", None, "open"), ("support: fix applied", user, "open"),
                       ("closed by the system", None, "resolved")]
    history = [(h.history_change_reason, h.history_user, h.status)
               for h in Mismatch.objects.get(key=money_out).history.order_by("history_id")]
    assert history == [("detected", None, "open"), ("autofix: fix applied", None, "open"),
                       ("closed by the system", None, "resolved")]
    page = client.get(f"/admin/reconciliation/mismatch/{row.pk}/history/")
    assert page.status_code == 200 and b"support: fix applied" in page.content
    call_command("verify_ledger")


@pytest.mark.django_db
def test_a_paid_order_under_another_agency_waits_for_support(api, emulator, run_outbox, balance, products):
    make_agency(api, emulator, run_outbox, "agency:a", "7700000001")
    agency_b = make_agency(api, emulator, run_outbox, "agency:b", "7700000002")
    customer = register(api, run_outbox, agency="agency:a")
    assert pay(api, emulator, run_outbox, "1000.00").status == "succeeded"
    wallet_order = BalanceOrder.objects.get(customer=customer, kind="wallet")
    emulator.update_order(SERVICE_ID, wallet_order.pk, {"AgencyID": agency_b.balance_client_id})

    report = reconcile()  # autofix on: still nothing is re-sent for it
    key = f"order_ownership:order:{wallet_order.pk}"
    mismatch = Mismatch.objects.get(key=key)
    assert report.new["order_ownership"] == 1 and report.fixed["order_ownership"] == 0
    assert mismatch.fix_attempts == 0 and mismatch.details["fix"] is None
    assert "refused" in mismatch.details["note"] and "equivalent" in mismatch.details["rows"][0][2]

    user = User.objects.create_user("support", is_staff=True)
    result = mismatch_fix(mismatch=mismatch, user=user)
    assert not result.ok and "not re-sent" in result.note
    assert result.mismatch.status == "open" and result.mismatch.last_fix_by == user
    assert emulator_orders(emulator)[wallet_order.pk]["AgencyID"] == agency_b.balance_client_id
    assert OutboxOperation.objects.filter(status="pending").count() == 0  # nothing was sent

    with pytest.raises(ValidationFailed):
        mismatch_resolve(mismatch=mismatch, user=user, comment="  ")
    resolved = mismatch_resolve(mismatch=mismatch, user=user, comment="Moved in Balance by ticket BAL-1")
    assert (resolved.status, resolved.resolved_by, resolved.resolution) == ("resolved", user,
                                                                            "Moved in Balance by ticket BAL-1")
    with pytest.raises(InvalidState):
        mismatch_resolve(mismatch=resolved, user=user, comment="again")

    # The same difference with the same figures is acknowledged, not raised again.
    again = reconcile()
    assert again.acknowledged["order_ownership"] == 1 and key not in open_keys()


# --- the other kinds --------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_unpaid_completion_in_balance_and_in_billing(api, emulator, run_outbox, balance, products):
    customer = register(api, run_outbox)
    pay(api, emulator, run_outbox, "100.00")
    charge(api, "placement", "100.00")
    run_outbox()
    spend_report()
    placement = child(customer, products["placement"])
    wallet_order = placement.parent
    emulator.update_order(SERVICE_ID, placement.pk, {"CompletionQty": "250.00"})

    reconcile(autofix=False)
    unpaid = Mismatch.objects.get(kind="unpaid_completion")
    assert unpaid.key == f"unpaid_completion:customer:{customer.pk}:payer:self"
    assert unpaid.order == wallet_order and unpaid.severity == "critical"
    assert ["unpaid completion", "0.00", "150.00"] in unpaid.details["rows"]
    # The figure is the emulator's own unpaid money on the pot's orders.
    assert sum(Decimal(o["UnpaidSum"]) for o in emulator.state()["orders"]) == Decimal("150.00")
    assert open_keys() == {unpaid.key, f"money_out:order:{placement.pk}"}

    reconcile()  # re-reports 100.00: the pot is covered again
    reconcile()
    assert open_keys() == set()
    assert sum(Decimal(o["UnpaidSum"]) for o in emulator.state()["orders"]) == Decimal("0.00")

    # Billing's own view: a correction took the wallet below zero with no overdraft.
    from wallets.services import wallet_adjust

    with transaction.atomic():
        wallet_adjust(customer=customer, payer_agency=None, amount=Decimal("-40.00"), created_by=None,
                      reason="test: money credited twice")
    reconcile(autofix=False)
    unpaid = Mismatch.objects.get(kind="unpaid_completion", status="open")
    assert ["unpaid completion", "40.00", "0.00"] in unpaid.details["rows"] and "(billing)" in unpaid.summary


@pytest.mark.django_db
def test_customer_and_agency_data(api, emulator, run_outbox, balance, products, settings):
    settings.RECONCILE_PERSONS_WINDOW_MINUTES = 0  # nobody counts as recently changed
    agency = make_agency(api, emulator, run_outbox, "agency:a", "7700000001")
    customer = register(api, run_outbox)
    with BalanceClient() as rpc:
        rpc.create_client(client_id=customer.balance_client_id, name="Someone Else LLC", email=customer.email,
                          phone=customer.phone)
        person = dataclasses.replace(person_spec(customer), inn="7709999999")
        rpc.create_person(client_id=customer.balance_client_id, person_id=customer.balance_person_id, person=person)
        rpc.create_client(client_id=agency.balance_client_id, name="Renamed agency", is_agency=True)

    report = reconcile()  # the client difference alone makes the persons worth a call
    keys = {f"customer_data:customer:{customer.pk}:client", f"customer_data:customer:{customer.pk}:person",
            f"customer_data:agency:{agency.pk}:client"}
    assert open_keys() == keys
    assert report.fixed["customer_data"] == 0  # support decides which side is right
    person = Mismatch.objects.get(key=f"customer_data:customer:{customer.pk}:person")
    assert person.details["rows"] == [["INN", "7701234567", "7709999999"]]
    name = Mismatch.objects.get(key=f"customer_data:customer:{customer.pk}:client")
    assert name.details["rows"] == [["name", client_name(customer), "Someone Else LLC"]]

    user = User.objects.create_user("support", is_staff=True)
    result = mismatch_fix(mismatch=name, user=user)
    assert result.ok
    run_outbox()  # the customer's sync (update) goes to Balance
    reconcile()
    assert open_keys() == {f"customer_data:agency:{agency.pk}:client"}
    assert Mismatch.objects.get(pk=person.pk).resolution == "system: no longer seen"


@pytest.mark.django_db
def test_stale_operations(service, settings):
    customer = Customer.objects.create(service=service, external_id="c:1", kind="company", name="C",
                                       status="active")
    old = timezone.now() - timedelta(hours=2)
    retryable = OutboxOperation.objects.create(kind="orders.sync", subject=f"customer:{customer.pk}",
                                               payload={"customer_id": customer.pk}, service=service,
                                               status="failed", attempts=20,
                                               last_error="BalanceRetryableError: UNAVAILABLE",
                                               failure_kind="retryable")
    final = OutboxOperation.objects.create(kind="orders.sync", subject=f"customer:{customer.pk}",
                                           payload={"customer_id": customer.pk}, service=service, status="failed",
                                           attempts=1, last_error="OutboxFinalError: order 7: refused",
                                           failure_kind="final")
    stuck = OutboxOperation.objects.create(kind="orders.sync", subject="customer:999999", payload={}, service=service,
                                           status="pending", next_attempt_at=old)
    OutboxOperation.objects.filter(pk=stuck.pk).update(created_at=old)
    recent = OutboxOperation.objects.create(kind="orders.sync", subject="customer:999998", payload={},
                                            service=service, status="pending")

    report = reconcile()
    keys = {f"stale_operation:operation:{op.pk}" for op in (retryable, final, stuck)}
    assert open_keys() == keys and f"stale_operation:operation:{recent.pk}" not in open_keys()
    assert report.fixed["stale_operation"] == 2  # the final one waits for support
    assert Mismatch.objects.get(operation=retryable).customer == customer
    assert Mismatch.objects.get(operation=final).details["fix"] is None
    retryable.refresh_from_db()
    assert retryable.status == "pending" and retryable.attempts == 0

    OutboxOperation.objects.filter(pk__in=[retryable.pk, stuck.pk]).update(status="done")
    reconcile()
    assert open_keys() == {f"stale_operation:operation:{final.pk}"}
    user = User.objects.create_user("support", is_staff=True)
    mismatch_resolve(mismatch=Mismatch.objects.get(operation=final), user=user, comment="order deleted on purpose")
    reconcile()
    assert open_keys() == set()


@pytest.mark.django_db
def test_a_customer_run_leaves_other_customers_mismatches_alone(api, emulator, run_outbox, balance, products):
    customer = register(api, run_outbox)
    pay(api, emulator, run_outbox, "100.00")
    wallet_order = BalanceOrder.objects.get(customer=customer, kind="wallet")
    other = Mismatch.objects.create(kind="money_in", severity="warning", key="money_in:order:999999",
                                    summary="another customer's", customer=None)
    emulator.update_order(SERVICE_ID, wallet_order.pk, {"ConsumeQty": "150.00"})
    report = reconcile(customer=customer, autofix=False)
    assert report.customers == 1 and report.calls["GetOrdersInfo"] == 1 and report.calls["GetClientPersons"] == 1
    assert open_keys() == {f"money_in:order:{wallet_order.pk}", other.key}
    reconcile(customer=customer)  # autofix: pulls the 50.00
    reconcile(customer=customer)
    assert open_keys() == {other.key}
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == "150.00"


# --- command, periodic job, admin -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_command_exit_codes_and_options(api, emulator, run_outbox, balance, products, settings, capsys):
    customer = register(api, run_outbox)
    pay(api, emulator, run_outbox, "100.00")
    wallet_order = BalanceOrder.objects.get(customer=customer, kind="wallet")
    emulator.update_order(SERVICE_ID, wallet_order.pk, {"ConsumeQty": "150.00"})

    out = io.StringIO()
    call_command("reconcile", "--customer", "dealer:20101", "--service", "autoru", "--batch-size", "1",
                 "--no-autofix", stdout=out)  # mismatches are data: no error
    assert "money in" in out.getvalue() and "Autofix was off" in out.getvalue()
    assert "GetOrdersInfo 1" in out.getvalue()
    assert "reconcile" in capsys.readouterr().err  # the progress bar
    with pytest.raises(CommandError, match="no customer"):
        call_command("reconcile", "--customer", "nobody", stdout=io.StringIO())

    settings.BALANCE_URL = "http://127.0.0.1:9/xmlrpc"
    settings.RECONCILE_CALL_RETRIES = 0
    with pytest.raises(CommandError, match="Balance is unreachable") as raised:
        call_command("reconcile", "--no-progress", stdout=io.StringIO())
    assert raised.value.returncode == 1
    assert Mismatch.objects.filter(status="open").count() == 1  # nothing unchecked was closed


@pytest.mark.django_db
def test_periodic_job(balance):
    from disbalance.periodic import get_job

    job = get_job("reconcile")
    assert job.task == "balance_gateway.tasks.reconcile"
    out = io.StringIO()
    call_command("run_periodic", "reconcile", stdout=out)
    assert "'found': {}" in out.getvalue()


@pytest.mark.django_db
def test_admin_queue_details_and_resolve_with_comment(client, service):
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"  # reads the English console's texts (Russian: tests/support)
    customer = Customer.objects.create(service=service, external_id="dealer:1", kind="company", name="C",
                                       status="active", balance_client_id=100123)
    mismatch = Mismatch.objects.create(
        kind="money_out", severity="critical", key="money_out:order:1", summary="Order 1: CompletionQty differs",
        customer=customer, service=service,
        details={"rows": [["CompletionQty (cumulative spend)", "300.00", "999.00"]], "note": "re-report",
                 "fix": "report"})
    viewer = support_user()
    client.force_login(viewer)
    changelist = client.get("/admin/reconciliation/mismatch/?status__exact=open&kind__exact=money_out")
    assert changelist.status_code == 200 and b"Order 1: CompletionQty differs" in changelist.content
    assert b"fix_selected" not in changelist.content and b"resolve_selected" not in changelist.content
    for term in ("dealer:1", "100123"):
        found = client.get("/admin/reconciliation/mismatch/", {"q": term})
        assert b"Order 1: CompletionQty differs" in found.content, term
    assert b"Order 1" not in client.get("/admin/reconciliation/mismatch/", {"q": "dealer:2"}).content
    page = client.get(f"/admin/reconciliation/mismatch/{mismatch.pk}/change/")
    assert page.status_code == 200
    assert b"<th>billing</th><th>Balance</th>" in page.content and b"999.00" in page.content
    assert b'"rows"' not in page.content and b"mismatch-fix" not in page.content
    assert client.post(f"/admin/reconciliation/mismatch/{mismatch.pk}/fix/").status_code == 403
    assert client.get(f"/admin/reconciliation/mismatch/{mismatch.pk}/resolve/").status_code == 403

    client.logout()
    user = User.objects.create_user("lead", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_mismatch", "resolve_mismatch"]))
    client.force_login(user)
    action = {"action": "resolve_selected", "_selected_action": [mismatch.pk]}
    form = client.post("/admin/reconciliation/mismatch/", action)
    assert form.status_code == 200 and b'name="comment"' in form.content
    empty = client.post("/admin/reconciliation/mismatch/", {**action, "post": "yes", "comment": " "})
    assert b"A comment is required" in empty.content
    mismatch.refresh_from_db()
    assert mismatch.status == "open"
    done = client.post("/admin/reconciliation/mismatch/", {**action, "post": "yes", "comment": "Checked: fine"},
                       follow=True)
    assert done.status_code == 200
    mismatch.refresh_from_db()
    assert (mismatch.status, mismatch.resolved_by, mismatch.resolution) == ("resolved", user, "Checked: fine")
    assert mismatch.history.latest().history_user == user


@pytest.mark.django_db
def test_admin_page_buttons(client, service):
    mismatch = Mismatch.objects.create(kind="stale_operation", severity="warning", key="stale_operation:operation:1",
                                       summary="Operation 1 failed", service=service, details={"rows": []})
    user = User.objects.create_superuser("admin", password="pw")
    client.force_login(user)
    page = client.get(f"/admin/reconciliation/mismatch/{mismatch.pk}/change/")
    assert b"mismatch-fix" in page.content and b"mismatch-resolve" in page.content
    fixed = client.post(f"/admin/reconciliation/mismatch/{mismatch.pk}/fix/", follow=True)
    assert b"the operation no longer exists" in fixed.content
    form = client.get(f"/admin/reconciliation/mismatch/{mismatch.pk}/resolve/")
    assert form.status_code == 200 and b'name="comment"' in form.content
    client.post(f"/admin/reconciliation/mismatch/{mismatch.pk}/resolve/", {"comment": "obsolete"})
    mismatch.refresh_from_db()
    assert mismatch.status == "resolved" and mismatch.resolved_by == user
