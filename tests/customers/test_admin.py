"""The customer page shows the customer's money on one screen; its buttons refresh the Balance orders from Balance
and sync them to Balance (against the emulator), and an unreachable Balance is a message, not a 500."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from django.urls import reverse

from customers.models import Customer
from disbalance.models import OutboxOperation
from payments.models import BalanceOrder
from payments.services import charge_create, hold_create, orders_ensure, product_create, topup_create
from support.admin import RETURN_TO_PAGE
from tests.customers.test_api import COMPANY
from tests.factories import AgencyFactory, CustomerFactory
from wallets.models import Account
from wallets.services import wallet_credit_topup

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:customers_customer_changelist")


def page(customer) -> str:
    return reverse("admin:customers_customer_change", args=[customer.pk])


def section(html: str, section_id: str) -> str:
    """The HTML of one money section of the page (up to the next section)."""
    start = html.index(f'id="{section_id}"')
    end = html.find('class="module money-section"', start)
    return html[start:end if end != -1 else len(html)]


def press(client, customer, action, from_page=True):
    data = {"action": action, "_selected_action": [customer.pk], "index": 0}
    if from_page:
        data[RETURN_TO_PAGE] = "1"
    return client.post(CHANGELIST, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def products(service):
    return {
        "placement": product_create(service=service, code="placement", name="Placement", kind="placement",
                                    balance_product_id=503162).product,
        "boost": product_create(service=service, code="boost", name="Boost", kind="vas",
                                balance_product_id=503163).product,
    }


@pytest.fixture
def agency(service):
    return AgencyFactory(service=service, external_id="agency:7")


@pytest.fixture
def customer(service, agency):
    return CustomerFactory(service=service, external_id="dealer:20101", agency=agency)


@pytest.fixture
def registered(api, run_outbox, balance) -> Customer:
    """A customer registered in the emulator (active, with a Balance client)."""
    assert api.post("/api/v1/customers", COMPANY, format="json").status_code == 201
    run_outbox()
    customer = Customer.objects.get(external_id=COMPANY["external_id"])
    assert customer.status == "active", customer.status_reason
    return customer


def test_customer_page_shows_wallet_statement_and_operations(admin_client, customer, agency, products):
    # 250.00 paid by the agency, then the customer leaves it: that money stays the agency's ("other payer").
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=agency, amount=Decimal("250.00"), reference_kind="test",
                            reference_id="agency-pay")
    Customer.objects.filter(pk=customer.pk).update(agency=None)
    customer.refresh_from_db()
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("1000.00"), reference_kind="test",
                            reference_id="pay-1", description="Bank transfer")
    charge = charge_create(customer=customer, product=products["placement"], amount=Decimal("300.00"),
                           description="Placement for May")
    hold = hold_create(customer=customer, product=products["boost"], amount=Decimal("200.00"), description="Boost")
    topup = topup_create(customer=customer, amount=Decimal("123.45"))

    response = admin_client.get(page(customer))
    assert response.status_code == 200
    html = response.content.decode()

    wallet = section(html, "money-wallet")
    assert "current payer: self" in wallet
    assert "<strong>700.00</strong>" in wallet  # balance = wallet 500.00 + held 200.00
    assert "200.00" in wallet  # held
    assert "<strong>500.00</strong>" in wallet  # available
    assert "agency:7" in wallet and "250.00" in wallet  # the old payer's money, apart
    assert f"?customer__id__exact={customer.pk}" in wallet  # the full ledger

    statement = section(html, "money-statement")
    for text in ("1000.00", "-300.00", "700.00", "pay-1", "Bank transfer", "Placement for May", "hold", "charge",
                 "topup", reverse("admin:payments_charge_change", args=[charge.pk]),
                 reverse("admin:payments_hold_change", args=[hold.pk])):
        assert text in statement, text
    assert statement.count("<tr>") == 1 + 4  # header + topup, charge, hold (under self) + topup (agency)
    assert reverse("admin:wallets_ledgertransaction_changelist") in statement

    assert str(hold.pk)[:12] in section(html, "money-holds") and "Boost" in section(html, "money-holds")
    topups = section(html, "money-topups")
    assert "123.45" in topups and "Pending" in topups  # the status label
    charges = section(html, "money-charges")
    assert "300.00" in charges and "placement" in charges

    orders = section(html, "money-orders")
    for order in BalanceOrder.objects.filter(customer=customer):
        assert f"7:{order.pk}" in orders
        assert reverse("admin:payments_balanceorder_change", args=[order.pk]) in orders
    assert orders.count("Pending") == 3  # wallet, placement and boost orders, none in Balance yet
    assert 'value="refresh_orders_from_balance"' in orders and 'value="sync_orders_to_balance"' in orders

    outbox = section(html, "money-outbox")
    operation = OutboxOperation.objects.filter(subject=f"customer:{customer.pk}").first()
    assert reverse("admin:disbalance_outboxoperation_change", args=[operation.pk]) in outbox
    assert "orders.sync" in outbox and "topup.request" in outbox

    # The links from the page work.
    for link in (f"{reverse('admin:wallets_ledgertransaction_changelist')}?customer__id__exact={customer.pk}",
                 f"{reverse('admin:payments_topup_changelist')}?customer__id__exact={customer.pk}",
                 f"{reverse('admin:payments_hold_changelist')}?customer__id__exact={customer.pk}",
                 f"{reverse('admin:payments_charge_changelist')}?customer__id__exact={customer.pk}",
                 f"{reverse('admin:disbalance_outboxoperation_changelist')}?subject=customer%3A{customer.pk}"):
        response = admin_client.get(link)
        assert response.status_code == 200 and response.context["cl"].result_count >= 1, link
    assert admin_client.get(reverse("admin:payments_topup_change", args=[topup.pk])).status_code == 200


def test_customer_page_without_money_and_changelist_render(admin_client, customer):
    response = admin_client.get(page(customer))
    assert response.status_code == 200
    html = response.content.decode()
    assert "<strong>0.00</strong>" in section(html, "money-wallet")
    assert "No money movement yet." in html and "No open holds." in html and "No Balance orders yet" in html
    response = admin_client.get(CHANGELIST, {"q": "dealer:20101"})
    assert response.status_code == 200 and response.context["cl"].result_count == 1


def test_statement_shows_the_latest_50_rows(admin_client, customer):
    Customer.objects.filter(pk=customer.pk).update(agency=None)
    for i in range(55):
        with transaction.atomic():
            wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("1.00"), reference_kind="test",
                                reference_id=f"pay-{i}")
    statement = section(admin_client.get(page(customer)).content.decode(), "money-statement")
    assert statement.count("<tr>") == 1 + 50
    assert "pay-54" in statement and "55.00" in statement and "pay-4<" not in statement
    assert "(older rows)" in statement


def test_customers_are_read_only_and_not_deleted(admin_client, customer):
    assert admin_client.get(reverse("admin:customers_customer_add")).status_code == 403
    assert admin_client.post(reverse("admin:customers_customer_delete", args=[customer.pk]),
                             {"post": "yes"}).status_code == 403
    html = admin_client.get(CHANGELIST).content.decode()
    assert "delete_selected" not in html and "refresh_orders_from_balance" in html


def test_sync_then_refresh_orders_against_the_emulator(admin_client, emulator, run_outbox, registered):
    with transaction.atomic():
        order = orders_ensure(customer=registered, payer=None)

    response = press(admin_client, registered, "refresh_orders_from_balance")
    assert response.redirect_chain[-1][0] == page(registered)  # back on the customer page
    assert "No order in Balance to refresh" in messages_of(response)[0]

    response = press(admin_client, registered, "sync_orders_to_balance")
    assert messages_of(response) == ["Queued the Balance order sync for 1 customer(s)."]
    run_outbox()
    order.refresh_from_db()
    assert order.sync_status == "synced"

    emulator.update_order(7, order.pk, {"ConsumeQty": "75.00"})  # money paid in Balance; its notification lost
    response = press(admin_client, registered, "refresh_orders_from_balance")
    assert response.status_code == 200 and response.redirect_chain[-1][0] == page(registered)
    assert messages_of(response) == ["Read 1 order(s) from Balance: 1 updated, 0 already up to date."]
    html = response.content.decode()
    assert "<strong>75.00</strong>" in section(html, "money-wallet")
    assert "75.00" in section(html, "money-statement") and "balance_order" in section(html, "money-statement")
    assert "75.00" in section(html, "money-orders")

    # From the changelist (several customers at once) the action returns to the changelist.
    response = press(admin_client, registered, "refresh_orders_from_balance", from_page=False)
    assert response.redirect_chain[-1][0].startswith(CHANGELIST)
    assert messages_of(response) == ["Read 1 order(s) from Balance: 0 updated, 1 already up to date."]
    assert Account.objects.get(customer=registered, kind="wallet").balance == Decimal("75.00")


def test_refresh_with_balance_unreachable_shows_an_error(admin_client, settings, emulator, run_outbox, registered):
    with transaction.atomic():
        order = orders_ensure(customer=registered, payer=None)
    run_outbox()
    emulator.update_order(7, order.pk, {"ConsumeQty": "75.00"})
    settings.BALANCE_URL = "http://127.0.0.1:9/xmlrpc"

    response = press(admin_client, registered, "refresh_orders_from_balance")
    assert response.status_code == 200
    [text] = messages_of(response)
    assert text.startswith("Could not refresh from Balance")
    assert 'class="error"' in response.content.decode()
    assert "<strong>0.00</strong>" in section(response.content.decode(), "money-wallet")
    assert not Account.objects.filter(customer=registered, kind="wallet").exists()
    order.refresh_from_db()
    assert order.credited_qty == 0 and order.balance_refreshed_at is None


def test_sync_orders_skips_customers_with_everything_in_balance(admin_client, service, customer):
    other = CustomerFactory(service=service)
    with transaction.atomic():
        orders_ensure(customer=customer, payer=customer.agency)
    OutboxOperation.objects.all().delete()
    data = {"action": "sync_orders_to_balance", "_selected_action": [customer.pk, other.pk], "index": 0}
    response = admin_client.post(CHANGELIST, data, follow=True)
    assert messages_of(response) == [
        "Queued the Balance order sync for 1 customer(s).",
        "1 customer(s) have no order waiting for Balance: nothing to sync.",
    ]
    assert list(OutboxOperation.objects.values_list("kind", "subject")) == [("orders.sync", f"customer:{customer.pk}")]


def test_customer_page_queries_do_not_grow_with_its_rows(admin_client, customer, products):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def spend(n):
        for _ in range(n):
            with transaction.atomic():
                wallet_credit_topup(customer=customer, payer_agency=customer.agency, amount=Decimal("10.00"))
            charge_create(customer=customer, product=products["placement"], amount=Decimal("1.00"))
            hold_create(customer=customer, product=products["boost"], amount=Decimal("1.00"))
            topup_create(customer=customer, amount=Decimal("5.00"))

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(page(customer)).status_code == 200
        return len(captured)

    spend(1)
    queries()  # warm up (caches of the first admin request)
    few = queries()
    spend(5)
    assert queries() == few, few
