"""Charges benchmark: charges per second and latency through the service layer, over HTTP under gunicorn, and
against a raw-SQL floor that writes the same rows; plus Balance calls per 10,000 charges. See bench/README.md.

    .venv/bin/python bench/charges.py            # full run (1,000 wallets; a few minutes on 2 cores)
    .venv/bin/python bench/charges.py --quick    # smoke check (100 wallets, 2,000 cold charges)

It drops and recreates the PostgreSQL database `disbalance_bench` (`--db NAME` for another), starts its own
Balance emulator and gunicorn (both on free ports), and leaves the database behind for inspection. The printed
report is also saved under bench/results/ (git-ignored), with the emulator and gunicorn logs.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import random
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import psycopg
import requests
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DB_NAME = "disbalance_bench"  # the default of --db
CLIENTS = 16
CLIENT_COUNTS = (16, 32, 64)  # the warm runs, each scenario and path
PRODUCTS = (("placement", "Listing placement", "placement", 503162), ("boost", "Boost to the top", "vas", 503163))
SPREAD_FUNDING = Decimal("1000000.00")
HOT_FUNDING = Decimal("100000000.00")
SEED = 20240601

# (customer index, product index, amount)
Op = tuple[int, int, Decimal]


@dataclass(frozen=True)
class Sizes:
    wallets: int
    cold_charges: int  # the first charges over wallets x products: Balance orders are created on the way
    spread_ops: int  # per path, once every wallet and product has its Balance orders
    hot_ops: int  # per path, on the one hot wallet
    anatomy_ops: int  # single-threaded, to count SQL statements per charge


FULL = Sizes(wallets=1000, cold_charges=10_000, spread_ops=3_000, hot_ops=2_000, anatomy_ops=200)
QUICK = Sizes(wallets=100, cold_charges=2_000, spread_ops=800, hot_ops=500, anatomy_ops=50)


# --- output ---------------------------------------------------------------------------------------------------

class Report:
    """Prints to stdout and keeps a copy for bench/results/."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.extend(text.split("\n"))

    def save(self, path: Path) -> None:
        path.write_text("\n".join(self.lines) + "\n")


out = Report()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --- infrastructure: database, emulator, gunicorn --------------------------------------------------------------

