"""The overdraft admin: pages render with data; overrides and blocks are set through services with a reason,
and the permission to raise a limit is enforced; actions ask for a reason first."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from customers.models import Customer
from overdrafts.models import AgencyCredit, Block, LimitOverride, Overdraft
from overdrafts.services import customer_block, overdraft_override_set
from payments.services import charge_create
from tests.factories import AgencyFactory, CustomerFactory
from tests.overdrafts.conftest import grant

pytestmark = pytest.mark.django_db


def url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def customer(service, products):
    customer = CustomerFactory(service=service, external_id="dealer:20101")
    grant(customer, "5000.00", tid=1)
    charge_create(customer=customer, product=products["placement"], amount=Decimal("1200.00"))
    return customer


@pytest.fixture
def logged_in(client):
    def login(user):
        client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"  # these tests read the English console's messages
        client.force_login(user)
        return client
    return login


@pytest.mark.parametrize("model", [Overdraft, LimitOverride, Block, AgencyCredit])
def test_pages_render_with_data(admin_client, admin_user, customer, service, model):
    overdraft_override_set(customer=customer, limit=Decimal("3000.00"), reason="cap", by=admin_user)
    customer_block(customer=customer, reason="check", by=admin_user)
    AgencyCredit.objects.create(agency=AgencyFactory(service=service), credit_limit=Decimal("100.00"))
    obj = model.objects.first()
    response = admin_client.get(url(model, "changelist"))
    assert response.status_code == 200 and response.context["cl"].result_count >= 1
    response = admin_client.get(url(model, "change", obj.pk))
    assert response.status_code == 200, response.content[:500]
    if model is Overdraft:
        html = response.content.decode()
        assert "dealer:20101" in html and "1200.00" in html and "3000.00" in html and "Manual: check" in html
        assert admin_client.get(url(Overdraft, "history", obj.pk)).status_code == 200


def test_support_lowers_a_limit_from_the_add_form_and_cannot_raise(logged_in, support_user, customer):
    client = logged_in(support_user)
    assert client.get(url(LimitOverride, "add")).status_code == 200
    response = client.post(url(LimitOverride, "add"), {"customer": customer.pk, "limit": "1000.00",
                                                        "reason": "ticket 9"}, follow=True)
    assert response.status_code == 200
    override = LimitOverride.objects.get()
    assert (override.limit, override.created_by, override.reason) == (Decimal("1000.00"), support_user, "ticket 9")
    expires = timezone.now() + timedelta(days=5)
    response = client.post(url(LimitOverride, "add"), {
        "customer": customer.pk, "limit": "9000.00", "reason": "more",
        "expires_at_0": expires.strftime("%Y-%m-%d"), "expires_at_1": expires.strftime("%H:%M:%S")})
    assert response.status_code == 200 and "raise_limit" in response.content.decode()  # the form error
    assert LimitOverride.objects.count() == 1


def test_billing_admin_raises_with_an_expiry(logged_in, billing_admin, customer):
    client = logged_in(billing_admin)
    expires = timezone.now() + timedelta(days=5)
    response = client.post(url(LimitOverride, "add"), {
        "customer": customer.pk, "limit": "9000.00", "reason": "campaign",
        "expires_at_0": expires.strftime("%Y-%m-%d"), "expires_at_1": expires.strftime("%H:%M:%S")}, follow=True)
    assert response.status_code == 200, response.content[:300]
    override = LimitOverride.objects.get()
    assert override.raises and override.created_by == billing_admin
    # Ending it asks for a reason first.
    page = client.post(url(LimitOverride, "changelist"), {"action": "end", "_selected_action": [override.pk]})
    assert page.status_code == 200 and "reason" in page.content.decode()
    client.post(url(LimitOverride, "changelist"), {"action": "end", "_selected_action": [override.pk], "post": "yes",
                                                   "reason": "campaign over"}, follow=True)
    override.refresh_from_db()
    assert override.ended_by == billing_admin and override.end_reason == "campaign over"


def test_block_and_unblock_from_the_admin(logged_in, support_user, customer):
    client = logged_in(support_user)
    client.post(url(Block, "add"), {"customer": customer.pk, "reason": "fraud check"}, follow=True)
    block = Block.objects.get()
    assert (block.kind, block.created_by, Customer.objects.get(pk=customer.pk).blocked) == \
        ("manual", support_user, True)
    overdraft = Overdraft.objects.get(customer=customer)
    no_reason = client.post(url(Overdraft, "changelist"), {"action": "unblock", "_selected_action": [overdraft.pk],
                                                           "post": "yes", "reason": ""})
    assert no_reason.status_code == 200 and Customer.objects.get(pk=customer.pk).blocked  # the form again
    response = client.post(url(Overdraft, "changelist"), {"action": "unblock", "_selected_action": [overdraft.pk],
                                                          "post": "yes", "reason": "all fine"}, follow=True)
    assert any("Unblocked 1" in m for m in messages_of(response))
    assert not Customer.objects.get(pk=customer.pk).blocked
    client.post(url(Overdraft, "changelist"), {"action": "block", "_selected_action": [overdraft.pk], "post": "yes",
                                               "reason": "again"}, follow=True)
    assert Customer.objects.get(pk=customer.pk).blocked
    response = client.post(url(Block, "changelist"), {
        "action": "unblock", "_selected_action": [Block.objects.get(lifted_at__isnull=True).pk], "post": "yes",
        "reason": "ok", "new_due_at": ""}, follow=True)
    assert not Customer.objects.get(pk=customer.pk).blocked
    assert Block.objects.filter(lifted_by=support_user).count() == 2


def test_without_permissions_there_are_no_actions(logged_in, django_user_model, customer):
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_block"))
    client = logged_in(django_user_model.objects.get(pk=viewer.pk))
    response = client.get(url(Block, "changelist"))
    action_form = response.context["action_form"]
    assert response.status_code == 200
    assert action_form is None or "unblock" not in dict(action_form.fields["action"].choices)
    assert client.get(url(Block, "add")).status_code == 403


def test_refresh_action_reports_a_balance_failure(admin_client, customer, settings):
    settings.BALANCE_URL = "http://127.0.0.1:9/xmlrpc"
    settings.BALANCE_CONNECT_TIMEOUT = settings.BALANCE_READ_TIMEOUT = 0.2
    response = admin_client.post(url(Overdraft, "changelist"), {
        "action": "refresh_from_balance", "_selected_action": [Overdraft.objects.get().pk]}, follow=True)
    assert any("1 failed" in m for m in messages_of(response))


def test_the_migration_gives_the_groups_their_permissions():
    from importlib import import_module

    import_module("overdrafts.migrations.0002_support_groups").grant(django_apps, None)
    support = set(Group.objects.get(name="support").permissions.values_list("codename", flat=True))
    admins = set(Group.objects.get(name="billing-admin").permissions.values_list("codename", flat=True))
    assert {"add_limitoverride", "add_block", "change_block"} <= support and "raise_limit" not in support
    assert "raise_limit" in admins


def test_agency_customer_is_refused_in_the_override_form(admin_client, service):
    customer = CustomerFactory(service=service, agency=AgencyFactory(service=service))
    response = admin_client.post(url(LimitOverride, "add"), {"customer": customer.pk, "limit": "10.00",
                                                              "reason": "x"})
    assert response.status_code == 200 and "served by an agency" in response.content.decode()
    assert not LimitOverride.objects.exists()
