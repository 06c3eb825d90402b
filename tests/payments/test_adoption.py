"""`manage.py adopt_orders`: a consumer's legacy Balance orders and their money adopted, against the emulator seeded
with a legacy state (`Emulator.Seed`) over HTTP.

The rehearsal (1,000 orders, 300 customers, 5 broken on purpose) is the acceptance case; smaller cases pin the
resume after a crash, a drifting order found by reconciliation, and the notification guard.
"""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.core.management import call_command

from agencies.models import Agency
from balance_gateway.client import BalanceClient
from customers.models import Customer
from payments import adopting
from payments.models import BalanceOrder, OrderAdoption
from payments.rehearsal import BROKEN_KINDS, legacy_rehearsal
from payments.services import charge_create, spend_report
from reconciliation.models import Mismatch
from reconciliation.run import reconcile
from wallets.models import Account, LedgerEntry, LedgerTransaction

pytestmark = pytest.mark.django_db

SERVICE_ID = 7


@pytest.fixture(autouse=True)
def _patient_balance(balance, settings):
    """No fault is injected here: a slow answer on a busy machine is not a timeout worth testing (the abort and
    resume after an unknown outcome is `test_a_crash_half_way_then_a_rerun_ends_as_one_clean_run`'s)."""
    settings.BALANCE_READ_TIMEOUT = 10.0