def git_state() -> str:
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return result.stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line[3:].split("/")[0] != "bench"]
    return f"{git('rev-parse', '--short', 'HEAD')}" + (f" + {len(changed)} uncommitted paths outside bench/"
                                                       if changed else " (clean outside bench/)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recreate_database(pg_base: str, name: str = DB_NAME) -> None:
    with psycopg.connect(f"{pg_base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def start_emulator(env: dict[str, str], log_dir: Path, extra_args: tuple[str, ...] = ()
                   ) -> tuple[subprocess.Popen, str]:
    """`manage.py balance_emulator --port 0` in its own process; returns it and its XML-RPC URL."""
    log = (log_dir / "emulator.log").open("w")
    proc = subprocess.Popen([PYTHON, "manage.py", "balance_emulator", "--port", "0", *extra_args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    match = re.search(r"at (http://\S+/xmlrpc)", line)
    if not match:
        proc.terminate()
        raise RuntimeError(f"the Balance emulator did not start: {line!r}; see {log_dir / 'emulator.log'}")
    return proc, match.group(1)


@dataclass(frozen=True)
class GunicornConfig:
    workers: int
    threads: int

    def args(self) -> list[str]:
        args = ["--workers", str(self.workers)]
        if self.threads > 1:
            args += ["--threads", str(self.threads)]  # gthread worker class
        return args

    def describe(self) -> str:
        kind = f"gthread, {self.threads} threads each" if self.threads > 1 else "sync"
        return f"{self.workers} workers ({kind})"


def start_gunicorn(config: GunicornConfig, env: dict[str, str], log_dir: Path, port: int | None = None,
                   log_name: str = "gunicorn.log") -> tuple[subprocess.Popen, str]:
    port = port or free_port()
    gunicorn = str(Path(PYTHON).parent / "gunicorn")
    log = log_dir / log_name
    # gunicorn's own log and the app's (Django logs a 500 with its traceback on stderr) go to the same file.
    with log.open("a") as log_file:
        proc = subprocess.Popen(
            [gunicorn, "disbalance.wsgi:application", "--bind", f"127.0.0.1:{port}", *config.args(),
             "--timeout", "120", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}; see {log}")
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"gunicorn did not answer /healthz within 60 s; see {log}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(parent_pid: int) -> float:
    """User + system CPU of the direct children of `parent_pid` (gunicorn's workers), from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent_pid:  # fields[0] is the state, [1] the parent pid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


# --- the clients: one per thread, each with its own connection -------------------------------------------------

class Client(Protocol):
    def open(self) -> None: ...
    def charge(self, op: Op) -> str | None: ...  # None, or an error label
    def close(self) -> None: ...


@dataclass
class World:
    """What the clients charge: the service, its token, products, customers, and the ledger accounts."""

    service_id: int
    token: str
    product_ids: list[int]
    product_codes: list[str]
    product_names: list[str]
    customer_ids: list[int]  # spread customers, by index
    external_ids: list[str]
    hot_index: int  # index of the hot customer in customer_ids (the last one)
    wallet_ids: dict[int, int] = field(default_factory=dict)  # customer id -> wallet account id
    spend_ids: dict[tuple[int, int], int] = field(default_factory=dict)  # (customer id, product idx) -> account
    holds_ids: dict[int, int] = field(default_factory=dict)  # customer id -> holds account id (once it exists)
    currency: str = "RUB"


class ServiceClient:
    """`payments.services.charge_create` in this thread, on this thread's Django connection."""

    def __init__(self, world: World) -> None:
        self.world = world

    def open(self) -> None:
        from django.db import connection

        from customers.models import Customer
        from payments.models import Product

        connection.ensure_connection()
        self.products = [Product.objects.get(pk=pk) for pk in self.world.product_ids]
        # charge_create locks and re-reads the customer by pk: an instance with the pk is all it needs.
        self.customers = [Customer(pk=pk) for pk in self.world.customer_ids]

    def charge(self, op: Op) -> str | None:
        from disbalance.exceptions import ApplicationError
        from payments.services import charge_create

        index, product, amount = op
        try:
            charge_create(customer=self.customers[index], product=self.products[product], amount=amount)
        except ApplicationError as exc:
            return exc.code
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc)[:80]}"
        return None

    def close(self) -> None:
        from django.db import connections

        connections.close_all()


class HttpClient:
    """POST /api/v1/customers/<id>/charges with a fresh Idempotency-Key, over one requests.Session."""

    def __init__(self, world: World, base_url: str) -> None:
        self.world = world
        self.base_url = base_url

    def open(self) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.world.token}"

    def charge(self, op: Op) -> str | None:
        index, product, amount = op
        try:
            response = self.session.post(
                f"{self.base_url}/api/v1/customers/{self.world.external_ids[index]}/charges",
                json={"product": self.world.product_codes[product], "amount": f"{amount:.2f}"},
                headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=60,
            )
        except requests.RequestException as exc:
            return f"{type(exc).__name__}"
        if response.status_code == 201:
            return None
        try:
            code = response.json().get("code", "")
        except ValueError:
            code = ""
        return f"HTTP {response.status_code} {code}".strip()

    def close(self) -> None:
        self.session.close()


FLOOR_LOCK = "SELECT id, balance FROM wallets_account WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE"
FLOOR_TXN = """INSERT INTO wallets_ledgertransaction (public_id, type, reference_kind, reference_id, description,
    reason, created_at, created_by_id, customer_id, payer_agency_id, service_id)
    VALUES (%s, 'charge', 'charge', %s, %s, '', %s, NULL, %s, NULL, %s) RETURNING id"""
FLOOR_ENTRIES = """INSERT INTO wallets_ledgerentry (amount, balance_after, account_id, transaction_id)
    VALUES (%s, %s, %s, %s), (%s, %s, %s, %s)"""
FLOOR_BALANCE = "UPDATE wallets_account SET balance = %s WHERE id = %s"
FLOOR_CHARGE = """INSERT INTO payments_charge (id, amount, refunded_amount, status, description, metadata, created_at,
    customer_id, payer_agency_id, service_id, hold_id, product_id)
    VALUES (%s, %s, 0, 'succeeded', '', '{}', %s, %s, NULL, %s, NULL, %s)"""
# The charge.succeeded event, as `disbalance.events.event_emit` writes it (the bench service has no webhook URL,
# hence `skipped`), its per-customer sequence computed inside the INSERT.
FLOOR_EVENT = """INSERT INTO disbalance_webhookevent (id, service_id, type, customer_pk, customer_external_id,
    sequence, data, dedup_key, request_id, created_at, status, attempts, next_attempt_at, last_status_code,
    last_error, delivered_at, note, operation_id)
    VALUES (%s, %s, 'charge.succeeded', %s, %s,
    (SELECT COALESCE(MAX(sequence), 0) + 1 FROM disbalance_webhookevent WHERE customer_pk = %s), %s, '', '', %s,
    'skipped', 0, NULL, NULL, '', NULL, '', NULL)"""


class InsufficientFloorFunds(Exception):
    pass


class FloorClient:
    """The least a charge must do, in raw SQL on psycopg: lock the wallet (and the spend account, which is
    needed for its balance_after, and the holds account if any: the event's balance is wallet + held), insert the
    ledger transaction and its 2 entries, move the 2 cached balances, insert the charge row and its
    `charge.succeeded` event; one transaction. Same rows as `charge_create`, so `verify_ledger` checks it too."""

    def __init__(self, world: World, conninfo: str) -> None:
        self.world = world
        self.conninfo = conninfo

    def open(self) -> None:
        self.conn = psycopg.connect(self.conninfo, autocommit=True)
        self.cur = self.conn.cursor()

    def charge(self, op: Op) -> str | None:
        index, product, amount = op
        world = self.world
        customer_id = world.customer_ids[index]
        wallet, spend = world.wallet_ids[customer_id], world.spend_ids[(customer_id, product)]
        holds = world.holds_ids.get(customer_id)
        charge_id, now = uuid.uuid4(), datetime.now(UTC)
        cur = self.cur
        try:
            with self.conn.transaction():
                balances = dict(cur.execute(FLOOR_LOCK, ([wallet, spend] + ([holds] if holds else []),)).fetchall())
                if balances[wallet] < amount:
                    raise InsufficientFloorFunds
                wallet_after, spend_after = balances[wallet] - amount, balances[spend] + amount
                (txn_id,) = cur.execute(FLOOR_TXN, (uuid.uuid4(), str(charge_id), world.product_names[product], now,
                                                    customer_id, world.service_id)).fetchone()
                cur.execute(FLOOR_ENTRIES, (-amount, wallet_after, wallet, txn_id, amount, spend_after, spend, txn_id))
                cur.execute(FLOOR_BALANCE, (wallet_after, wallet))
                cur.execute(FLOOR_BALANCE, (spend_after, spend))
                cur.execute(FLOOR_CHARGE, (charge_id, amount, now, customer_id, world.service_id,
                                           world.product_ids[product]))
                held = balances[holds] if holds else Decimal("0.00")
                data = {"customer": world.external_ids[index], "payer": None, "amount": f"{amount:.2f}",
                        "balance": f"{wallet_after + held:.2f}", "held": f"{held:.2f}", "currency": world.currency,
                        "charge": str(charge_id), "product": world.product_codes[product]}
                cur.execute(FLOOR_EVENT, (uuid.uuid4(), world.service_id, customer_id, world.external_ids[index],
                                          customer_id, Jsonb(data), now))
        except InsufficientFloorFunds:
            return "insufficient_funds"
        except psycopg.Error as exc:
            return f"{type(exc).__name__}"
        return None

    def close(self) -> None:
        self.conn.close()


# --- the floors of the other money operations (single-threaded: "Statements per operation") --------------------

OPS_LOCK_CUSTOMER = "SELECT id FROM customers_customer WHERE id = %s FOR NO KEY UPDATE"
# A wallet order's customer, locked by the order's id: the service reads the order's customer, then locks it.
OPS_LOCK_ORDER_CUSTOMER = """SELECT id FROM customers_customer
    WHERE id = (SELECT customer_id FROM payments_balanceorder WHERE id = %s) FOR NO KEY UPDATE"""
OPS_LOCK_HOLD = "SELECT status, amount, description, metadata FROM payments_hold WHERE id = %s FOR UPDATE"
OPS_LOCK_CHARGE = "SELECT amount, refunded_amount FROM payments_charge WHERE id = %s FOR UPDATE"
# The order and, in the same statement, what decides how its money is credited: top-ups waiting for money (the
# crediting marks them succeeded), money being moved onto or off the order (adoption, payer transfer: it waits).
OPS_LOCK_ORDER = """SELECT o.last_tid, o.credited_qty,
    EXISTS (SELECT 1 FROM payments_topup t WHERE t.order_id = o.id AND t.status IN ('pending', 'awaiting_payment')),
    EXISTS (SELECT 1 FROM payments_orderadoption a WHERE a.wallet_order_id = o.id AND a.status = 'transferring')
    OR EXISTS (SELECT 1 FROM payments_payertransfer p WHERE (p.from_order_id = o.id OR p.to_order_id = o.id)
               AND p.status = 'sending')
    FROM payments_balanceorder o WHERE o.id = %s FOR UPDATE OF o"""
OPS_TXN = """INSERT INTO wallets_ledgertransaction (public_id, type, reference_kind, reference_id, description,
    reason, created_at, created_by_id, customer_id, payer_agency_id, service_id)
    VALUES (%s, %s, %s, %s, %s, '', %s, NULL, %s, NULL, %s) RETURNING id"""
OPS_EVENT = FLOOR_EVENT.replace("'charge.succeeded'", "%s")
OPS_HOLD = """INSERT INTO payments_hold (id, amount, captured_amount, status, description, metadata, expires_at,
    created_at, closed_at, customer_id, payer_agency_id, product_id, service_id)
    VALUES (%s, %s, 0, 'held', '', '{}', %s, %s, NULL, %s, NULL, %s, %s)"""
OPS_HOLD_CAPTURED = "UPDATE payments_hold SET status = 'captured', captured_amount = %s, closed_at = %s WHERE id = %s"
OPS_HOLD_RELEASED = "UPDATE payments_hold SET status = 'released', closed_at = %s WHERE id = %s"
OPS_CAPTURE_CHARGE = """INSERT INTO payments_charge (id, amount, refunded_amount, status, description, metadata,
    created_at, customer_id, payer_agency_id, service_id, hold_id, product_id)
    VALUES (%s, %s, 0, 'succeeded', %s, %s, %s, %s, NULL, %s, %s, %s)"""
OPS_REFUND = "INSERT INTO payments_refund (id, amount, reason, created_at, charge_id) VALUES (%s, %s, %s, %s, %s)"
OPS_CHARGE_REFUNDED = "UPDATE payments_charge SET refunded_amount = %s WHERE id = %s"
OPS_ORDER_CREDITED = """UPDATE payments_balanceorder SET credited_qty = %s, balance_consume_qty = %s,
    balance_completion_qty = %s, last_tid = %s, balance_refreshed_at = %s WHERE id = %s"""


class FloorRefused(Exception):
    """The floor's input is not the case it writes (not held, too much, a top-up waiting, ...): a bench bug."""


class OperationsFloor:
    """The least hold, capture, release, refund and top-up crediting must do, in raw SQL on psycopg, one
    transaction each, for a customer that pays itself: the service's row locks in the service's order (the
    customer; then the hold, charge or order the operation changes; then the customer's accounts in id order, FOR
    NO KEY UPDATE, in one statement, with the holds account whose balance the event reports), the ledger
    transaction, its entries with `balance_after`, the cached balances (one UPDATE however many accounts), the
    operation's own rows and its event (sequence computed in the INSERT, as `disbalance.events` does). Reads that
    decide what to write are folded into a lock statement (top-ups waiting, money in flight). Not done, because
    for these customers they write nothing: the overdraft hooks (no Overdraft row, no debt) and the low-balance
    event (no threshold in the bench). The same rows as the services, so `verify_ledger` checks them too.
    `statements` counts the statements sent, BEGIN and COMMIT included."""

    def __init__(self, world: World, conninfo: str, clearing_id: int) -> None:
        self.world = world
        self.conninfo = conninfo
        self.clearing_id = clearing_id
        self.statements = 0

    def open(self) -> None:
        self.conn = psycopg.connect(self.conninfo, autocommit=True)
        self.cur = self.conn.cursor()

    def close(self) -> None:
        self.conn.close()

    def _sql(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> psycopg.Cursor:
        self.statements += 1
        return self.cur.execute(sql, params)

    def _transaction(self) -> Any:
        self.statements += 2  # BEGIN, COMMIT
        return self.conn.transaction()

    def _lock_accounts(self, ids: list[int]) -> dict[int, Decimal]:
        return dict(self._sql(FLOOR_LOCK, (sorted(ids),)).fetchall())

    def _post(self, type_: str, reference_kind: str, reference_id: str, description: str, customer_id: int,
              entries: list[tuple[int, Decimal]], locked: dict[int, Decimal]) -> dict[int, Decimal]:
        """The transaction, the cached balances (accounts in `locked`; the others, e.g. clearing, keep none)
        and the entries; returns every locked account's balance after it."""
        (txn_id,) = self._sql(OPS_TXN, (uuid.uuid4(), type_, reference_kind, reference_id, description[:500],
                                        datetime.now(UTC), customer_id, self.world.service_id)).fetchone()
        moved = {account: locked[account] + amount for account, amount in entries if account in locked}
        self._sql("UPDATE wallets_account AS a SET balance = v.balance FROM (VALUES "
                  + ", ".join(["(%s::bigint, %s::numeric)"] * len(moved)) + ") AS v(id, balance) WHERE a.id = v.id",
                  [value for item in moved.items() for value in item])
        self._sql("INSERT INTO wallets_ledgerentry (amount, balance_after, account_id, transaction_id) VALUES "
                  + ", ".join(["(%s, %s, %s, %s)"] * len(entries)),
                  [value for account, amount in entries for value in (amount, moved.get(account), account, txn_id)])
        return {**locked, **moved}

    def _event(self, type_: str, index: int, amount: Decimal, wallet: Decimal, held: Decimal,
               fields: dict[str, Any]) -> None:
        world = self.world
        customer_id = world.customer_ids[index]
        data = {"customer": world.external_ids[index], "payer": None, "amount": f"{amount:.2f}",
                "balance": f"{wallet + held:.2f}", "held": f"{held:.2f}", "currency": world.currency, **fields}
        self._sql(OPS_EVENT, (uuid.uuid4(), world.service_id, type_, customer_id, world.external_ids[index],
                              customer_id, Jsonb(data), datetime.now(UTC)))

    def _accounts(self, index: int, product: int | None = None) -> tuple[int, int, int | None]:
        customer_id = self.world.customer_ids[index]
        spend = self.world.spend_ids[(customer_id, product)] if product is not None else None
        return self.world.wallet_ids[customer_id], self.world.holds_ids[customer_id], spend

    def hold(self, index: int, product: int, amount: Decimal, expires_at: datetime) -> None:
        world = self.world
        customer_id = world.customer_ids[index]
        wallet, holds, _ = self._accounts(index)
        hold_id = uuid.uuid4()
        with self._transaction():
            self._sql(OPS_LOCK_CUSTOMER, (customer_id,))
            locked = self._lock_accounts([wallet, holds])
            if locked[wallet] < amount:
                raise InsufficientFloorFunds
            after = self._post("hold", "hold", str(hold_id), f"Hold for {world.product_names[product]}", customer_id,
                               [(wallet, -amount), (holds, amount)], locked)
            self._event("hold.created", index, amount, after[wallet], after[holds],
                        {"hold": str(hold_id), "product": world.product_codes[product],
                         "expires_at": expires_at.isoformat()})
            self._sql(OPS_HOLD, (hold_id, amount, expires_at, datetime.now(UTC), customer_id,
                                 world.product_ids[product], world.service_id))

    def capture(self, hold_id: uuid.UUID, index: int, product: int, captured: Decimal) -> None:
        world = self.world
        customer_id = world.customer_ids[index]
        wallet, holds, spend = self._accounts(index, product)
        assert spend is not None
        charge_id, now = uuid.uuid4(), datetime.now(UTC)
        with self._transaction():
            self._sql(OPS_LOCK_CUSTOMER, (customer_id,))
            status, amount, description, metadata = self._sql(OPS_LOCK_HOLD, (hold_id,)).fetchone()
            if status != "held" or not 0 < captured <= amount:
                raise FloorRefused(f"capture {captured} of a {status} hold of {amount}")
            locked = self._lock_accounts([wallet, holds, spend])
            entries = [(holds, -amount), (spend, captured)] + ([(wallet, amount - captured)] if amount > captured
                                                               else [])
            after = self._post("capture", "hold", str(hold_id), f"Capture of hold {hold_id}", customer_id, entries,
                               locked)
            self._event("hold.captured", index, captured, after[wallet], after[holds],
                        {"hold": str(hold_id), "charge": str(charge_id), "product": world.product_codes[product],
                         "captured": f"{captured:.2f}", "released": f"{amount - captured:.2f}"})
            self._sql(OPS_HOLD_CAPTURED, (captured, now, hold_id))
            self._sql(OPS_CAPTURE_CHARGE, (charge_id, captured, description, Jsonb(metadata), now, customer_id,
                                           world.service_id, hold_id, world.product_ids[product]))

    def release(self, hold_id: uuid.UUID, index: int, product: int) -> None:
        world = self.world
        customer_id = world.customer_ids[index]
        wallet, holds, _ = self._accounts(index)
        with self._transaction():
            self._sql(OPS_LOCK_CUSTOMER, (customer_id,))
            status, amount, _description, _metadata = self._sql(OPS_LOCK_HOLD, (hold_id,)).fetchone()
            if status != "held":
                raise FloorRefused(f"release of a {status} hold")
            locked = self._lock_accounts([wallet, holds])
            if locked[holds] < amount:
                raise FloorRefused(f"release {amount} of {locked[holds]} held")
            after = self._post("release", "hold", str(hold_id), f"Release of hold {hold_id}", customer_id,
                               [(holds, -amount), (wallet, amount)], locked)
            self._event("hold.released", index, amount, after[wallet], after[holds],
                        {"hold": str(hold_id), "product": world.product_codes[product]})
            self._sql(OPS_HOLD_RELEASED, (datetime.now(UTC), hold_id))

    def refund(self, charge_id: uuid.UUID, index: int, product: int, amount: Decimal, reason: str) -> None:
        world = self.world
        customer_id = world.customer_ids[index]
        wallet, holds, spend = self._accounts(index, product)
        assert spend is not None
        refund_id = uuid.uuid4()
        with self._transaction():
            self._sql(OPS_LOCK_CUSTOMER, (customer_id,))
            charged, refunded = self._sql(OPS_LOCK_CHARGE, (charge_id,)).fetchone()
            if not 0 < amount <= charged - refunded:
                raise FloorRefused(f"refund {amount} of a charge of {charged} with {refunded} refunded")
            locked = self._lock_accounts([wallet, spend, holds])
            if locked[spend] < amount:
                raise FloorRefused(f"refund {amount} of {locked[spend]} spent")
            after = self._post("refund", "refund", str(refund_id), f"Refund of charge {charge_id}: {reason}",
                               customer_id, [(spend, -amount), (wallet, amount)], locked)
            self._event("refund.succeeded", index, amount, after[wallet], after[holds],
                        {"refund": str(refund_id), "charge": str(charge_id), "reason": reason,
                         "product": world.product_codes[product]})
            self._sql(OPS_REFUND, (refund_id, amount, reason, datetime.now(UTC), charge_id))
            self._sql(OPS_CHARGE_REFUNDED, (refunded + amount, charge_id))

    def topup_credit(self, order_id: int, index: int, consume_money: Decimal, completion_qty: Decimal,
                     tid: int) -> None:
        """Money Balance reports on the wallet order with a new Tid, no top-up waiting for it: `money.received`."""
        customer_id = self.world.customer_ids[index]
        wallet, holds, _ = self._accounts(index)
        with self._transaction():
            (locked_customer,) = self._sql(OPS_LOCK_ORDER_CUSTOMER, (order_id,)).fetchone()
            last_tid, credited, waiting, in_flight = self._sql(OPS_LOCK_ORDER, (order_id,)).fetchone()
            delta = consume_money - credited
            if locked_customer != customer_id or tid <= last_tid or waiting or in_flight or delta <= 0:
                raise FloorRefused(f"order {order_id}: not a new Tid bringing money without a top-up")
            locked = self._lock_accounts([wallet, holds])
            after = self._post("topup", "balance_order", f"{order_id}@{tid}",
                               f"Money received on Balance order {order_id}", customer_id,
                               [(wallet, delta), (self.clearing_id, -delta)], locked)
            self._event("money.received", index, delta, after[wallet], after[holds], {"order": order_id, "tid": tid})
            self._sql(OPS_ORDER_CREDITED, (consume_money, consume_money, completion_qty, tid, datetime.now(UTC),
                                           order_id))


# --- running clients and collecting figures --------------------------------------------------------------------

@dataclass
class RunResult:
    scenario: str
    path: str
    ops: int
    seconds: float
    latencies_ms: list[float]
    errors: Counter
    clients: int = CLIENTS
    bench_cpu: float = 0.0  # CPU seconds of this process (the clients; for `service`, the application too)
    server_cpu: float | None = None  # CPU seconds of gunicorn's workers (HTTP runs)
    verdict: str = ""

    @property
    def ok(self) -> int:
        return self.ops - sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def cpu_ms(self, seconds: float | None) -> str:
        return "" if seconds is None else f"{seconds * 1000 / self.ops:.2f}"


def run_clients(ops: list[Op], make_client: Callable[[int], Client], clients: int = CLIENTS
                ) -> tuple[float, list[float], Counter]:
    """Run `ops` from `clients` threads pulling from one shared queue; time from the common start to the last
    thread done. Each thread opens its client (connection) before the start and closes it at the end."""
    lock = threading.Lock()
    pending = iter(ops)
    barrier = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: Counter = Counter()
    failures: list[BaseException] = []

    def loop(n: int) -> None:
        client = make_client(n)
        try:
            try:
                client.open()
            except BaseException as exc:
                failures.append(exc)
                barrier.abort()
                raise
            barrier.wait()
            mine = latencies[n]
            while True:
                with lock:
                    op = next(pending, None)
                if op is None:
                    break
                started = time.perf_counter()
                error = client.charge(op)
                mine.append((time.perf_counter() - started) * 1000)
                if error:
                    with lock:
                        errors[error] += 1
        finally:
            client.close()

    threads = [threading.Thread(target=loop, args=(n,), name=f"client-{n}") for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        for thread in threads:
            thread.join()
        raise RuntimeError(f"a client could not start: {failures[0]!r}") from failures[0]
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    merged = sorted(value for mine in latencies for value in mine)
    return elapsed, merged, errors


def verify_ledger() -> str:
    """`manage.py verify_ledger` on the bench database, plus: every charge row has its ledger transaction."""
    from django.core.management import call_command
    from django.db import connection

    buffer = io.StringIO()
    try:
        call_command("verify_ledger", stdout=buffer)
        ok = True
    except SystemExit:
        ok = False
    lines = buffer.getvalue().strip().splitlines()
    checked = lines[0] if lines else ""
    verdict = lines[-1] if lines else "no output"
    if not ok:
        out(buffer.getvalue())
    with connection.cursor() as cursor:
        # Captures of holds are charges too, posted as `capture` transactions of the hold: not counted here.
        cursor.execute("""SELECT (SELECT COUNT(*) FROM payments_charge WHERE hold_id IS NULL),
                                 (SELECT COUNT(*) FROM wallets_ledgertransaction WHERE type = 'charge'),
                                 (SELECT COUNT(*) FROM payments_charge c WHERE c.hold_id IS NULL AND NOT EXISTS (
                                     SELECT 1 FROM wallets_ledgertransaction t WHERE t.type = 'charge'
                                     AND t.reference_kind = 'charge' AND t.reference_id = c.id::text))""")
        charges, charge_txns, orphans = cursor.fetchone()
    match = "" if charges == charge_txns and orphans == 0 else f"; CHARGES/LEDGER MISMATCH ({orphans} orphans)"
    return f"{verdict} [{checked}; {charges} charges = {charge_txns} charge transactions{match}]"


def ledger_ok(verdict: str) -> bool:
    return verdict.startswith("ledger OK") and "MISMATCH" not in verdict


def measure(scenario: str, path: str, ops: list[Op], make_client: Callable[[int], Client],
            server_pid: int | None = None, clients: int = CLIENTS) -> RunResult:
    out(f"  {scenario:<26} {path:<8} {len(ops):>6} charges, {clients} clients ...")
    server_before = children_cpu_seconds(server_pid) if server_pid else 0.0
    cpu_before = time.process_time()
    seconds, latencies, errors = run_clients(ops, make_client, clients=clients)
    result = RunResult(scenario, path, len(ops), seconds, latencies, errors, clients=clients,
                       bench_cpu=time.process_time() - cpu_before,
                       server_cpu=children_cpu_seconds(server_pid) - server_before if server_pid else None)
    result.verdict = verify_ledger()
    out(f"    {result.ok / seconds:8.1f} charges/s  p50 {result.p(50):.1f} ms  p99 {result.p(99):.1f} ms  "
        f"CPU per charge: bench process {result.cpu_ms(result.bench_cpu)} ms"
        + (f", gunicorn workers {result.cpu_ms(result.server_cpu)} ms" if server_pid else "")
        + f"  (load {os.getloadavg()[0]:.1f})" + (f"  errors {dict(errors)}" if errors else ""))
    out(f"    verify_ledger: {result.verdict}")
    return result


# --- set-up -----------------------------------------------------------------------------------------------------

def parallel(items: list[Any], work: Callable[[Any], None], threads: int = 4) -> None:
    """Run `work` over `items` from a few threads (each with its own Django connection, closed at the end)."""
    from django.db import connections

    lock = threading.Lock()
    pending = iter(items)
    failures: list[BaseException] = []

    def loop() -> None:
        try:
            while not failures:
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                work(item)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]


def build_world(sizes: Sizes) -> World:
    """A consumer service, token, 2 products, N + 1 customers registered in Balance (active), all funded."""
    from django.db import transaction

    from customers.models import Customer
    from customers.services import CustomerData, customer_register
    from disbalance.outbox import outbox_drain
    from disbalance.services import service_create, service_token_issue
    from payments.services import product_create
    from wallets.services import wallet_credit_topup

    service = service_create(slug="bench", name="Benchmark classifieds", balance_service_id=7).service
    token = service_token_issue(service=service, label="bench").raw_token
    products = [product_create(service=service, code=code, name=name, kind=kind, balance_product_id=pid).product
                for code, name, kind, pid in PRODUCTS]

    external_ids = [f"bench:{n:05d}" for n in range(sizes.wallets)] + ["bench:hot"]

    def register(external_id: str) -> None:
        # Registration writes an outbox operation; without a broker it is sent to Balance right after commit.
        n = external_id.rsplit(":", 1)[-1]
        customer_register(service=service, external_id=external_id, data=CustomerData(
            kind="company", name=f"Bench Motors {n} LLC", email=f"bench{n}@example.com",
            legal={"inn": "7701234567", "legal_address": f"Moscow, Bench street {n}", "kpp": "770101001",
                   "long_name": "Limited Liability Company", "postal_address": f"Moscow, Bench street {n}",
                   "postcode": "101000"}))

    started = time.perf_counter()
    parallel(external_ids, register)
    drained = outbox_drain(max_rounds=10)
    customers = {c.external_id: c for c in Customer.objects.filter(service=service).select_related("service")}
    not_active = [e for e in external_ids if customers[e].status != "active"]
    if not_active:
        raise RuntimeError(f"{len(not_active)} customers not active after registration, e.g. "
                           f"{not_active[0]}: {customers[not_active[0]].status_reason}")
    out(f"  registered {len(external_ids)} customers through customer_register + the emulator in "
        f"{time.perf_counter() - started:.1f}s (outbox leftovers drained: {drained or 'none'})")

    def fund(external_id: str) -> None:
        amount = HOT_FUNDING if external_id == "bench:hot" else SPREAD_FUNDING
        with transaction.atomic():
            wallet_credit_topup(customer=customers[external_id], payer_agency=None, amount=amount,
                                reference_kind="bench", reference_id=f"funding:{external_id}",
                                description="Benchmark funding")

    started = time.perf_counter()
    parallel(external_ids, fund)
    out(f"  funded {len(external_ids)} wallets with wallet_credit_topup ({SPREAD_FUNDING} each, hot wallet "
        f"{HOT_FUNDING}) in {time.perf_counter() - started:.1f}s")
    return World(
        service_id=service.pk, token=token, product_ids=[p.pk for p in products],
        product_codes=[p.code for p in products], product_names=[p.name for p in products],
        customer_ids=[customers[e].pk for e in external_ids], external_ids=external_ids,
        hot_index=len(external_ids) - 1,
    )


def load_world() -> World:
    """The world of the last run, from the kept database (for --anatomy-only); a new token is issued."""
    from customers.models import Customer
    from disbalance.models import ConsumerService
    from disbalance.services import service_token_issue
    from payments.models import Product

    service = ConsumerService.objects.get(slug="bench")
    products = [Product.objects.get(service=service, code=code) for code, *_ in PRODUCTS]
    customers = sorted(Customer.objects.filter(service=service).values_list("external_id", "pk"),
                       key=lambda item: (item[0] == "bench:hot", item[0]))
    world = World(
        service_id=service.pk, token=service_token_issue(service=service, label="bench").raw_token,
        product_ids=[p.pk for p in products], product_codes=[p.code for p in products],
        product_names=[p.name for p in products], customer_ids=[pk for _, pk in customers],
        external_ids=[e for e, _ in customers], hot_index=len(customers) - 1,
    )
    load_accounts(world)
    return world


def load_accounts(world: World) -> None:
    from wallets.models import Account

    codes = {code: n for n, code in enumerate(world.product_codes)}
    for account in Account.objects.filter(service_id=world.service_id, payer_agency__isnull=True,
                                          kind__in=["wallet", "spend", "holds"]):
        world.currency = account.currency
        if account.kind == "wallet":
            world.wallet_ids[account.customer_id] = account.pk
        elif account.kind == "holds":
            world.holds_ids[account.customer_id] = account.pk
        else:
            world.spend_ids[(account.customer_id, codes[account.product_code])] = account.pk


def spread_ops(count: int, wallets: int, rng: random.Random) -> list[Op]:
    return [(rng.randrange(wallets), rng.randrange(len(PRODUCTS)), Decimal(rng.randint(100, 10_000)) / 100)
            for _ in range(count)]


def hot_ops(count: int, hot_index: int, rng: random.Random) -> list[Op]:
    return [(hot_index, rng.randrange(len(PRODUCTS)), Decimal(rng.randint(100, 10_000)) / 100)
            for _ in range(count)]


# --- Balance calls ------------------------------------------------------------------------------------------------

def balance_calls_since(mark: int) -> Counter:
    from balance_gateway.models import BalanceCall

    return Counter(f"{method} ({outcome})" if outcome != "ok" else method for method, outcome in
                   BalanceCall.objects.filter(pk__gt=mark).values_list("method", "outcome"))


def balance_call_mark() -> int:
    from balance_gateway.models import BalanceCall

    return BalanceCall.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def report_balance_calls(charges: int, wallets: int, charging: Counter, reporting: Counter,
                         spend_totals: dict[str, int], drained: dict[str, int]) -> None:
    from django.conf import settings

    scale = 10_000 / charges
    out(f"\nBalance calls: {charges:,} charges spread over {wallets:,} wallets x {len(PRODUCTS)} products, starting "
        "with no Balance orders,\nthen the reporting job (spend_report) and the pending outbox (outbox_drain). "
        f"SPEND_REPORT_BATCH = {settings.SPEND_REPORT_BATCH}.")
    out(f"  {'phase':<10} {'method':<32} {'calls':>7} {'per 10,000 charges':>19}")
    for phase, calls in (("charging", charging), ("reporting", reporting)):
        for method, count in sorted(calls.items(), key=lambda item: -item[1]) or [("(none)", 0)]:
            out(f"  {phase:<10} {method:<32} {count:>7} {count * scale:>19.1f}")
        total = sum(calls.values())
        out(f"  {phase:<10} {'total':<32} {total:>7} {total * scale:>19.1f}")
    reporting_per_10k = sum(reporting.values()) * scale
    verdict = "OK" if reporting_per_10k <= 100 else "OVER THE BOUND"
    out(f"  acceptance: reporting 10,000 charges costs {reporting_per_10k:.1f} Balance calls (bound <= 100): {verdict}")
    out(f"  spend_report() returned {spend_totals}; outbox_drain() returned {drained or '{}'}")


# --- anatomy: SQL statements per charge, single-threaded -----------------------------------------------------------

def statement_label(sql: str) -> str:
    text = " ".join(sql.split())
    for prefix in ("RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT", "SAVEPOINT"):
        if text.startswith(prefix):
            return prefix
    # The statement's own table: the first FROM/INTO/UPDATE outside parentheses (subqueries name other tables).
    depth, top = 0, []
    for char in text:
        depth += char == "("
        top.append(char if depth == 0 else " ")
        depth -= char == ")"
    table = re.search(r'(?:FROM|INTO|UPDATE) "?(\w+)"?', "".join(top))
    name = table.group(1) if table else "?"
    verb = text.split(" ", 1)[0]
    if verb in ("BEGIN", "COMMIT", "ROLLBACK"):
        return verb
    if verb == "SELECT":
        if "FOR NO KEY UPDATE" in text or "FOR UPDATE" in text:
            return f"SELECT {name} FOR (NO KEY) UPDATE"
        if text.startswith("SELECT 1 AS"):
            return f"SELECT EXISTS {name}"
        return f"SELECT {name}"
    return f"{verb} {name}"


SERVICE_STEPS = (
    ("payments/services/charges.py", "charge_create", "charge_create, all of it"),
    ("payments/services/rules.py", "lock_for_spend", "  lock_for_spend (customer lock + payer state + order?)"),
    ("customers/locks.py", "lock_customer", "  lock_customer (customer row lock)"),
    ("wallets/services.py", "lock_accounts_by_key", "  lock_accounts_by_key (wallet + spend, one statement)"),
    ("wallets/services.py", "_post_locked", "  _post_locked (txn, balances + chain check, entries)"),
    ("wallets/services.py", "account_get_or_create", "  account_get_or_create (wallet, spend)"),
    ("wallets/services.py", "lock_accounts", "  lock_accounts (account row locks)"),
    ("wallets/services.py", "_check_last_balance_after", "  _check_last_balance_after"),
    ("wallets/services.py", "ledger_post", "  ledger_post (checks, inserts, balance updates)"),
    ("overdrafts/selectors.py", "effective_overdraft_limit", "  effective_overdraft_limit"),
    ("overdrafts/services/spending.py", "spend_limit", "  overdrafts.spend_limit (overdraft, block)"),
    ("overdrafts/services/spending.py", "after_spend", "  overdrafts.after_spend (debt, blocks)"),
    ("payments/services/orders.py", "orders_ensure", "  orders_ensure (Balance orders exist?)"),
    ("django/db/backends/base/base.py", "commit", "  COMMIT"),
    ("psycopg/connection.py", "wait", "waiting for PostgreSQL answers (every statement)"),
    ("django/db/models/sql/compiler.py", "as_sql", "ORM: compiling SQL"),
)
HTTP_STEPS = (
    ("django/core/handlers/base.py", "get_response", "Django handler, all of it"),
    ("rest_framework/views.py", "initial", "  DRF auth + permissions + throttle"),
    ("disbalance/auth.py", "authenticate", "    token lookup"),
    ("disbalance/auth.py", "allow_request", "    throttle"),
    ("disbalance/idempotency.py", "wrapper", "  idempotent(): claim, the view, store the response"),
    ("disbalance/idempotency.py", "_claim", "    claim the key (same transaction)"),
    ("disbalance/idempotency.py", "_complete", "    store the response"),
    ("customers/selectors.py", "customer_get", "    customer_get"),
    ("payments/apis.py", "_product_or_400", "    product_get"),
    ("rest_framework/serializers.py", "is_valid", "    request serializer"),
    ("payments/services/charges.py", "charge_create", "    charge_create"),
    ("django/db/backends/base/base.py", "commit", "  COMMIT"),
    ("psycopg/connection.py", "wait", "waiting for PostgreSQL answers (every statement)"),
    ("django/db/models/sql/compiler.py", "as_sql", "ORM: compiling SQL"),
)


def profile_steps(run: Callable[[], None], count: int, steps: tuple[tuple[str, str, str], ...]) -> list[str]:
    """cProfile `run` (count charges) and show the cumulative time of the named functions per charge (the
    profiler slows Python down more than PostgreSQL, so read the shares rather than the milliseconds)."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.runcall(run)
    total = time.perf_counter() - started
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    lines = [f"    {'step (cProfile, cumulative)':<54} {'calls':>6} {'ms':>7} {'share':>6}"]
    for suffix, name, label in steps:
        found = [(value[1], value[3]) for (filename, _, func), value in stats.items()
                 if func == name and filename.endswith(suffix)]
        if not found:
            continue  # not in this version of the code
        calls, cumulative = max(found, key=lambda item: item[1])
        lines.append(f"    {label:<54} {calls / count:>6.2f} {cumulative * 1000 / count:>7.2f} "
                     f"{cumulative / total:>6.0%}")
    lines.append(f"    {'total per charge under the profiler':<54} {'':>6} {total * 1000 / count:>7.2f} {1:>6.0%}")
    return lines


@dataclass
class AnatomyFigures:
    statements: dict[str, float] = field(default_factory=dict)  # path -> SQL statements per charge
    cpu_ms: dict[str, float] = field(default_factory=dict)  # path -> CPU ms per charge, single thread
    operations: dict[str, OperationFigures] = field(default_factory=dict)  # money operation -> its figures
    operations_verdict: str = ""  # verify_ledger after the operations and their floors


HTTP_ANATOMY = "HTTP stack (the WSGI application in process)"
ANATOMY_WARM_UP = 20  # untimed charges per path before the anatomy's figures


def wsgi_post(application: Callable[..., Any], path: str, body: bytes, headers: dict[str, str]) -> tuple[str, bytes]:
    """POST through Django's WSGI application as gunicorn calls it (no socket, no HTTP parsing): the environ of a
    request and its answer. Unlike Django's test client it adds nothing of its own (no signals disconnected, no
    response copying), so the CPU measured is the application's."""
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()},
    }
    status: list[str] = []
    chunks = application(environ, lambda line, _headers, _exc_info=None: status.append(line))
    try:
        return status[0], b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()


