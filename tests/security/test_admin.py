"""The support console: ledger and money rows have no add/change/delete for anyone (superusers included), bulk
`delete_selected` exists only where deleting is harmless, and every support action that changes a customer asks for
a reason and leaves an audit row."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.test import RequestFactory
from django.urls import reverse

from payments.models import BalanceOrder, Charge, Hold, Refund, TopUp
from tests.security.support import db_snapshot, snapshot_diff
from wallets.models import Account, LedgerEntry, LedgerTransaction

pytestmark = pytest.mark.django_db

# Rows that are money or its history: nobody adds, changes or deletes them in the admin.
MONEY_MODELS = [LedgerTransaction, LedgerEntry, Account, TopUp, Charge, Hold, Refund, BalanceOrder]

# Models whose bulk `delete_selected` (and delete view) may stay, and why deleting them is harmless: nothing points
# at them with money or history, and no audit row is lost with them.
DELETE_ALLOWED = {
    "auth.group": "a set of permissions (the support and billing-admin groups are re-created by setup_groups); "
                  "users keep their own audit rows",
}


def _superuser_request(user, path: str = "/admin/"):
    request = RequestFactory().get(path)
    request.user = user
    return request


@pytest.fixture
def money_rows(tenant):
    """One row of each money model (the tenant made a top-up, a charge, a refund, a hold, orders, the ledger)."""
    rows = {model: model.objects.order_by("pk").first() for model in MONEY_MODELS}
    assert all(rows.values()), rows
    return rows


@pytest.mark.parametrize("model", MONEY_MODELS, ids=lambda m: m._meta.label)
def test_money_rows_have_no_add_change_delete_even_for_a_superuser(model, money_rows, admin_user, admin_client):
    model_admin = admin.site._registry[model]
    obj = money_rows[model]
    request = _superuser_request(admin_user)
    assert admin_user.is_superuser
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request) and not model_admin.has_change_permission(request, obj)
    assert not model_admin.has_delete_permission(request) and not model_admin.has_delete_permission(request, obj)
    assert "delete_selected" not in model_admin.get_actions(request)
    assert model_admin.has_view_permission(request, obj)  # support still reads them

    info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    before = db_snapshot()
    assert admin_client.get(reverse(f"{info}_add")).status_code == 403
    assert admin_client.post(reverse(f"{info}_add"), {}).status_code == 403
    change = reverse(f"{info}_change", args=[obj.pk])
    assert admin_client.get(change).status_code == 200  # read-only page
    assert admin_client.post(change, {"amount": "1.00", "balance": "1.00", "status": "x"}).status_code == 403
    delete = reverse(f"{info}_delete", args=[obj.pk])
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    changelist = reverse(f"{info}_changelist")
    response = admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [obj.pk],
                                              "post": "yes"})
    assert response.status_code in (200, 302)  # "no action selected": the action does not exist here
    changes = snapshot_diff(before, db_snapshot())
    assert set(changes) <= {"sessions.session"}, changes
    assert model.objects.filter(pk=obj.pk).exists()


def test_delete_selected_is_only_where_deleting_is_harmless(admin_user):
    request = _superuser_request(admin_user)
    with_bulk_delete = {model._meta.label_lower for model, model_admin in admin.site._registry.items()
                        if "delete_selected" in model_admin.get_actions(request)}
    deletable = {model._meta.label_lower for model, model_admin in admin.site._registry.items()
                 if model_admin.has_delete_permission(request)}
    assert with_bulk_delete <= set(DELETE_ALLOWED), (
        f"delete_selected on {sorted(with_bulk_delete - set(DELETE_ALLOWED))}: remove it (has_delete_permission "
        "False and pop it in get_actions) or document in DELETE_ALLOWED why deleting is harmless"
    )
    assert deletable <= set(DELETE_ALLOWED), sorted(deletable - set(DELETE_ALLOWED))


def test_no_inline_deletes_rows_outside_the_allow_list(admin_user, money_rows, tenant):
    request = _superuser_request(admin_user)
    offenders = []
    for model, model_admin in admin.site._registry.items():
        obj = model.objects.order_by("pk").first()
        for inline in model_admin.get_inline_instances(request, obj):
            if inline.model._meta.label_lower in DELETE_ALLOWED:
                continue
            if inline.can_delete and inline.has_delete_permission(request, obj):
                offenders.append((model._meta.label, inline.model._meta.label))
    assert not offenders, offenders


def test_staff_users_are_deactivated_not_deleted(admin_user, admin_client, django_user_model):
    """Deleting a user would delete their admin log entries (the audit of what they did) with them."""
    clerk = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    LogEntry.objects.log_actions(user_id=clerk.pk, queryset=django_user_model.objects.filter(pk=clerk.pk),
                                 action_flag=2, change_message="released hold: customer asked")
    delete = reverse("admin:auth_user_delete", args=[clerk.pk])
    assert admin_client.get(delete).status_code == 403
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert django_user_model.objects.filter(pk=clerk.pk).exists()
    assert LogEntry.objects.filter(user=clerk).count() == 1


def test_idempotency_records_cannot_be_deleted_in_the_admin(tenant, admin_client):
    """A deleted record would let a retried POST move the money a second time."""
    from disbalance.models import IdempotencyRecord

    record = IdempotencyRecord.objects.first()
    assert record is not None
    assert admin_client.post(reverse("admin:disbalance_idempotencyrecord_delete", args=[record.pk]),
                             {"post": "yes"}).status_code == 403
    admin_client.post(reverse("admin:disbalance_idempotencyrecord_changelist"),
                      {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"})
    assert IdempotencyRecord.objects.filter(pk=record.pk).exists()
