"""Reconciliation benchmark: time to reconcile N customers with orders against the Balance emulator on loopback,
Balance calls made, and mismatches found (none on a consistent seed; then 1% sabotaged, found and fixed).

    .venv/bin/python bench/reconcile.py                  # 10,000 customers (about 2 minutes on 2 cores)
    .venv/bin/python bench/reconcile.py --customers 1000 # smaller

Registering 10,000 customers through the API and Balance would take most of an hour, so both sides are seeded
consistently in bulk instead: billing's tables with `bulk_create` (customers, agencies and contracts, Balance orders,
ledger accounts and balanced ledger transactions, checked by `manage.py verify_ledger`), and the emulator's state
through its in-process API (`EmulatorState.load_json`) in its own process, which then serves XML-RPC on loopback
like a real Balance. It drops and recreates the PostgreSQL database `disbalance_bench_reconcile`. The report is
also saved as bench/results/reconcile-<UTC time>.txt.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DB_NAME = "disbalance_bench_reconcile"
SERVICE_ID = 7
WALLET_PRODUCT_ID = 503000
PRODUCTS = (("placement", "Listing placement", "placement", 503162), ("boost", "Boost to the top", "vas", 503163))
AGENCIES = 20
AGENCY_SHARE = 0.1  # customers paid by an agency
FUNDING = Decimal("1000.00")
SEED = 20240601
FIRST_CLIENT_ID, FIRST_PERSON_ID, FIRST_CONTRACT_ID = 100000, 200000, 400000


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.extend(text.split("\n"))


out = Report()


# --- the emulator, in its own process ---------------------------------------------------------------------------

def _emulator_main(state_path: str, conn: Any) -> None:
    """Child process: load the seeded state through the emulator's in-process API, serve, wait to be told to stop."""
    import json

    from balance_gateway.emulator import BalanceEmulator

    emulator = BalanceEmulator(port=0)
    data = json.loads(Path(state_path).read_text())
    with emulator.state.lock:
        emulator.state.load_json(data)
    emulator.start()
    conn.send(emulator.url)
    conn.recv()  # any message: stop
    emulator.stop()


def start_emulator(state_path: Path) -> tuple[multiprocessing.process.BaseProcess, Any, str]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_emulator_main, args=(str(state_path), child), daemon=True)
    process.start()
    if not parent.poll(120):
        process.terminate()
        raise RuntimeError("the emulator did not start")
    return process, parent, parent.recv()


# --- seeding ----------------------------------------------------------------------------------------------------