def anatomy(world: World, sizes: Sizes, conninfo: str) -> AnatomyFigures:
    """One charge, single-threaded, through the service layer and through the HTTP stack (Django's WSGI application
    in process: the middleware, auth, throttling, idempotency and views gunicorn runs, without the socket):
    time and CPU per charge, SQL statements per charge by kind, and a cProfile breakdown by step."""
    import json

    from django.core.wsgi import get_wsgi_application
    from django.db import connection, connections, reset_queries
    from django.test.utils import CaptureQueriesContext

    rng = random.Random(SEED + 99)
    count = sizes.anatomy_ops
    wallets = len(world.customer_ids) - 1
    service_client = ServiceClient(world)
    service_client.open()
    application = get_wsgi_application()

    def service_charge(op: Op) -> None:
        error = service_client.charge(op)
        assert error is None, error

    def http_charge(op: Op) -> None:
        index, product, amount = op
        body = json.dumps({"product": world.product_codes[product], "amount": f"{amount:.2f}"}).encode()
        status, content = wsgi_post(application, f"/api/v1/customers/{world.external_ids[index]}/charges", body,
                                    {"Authorization": f"Bearer {world.token}", "Idempotency-Key": str(uuid.uuid4())})
        assert status.startswith("201"), content

    out(f"\nAnatomy of one charge (single thread, {count} charges per figure)")
    figures = AnatomyFigures()
    labels: dict[str, Counter] = {}
    for name, charge, steps in (("service layer", service_charge, SERVICE_STEPS),
                                (HTTP_ANATOMY, http_charge, HTTP_STEPS)):
        # Untimed first: the first request through the WSGI application builds the middleware chain, imports the
        # views and compiles the URL patterns (about 100 ms of CPU once per process, which a server pays at start,
        # not per request); timing it would add 2 ms per charge to a 50-charge figure.
        for op in spread_ops(ANATOMY_WARM_UP, wallets, rng):
            charge(op)
        ops = spread_ops(count, wallets, rng)
        started, cpu = time.perf_counter(), time.process_time()
        for op in ops:
            charge(op)
        wall_ms = (time.perf_counter() - started) * 1000 / count
        cpu_ms = (time.process_time() - cpu) * 1000 / count
        counted: Counter = Counter()
        for op in spread_ops(count, wallets, rng):
            reset_queries()  # DEBUG keeps at most 9000 queries: a full log would hide these
            with CaptureQueriesContext(connection) as queries:
                charge(op)
            counted.update(statement_label(q["sql"]) for q in queries.captured_queries)
        labels[name] = counted
        key = "service" if name == "service layer" else "http"
        figures.statements[key] = sum(counted.values()) / count
        figures.cpu_ms[key] = cpu_ms
        out(f"  {name}: {wall_ms:.2f} ms wall, {cpu_ms:.2f} ms CPU of this process, "
            f"{sum(counted.values()) / count:.1f} SQL statements per charge")
        profiled_ops = spread_ops(count, wallets, rng)

        def run_profiled(charge: Callable[[Op], None] = charge, ops: list[Op] = profiled_ops) -> None:
            for op in ops:
                charge(op)

        for line in profile_steps(run_profiled, count, steps):
            out(line)
    connections.close_all()
    out("  floor: 9 SQL statements (BEGIN, lock, 4 inserts, 2 updates, COMMIT)")
    service, http_counts = labels["service layer"], labels[HTTP_ANATOMY]
    out(f"  {'SQL statements per charge':<52} {'service':>8} {'HTTP':>8}")
    for label, _ in (service + http_counts).most_common():
        out(f"  {label:<52} {service[label] / count:>8.2f} {http_counts[label] / count:>8.2f}")
    out("  (HTTP: the Idempotency-Key is claimed in the same transaction as the charge; BEGIN and COMMIT count; not\n"
        "  counted, as not a statement of the request's: Django's connection health check, one `SELECT 1` round\n"
        "  trip per request on a reused connection, CONN_HEALTH_CHECKS)")
    figures.operations, figures.operations_verdict = operations_anatomy(world, count, conninfo)
    return figures


