"""Support's move between payers against recorded version-2 replies (a tiny local Balance, tests/balance_gateway/
fake_balance.py): what billing sends to CreateTransferMultiple, and how it reads ORDERS_NOT_SYNCHRONIZED (read
again, ask once more; twice: refused, nothing posted). The end-to-end runs are in tests/support/
test_corrections_balance.py."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from payments.models import BalanceOrder, PayerTransfer
from payments.services import payer_transfer_run, payer_transfer_start
from tests.balance_gateway.fake_balance import (
    balance_fault,
    fake_balance,  # noqa: F401 - the fixture
)
from tests.factories import AgencyFactory, CustomerFactory
from wallets.models import Account, LedgerTransaction
from wallets.services import owner_key, wallet_credit_topup

pytestmark = pytest.mark.django_db


def info(order_id: int, consume: str) -> dict:
    return {"id": 900000 + order_id, "ServiceID": 7, "ServiceOrderID": str(order_id), "IsGroupRoot": 1,
            "GroupServiceOrderID": "0", "product_id": 503000, "consume_qty": consume, "completion_qty": "0",
            "consume_amount": consume, "completion_amount": "0.00", "ConsumeMoneyQty": consume,
            "CompletionMoneyQty": "0", "CompletionFixedMoneyQty": "0", "invoice_currency": "RUR"}


@pytest.fixture
def moving(service, settings, fake_balance):  # noqa: F811
    settings.BALANCE_URL = fake_balance.url
    settings.BALANCE_RETRY_BACKOFF_SECONDS = 0
    settings.OUTBOX_INLINE_RETRIES = 0
    agency_a, agency_b = AgencyFactory(service=service), AgencyFactory(service=service)
    customer = CustomerFactory(service=service, agency=agency_b, balance_client_id=3_000_101)
    orders = {}
    for payer in (agency_a, agency_b):
        key = owner_key(customer_id=customer.pk, payer_agency_id=payer.pk)
        orders[payer] = BalanceOrder.objects.create(
            service=service, customer=customer, payer_agency=payer, kind="wallet", key=f"wallet:{key}",
            sync_status="synced", credited_qty=Decimal("500.00") if payer is agency_a else Decimal("0.00"))
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=agency_a, amount=Decimal("500.00"))
    return customer, agency_a, agency_b, orders


def start(customer, agency_a, agency_b):
    return payer_transfer_start(customer=customer, from_payer=agency_a, to_payer=agency_b,
                                amount=Decimal("120.00"), reason="Back to B", by=None)


def test_orders_not_synchronized_is_read_again_and_asked_once_more(moving, fake_balance):  # noqa: F811
    customer, agency_a, agency_b, orders = moving
    source, target = orders[agency_a], orders[agency_b]
    fake_balance.reply("GetOrdersInfo", [info(source.pk, "500.000000")], [info(source.pk, "530.000000")])
    fake_balance.reply("CreateTransferMultiple", balance_fault("ORDERS_NOT_SYNCHRONIZED", "QtyOld differs"),
                       [0, "SUCCESS"])
    transfer = payer_transfer_run(transfer=start(customer, agency_a, agency_b))
    assert transfer.status == "done", transfer.balance_error
    first, second = (call.params for call in fake_balance.calls("CreateTransferMultiple"))
    assert first[1] == [{"ServiceID": 7, "ServiceOrderID": source.pk, "QtyOld": "500", "QtyNew": "380"}]
    assert second[1] == [{"ServiceID": 7, "ServiceOrderID": source.pk, "QtyOld": "530", "QtyNew": "410"}]
    assert second[2] == [{"ServiceID": 7, "ServiceOrderID": target.pk, "QtyDelta": "1"}]
    assert (transfer.qty_old, transfer.qty_new) == (Decimal("530"), Decimal("410"))
    source.refresh_from_db()
    target.refresh_from_db()
    assert (source.credited_qty, target.credited_qty) == (Decimal("380.00"), Decimal("120.00"))
    assert LedgerTransaction.objects.filter(type="transfer").count() == 1


def test_orders_not_synchronized_twice_is_refused_and_nothing_is_posted(moving, fake_balance):  # noqa: F811
    customer, agency_a, agency_b, orders = moving
    source = orders[agency_a]
    fake_balance.reply("GetOrdersInfo", [info(source.pk, "500.000000")], [info(source.pk, "530.000000")])
    fake_balance.reply("CreateTransferMultiple", balance_fault("ORDERS_NOT_SYNCHRONIZED", "QtyOld differs"),
                       balance_fault("ORDERS_NOT_SYNCHRONIZED", "QtyOld differs"))
    transfer = payer_transfer_run(transfer=start(customer, agency_a, agency_b))
    assert transfer.status == "refused"
    assert "changed in Balance while moving it, twice; try again" in transfer.balance_error
    assert "ORDERS_NOT_SYNCHRONIZED" in transfer.balance_error
    assert not LedgerTransaction.objects.filter(type="transfer").exists()
    assert Account.objects.get(customer=customer, kind="wallet", payer_agency=agency_a).balance == Decimal("500.00")
    source.refresh_from_db()
    assert source.credited_qty == Decimal("500.00")


@pytest.mark.parametrize("code,why", [("NOT_EQUIVALENT_CLIENTS", "only between orders of one client"),
                                      ("NOT_ENOUGH_FUNDS", "less free money on the source order")])
def test_balance_refusals_are_explained(moving, fake_balance, code, why):  # noqa: F811
    customer, agency_a, agency_b, orders = moving
    fake_balance.reply("GetOrdersInfo", [info(orders[agency_a].pk, "500.000000")])
    fake_balance.reply("CreateTransferMultiple", balance_fault(code, "refused"))
    transfer = payer_transfer_run(transfer=start(customer, agency_a, agency_b))
    assert transfer.status == PayerTransfer.Status.REFUSED
    assert why in transfer.balance_error and code in transfer.balance_error
    assert transfer.balance_error.endswith(f"The money stays under {agency_a.external_id}.")
    assert len(fake_balance.calls("CreateTransferMultiple")) == 1  # final: never repeated
    assert not LedgerTransaction.objects.filter(type="transfer").exists()
