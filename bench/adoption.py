"""Adopting legacy orders: moving their money (CreateTransferMultiple) against keeping them as funding sources.

Balance side only, against the bundled emulator in-process over HTTP (no database): the same legacy state as the
rehearsal (`payments.rehearsal.legacy_rehearsal`) is seeded into two emulators, and each option does what it
needs in Balance, counted per method and timed.

- transfer: read the orders (GetOrdersInfo, batches of 100), create the wallet orders (CreateOrUpdateOrdersBatch,
  batches of 100), one CreateTransferMultiple per order with free money. After that the legacy orders are inert:
  billing's own orders carry every later completion, and reconciliation only needs to see that they stay inert.
- funding source: read the orders (GetOrdersInfo), create the wallet orders too (new top-ups still need one), and
  from then on report completions on the legacy orders while they have money: a spend report of one charge per
  customer costs an UpdateCampaigns item per legacy order drawn from (in that order's product and unit: spend of
  another product cannot go on it), and reconciliation must read every legacy order's money and completion, and
  add them to the payer's pot, for as long as any of them has money.

    .venv/bin/python bench/adoption.py [--orders 1000 --customers 300]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disbalance.settings")
# Every Balance call is logged in the call log (BalanceCall), as in production: a scratch SQLite database for it.
os.environ.setdefault("DATABASE_URL", "sqlite:////tmp/disbalance-bench-adoption.sqlite3")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from balance_gateway.client import (  # noqa: E402
    BalanceClient,
    CompletionReport,
    OrderSpec,
    TransferDestination,
    TransferSource,
)
from balance_gateway.emulator import BalanceEmulator  # noqa: E402
from payments.rehearsal import legacy_rehearsal  # noqa: E402

SERVICE_ID = 7
WALLET_PRODUCT = 503000


class Counting(BalanceClient):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def _call(self, method, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls[method] += 1
        return super()._call(method, *args, **kwargs)


def setup(orders: int, customers: int) -> tuple[BalanceEmulator, list[dict], dict[tuple[int, int], int]]:
    state = legacy_rehearsal(customers=customers, orders=orders, broken=0, service_id=SERVICE_ID)
    emulator = BalanceEmulator(port=0, seed=1).start()
    emulator.call("Emulator.Seed", [state.seed])
    settings.BALANCE_URL = emulator.url
    legacy = state.seed["orders"]
    wallets = {}
    for order in legacy:
        wallets.setdefault((order["client_id"], order["agency_id"]), len(wallets) + 1)
    return emulator, legacy, wallets


def wallet_specs(wallets: dict[tuple[int, int], int]) -> list[OrderSpec]:
    return [OrderSpec(service_id=SERVICE_ID, service_order_id=soid, product_id=WALLET_PRODUCT, client_id=client_id,
                      agency_id=agency_id or None, contract_id=None, group_service_order_id=None,
                      group_without_transfer=True, text=f"wallet {soid}")
            for (client_id, agency_id), soid in wallets.items()]


def read_and_create(client: Counting, legacy: list[dict], wallets: dict[tuple[int, int], int]) -> dict:
    infos = {}
    for start in range(0, len(legacy), 100):
        keys = [(SERVICE_ID, o["service_order_id"]) for o in legacy[start:start + 100]]
        infos.update({str(i.service_order_id): i for i in client.get_orders_info(keys)})
    specs = wallet_specs(wallets)
    for start in range(0, len(specs), 100):
        client.create_or_update_orders_batch(specs[start:start + 100])
    return infos


def transfer(orders: int, customers: int) -> tuple[Counter[str], float]:
    emulator, legacy, wallets = setup(orders, customers)
    try:
        client = Counting()
        started = time.monotonic()
        infos = read_and_create(client, legacy, wallets)
        for order in legacy:
            info = infos[order["service_order_id"]]
            if info.consume_amount > info.completion_amount:
                client.create_transfer_multiple(
                    sources=[TransferSource(SERVICE_ID, order["service_order_id"], info.consume_qty,
                                            info.completion_qty)],
                    destinations=[TransferDestination(SERVICE_ID, wallets[(order["client_id"], order["agency_id"])],
                                                      Decimal(1))])
        return client.calls, time.monotonic() - started
    finally:
        emulator.stop()


def funding_source(orders: int, customers: int) -> tuple[Counter[str], float, Counter[str], float]:
    emulator, legacy, wallets = setup(orders, customers)
    try:
        client = Counting()
        started = time.monotonic()
        infos = read_and_create(client, legacy, wallets)
        adoption = time.monotonic() - started
        adoption_calls = Counter(client.calls)
        # One spend report with one 10.00 charge per legacy order that still has money, reported on it.
        client.calls.clear()
        started = time.monotonic()
        dt = timezone.now() - timedelta(minutes=5)
        reports = [CompletionReport(service_id=SERVICE_ID, service_order_id=o["service_order_id"], unit="Money",
                                    qty=infos[o["service_order_id"]].completion_qty + Decimal(10), dt=dt)
                   for o in legacy
                   if infos[o["service_order_id"]].consume_amount - infos[o["service_order_id"]].completion_amount
                   >= Decimal(10)]
        for start in range(0, len(reports), 100):
            client.update_campaigns(reports[start:start + 100])
        # Reconciliation's extra reads of the legacy orders, every run while they have money.
        for start in range(0, len(legacy), 100):
            client.get_orders_info([(SERVICE_ID, o["service_order_id"]) for o in legacy[start:start + 100]])
        return adoption_calls, adoption, client.calls, time.monotonic() - started
    finally:
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=300)
    args = parser.parse_args()
    import logging

    from django.core.management import call_command

    logging.disable(logging.CRITICAL)
    call_command("migrate", verbosity=0)
    calls, seconds = transfer(args.orders, args.customers)
    print(f"transfer: {sum(calls.values())} Balance calls {dict(calls)} in {seconds:.2f} s, once; afterwards "
          f"nothing per spend report")
    adoption_calls, adoption, cycle_calls, cycle = funding_source(args.orders, args.customers)
    print(f"funding source: adoption {sum(adoption_calls.values())} calls {dict(adoption_calls)} in {adoption:.2f} s;"
          f" then per spend report and reconciliation run while legacy money lasts: {sum(cycle_calls.values())} "
          f"calls {dict(cycle_calls)} in {cycle:.2f} s")


if __name__ == "__main__":
    main()