@dataclass(frozen=True)
class OperationFigures:
    """One money operation, single thread: the service layer against its raw-SQL floor (per operation)."""

    statements: float  # service, BEGIN and COMMIT included
    wall_ms: float  # service, timed without the statement log
    cpu_ms: float
    floor_statements: float
    floor_wall_ms: float
    floor_cpu_ms: float  # psycopg's CPU in this process

    @property
    def ratio(self) -> float:
        """Floor time / service time: 1.0 = as fast as raw SQL (the charge runs' `ops/s vs floor`)."""
        return self.floor_wall_ms / self.wall_ms if self.wall_ms else float("nan")


def operations_anatomy(world: World, count: int, conninfo: str) -> tuple[dict[str, OperationFigures], str]:
    """Every money operation of the service layer, single-threaded, on warm customers (accounts and Balance
    orders exist), against its raw-SQL floor (`FloorClient` for the charge, `OperationsFloor` for the others) in
    the same run: `count` timed service calls (no statement log), `count` more with the statement log (SQL
    statements by kind, BEGIN and COMMIT included), then `count` floor transactions. Inputs are read outside the
    measured calls, the way the API reads them (e.g. a hold with its customer, product and payer) before calling
    the service. `verify_ledger` runs after the floors."""
    from django.conf import settings
    from django.db import connection, connections, reset_queries
    from django.test.utils import CaptureQueriesContext

    from customers.models import Customer
    from payments.models import BalanceOrder, Charge, Hold, Product
    from payments.services import (
        OrderState,
        charge_create,
        hold_capture,
        hold_create,
        hold_release,
        order_apply_balance_state,
        refund_create,
    )
    from wallets.models import Account
    from wallets.services import holds_account_get_or_create

    rng = random.Random(SEED + 7)
    products = [Product.objects.get(pk=pk) for pk in world.product_ids]
    wallets = len(world.customer_ids) - 1

    # Warm customers: a customer's first hold creates its holds account; make them all now (untimed), so that
    # no measured hold pays for a first use and every floor has the account to lock.
    for customer in Customer.objects.filter(pk__in=world.customer_ids[:wallets]).select_related("service"):
        holds_account_get_or_create(customer=customer, payer_agency=None)
    load_accounts(world)
    clearing_id = Account.objects.get(service_id=world.service_id, kind=Account.Kind.CLEARING).pk
    orders = dict(BalanceOrder.objects.filter(customer_id__in=world.customer_ids, kind=BalanceOrder.Kind.WALLET,
                                              payer_agency__isnull=True).values_list("customer_id", "pk"))

    def pick() -> tuple[int, int, Decimal]:
        return rng.randrange(wallets), rng.randrange(len(products)), Decimal(rng.randint(100, 5_000)) / 100

    def hold_for_api(pk: Any) -> Hold:
        return Hold.objects.select_related("customer", "payer_agency", "product").get(pk=pk)

    def charge_for_api(pk: Any) -> Charge:
        return Charge.objects.select_related("customer", "payer_agency", "product").get(pk=pk)

    def order_state(index: int) -> tuple[int, Decimal, Decimal, int]:
        """A new Tid on the customer's wallet order bringing new money (no top-up waits for it)."""
        order = BalanceOrder.objects.get(pk=orders[world.customer_ids[index]])
        return order.pk, order.credited_qty + pick()[2], order.balance_completion_qty, order.last_tid + 1

    def made(maker: Callable[..., Any], n: int) -> list[tuple[Any, int, int]]:
        """`n` holds or charges made through the service (untimed), as (id, customer index, product index)."""
        ops = [pick() for _ in range(n)]
        return [(maker(customer=Customer(pk=world.customer_ids[i]), product=products[p], amount=a).pk, i, p)
                for i, p, a in ops]

    # Each case needs `count` inputs for the timed service calls, `count` for the counted ones, `count` for its floor.
    to_capture, to_release, to_refund = made(hold_create, 3 * count), made(hold_create, 3 * count), \
        made(charge_create, 3 * count)

    def service_charge() -> dict[str, Any]:
        i, p, a = pick()
        return {"customer": Customer(pk=world.customer_ids[i]), "product": products[p], "amount": a}

    def service_credit() -> dict[str, Any]:
        order_id, money, completion, tid = order_state(rng.randrange(wallets))
        return {"order_id": order_id, "state": OrderState(consume_money=money, completion_qty=completion, tid=tid)}

    def floor_credit() -> tuple[Any, ...]:
        index = rng.randrange(wallets)
        order_id, money, completion, tid = order_state(index)
        return order_id, index, money, completion, tid

    def credit(**kwargs: Any) -> None:
        outcome = order_apply_balance_state(**kwargs)
        assert outcome == "applied", outcome

    expires = timedelta(days=settings.HOLD_DEFAULT_DAYS)
    charge_floor = FloorClient(world, conninfo)
    floor = OperationsFloor(world, conninfo, clearing_id)
    charge_floor.open()
    floor.open()

    def floor_charge(*op: Any) -> None:
        error = charge_floor.charge(op)
        if error:
            raise FloorRefused(error)
        floor.statements += 9  # FloorClient's: BEGIN, the accounts' lock, 4 inserts, 2 updates, COMMIT

    cases: list[tuple[str, Callable[[], Any], Callable[..., Any], Callable[[], tuple[Any, ...]], Callable[..., Any]]]
    cases = [
        ("charge", service_charge, charge_create, pick, floor_charge),
        ("hold", service_charge, hold_create, lambda: (*pick(), datetime.now(UTC) + expires), floor.hold),
        ("capture (part)", lambda: {"hold": hold_for_api(to_capture.pop()[0]), "amount": Decimal("0.50")},
         hold_capture, lambda: (*to_capture.pop(), Decimal("0.50")), floor.capture),
        ("release", lambda: {"hold": hold_for_api(to_release.pop()[0])}, hold_release, to_release.pop,
         floor.release),
        ("refund (part)", lambda: {"charge": charge_for_api(to_refund.pop()[0]), "amount": Decimal("0.50"),
                                   "reason": "bench"}, refund_create,
         lambda: (*to_refund.pop(), Decimal("0.50"), "bench"), floor.refund),
        ("top-up crediting", service_credit, credit, floor_credit, floor.topup_credit),
    ]
    figures: dict[str, OperationFigures] = {}
    kinds: dict[str, str] = {}
    out(f"\nStatements per operation (single thread, warm customers, {count} each: the service layer, then its "
        "raw-SQL floor)")
    out(f"  {'operation':<18} {'statements':>10} {'floor':>6} {'ms':>7} {'CPU ms':>7} {'floor ms':>8} {'CPU ms':>7} "
        f"{'ops/s':>7} {'floor':>7} {'floor/service':>13}")
    for name, service_input, operation, floor_input, floor_operation in cases:
        wall = cpu = 0.0
        for _ in range(count):
            kwargs = service_input()
            reset_queries()
            started, cpu_started = time.perf_counter(), time.process_time()
            operation(**kwargs)
            wall += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
        statements: Counter = Counter()
        for _ in range(count):
            kwargs = service_input()
            reset_queries()
            with CaptureQueriesContext(connection) as queries:
                operation(**kwargs)
            statements.update(statement_label(q["sql"]) for q in queries.captured_queries)
        floor.statements = 0
        floor_wall = floor_cpu = 0.0
        for _ in range(count):
            args = floor_input()
            started, cpu_started = time.perf_counter(), time.process_time()
            floor_operation(*args)
            floor_wall += time.perf_counter() - started
            floor_cpu += time.process_time() - cpu_started
        op = figures[name] = OperationFigures(
            statements=sum(statements.values()) / count, wall_ms=wall * 1000 / count, cpu_ms=cpu * 1000 / count,
            floor_statements=floor.statements / count, floor_wall_ms=floor_wall * 1000 / count,
            floor_cpu_ms=floor_cpu * 1000 / count)
        kinds[name] = ", ".join(f"{label} {n / count:g}" for label, n in statements.most_common())
        out(f"  {name:<18} {op.statements:>10.1f} {op.floor_statements:>6.1f} {op.wall_ms:>7.2f} {op.cpu_ms:>7.2f} "
            f"{op.floor_wall_ms:>8.2f} {op.floor_cpu_ms:>7.2f} {1000 / op.wall_ms:>7.0f} "
            f"{1000 / op.floor_wall_ms:>7.0f} {op.ratio:>13.3f}")
    charge_floor.close()
    floor.close()
    out("  (ms: wall per operation; CPU ms: of this process (service: the application; floor: psycopg); "
        "floor/service:\n  the floor's time over the service's, 1.0 = as fast as raw SQL, as the charge runs' "
        "`ops/s vs floor`. The service's\n  time is taken without the statement log; its statements are counted in "
        "as many more calls.)")
    out("  Service statements by kind:")
    for name, listed in kinds.items():
        out(f"    {name}: {listed}")
    verdict = verify_ledger()
    out(f"  verify_ledger after the operations and their floors: {verdict}")
    connections.close_all()
    return figures, verdict