def rehearse(balance, tmp_path, **sizes):
    """Seed the emulator with a legacy state and link its customers (import_customers). Returns the state and the
    orders file."""
    state = legacy_rehearsal(service_id=SERVICE_ID, **sizes)
    balance.call("Emulator.Seed", [state.seed])
    paths = state.write(tmp_path)
    call_command("import_customers", str(paths["customers"]), "--service", "autoru", "--no-progress",
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert Customer.objects.count() == sizes.get("customers", 300)
    return state, paths["orders"]


def adopt(path, *args):
    out = io.StringIO()
    call_command("adopt_orders", str(path), "--service", "autoru", "--no-progress", *args, stdout=out,
                 stderr=io.StringIO())
    return out.getvalue()


def wallets_by_payer():
    """(customer external id, agency external id or "") -> wallet balance."""
    agencies = dict(Agency.objects.values_list("pk", "external_id"))
    return {(a.customer.external_id, agencies.get(a.payer_agency_id, "")): a.balance
            for a in Account.objects.filter(kind=Account.Kind.WALLET).select_related("customer")}


def balance_wallet_money(emulator):
    """(customer external id, agency external id or "") -> money on billing's wallet order in Balance, less what
    was completed on it (free money as Balance shows it)."""
    orders = {o.pk: o for o in BalanceOrder.objects.filter(kind=BalanceOrder.Kind.WALLET)
              .select_related("customer", "payer_agency")}
    free = {}
    for item in emulator.state()["orders"]:
        order = orders.get(int(item["ServiceOrderID"])) if len(str(item["ServiceOrderID"])) < 10 else None
        if order is not None:
            key = (order.customer.external_id, order.payer_agency.external_id if order.payer_agency else "")
            free[key] = Decimal(item["ConsumeSum"]) - Decimal(item["CompletionSum"])
    return free


def snapshot(emulator):
    """Everything a run could change: ledger, adoptions, wallet orders, Balance's orders."""
    return (
        LedgerTransaction.objects.count(), LedgerEntry.objects.count(),
        sorted(OrderAdoption.objects.values_list("service_order_id", "status", "reason", "updated_at",
                                                 "ledger_transaction_id")),
        sorted(BalanceOrder.objects.values_list("pk", "credited_qty", "sync_status")),
        sorted((o["ServiceOrderID"], o["ConsumeSum"], o["CompletionQty"]) for o in emulator.state()["orders"]),
    )


@pytest.mark.slow  # about 2 minutes on SQLite: 1,000 transfers, two reconciliations of 300 customers
def test_rehearsal_of_a_thousand_legacy_orders(service, products, balance, emulator, tmp_path, run_outbox):
    state, orders_file = rehearse(balance, tmp_path, customers=300, orders=1000, broken=5)

    out = adopt(orders_file, "--report", str(tmp_path / "report.csv"))

    assert out.splitlines()[0].startswith("995 adopted"), out
    assert "0 already adopted, 5 refused" in out.splitlines()[0]
    # The five broken ones, each with its reason; nothing of theirs moved or posted.
    refused = {a.service_order_id: a.reason for a in OrderAdoption.objects.filter(status="refused")}
    assert set(refused) | {s for s, k in state.broken.items() if k == "missing"} == set(state.broken)
    for soid, kind in state.broken.items():
        line = next(text for text in out.splitlines() if f"order {soid} " in text)
        assert BROKEN_KINDS[kind] in line, (kind, line)
    assert not LedgerTransaction.objects.filter(reference_id__in=[f"{SERVICE_ID}-{s}" for s in state.broken])
    report_rows = (tmp_path / "report.csv").read_text().splitlines()
    assert len(report_rows) == 1001 and sum(",refused," in r for r in report_rows) == 5

    # Every customer's wallet per payer holds exactly the free money of its good orders, which is what Balance
    # now shows free on billing's wallet order; the legacy orders keep only their completed money.
    wallets = {key: value for key, value in wallets_by_payer().items() if value}
    assert wallets == {key: value for key, value in state.free_money.items() if value}
    assert balance_wallet_money(emulator) == {key: wallets.get(key, Decimal("0.00"))
                                              for key in balance_wallet_money(emulator)}
    legacy = {o["ServiceOrderID"]: o for o in emulator.state()["orders"] if len(o["ServiceOrderID"]) >= 10}
    for adoption in OrderAdoption.objects.filter(status="adopted"):
        order = legacy[adoption.service_order_id]
        assert Decimal(order["ConsumeSum"]) == Decimal(order["CompletionSum"]) == adoption.expected_consume_amount
    migration = LedgerTransaction.objects.filter(type="migration")
    assert migration.count() == OrderAdoption.objects.filter(status="adopted", free_money__gt=0).count()
    assert sum(state.free_money.values()) == sum(a.free_money for a in OrderAdoption.objects.filter(status="adopted"))

    # A second run adopts nothing and changes nothing.
    before = snapshot(emulator)
    again = adopt(orders_file)
    assert again.splitlines()[0].startswith("0 adopted (0.00 moved to wallets), 995 already adopted, 5 refused")
    assert snapshot(emulator) == before

    # Reconciliation afterwards is clean: billing's own orders and the adopted ones.
    report = reconcile()
    assert not report.errors
    assert not Mismatch.objects.filter(status=Mismatch.Status.OPEN).exists(), list(
        Mismatch.objects.values_list("kind", "summary")[:5])

    # New charges after adoption are billed and reported to Balance with no unpaid completion.
    charged = 0
    for customer in Customer.objects.filter(external_id__in=[k[0] for k in wallets])[:40]:
        payer_money = wallets_by_payer().get((customer.external_id, customer.agency.external_id
                                              if customer.agency else ""), Decimal(0))
        if payer_money >= Decimal("10.00"):
            charge_create(customer=customer, product=products["placement"], amount=Decimal("10.00"))
            charged += 1
    assert charged > 10
    run_outbox()  # the new child orders reach Balance
    assert spend_report()["orders"] == charged
    balance_state = emulator.state()
    # The only unpaid completion in Balance is the legacy one refused on purpose (the consumer's old loss).
    unpaid = {o["ServiceOrderID"] for o in balance_state["orders"] if Decimal(o["UnpaidQty"]) != 0}
    assert unpaid == {soid for soid, kind in state.broken.items() if kind == "unpaid"}
    completed = sum(Decimal(o["CompletionSum"]) for o in balance_state["orders"] if len(o["ServiceOrderID"]) < 10)
    assert completed == Decimal("10.00") * charged
    assert not reconcile().errors
    assert not Mismatch.objects.filter(status=Mismatch.Status.OPEN).exists()


def test_a_crash_half_way_then_a_rerun_ends_as_one_clean_run(service, products, balance, emulator, tmp_path,
                                                             monkeypatch):
    state, orders_file = rehearse(balance, tmp_path, customers=20, orders=60, broken=5, agencies=2)
    real_post = adopting.adoption_post_opening_balance
    calls = {"n": 0}

    def crash_after_the_transfer(*, adoption_id):
        calls["n"] += 1
        if calls["n"] == 25:  # killed between Balance's transfer and billing's posting
            raise KeyboardInterrupt("killed")
        return real_post(adoption_id=adoption_id)

    monkeypatch.setattr(adopting, "adoption_post_opening_balance", crash_after_the_transfer)
    with pytest.raises(KeyboardInterrupt):
        adopt(orders_file, "--batch-size", "10")
    interrupted = OrderAdoption.objects.get(status="transferring")
    # Killed after Balance moved the money and before billing posted it.
    assert interrupted.ledger_transaction_id is None
    moved = next(o for o in emulator.state()["orders"] if o["ServiceOrderID"] == interrupted.service_order_id)
    assert Decimal(moved["ConsumeSum"]) == Decimal(moved["CompletionSum"])
    monkeypatch.setattr(adopting, "adoption_post_opening_balance", real_post)

    out = adopt(orders_file, "--batch-size", "10")
    assert "5 refused" in out.splitlines()[0]
    interrupted.refresh_from_db()
    assert interrupted.status == "adopted" and interrupted.ledger_transaction is not None
    wallets = {key: value for key, value in wallets_by_payer().items() if value}
    assert wallets == {key: value for key, value in state.free_money.items() if value}
    assert LedgerTransaction.objects.filter(type="migration").count() == OrderAdoption.objects.filter(
        status="adopted", free_money__gt=0).count()
    assert adopt(orders_file).splitlines()[0].startswith("0 adopted")
    reconcile()
    assert not Mismatch.objects.filter(status=Mismatch.Status.OPEN).exists()


def test_an_adopted_order_drifting_in_balance_is_a_mismatch(service, products, balance, emulator, tmp_path):
    _state, orders_file = rehearse(balance, tmp_path, customers=4, orders=6, broken=0, agencies=1)
    adopt(orders_file)
    adoption = OrderAdoption.objects.filter(status="adopted", free_money__gt=0).first()
    reconcile()
    assert not Mismatch.objects.filter(status=Mismatch.Status.OPEN).exists()

    # The consumer still reports spend on the old order directly.
    emulator.update_order(SERVICE_ID, adoption.service_order_id,
                          {"CompletionQty": str(adoption.qty_new + Decimal("5"))})
    reconcile()
    mismatch = Mismatch.objects.get(status=Mismatch.Status.OPEN)
    assert mismatch.kind == "adopted_order" and adoption.service_order_id in mismatch.summary


def test_dry_run_moves_and_writes_nothing(service, products, balance, emulator, tmp_path):
    _state, orders_file = rehearse(balance, tmp_path, customers=4, orders=8, broken=3, agencies=1)
    before = snapshot(emulator)
    out = adopt(orders_file, "--dry-run")
    # Owner and payer are Balance's to check, at the transfer: a dry run can only refuse what the figures show.
    assert out.startswith("Dry run, nothing moved or written: 7 would be adopted"), out
    assert "0 already adopted, 1 refused" in out and "unpaid completion" in out
    assert snapshot(emulator) == before
    assert not OrderAdoption.objects.exists()


def test_the_wallet_orders_notifications_wait_while_money_is_moved(service, products, balance, tmp_path):
    from balance_gateway.notifications import OrderNotification
    from payments.services.order_state import OrderNotifications

    _state, orders_file = rehearse(balance, tmp_path, customers=2, orders=2, broken=0, agencies=1)
    adopt(orders_file)
    adoption = OrderAdoption.objects.filter(free_money__gt=0).first()
    wallet = adoption.wallet_order
    notification = OrderNotification.__new__(OrderNotification)
    object.__setattr__(notification, "service_id", SERVICE_ID)
    object.__setattr__(notification, "service_order_id", str(wallet.pk))
    assert OrderNotifications.exists(notification)
    OrderAdoption.objects.filter(pk=adoption.pk).update(status="transferring")
    assert not OrderNotifications.exists(notification)
    with BalanceClient() as client:
        assert client.get_orders_info([(SERVICE_ID, wallet.pk)])[0].consume_amount == wallet.credited_qty


def test_the_emulator_is_seeded_from_a_file_once(balance, tmp_path):
    import logging

    from django.core.management import CommandError

    from balance_gateway.management.commands.balance_emulator import Command

    state = legacy_rehearsal(customers=3, orders=4, agencies=1, broken=0, service_id=SERVICE_ID)
    path = state.write(tmp_path)["seed"]
    command, logger = Command(), logging.getLogger("test")
    data = command._seed_data(str(path))
    command._seed(balance, data, logger)
    def money():
        return {o["ServiceOrderID"]: Decimal(o["ConsumeSum"]) for o in balance.call("Emulator.State")["orders"]}

    assert money() == {o["service_order_id"]: Decimal(o["consume_sum"]) for o in state.seed["orders"]}
    # A restart on the same state file does not seed again (it would put the moved money back).
    first = state.seed["orders"][0]["service_order_id"]
    balance.call("Emulator.UpdateOrder", [SERVICE_ID, first, {"ConsumeSum": "1.00"}])
    command._seed(balance, data, logger)
    assert money()[first] == Decimal("1.00")
    # A state holding part of the file is refused, not overwritten.
    partial = {**data, "orders": [*data["orders"], {**data["orders"][0], "service_order_id": "9100000000"}]}
    with pytest.raises(CommandError, match="already holds part"):
        command._seed(balance, partial, logger)
    with pytest.raises(CommandError, match="Cannot read"):
        command._seed_data(str(tmp_path / "missing.json"))


@pytest.mark.django_db(transaction=True)  # the command runs in another process: it must see committed rows
def test_a_process_killed_with_sigkill_then_rerun_ends_as_one_clean_run(service, products, balance, emulator,
                                                                        tmp_path, settings):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from django.db import connection

    state, orders_file = rehearse(balance, tmp_path, customers=30, orders=150, broken=5, agencies=2)
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{db['NAME']}"
    else:
        url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "BALANCE_URL": balance.url, "BALANCE_READ_TIMEOUT": "10",
           "BALANCE_GROUP_REPORTING": settings.BALANCE_GROUP_REPORTING, "CELERY_TASK_ALWAYS_EAGER": "1",
           "LOG_LEVEL": "WARNING"}
    if balance.options.required_ticket:  # the ticket-on variant: the command sends it as the suite's billing does
        env.update(BALANCE_TVM_PROVIDER="tests.tvm_tickets.StaticTickets",
                   TEST_SERVICE_TICKET=balance.options.required_ticket)
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "manage.py", "adopt_orders", str(orders_file), "--service", "autoru", "--batch-size", "10",
         "--no-progress"], cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while OrderAdoption.objects.filter(status="adopted").count() < 40 and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    adopted_when_killed = OrderAdoption.objects.filter(status="adopted").count()
    assert 40 <= adopted_when_killed < 145

    out = adopt(orders_file)
    assert "5 refused" in out.splitlines()[0]
    assert OrderAdoption.objects.filter(status="adopted").count() == 145
    assert not OrderAdoption.objects.filter(status="transferring").exists()
    wallets = {key: value for key, value in wallets_by_payer().items() if value}
    assert wallets == {key: value for key, value in state.free_money.items() if value}
    assert LedgerTransaction.objects.filter(type="migration").count() == OrderAdoption.objects.filter(
        status="adopted", free_money__gt=0).count()
    assert adopt(orders_file).splitlines()[0].startswith("0 adopted")
    reconcile()
    assert not Mismatch.objects.filter(status=Mismatch.Status.OPEN).exists()


def test_support_sees_adoptions_read_only(service, products, balance, tmp_path, admin_client):
    _state, orders_file = rehearse(balance, tmp_path, customers=2, orders=3, broken=1, agencies=1)
    adopt(orders_file)
    refused = OrderAdoption.objects.get(status="refused")
    page = admin_client.get("/admin/payments/orderadoption/", {"q": refused.service_order_id})
    assert page.status_code == 200 and refused.reason[:40] in page.content.decode()
    assert admin_client.get(f"/admin/payments/orderadoption/{refused.pk}/delete/").status_code == 403