def recreate_database(pg_base: str) -> None:
    with psycopg.connect(f"{pg_base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def seed(customers: int, rng: random.Random) -> dict[str, Any]:
    """Billing's rows in bulk, and the emulator's state (the same facts) as `EmulatorState.to_json` data."""
    from django.db import transaction
    from django.utils import timezone

    from agencies.models import Agency, Contract
    from customers.models import Customer
    from disbalance.services import service_create
    from payments.models import BalanceOrder
    from payments.services import product_create
    from wallets.models import Account, LedgerEntry, LedgerTransaction

    long_ago = timezone.now() - timedelta(days=30)  # a stable customer base: nobody "recently changed"
    service = service_create(slug="bench", name="Benchmark classifieds", balance_service_id=SERVICE_ID).service
    products = [product_create(service=service, code=code, name=name, kind=kind, balance_product_id=pid).product
                for code, name, kind, pid in PRODUCTS]
    tid = time.time_ns() // 1000
    client_ids = iter(range(FIRST_CLIENT_ID, 10**9))
    person_ids = iter(range(FIRST_PERSON_ID, 10**9))
    state: dict[str, Any] = {"version": 1, "clients": [], "persons": [], "contracts": [], "orders": [],
                             "requests": [], "user_links": {}, "order_seq": 0}

    def balance_party(name: str, inn: str, key: str, is_agency: bool) -> tuple[int, int]:
        client_id, person_id = next(client_ids), next(person_ids)
        state["clients"].append({"client_id": client_id, "name": name, "is_agency": int(is_agency),
                                 "service_id": SERVICE_ID, "service_client_id": key})
        state["persons"].append({"person_id": person_id, "client_id": client_id, "type": "ur", "name": name,
                                 "inn": inn, "legaladdress": "Moscow"})
        return client_id, person_id

    with transaction.atomic():
        agencies = []
        for n in range(AGENCIES):
            agency = Agency(service=service, external_id=f"bench-agency:{n:03d}", name=f"Bench Agency {n}",
                            inn=f"77{n:08d}", legal_address="Moscow", status="active", created_at=long_ago,
                            updated_at=long_ago)
            agencies.append(agency)
        Agency.objects.bulk_create(agencies)
        contracts = []
        for n, agency in enumerate(agencies):
            agency.balance_client_id, agency.balance_person_id = balance_party(
                agency.name, agency.inn, f"disbalance:agency:{agency.pk}", True)
            contract_id = FIRST_CONTRACT_ID + n
            state["contracts"].append({"contract_id": contract_id, "client_id": agency.balance_client_id,
                                       "external_id": f"BENCH-{n}", "payment_type": 2, "credit_limit": "0.00",
                                       "services": [SERVICE_ID], "dt": (date.today() - timedelta(days=30)).isoformat(),
                                       "person_id": agency.balance_person_id})
            contracts.append(Contract(agency=agency, balance_contract_id=contract_id, number=f"BENCH-{n}",
                                      active=True, payment_type="prepaid", services=[SERVICE_ID],
                                      valid_from=date.today() - timedelta(days=30)))
        Agency.objects.bulk_update(agencies, ["balance_client_id", "balance_person_id"])
        Contract.objects.bulk_create(contracts)

        rows = []
        for n in range(customers):
            agency = agencies[n % AGENCIES] if rng.random() < AGENCY_SHARE else None
            rows.append(Customer(service=service, external_id=f"bench:{n:05d}", kind="company",
                                 name=f"Bench Motors {n} LLC", inn=f"{7700000000 + n}", legal_address="Moscow",
                                 agency=agency, status="active", created_at=long_ago, updated_at=long_ago))
        Customer.objects.bulk_create(rows, batch_size=2000)
        for customer in rows:
            customer.balance_client_id, customer.balance_person_id = balance_party(
                customer.name, customer.inn, f"disbalance:customer:{customer.pk}", False)
        Customer.objects.bulk_update(rows, ["balance_client_id", "balance_person_id"], batch_size=2000)

        # Orders: one wallet and two children per customer, under its payer (wallets first: children point at them).
        def payer_key(customer: Customer) -> str:
            return f"p{customer.agency_id}" if customer.agency_id else "pself"

        wallets = [BalanceOrder(service=service, customer=c, payer_agency=c.agency, kind="wallet",
                                key=f"wallet:c{c.pk}:{payer_key(c)}", sync_status="synced",
                                synced_client_id=c.balance_client_id,
                                synced_agency_id=c.agency.balance_client_id if c.agency else None,
                                credited_qty=FUNDING, balance_consume_qty=FUNDING, last_tid=tid + c.pk,
                                created_at=long_ago) for c in rows]
        BalanceOrder.objects.bulk_create(wallets, batch_size=2000)
        spend: dict[tuple[int, str], Decimal] = {}
        children = []
        for customer, wallet in zip(rows, wallets, strict=True):
            for product in products:
                amount = Decimal(rng.randrange(100, 40000)) / 100
                spend[(customer.pk, product.code)] = amount
                children.append(BalanceOrder(
                    service=service, customer=customer, payer_agency=customer.agency, kind="child", product=product,
                    parent=wallet, key=f"child:c{customer.pk}:{payer_key(customer)}:{product.code}",
                    sync_status="synced", synced_client_id=customer.balance_client_id,
                    synced_agency_id=wallet.synced_agency_id, reported_qty=amount, reported_at=long_ago,
                    balance_completion_qty=amount, created_at=long_ago))
        BalanceOrder.objects.bulk_create(children, batch_size=2000)
        seq = 0
        for order in [*wallets, *children]:
            seq += 1
            customer = order.customer
            state["orders"].append({
                "service_id": SERVICE_ID, "service_order_id": str(order.pk), "client_id": customer.balance_client_id,
                "product_id": order.product.balance_product_id if order.product else WALLET_PRODUCT_ID,
                "agency_id": customer.agency.balance_client_id if customer.agency else 0,
                "group_order_id": str(order.parent_id) if order.parent_id else "", "text": order.key,
                "consume_qty": str(order.credited_qty), "completion_qty": str(order.reported_qty),
                "tid": order.last_tid or tid, "seq": seq})
        state["order_seq"] = seq
        state["last_tid"] = tid + 10 * customers
        state["next_ids"] = {"client": next(client_ids), "person": next(person_ids), "request": 300000,
                             "contract": FIRST_CONTRACT_ID + AGENCIES}

        # The ledger: per customer a top-up (wallet +F / clearing -F) and a charge per product (wallet -x / spend +x).
        clearing = Account.objects.create(service=service, kind="clearing", key=f"clearing:s{service.pk}",
                                          currency="RUB", cached=False)
        accounts = []
        for customer in rows:
            total = sum((spend[(customer.pk, p.code)] for p in products), Decimal(0))
            accounts.append(Account(service=service, kind="wallet", customer=customer, payer_agency=customer.agency,
                                    currency="RUB", balance=FUNDING - total, cached=True,
                                    key=f"wallet:c{customer.pk}:{payer_key(customer)}"))
            for product in products:
                accounts.append(Account(service=service, kind="spend", customer=customer,
                                        payer_agency=customer.agency, product_code=product.code, currency="RUB",
                                        balance=spend[(customer.pk, product.code)], cached=True,
                                        key=f"spend:c{customer.pk}:{payer_key(customer)}:{product.code}"))
        Account.objects.bulk_create(accounts, batch_size=2000)
        by_key = {a.key: a for a in accounts}
        transactions, legs = [], []
        for customer in rows:
            wallet = by_key[f"wallet:c{customer.pk}:{payer_key(customer)}"]
            transactions.append(LedgerTransaction(service=service, type="topup", customer=customer,
                                                  payer_agency=customer.agency, reference_kind="bench",
                                                  reference_id=f"funding:{customer.pk}", description="seed"))
            after = FUNDING
            legs.append([(wallet, FUNDING, after), (clearing, -FUNDING, None)])
            for product in products:
                amount = spend[(customer.pk, product.code)]
                after -= amount
                transactions.append(LedgerTransaction(service=service, type="charge", customer=customer,
                                                      payer_agency=customer.agency, reference_kind="bench",
                                                      reference_id=f"charge:{customer.pk}:{product.code}"))
                legs.append([(wallet, -amount, after), (by_key[f"spend:c{customer.pk}:{payer_key(customer)}:"
                                                               f"{product.code}"], amount, amount)])
        LedgerTransaction.objects.bulk_create(transactions, batch_size=2000)
        entries = [LedgerEntry(transaction=txn, account=account, amount=amount, balance_after=after)
                   for txn, pair in zip(transactions, legs, strict=True) for account, amount, after in pair]
        LedgerEntry.objects.bulk_create(entries, batch_size=5000)
    return state


def sabotage(emulator_url: str, fraction: float, rng: random.Random) -> Counter:
    """Damage `fraction` of all customers (picked among the direct ones) behind billing's back, over HTTP, one kind
    of damage each (round robin)."""
    from agencies.models import Agency
    from balance_gateway.client import BalanceClient
    from balance_gateway.emulator.remote import EmulatorControl
    from customers.models import Customer
    from payments.models import BalanceOrder

    control = EmulatorControl(emulator_url)
    agency_client_id = Agency.objects.order_by("pk").values_list("balance_client_id", flat=True).first()
    direct = list(Customer.objects.filter(agency__isnull=True).order_by("pk").values_list("pk", "balance_client_id",
                                                                                             "name", "email"))
    total = Customer.objects.count()
    victims = rng.sample(direct, min(len(direct), max(1, round(total * fraction))))
    done: Counter = Counter()
    with BalanceClient(url=emulator_url) as balance:
        for n, (customer_id, client_id, name, email) in enumerate(victims):
            orders = {o.kind + (o.product.code if o.product else ""): o
                      for o in BalanceOrder.objects.filter(customer_id=customer_id).select_related("product")}
            damage = ("order_ownership", "money_in", "money_out", "customer_data")[n % 4]
            if damage == "order_ownership":
                control.update_order(SERVICE_ID, orders["childboost"].pk, {"AgencyID": agency_client_id})
            elif damage == "money_in":
                control.update_order(SERVICE_ID, orders["wallet"].pk, {"ConsumeQty": "1100.00"})
            elif damage == "money_out":
                control.update_order(SERVICE_ID, orders["childplacement"].pk, {"CompletionQty": "1.23"})
            else:
                balance.create_client(service_id=SERVICE_ID, client_id=client_id, name=f"{name} (renamed)",
                                      email=email, phone="")
            done[damage] += 1
    control.close()
    return done


# --- runs -------------------------------------------------------------------------------------------------------

def run(label: str, **options: Any) -> Any:
    from reconciliation.run import reconcile

    started = time.perf_counter()
    report = reconcile(**options)
    elapsed = time.perf_counter() - started
    calls = ", ".join(f"{m} {c}" for m, c in sorted(report.calls.items()))
    per_second = report.customers / elapsed if elapsed else float("inf")
    out(f"\n{label}")
    out(f"  {report.customers} customers, {report.agencies} agencies, {report.orders} orders, "
        f"{report.persons_checked} person lists in {elapsed:.1f}s: {per_second:,.0f} customers/s")
    out(f"  Balance calls: {report.calls_total} ({calls})")
    kinds = [(k, f, n, x, ff, c) for k, f, n, x, ff, c in report.rows() if f or n or x or ff or c]
    out(f"  mismatches found: {sum(report.found.values())}, new {sum(report.new.values())}, fixed "
        f"{sum(report.fixed.values())}, fix failed {sum(report.fix_failed.values())}, closed "
        f"{sum(report.closed.values())}")
    for kind, found, new, fixed, failed, closed in kinds:
        out(f"    {kind:18} found {found:5}  new {new:5}  fixed {fixed:5}  fix failed {failed:3}  closed {closed:5}")
    for error in report.errors[:5]:
        out(f"  error: {error}")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL without database (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=None, help="reconcile batch size (default: the app's)")
    parser.add_argument("--sabotage", type=float, default=0.01, help="share of the customers to damage")
    parser.add_argument("--skip-persons-sweep", action="store_true", help="no run with persons='all'")
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    env.update({"DATABASE_URL": f"{args.pg}/{DB_NAME}", "LOG_LEVEL": "WARNING",
                "DJANGO_SETTINGS_MODULE": "disbalance.settings", "PYTHONUNBUFFERED": "1"})
    out(f"Disbalance reconciliation benchmark, {args.customers} customers, {stamp} UTC")
    recreate_database(args.pg)
    manage("migrate", "--no-input", env=env)
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        pg_version = cursor.fetchone()[0]
    out(f"  {os.cpu_count()} CPU cores, Python {platform.python_version()}, PostgreSQL {pg_version}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    started = time.perf_counter()
    state = seed(args.customers, rng)
    state_path = results / f"reconcile-{stamp}-emulator-state.json"
    state_path.write_text(json.dumps(state))
    call_command("verify_ledger", stdout=io.StringIO())  # exits 1 on any difference
    out(f"  seeded billing (bulk) and the emulator state ({len(state['clients'])} clients, {len(state['orders'])} "
        f"orders) in {time.perf_counter() - started:.1f}s; verify_ledger clean")

    process, pipe, url = start_emulator(state_path)
    settings.BALANCE_URL = url
    try:
        out(f"  Balance emulator in its own process at {url} (seeded with EmulatorState.load_json)")
        options: dict[str, Any] = {"batch_size": args.batch_size}
        first = run("Run 1: consistent seed (autofix on)", **options)
        damaged = sabotage(url, args.sabotage, rng)
        out(f"\nSabotage behind billing's back over HTTP: {sum(damaged.values())} customers "
            f"({', '.join(f'{k} {v}' for k, v in sorted(damaged.items()))})")
        second = run("Run 2: after sabotage (autofix on)", **options)
        third = run("Run 3: the next run (confirms the fixes, closes them)", **options)
        if not args.skip_persons_sweep:
            run("Run 4: full persons sweep (persons='all', one GetClientPersons per client)", persons="all",
                **options)
        missed = set(damaged) - set(second.found)
        ok = (sum(first.found.values()) == 0 and sum(second.found.values()) >= sum(damaged.values()) and not missed
              and sum(third.closed.values()) >= sum(damaged.values()) - damaged["customer_data"])
        out(f"\nVerdict: {'OK' if ok else 'UNEXPECTED'} (consistent seed: 0 found; every damage found; the "
            "safe kinds fixed and closed by the next run; customer_data left to support)")
        call_command("verify_ledger", stdout=io.StringIO())
        out("verify_ledger after the fixes: clean")
    finally:
        pipe.send("stop")
        process.join(10)
        report_path = results / f"reconcile-{stamp}.txt"
        report_path.write_text("\n".join(out.lines) + "\n")
        print(f"(report saved to {report_path.relative_to(ROOT)})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