def goals(results: list[RunResult], floors: dict[tuple[str, int], RunResult], anatomy: AnatomyFigures,
          spread: str, hot: str) -> str:
    """The issue's acceptance figures, one line each, and the one-line summary (returned)."""

    def ratio(scenario: str, path: str, clients: int) -> float | None:
        run = next((r for r in results if (r.scenario, r.path, r.clients) == (scenario, path, clients)), None)
        floor = floors.get((scenario, clients))
        return run.rate / floor.rate if run and floor and floor.rate else None

    def p99(scenario: str, path: str, clients: int) -> float | None:
        run = next((r for r in results if (r.scenario, r.path, r.clients) == (scenario, path, clients)), None)
        return run.p(99) if run else None

    def fmt(value: float | None, goal: str) -> str:
        return "n/a" if value is None else f"{value:.3f} (goal {goal})"

    out(f"\nGoals (issue 12), load average now {os.getloadavg()[0]:.2f}")
    out(f"  service / floor, spread, 16 clients: {fmt(ratio(spread, 'service', CLIENTS), '>= 0.5')}")
    out(f"  http / floor, spread, 16 clients:    {fmt(ratio(spread, 'http', CLIENTS), '>= 0.25')}, "
        f"p99 {p99(spread, 'http', CLIENTS) or float('nan'):.1f} ms (goal <= 50)")
    hot_path = "http" if any(r.path == "http" for r in results) else "service"
    hot_ratios = {n: ratio(hot, hot_path, n) for n in CLIENT_COUNTS}
    for n, value in hot_ratios.items():
        out(f"  hot wallet {hot_path} / its floor, {n} clients: {fmt(value, '>= 0.25')}")
    out(f"  SQL statements per charge: service {anatomy.statements.get('service', float('nan')):.1f} (goal <= 10), "
        f"HTTP {anatomy.statements.get('http', float('nan')):.1f} (goal <= 12)")
    out(f"  CPU per charge, one thread: service {anatomy.cpu_ms.get('service', float('nan')):.2f} ms (goal <= 2), "
        f"HTTP {anatomy.cpu_ms.get('http', float('nan')):.2f} ms (goal <= 5; WSGI application in process)")
    out("  money operations, one thread, floor time / service time (information: the issue sets no goal for them):")
    for name, op in anatomy.operations.items():
        out(f"    {name:<18} {op.ratio:.3f}  (service {op.wall_ms:.2f} ms, {op.cpu_ms:.2f} ms CPU, "
            f"{op.statements:g} statements; floor {op.floor_wall_ms:.2f} ms, {op.floor_statements:g} statements)")
    known = [value for value in hot_ratios.values() if value is not None]
    return (f"service/floor={ratio(spread, 'service', CLIENTS) or 0:.3f} "
            f"http/floor={ratio(spread, 'http', CLIENTS) or 0:.3f} "
            f"http_p99_ms={p99(spread, 'http', CLIENTS) or 0:.1f} "
            f"hot/floor={min(known) if known else 0:.3f} "
            f"statements={anatomy.statements.get('service', 0):g}")


