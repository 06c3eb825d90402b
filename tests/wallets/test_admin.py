"""The ledger admin is read-only for everyone, superusers included, and shows an account's statement."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.urls import reverse

from wallets.models import Account, LedgerEntry, LedgerTransaction
from wallets.services import wallet_charge, wallet_credit_topup


@pytest.fixture
def ledger(customer):
    wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("1000.00"), reference_kind="topup",
                        reference_id="pay-1")
    wallet_charge(customer=customer, payer_agency=None, product_code="vas:boost", amount=Decimal("300.00"))
    return Account.objects.get(customer=customer, kind="wallet")


@pytest.mark.parametrize("model", [Account, LedgerTransaction, LedgerEntry])
def test_no_add_change_delete_or_bulk_actions_even_for_superusers(admin_client, admin_user, rf, model):
    model_admin = admin.site._registry[model]
    request = rf.get("/")
    request.user = admin_user
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    assert "delete_selected" not in model_admin.get_actions(request)
    info = model._meta.app_label, model._meta.model_name
    assert admin_client.get(reverse("admin:{}_{}_add".format(*info))).status_code == 403


def test_account_page_shows_the_statement_read_only(admin_client, ledger):
    response = admin_client.get(reverse("admin:wallets_account_change", args=[ledger.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "700.00" in html and "-300.00" in html and "pay-1" in html
    assert 'name="_save"' not in html
    assert admin_client.post(reverse("admin:wallets_account_change", args=[ledger.pk]), {"balance": "1"}).status_code \
        == 403
    assert admin_client.post(reverse("admin:wallets_account_delete", args=[ledger.pk]), {"post": "yes"}).status_code \
        == 403
    assert Account.objects.get(pk=ledger.pk).balance == Decimal("700.00")


def test_changelists_and_transaction_page_render(admin_client, ledger):
    for name in ("account", "ledgertransaction", "ledgerentry"):
        assert admin_client.get(reverse(f"admin:wallets_{name}_changelist")).status_code == 200
    entries_of_account = reverse("admin:wallets_ledgerentry_changelist") + f"?account__id__exact={ledger.pk}"
    response = admin_client.get(entries_of_account)
    assert response.status_code == 200
    html = response.content.decode()
    assert "-300.00" in html and "1000.00" in html and "-1000.00" not in html  # the wallet's, not the clearing's
    txn = LedgerTransaction.objects.get(type="charge")
    response = admin_client.get(reverse("admin:wallets_ledgertransaction_change", args=[txn.pk]))
    assert response.status_code == 200
    assert "-300.00" in response.content.decode()
    response = admin_client.post(reverse("admin:wallets_ledgertransaction_delete", args=[txn.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert LedgerTransaction.objects.filter(pk=txn.pk).exists()
