"""The money-core admin: every page renders with data, money rows are read-only for everyone, the catalog is kept
through `product_create`, "Release now" gives held money back, and the order buttons talk to Balance."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import transaction
from django.urls import reverse

from disbalance.models import OutboxOperation
from payments.models import BalanceOrder, Charge, Hold, Product, Refund, TopUp
from payments.services import charge_create, hold_capture, hold_create, orders_ensure, refund_create, topup_create
from tests.factories import AgencyFactory, CustomerFactory
from wallets.models import Account
from wallets.selectors import wallet_summary
from wallets.services import wallet_credit_topup

pytestmark = pytest.mark.django_db

MONEY_ROWS = [BalanceOrder, TopUp, Charge, Hold, Refund]
ALL = [Product, *MONEY_ROWS]


def url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def customer(service):
    return CustomerFactory(service=service, external_id="dealer:20101")


@pytest.fixture
def money(customer, products):
    """1000.00 in, a 300.00 charge (50.00 refunded), a 200.00 hold, a pending top-up of 500.00."""
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("1000.00"), reference_kind="test",
                            reference_id="pay-1", description="Paid by bank transfer")
    charge = charge_create(customer=customer, product=products["placement"], amount=Decimal("300.00"),
                           description="Placement for May", metadata={"listing": "L-77", "region": "msk"})
    hold = hold_create(customer=customer, product=products["boost"], amount=Decimal("200.00"),
                       metadata={"listing": "L-78"})
    refund = refund_create(charge=charge, amount=Decimal("50.00"), reason="bad photo")
    topup = topup_create(customer=customer, amount=Decimal("500.00"))
    return {"charge": charge, "hold": hold, "refund": refund, "topup": topup,
            "order": BalanceOrder.objects.get(customer=customer, product=products["placement"])}


def objects_of(money, products):
    return {Product: products["placement"], BalanceOrder: money["order"], TopUp: money["topup"],
            Charge: money["charge"], Hold: money["hold"], Refund: money["refund"]}


def action(client, model, name, objects, **extra):
    data = {"action": name, "_selected_action": [str(obj.pk) for obj in objects], "index": 0, **extra}
    return client.post(url(model, "changelist"), data, follow=True)


def page_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def held(customer):
    summary = wallet_summary(customer)
    return summary.balance, summary.held, summary.available


# --- every page renders ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ALL)
def test_changelist_and_change_page_render_with_data(admin_client, money, products, model):
    obj = objects_of(money, products)[model]
    response = admin_client.get(url(model, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1
    response = admin_client.get(url(model, "change", obj.pk))
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    if model is not Product:
        assert "dealer:20101" in html  # the customer, linked


def test_pages_show_the_figures_and_links(admin_client, money):
    html = admin_client.get(url(Charge, "change", money["charge"].pk)).content.decode()
    assert "300.00" in html and "50.00" in html and "bad photo" in html  # the refund, inline
    assert "Placement for May" in html
    order = money["order"]
    html = admin_client.get(url(BalanceOrder, "change", order.pk)).content.decode()
    assert f"7:{order.pk}" in html and "Pending" in html and f"child:c{order.customer_id}:pself:placement" in html
    html = admin_client.get(url(BalanceOrder, "changelist")).content.decode()
    assert "ServiceOrderID" in html and "dealer:20101" in html
    html = admin_client.get(url(TopUp, "change", money["topup"].pk)).content.decode()
    assert "500.00" in html and reverse("admin:payments_balanceorder_change", args=[money["topup"].order_id]) in html


def test_metadata_is_a_key_value_table_not_json(admin_client, money):
    html = admin_client.get(url(Charge, "change", money["charge"].pk)).content.decode()
    assert "<th scope='row'>listing</th><td>L-77</td>" in html
    assert "<th scope='row'>region</th><td>msk</td>" in html
    assert "{&quot;listing&quot;" not in html and '{"listing"' not in html
    html = admin_client.get(url(Hold, "change", money["hold"].pk)).content.decode()
    assert "<th scope='row'>listing</th><td>L-78</td>" in html


def test_search_by_exact_ids(admin_client, money, service, products):
    other = CustomerFactory(service=service, external_id="dealer:999")
    with transaction.atomic():
        wallet_credit_topup(customer=other, payer_agency=None, amount=Decimal("10.00"))
    charge_create(customer=other, product=products["boost"], amount=Decimal("10.00"))
    changelist = url(Charge, "changelist")

    def found(model, term):
        response = admin_client.get(url(model, "changelist"), {"q": term})
        assert response.status_code == 200
        return {str(obj.pk) for obj in response.context["cl"].result_list}

    assert found(Charge, str(money["charge"].pk)) == {str(money["charge"].pk)}
    assert found(Charge, "dealer:20101") == {str(money["charge"].pk)}
    assert len(found(Charge, "dealer:999")) == 1
    assert found(Charge, "dealer:2010") == set()  # exact, not contains
    assert found(Charge, "12345") == set()  # neither a UUID nor a customer id: nothing, and no error
    assert admin_client.get(changelist, {"q": "x" * 300}).status_code == 200
    order = money["order"]
    assert str(order.pk) in found(BalanceOrder, str(order.pk))
    assert str(order.pk) in found(BalanceOrder, str(order.customer.balance_client_id))
    assert str(order.pk) in found(BalanceOrder, "dealer:20101")
    assert found(BalanceOrder, "99999999999999999999999") == set()  # out of the id's range: not a 500
    assert found(Refund, str(money["charge"].pk)) == {str(money["refund"].pk)}
    assert found(Hold, "dealer:20101") == {str(money["hold"].pk)}
    assert found(TopUp, str(money["topup"].pk)) == {str(money["topup"].pk)}


def test_filters_and_date_hierarchy(admin_client, money, products):
    response = admin_client.get(url(Hold, "changelist"), {"status__exact": "held"})
    assert response.status_code == 200 and response.context["cl"].result_count == 1
    response = admin_client.get(url(Charge, "changelist"), {"product__id__exact": products["boost"].pk})
    assert response.status_code == 200 and response.context["cl"].result_count == 0
    response = admin_client.get(url(BalanceOrder, "changelist"), {"kind__exact": "wallet", "sync_status__exact":
                                                                  "pending"})
    assert response.status_code == 200 and response.context["cl"].result_count == 1
    created = money["charge"].created_at
    response = admin_client.get(url(Charge, "changelist"), {"created_at__year": created.year})
    assert response.status_code == 200 and response.context["cl"].result_count == 1
    response = admin_client.get(url(TopUp, "changelist"), {"customer__id__exact": money["topup"].customer_id})
    assert response.status_code == 200 and response.context["cl"].result_count == 1


# --- read-only money rows -------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MONEY_ROWS)
def test_money_rows_have_no_add_change_delete_even_for_superusers(admin_client, admin_user, rf, money, products,
                                                                  model):
    model_admin = admin.site._registry[model]
    request = rf.get("/")
    request.user = admin_user
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert "delete_selected" not in model_admin.get_actions(request)
    assert admin_client.get(url(model, "add")).status_code == 403
    obj = objects_of(money, products)[model]
    html = admin_client.get(url(model, "change", obj.pk)).content.decode()
    assert 'name="_save"' not in html
    assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert admin_client.post(url(model, "change", obj.pk), {"amount": "1.00"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()
    assert held(money["charge"].customer) == (Decimal("750.00"), Decimal("200.00"), Decimal("550.00"))


# --- the catalog ----------------------------------------------------------------------------------------------

def test_product_add_and_change_go_through_product_create(admin_client, admin_user, service):
    form = {"service": service.pk, "code": "premium", "name": "Premium slot", "kind": "vas",
            "balance_product_id": "503170", "balance_unit": "Days", "balance_price": "30", "is_active": "on"}
    response = admin_client.post(url(Product, "add"), form)
    assert response.status_code == 302, response.content[:2000]
    product = Product.objects.get(service=service, code="premium")
    assert (product.name, product.kind, product.balance_product_id, product.is_active) == (
        "Premium slot", "vas", 503170, True)
    assert (product.balance_unit, product.balance_price) == ("Days", Decimal("30"))
    assert product.history.first().history_user == admin_user

    # The same code again is refused by the form (one code per service), not duplicated.
    assert admin_client.post(url(Product, "add"), form).status_code == 200
    assert Product.objects.filter(code="premium").count() == 1

    # Service and code are the product's identity: shown, not editable; the rest changes.
    change = url(Product, "change", product.pk)
    html = admin_client.get(change).content.decode()
    assert 'name="code"' not in html and 'name="service"' not in html and 'name="name"' in html
    response = admin_client.post(change, {"name": "Premium slot+", "kind": "vas", "balance_product_id": "503171",
                                          "balance_unit": "Days", "balance_price": "30", "code": "hacked"})
    assert response.status_code == 302
    product.refresh_from_db()
    assert (product.code, product.name, product.balance_product_id, product.is_active) == (
        "premium", "Premium slot+", 503171, False)  # the unchecked box turns it off
    assert product.history.count() == 3


def test_product_add_inactive_and_never_delete(admin_client, admin_user, rf, service, products):
    form = {"service": service.pk, "code": "old", "name": "Old", "kind": "placement", "balance_product_id": "1",
            "balance_unit": "Money", "balance_price": "1"}
    assert admin_client.post(url(Product, "add"), form).status_code == 302
    assert Product.objects.get(code="old").is_active is False
    model_admin = admin.site._registry[Product]
    request = rf.get("/")
    request.user = admin_user
    assert not model_admin.has_delete_permission(request)
    assert "delete_selected" not in model_admin.get_actions(request)
    product = products["placement"]
    assert admin_client.post(url(Product, "delete", product.pk), {"post": "yes"}).status_code == 403
    assert Product.objects.filter(pk=product.pk).exists()
    response = admin_client.get(url(Product, "changelist"), {"q": "placement"})
    assert response.status_code == 200 and response.context["cl"].result_count == 1


# --- Release now ----------------------------------------------------------------------------------------------

def test_release_now_asks_then_gives_the_money_back(admin_client, admin_user, money, products):
    customer, hold = money["hold"].customer, money["hold"]
    captured = hold_create(customer=customer, product=products["boost"], amount=Decimal("100.00"))
    hold_capture(hold=captured, amount=Decimal("60.00"))
    assert held(customer) == (Decimal("690.00"), Decimal("200.00"), Decimal("490.00"))

    # First the confirmation page: nothing moved yet.
    response = action(admin_client, Hold, "release_now", [hold, captured])
    assert response.status_code == 200
    assert "admin/payments/hold/release_confirmation.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert f'name="_selected_action" value="{hold.pk}"' in html
    assert f'name="_selected_action" value="{captured.pk}"' not in html  # captured: not offered
    assert "1 selected hold(s) are not held" in html
    assert Hold.objects.get(pk=hold.pk).status == "held"

    # Confirming without a reason releases nothing.
    response = action(admin_client, Hold, "release_now", [hold, captured], post="yes")
    assert "A reason is required" in " ".join(page_messages(response))
    assert Hold.objects.get(pk=hold.pk).status == "held"

    response = action(admin_client, Hold, "release_now", [hold, captured], post="yes", reason="customer called")
    assert response.status_code == 200
    texts = page_messages(response)
    assert "Released 1 hold(s); the money is back in the wallet." in texts
    assert "1 selected hold(s) were not held and were skipped." in texts
    assert Hold.objects.get(pk=hold.pk).status == "released"
    assert Hold.objects.get(pk=captured.pk).status == "captured"
    assert held(customer) == (Decimal("690.00"), Decimal("0.00"), Decimal("690.00"))
    entry = LogEntry.objects.get(object_id=str(hold.pk))
    assert entry.user == admin_user and "customer called" in entry.get_change_message()

    # The customer page shows the money back.
    html = admin_client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    assert "690.00" in html and "release" in html and "No open holds." in html

    # Releasing again: nothing to do, nothing moves.
    response = action(admin_client, Hold, "release_now", [hold])
    assert "None of the selected holds is held" in " ".join(page_messages(response))
    assert held(customer) == (Decimal("690.00"), Decimal("0.00"), Decimal("690.00"))
    call_command("verify_ledger")


def test_release_now_reports_a_hold_closed_meanwhile(admin_client, money, monkeypatch):
    """A hold captured between the confirmation and the release: an error message, not a 500."""
    from payments import admin as payments_admin
    from payments.services import hold_release

    hold = money["hold"]

    def capture_first(*, hold):
        hold_capture(hold=hold)
        return hold_release(hold=hold)

    monkeypatch.setattr(payments_admin, "hold_release", capture_first)
    response = action(admin_client, Hold, "release_now", [hold], post="yes", reason="duplicate")
    assert response.status_code == 200
    assert any(f"Hold {hold.pk}:" in text and "captured" in text for text in page_messages(response))
    assert Hold.objects.get(pk=hold.pk).status == "captured"
    assert not LogEntry.objects.filter(object_id=str(hold.pk)).exists()


def test_release_needs_the_change_hold_permission(client, django_user_model, money):
    user = django_user_model.objects.create_user("support", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_hold"))
    client.force_login(user)
    response = client.get(url(Hold, "changelist"))
    assert response.status_code == 200 and "release_now" not in response.content.decode()
    response = action(client, Hold, "release_now", [money["hold"]], post="yes", reason="x")
    assert Hold.objects.get(pk=money["hold"].pk).status == "held"
    user.user_permissions.add(Permission.objects.get(codename="change_hold"))
    user = django_user_model.objects.get(pk=user.pk)  # drop the permission cache
    client.force_login(user)
    assert "release_now" in client.get(url(Hold, "changelist")).content.decode()
    assert client.get(url(Hold, "change", money["hold"].pk)).status_code == 200
    assert client.post(url(Hold, "change", money["hold"].pk), {}).status_code == 403  # the form stays read-only
    action(client, Hold, "release_now", [money["hold"]], post="yes", reason="support ticket 42")
    assert Hold.objects.get(pk=money["hold"].pk).status == "released"


# --- Balance order buttons ------------------------------------------------------------------------------------

def test_refresh_and_sync_orders_against_the_emulator(admin_client, emulator, run_outbox, active_customer):
    with transaction.atomic():
        order = orders_ensure(customer=active_customer, payer=None)
    response = action(admin_client, BalanceOrder, "refresh_from_balance", [order])
    assert "No order in Balance to refresh. 1 order(s) not in Balance yet were skipped" in page_messages(response)[0]

    response = action(admin_client, BalanceOrder, "sync_to_balance", [order])
    assert page_messages(response) == ["Queued the Balance order sync for 1 customer(s)."]
    run_outbox()
    order.refresh_from_db()
    assert order.sync_status == "synced"
    response = action(admin_client, BalanceOrder, "sync_to_balance", [order])
    assert "nothing to sync" in page_messages(response)[0]

    emulator.update_order(7, order.pk, {"ConsumeQty": "75.00"})  # money paid in Balance, no notification
    response = action(admin_client, BalanceOrder, "refresh_from_balance", [order])
    assert page_messages(response) == ["Read 1 order(s) from Balance: 1 updated, 0 already up to date."]
    assert Account.objects.get(customer=active_customer, kind="wallet", payer_agency=None).balance == Decimal("75.00")
    order.refresh_from_db()
    assert order.credited_qty == Decimal("75.00") and order.balance_refreshed_at is not None
    response = action(admin_client, BalanceOrder, "refresh_from_balance", [order])
    assert page_messages(response) == ["Read 1 order(s) from Balance: 0 updated, 1 already up to date."]
    assert Account.objects.get(customer=active_customer, kind="wallet", payer_agency=None).balance == Decimal("75.00")


def test_refresh_with_balance_unreachable_is_a_message_not_a_500(admin_client, settings, emulator, run_outbox,
                                                                  active_customer):
    with transaction.atomic():
        order = orders_ensure(customer=active_customer, payer=None)
    run_outbox()
    emulator.update_order(7, order.pk, {"ConsumeQty": "75.00"})
    settings.BALANCE_URL = "http://127.0.0.1:9/xmlrpc"
    response = action(admin_client, BalanceOrder, "refresh_from_balance", [order])
    assert response.status_code == 200
    assert response.context["messages"] and "Could not refresh from Balance" in page_messages(response)[0]
    assert not Account.objects.filter(customer=active_customer, kind="wallet").exists()


def test_sync_to_balance_queues_one_operation_per_customer(admin_client, service, products):
    first = CustomerFactory(service=service, agency=AgencyFactory(service=service))
    second = CustomerFactory(service=service)
    orders = []
    for customer in (first, second):
        with transaction.atomic():
            orders.append(orders_ensure(customer=customer, payer=customer.agency, product=products["boost"]))
    OutboxOperation.objects.all().delete()
    response = action(admin_client, BalanceOrder, "sync_to_balance", BalanceOrder.objects.all())
    assert page_messages(response) == ["Queued the Balance order sync for 2 customer(s)."]
    assert sorted(OutboxOperation.objects.filter(kind="orders.sync").values_list("subject", flat=True)) == sorted(
        [f"customer:{first.pk}", f"customer:{second.pk}"])