# --- main ---------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run (100 wallets, 2,000 cold charges)")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL without database (default: %(default)s)")
    parser.add_argument("--db", default=DB_NAME,
                        help="the database to drop, recreate and keep (default: %(default)s); --anatomy-only reads it")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="gunicorn workers (default: one per core = %(default)s, as in the README's production "
                             "section)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (>1: gthread; default 4)")
    parser.add_argument("--conn-max-age", type=int, default=None,
                        help="DATABASE_CONN_MAX_AGE for gunicorn (default: unset, the app's default, 60 s persistent)")
    parser.add_argument("--skip-http", action="store_true", help="no gunicorn runs")
    parser.add_argument("--anatomy-only", action="store_true",
                        help="only the single-threaded anatomy, on the database kept by the last run")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    gunicorn_config = GunicornConfig(workers=args.workers, threads=args.threads)

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    results_dir = ROOT / "bench" / "results"
    log_dir = results_dir / f"charges-{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    run_dir = log_dir / "run"
    (run_dir / "broker").mkdir(parents=True, exist_ok=True)
    (run_dir / "broker-processed").mkdir(parents=True, exist_ok=True)

    db_url = f"{args.pg}/{args.db}"
    # No REDIS_URL: the embedded mode (Celery eager), as `make run` without Redis.
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_CONN_MAX_AGE")}
    env.update({"DATABASE_URL": db_url, "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "disbalance.settings",
                "DISBALANCE_RUN_DIR": str(run_dir), "PYTHONUNBUFFERED": "1"})
    gunicorn_env = dict(env)
    if args.conn_max_age is not None:
        gunicorn_env["DATABASE_CONN_MAX_AGE"] = str(args.conn_max_age)

    emulator = gunicorn = None
    started_all = time.perf_counter()
    if args.anatomy_only:
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        figures = anatomy(load_world(), sizes, db_url.replace("postgres://", "postgresql://", 1))
        return 0 if ledger_ok(figures.operations_verdict) else 1
    try:
        out(f"Disbalance charges benchmark ({'quick' if args.quick else 'full'}), {stamp} UTC")
        out("\nSet-up")
        recreate_database(args.pg, args.db)
        started = time.perf_counter()
        manage("migrate", "--no-input", env=env)
        out(f"  database {args.db} recreated and migrated in {time.perf_counter() - started:.1f}s")
        emulator, balance_url = start_emulator(env, log_dir)
        env["BALANCE_URL"] = gunicorn_env["BALANCE_URL"] = balance_url
        out(f"  Balance emulator (manage.py balance_emulator, own process) at {balance_url}")

        for name in ("REDIS_URL", "DATABASE_CONN_MAX_AGE"):
            os.environ.pop(name, None)
        os.environ.update(env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        import logging

        from django.conf import settings

        # Celery's eager mode makes kombu warn once per thread that no broker host is set: expected here.
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version'), current_setting('synchronous_commit'), "
                           "current_setting('shared_buffers'), current_setting('max_connections')")
            pg_version, sync_commit, shared_buffers, max_connections = cursor.fetchone()

        world = build_world(sizes)
        rng = random.Random(SEED)
        conninfo = db_url.replace("postgres://", "postgresql://", 1)
        results: list[RunResult] = []

        out("\nEnvironment")
        out(f"  code: git {git_state()}")
        out(f"  {os.cpu_count()} CPU cores, Python {platform.python_version()}, PostgreSQL {pg_version} "
            f"(synchronous_commit={sync_commit}, shared_buffers={shared_buffers}, max_connections={max_connections})")
        out(f"  DEBUG={settings.DEBUG}, LOG_LEVEL=WARNING, outbox: Celery eager (no REDIS_URL), i.e. Balance work "
            "runs in the request right after commit")
        out(f"  gunicorn: {gunicorn_config.describe()}, DATABASE_CONN_MAX_AGE="
            f"{args.conn_max_age if args.conn_max_age is not None else 'unset (app default 60 s)'}, "
            f"API_RATE_LIMIT={settings.REST_FRAMEWORK['DEFAULT_THROTTLE_RATES']['service']}")
        out(f"  {CLIENTS} client threads in this process (service layer: one Django connection each; HTTP: one "
            "requests.Session each; floor: one psycopg connection each)")
        out("  everything (clients, gunicorn, PostgreSQL, emulator) shares the same cores; load average at start "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine shows up here)")

        # 1. Cold: the first charges over wallets x products; Balance orders get created on the way.
        out("\nRuns (each followed by manage.py verify_ledger)")
        mark = balance_call_mark()
        cold = spread_ops(sizes.cold_charges, sizes.wallets, rng)
        results.append(measure(f"spread-cold {sizes.wallets}w", "service", cold, lambda n: ServiceClient(world)))
        charging_calls = balance_calls_since(mark)

        # 2. The reporting job and any pending outbox work.
        from disbalance.outbox import outbox_drain
        from payments.services import spend_report

        mark = balance_call_mark()
        spend_totals = spend_report()
        drained = outbox_drain(max_rounds=10)
        reporting_calls = balance_calls_since(mark)

        # 3. Warm: every (wallet, product) gets its Balance orders and spend account, untimed.
        load_accounts(world)
        missing = [(i, p, Decimal("1.00")) for i, customer_id in enumerate(world.customer_ids)
                   for p in range(len(PRODUCTS)) if (customer_id, p) not in world.spend_ids]
        run_clients(missing, lambda n: ServiceClient(world), clients=4)
        outbox_drain(max_rounds=10)
        load_accounts(world)
        out(f"  (untimed: {len(missing)} first charges so that every wallet x product has its orders; "
            "the warm runs below call Balance 0 times)")
        warm_mark = balance_call_mark()

        spread = spread_ops(sizes.spread_ops, sizes.wallets, rng)
        hot = hot_ops(sizes.hot_ops, world.hot_index, rng)
        scenario_spread, scenario_hot = f"spread {sizes.wallets}w", "hot 1 wallet"

        if not args.skip_http:
            gunicorn, base_url = start_gunicorn(gunicorn_config, gunicorn_env, log_dir)
            warmup = spread_ops(10 * gunicorn_config.workers, sizes.wallets, rng)
            run_clients(warmup, lambda n: HttpClient(world, base_url))  # untimed: first requests of each worker

        for clients in CLIENT_COUNTS:
            for scenario, ops in ((scenario_spread, spread), (scenario_hot, hot)):
                results.append(measure(scenario, "service", ops, lambda n: ServiceClient(world), clients=clients))
                if gunicorn is not None:
                    results.append(measure(scenario, "http", ops, lambda n: HttpClient(world, base_url),
                                           server_pid=gunicorn.pid, clients=clients))
                results.append(measure(scenario, "floor", ops, lambda n: FloorClient(world, conninfo),
                                       clients=clients))
        stop(gunicorn)
        gunicorn = None
        warm_calls = balance_calls_since(warm_mark)

        anatomy_figures = anatomy(world, sizes, conninfo)
        report_balance_calls(sizes.cold_charges, sizes.wallets, charging_calls, reporting_calls, spend_totals, drained)
        out(f"  warm runs (orders already in Balance): {sum(warm_calls.values())} Balance calls"
            + (f" {dict(warm_calls)}" if warm_calls else ""))

        # The table.
        floors = {(r.scenario, r.clients): r for r in results if r.path == "floor"}
        out("\nResults (latency per charge as the client sees it)")
        header = (f"  {'scenario':<20} {'clients':>7} {'path':<8} {'ops':>6} {'errors':>6} {'seconds':>8} {'ops/s':>8} "
                  f"{'p50 ms':>7} {'p99 ms':>7} {'ops/s vs floor':>14} {'p50 vs floor':>12} {'CPU ms/op':>9} "
                  f"{'server':>7}")
        out(header)
        out("  " + "-" * (len(header) - 2))
        for r in results:
            floor = floors.get((r.scenario.replace("spread-cold", "spread"), r.clients))
            vs_rate = f"{r.rate / floor.rate:.3f}" if floor else ""
            vs_p50 = f"{r.p(50) / floor.p(50):.1f}x" if floor else ""
            out(f"  {r.scenario:<20} {r.clients:>7} {r.path:<8} {r.ops:>6} {sum(r.errors.values()):>6} "
                f"{r.seconds:>8.1f} {r.rate:>8.1f} {r.p(50):>7.1f} {r.p(99):>7.1f} {vs_rate:>14} {vs_p50:>12} "
                f"{r.cpu_ms(r.bench_cpu):>9} {r.cpu_ms(r.server_cpu):>7}")
        summary = goals(results, floors, anatomy_figures, scenario_spread, scenario_hot)
        bad = [r for r in results if not ledger_ok(r.verdict)]
        operations_ok = ledger_ok(anatomy_figures.operations_verdict)
        out(f"\nverify_ledger after every run: {'all OK' if not bad else f'{len(bad)} run(s) NOT OK'}; "
            f"after the operations and their floors: {'OK' if operations_ok else 'NOT OK'}; final: {verify_ledger()}")
        out("CPU ms/op: CPU of this process per charge (service: the application itself plus 16 threads; http: the "
            "HTTP clients;\n  floor: psycopg); server: CPU of gunicorn's workers per charge. PostgreSQL's CPU is not "
            "counted.")
        out(f"Load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}. "
            f"Total time {time.perf_counter() - started_all:.0f}s. Database {args.db} kept for inspection; "
            f"logs in {log_dir.relative_to(ROOT)}")
        if args.quick:
            out(summary)  # the last line, for comparing quick runs
        return 1 if bad or not operations_ok or any(r.errors for r in results) else 0
    finally:
        stop(gunicorn)
        stop(emulator)
        out.save(results_dir / f"charges-{stamp}.txt")


if __name__ == "__main__":
    sys.exit(main())
