"""A completion Balance refuses (UpdateCampaigns answers 0 for the order) becomes a visible, fixable state: the
order is flagged with the reason, is not sent again by the reporting job, shows up for support within one
reconciliation run, and support's fix re-reports it once Balance accepts. Against the version-2 emulator."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User

from balance_gateway.models import BalanceCall
from payments import services
from payments.models import BalanceOrder
from reconciliation.actions import mismatch_fix
from reconciliation.models import Mismatch
from reconciliation.run import reconcile
from tests.payments.conftest import post

CUSTOMER = "/api/v1/customers/dealer:20101"


def fund(api, emulator, run_outbox, amount: str) -> None:
    response = post(api, f"{CUSTOMER}/topups", {"amount": amount})
    assert response.status_code == 201, response.content
    run_outbox()
    topup = api.get(f"/api/v1/topups/{response.json()['id']}").json()
    emulator.pay_request(int(topup["payment_url"].rstrip("/").rsplit("/", 1)[1]))
    assert services.orders_pull()["applied"] == 1  # money read from the money fields, no notification needed
    assert api.get(f"{CUSTOMER}/wallet").json()["balance"] == amount


@pytest.mark.django_db(transaction=True)
def test_a_refused_completion_is_flagged_shown_to_support_and_fixed(api, emulator, run_outbox, active_customer,
                                                                     products):
    fund(api, emulator, run_outbox, "1000.00")
    assert post(api, f"{CUSTOMER}/charges", {"product": "placement", "amount": "300.00"}).status_code == 201
    run_outbox()
    child = BalanceOrder.objects.get(kind="child", product=products["placement"])
    assert child.sync_status == "synced"
    emulator.update_order(7, child.pk, {"Blocked": 1})

    totals = services.spend_report()
    assert (totals["rejected"], totals["orders"]) == (1, 0)
    child.refresh_from_db()
    assert child.report_refused_at is not None and "answered 0" in child.report_error
    assert child.reported_qty == Decimal("0.00") and child.sync_status == "synced"

    calls = BalanceCall.objects.filter(method="UpdateCampaigns").count()
    assert services.spend_report()["calls"] == 0  # never re-sent on its own: no endless retries
    assert BalanceCall.objects.filter(method="UpdateCampaigns").count() == calls

    reconcile(customer=active_customer, autofix=True)
    mismatch = Mismatch.objects.get(status="open", kind="money_out", order=child)
    assert "refused" in mismatch.summary and "blocked or stopped" in mismatch.details["note"]
    child.refresh_from_db()
    assert child.report_refused_at is not None  # autofix does not re-send a refused report

    emulator.update_order(7, child.pk, {"Blocked": 0})
    user = User.objects.create_user("support", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label__in=["balance_gateway", "reconciliation"]))
    result = mismatch_fix(mismatch=mismatch, user=User.objects.get(pk=user.pk))
    assert result.ok, result.note
    child.refresh_from_db()
    assert child.report_refused_at is None and child.reported_qty == Decimal("300.00")
    emulator.apply_pending()
    completion = {o["ServiceOrderID"]: Decimal(o["CompletionQty"]) for o in emulator.state()["orders"]}
    assert completion[str(child.pk)] == Decimal("300")
