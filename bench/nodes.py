"""Nodes benchmark: the deployment shape of docs/scaling.md on this machine (two web nodes, two Celery worker nodes,
one beat, one PostgreSQL, one Redis, the Balance emulator), loaded over HTTP until something saturates. See
bench/README.md.

    .venv/bin/python bench/nodes.py            # 500 new customers, 3,000 warm charges per client count, 500 top-ups
    .venv/bin/python bench/nodes.py --quick    # 60 / 400 / 60

It drops and recreates the PostgreSQL database `disbalance_bench_nodes`, empties Redis db 9 (`--redis`), starts
every process itself (logs under bench/results/nodes-<time>-logs/) and keeps the database for inspection.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import redis
import requests
from charges import (
    CLOCK_TICKS,
    PRODUCTS,
    PYTHON,
    ROOT,
    GunicornConfig,
    HttpClient,
    Sizes,
    World,
    build_world,
    free_port,
    git_state,
    load_accounts,
    manage,
    out,
    parallel,
    percentile,
    recreate_database,
    run_clients,
    start_emulator,
    start_gunicorn,
    stop,
    verify_ledger,
)

DB_NAME = "disbalance_bench_nodes"
SEED = 20261202
FUNDING = Decimal("1000000.00")
NOTIFY_SECRET = "bench-nodes-notify"
KINDS = ("web", "celery", "beat", "emulator", "postgres", "bench")
OUTBOX = "balance_gateway_outboxoperation"


@dataclass(frozen=True)
class Workload:
    customers: int  # registered over HTTP in phase (a), each then charged once per product
    warm_ops: int  # per client count in phase (b)
    topups: int  # phase (c)


FULL = Workload(customers=500, warm_ops=3_000, topups=500)
QUICK = Workload(customers=60, warm_ops=400, topups=60)


# --- the nodes -------------------------------------------------------------------------------------------------

@dataclass
class Node:
    name: str
    kind: str  # one of KINDS
    proc: subprocess.Popen


def start_celery(args: list[str], name: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    celery = str(Path(PYTHON).parent / "celery")
    with (log_dir / f"{name}.log").open("a") as log_file:
        return subprocess.Popen([celery, "-A", "disbalance", *args], cwd=ROOT, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)


def child_pids(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def wait_for_children(proc: subprocess.Popen, count: int, name: str, timeout: float = 60) -> None:
    """A prefork worker is ready to take tasks once its pool processes exist (then a moment to connect)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see its log")
        if len(child_pids(proc.pid)) >= count:
            time.sleep(2)
            return
        time.sleep(0.3)
    raise RuntimeError(f"{name} did not start its {count} pool processes within {timeout:.0f} s")


# --- sampling: CPU per kind of process, the outbox backlog, connections --------------------------------------------

@dataclass
class Sample:
    t: float
    backlog: int  # outbox operations pending or in progress
    due: int  # of which pending and due now (waiting for a worker, not for a backoff)
    connections: int  # pg_stat_activity rows of the bench database
    active: int  # of which running a statement
    idle_in_txn: int
    load: float


class Sampler:
    """Once a second (and on demand): CPU ticks of every process of each kind (from /proc; a process that exits
    keeps its last figure), the machine's busy ticks (/proc/stat), the outbox backlog and pg_stat_activity."""

    def __init__(self, conninfo: str, db_name: str, interval: float = 1.0) -> None:
        self.conninfo, self.db_name, self.interval = conninfo, db_name, interval
        self.roots: dict[int, str] = {os.getpid(): "bench"}  # pid -> kind; their direct children count as theirs
        self.kind_of: dict[tuple[int, str], str | None] = {}  # (pid, start time) -> kind, or None (not ours)
        self.ticks: dict[tuple[int, str], int] = {}  # (pid, start time) -> utime + stime, last seen
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def add(self, pid: int, kind: str) -> None:
        self.roots[pid] = kind

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.conn.close()

    def _classify(self, pid: int, ppid: int, comm: str) -> str | None:
        if pid in self.roots:
            return self.roots[pid]
        if ppid in self.roots:
            return self.roots[ppid]
        if comm == "postgres":
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                return None
            # A backend's title: "postgres: [<cluster>:] <user> <database> <client> <state>".
            parts = cmdline.split()
            return "postgres" if parts[:1] == ["postgres:"] and self.db_name in parts[1:4] else None
        return None

    def sample_cpu(self) -> None:
        with self.lock:
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    text = stat.read_text()
                except OSError:
                    continue
                comm = text[text.index("(") + 1:text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                pid = int(stat.parent.name)
                key = (pid, fields[19])  # the start time tells a reused pid apart
                if key not in self.kind_of:
                    self.kind_of[key] = self._classify(pid, int(fields[1]), comm)
                if self.kind_of[key] is not None:
                    self.ticks[key] = int(fields[11]) + int(fields[12])

    def _sample_db(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"""SELECT COUNT(*) FILTER (WHERE status IN ('pending', 'in_progress')),
                                   COUNT(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= now())
                            FROM {OUTBOX} WHERE status IN ('pending', 'in_progress')""")
            backlog, due = cur.fetchone()
            cur.execute("""SELECT COUNT(*), COUNT(*) FILTER (WHERE state = 'active'),
                                  COUNT(*) FILTER (WHERE state LIKE 'idle in transaction%%')
                           FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()""", (self.db_name,))
            connections, active, idle_in_txn = cur.fetchone()
        self.samples.append(Sample(time.time(), backlog, due, connections, active, idle_in_txn, os.getloadavg()[0]))

    def _loop(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample_cpu()
            try:
                self._sample_db()
            except psycopg.Error:
                continue

    def snapshot(self) -> Snapshot:
        self.sample_cpu()
        with self.lock:
            per_kind: dict[tuple[int, str], tuple[str, int]] = {
                key: (self.kind_of[key] or "", ticks) for key, ticks in self.ticks.items()}
        return Snapshot(time.time(), per_kind, machine_ticks())


def machine_ticks() -> tuple[int, int]:
    """(busy, total) ticks of all cores, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class Snapshot:
    t: float
    ticks: dict[tuple[int, str], tuple[str, int]]
    machine: tuple[int, int]

    def cpu_since(self, before: Snapshot) -> dict[str, float]:
        """CPU seconds per kind between two snapshots (processes born in between count from zero)."""
        seconds: Counter = Counter()
        for key, (kind, ticks) in self.ticks.items():
            seconds[kind] += (ticks - before.ticks.get(key, (kind, 0))[1]) / CLOCK_TICKS
        return {kind: seconds[kind] for kind in KINDS}

    def machine_cores_since(self, before: Snapshot) -> float:
        busy, total = self.machine[0] - before.machine[0], self.machine[1] - before.machine[1]
        return (os.cpu_count() or 1) * busy / total if total else 0.0


# --- clients --------------------------------------------------------------------------------------------------

LEGAL = {"inn": "7701234567", "kpp": "770101001", "long_name": "Limited Liability Company",
         "legal_address": "Moscow, Node street 1", "postal_address": "Moscow, Node street 1", "postcode": "101000"}


class RegisterClient:
    """POST /api/v1/customers: a new customer; Billing answers `registering` and a worker creates it in Balance."""

    def __init__(self, token: str, base_url: str) -> None:
        self.token, self.base_url = token, base_url

    def open(self) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def charge(self, external_id: str) -> str | None:  # the Client protocol of charges.run_clients
        n = external_id.rsplit(":", 1)[-1]
        try:
            response = self.session.post(f"{self.base_url}/api/v1/customers", timeout=60, json={
                "external_id": external_id, "kind": "company", "name": f"Node Motors {n} LLC",
                "email": f"node{n}@example.com", "legal": LEGAL})
        except requests.RequestException as exc:
            return type(exc).__name__
        return None if response.status_code == 201 else f"HTTP {response.status_code}"

    def close(self) -> None:
        self.session.close()


class TopUpClient:
    """POST /api/v1/customers/<id>/topups with a fresh Idempotency-Key; a worker asks Balance for the payment
    request (CreateRequest2)."""

    def __init__(self, world: World, base_url: str) -> None:
        self.world, self.base_url = world, base_url

    def open(self) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.world.token}"

    def charge(self, op: tuple[int, Decimal]) -> str | None:
        index, amount = op
        try:
            response = self.session.post(
                f"{self.base_url}/api/v1/customers/{self.world.external_ids[index]}/topups",
                json={"amount": f"{amount:.2f}"}, headers={"Idempotency-Key": str(uuid.uuid4())}, timeout=60)
        except requests.RequestException as exc:
            return type(exc).__name__
        return None if response.status_code == 201 else f"HTTP {response.status_code}"

    def close(self) -> None:
        self.session.close()


class PayClient:
    """The payer pays in Balance: `Emulator.PayRequest`; the emulator then notifies web node 1."""

    def __init__(self, balance_url: str, paid: set[int]) -> None:
        self.balance_url, self.paid = balance_url, paid

    def open(self) -> None:
        from balance_gateway.emulator.remote import EmulatorControl

        self.control = EmulatorControl(self.balance_url)

    def charge(self, request_id: int) -> str | None:
        for attempt in range(3):
            try:
                self.control.pay_request(request_id)
            except requests.ConnectionError:
                # The emulator's ThreadingHTTPServer has a listen backlog of 5: a burst of clients can be refused.
                if attempt == 2:
                    return "ConnectionError (3 times)"
                time.sleep(0.1)
                continue
            except Exception as exc:  # any other failure is counted and shown as the run's errors
                return type(exc).__name__
            self.paid.add(request_id)
            return None
        return None

    def close(self) -> None:
        self.control.close()


# --- phases ---------------------------------------------------------------------------------------------------

@dataclass
class Phase:
    name: str
    ops: int
    clients: int
    seconds: float  # the clients' part
    drain_seconds: float | None  # after the clients: until the outbox had nothing left (None: not waited for)
    latencies_ms: list[float]
    errors: Counter
    cpu: dict[str, float]  # CPU seconds per kind over the whole phase (clients + drain)
    cpu_clients: dict[str, float]  # CPU seconds per kind while the clients ran
    machine_cores: float  # busy cores of the whole machine while the clients ran
    samples: list[Sample]
    lag: dict[str, tuple[int, int, float, float, float, int, float]] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the start and at the end

    @property
    def rate(self) -> float:
        return (self.ops - sum(self.errors.values())) / self.seconds if self.seconds else 0.0


def outbox_mark(conn: psycopg.Connection) -> int:
    return conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {OUTBOX}").fetchone()[0]


def wait_outbox(conn: psycopg.Connection, timeout: float) -> float | None:
    """Until no outbox operation is pending or in progress; the seconds it took, None on timeout."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        left = conn.execute(f"SELECT COUNT(*) FROM {OUTBOX} WHERE status IN ('pending', 'in_progress')").fetchone()[0]
        if not left:
            return time.perf_counter() - started
        time.sleep(0.25)
    return None


def outbox_lag(conn: psycopg.Connection, mark: int) -> dict[str, tuple[int, int, float, float, float, int, float]]:
    """Per kind of the operations written since `mark`: (count, done, p50, p99, max of done_at - created_at in
    ms, operations that needed more than one attempt, done per second from the first written to the last done:
    what the workers sustained while work was waiting)."""
    rows = conn.execute(f"""SELECT kind, status, attempts, EXTRACT(EPOCH FROM done_at - created_at) * 1000,
                                   EXTRACT(EPOCH FROM created_at), EXTRACT(EPOCH FROM done_at)
                            FROM {OUTBOX} WHERE id > %s""", (mark,)).fetchall()
    by_kind: dict[str, list[tuple[str, int, float | None, float, float | None]]] = {}
    for kind, status, attempts, lag, created, done in rows:
        by_kind.setdefault(kind, []).append((status, attempts, float(lag) if lag is not None else None,
                                             float(created), float(done) if done is not None else None))
    result = {}
    for kind, items in sorted(by_kind.items()):
        lags = sorted(lag for status, _, lag, _, _ in items if status == "done" and lag is not None)
        dones = [done for _, _, _, _, done in items if done is not None]
        span = (max(dones) - min(created for *_, created, _ in items)) if dones else 0.0
        result[kind] = (len(items), len(lags), percentile(lags, 50), percentile(lags, 99),
                        lags[-1] if lags else float("nan"), sum(1 for _, attempts, *_ in items if attempts > 1),
                        len(dones) / span if span else float("nan"))
    return result


def run_phase(name: str, ops: list[Any], make_client: Callable[[int], Any], clients: int, sampler: Sampler,
              conn: psycopg.Connection, drain: bool, drain_timeout: float = 300, max_connections: int = 100) -> Phase:
    out(f"\n  {name}: {len(ops)} operations, {clients} clients (load {os.getloadavg()[0]:.1f}) ...")
    mark = outbox_mark(conn)
    load_start = os.getloadavg()[0]
    before = sampler.snapshot()
    seconds, latencies, errors = run_clients(ops, make_client, clients=clients)
    after_clients = sampler.snapshot()
    drain_seconds = wait_outbox(conn, drain_timeout) if drain else None
    after = sampler.snapshot()
    samples = [s for s in sampler.samples if before.t <= s.t <= after.t]
    phase = Phase(name, len(ops), clients, seconds, drain_seconds, latencies, errors,
                  cpu=after.cpu_since(before), cpu_clients=after_clients.cpu_since(before),
                  machine_cores=after_clients.machine_cores_since(before), samples=samples,
                  lag=outbox_lag(conn, mark), load=(load_start, os.getloadavg()[0]))
    report_phase(phase, max_connections)
    return phase


def saturation(phase: Phase, max_connections: int) -> list[str]:
    """What ran out in this phase, by the figures: the machine's CPU, the workers (operations written faster than
    done while the clients ran), PostgreSQL connections (past 80 % of max_connections)."""
    signs = []
    cores = os.cpu_count() or 1
    if phase.machine_cores >= 0.95 * cores:
        ours = sum(phase.cpu_clients.values()) / phase.seconds
        signs.append(f"the machine's CPU ({phase.machine_cores:.2f} of {cores} cores busy, {ours:.2f} of them ours)")
    for kind, (count, *_, done_rate) in phase.lag.items():
        written_rate = count / phase.seconds
        if done_rate == done_rate and written_rate > 1.1 * done_rate:  # not NaN, and clearly faster
            signs.append(f"the workers on {kind} (written {written_rate:.1f}/s, done {done_rate:.1f}/s)")
    most = max((s.connections for s in phase.samples), default=0)
    if most >= 0.8 * max_connections:
        signs.append(f"PostgreSQL connections ({most} of max_connections {max_connections})")
    return signs


def report_phase(phase: Phase, max_connections: int = 100) -> None:
    ok = phase.ops - sum(phase.errors.values())
    drained = ("not waited for" if phase.drain_seconds is None and not phase.lag else
               f"drained {phase.drain_seconds:.1f} s after the last request" if phase.drain_seconds is not None
               else "NOT DRAINED within the timeout")
    out(f"    {phase.rate:.1f}/s over {phase.seconds:.1f} s, p50 {percentile(phase.latencies_ms, 50):.1f} ms, "
        f"p99 {percentile(phase.latencies_ms, 99):.1f} ms, {ok} ok"
        + (f", errors {dict(phase.errors)}" if phase.errors else "")
        + f"; outbox {drained}; load {phase.load[0]:.1f} -> {phase.load[1]:.1f}")
    wall = phase.seconds
    cores = "  ".join(f"{kind} {phase.cpu_clients[kind] / wall:.2f}" for kind in KINDS)
    ours = sum(phase.cpu_clients.values()) / wall
    out(f"    cores busy while the clients ran: {cores}  (ours {ours:.2f}, whole machine {phase.machine_cores:.2f} "
        f"of {os.cpu_count()}, other work {max(0.0, phase.machine_cores - ours):.2f})")
    per_op = "  ".join(f"{kind} {phase.cpu[kind] * 1000 / phase.ops:.2f}" for kind in KINDS)
    out(f"    CPU ms per operation, whole phase (clients + drain): {per_op}")
    for kind, (count, done, p50, p99, worst, retried, rate) in phase.lag.items():
        out(f"    outbox {kind:<16} {count:>5} written ({count / phase.seconds:.1f}/s while the clients ran), "
            f"{done:>5} done ({rate:.1f}/s); commit -> done p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {worst:.0f} ms; "
            f"{retried} needed a retry")
    if phase.samples:
        out(f"    outbox backlog (pending + in progress; due now) and connections, one sample per "
            f"{max(1, len(phase.samples) // 12)} s:")
        step = max(1, len(phase.samples) // 12)
        t0 = phase.samples[0].t
        out("      " + "  ".join(f"{s.t - t0:.0f}s:{s.backlog}({s.due})" for s in phase.samples[::step]))
        out(f"    max backlog {max(s.backlog for s in phase.samples)}, PostgreSQL connections of the bench database "
            f"max {max(s.connections for s in phase.samples)} (active max {max(s.active for s in phase.samples)}, "
            f"idle in transaction max {max(s.idle_in_txn for s in phase.samples)})")
    out(f"    ran out: {'; '.join(saturation(phase, max_connections)) or 'nothing this bench measures'}")


# --- main -------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller workload (60 customers, 400 warm charges)")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server URL without database (default: %(default)s)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9",
                        help="REDIS_URL of every node; this database is emptied first (default: %(default)s)")
    parser.add_argument("--web-nodes", type=int, default=2, help="gunicorn masters, one port each (default 2)")
    parser.add_argument("--web-workers", type=int, default=1, help="gunicorn workers per web node (default 1)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (default 4, gthread)")
    parser.add_argument("--worker-nodes", type=int, default=2, help="celery worker processes (default 2)")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork pool per celery worker (default 2)")
    parser.add_argument("--no-beat", action="store_true", help="no celery beat (no sweep, no spend reporting)")
    parser.add_argument("--clients", type=int, default=16, help="HTTP clients of phases (a) and (c) (default 16)")
    parser.add_argument("--warm-clients", default="16,32,64", help="client counts of phase (b) (default 16,32,64)")
    args = parser.parse_args()
    workload = QUICK if args.quick else FULL
    warm_clients = [int(x) for x in args.warm_clients.split(",") if x]

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    results_dir = ROOT / "bench" / "results"
    log_dir = results_dir / f"nodes-{stamp}-logs"
    run_dir = log_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    db_url = f"{args.pg}/{DB_NAME}"
    conninfo = db_url.replace("postgres://", "postgresql://", 1)

    # The nodes: REDIS_URL (broker and cache) and their own database. The bench process itself runs without
    # REDIS_URL (Celery eager), so that its set-up (one customer, the funding) never waits for a worker.
    base_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_CONN_MAX_AGE")}
    base_env.update({"DATABASE_URL": db_url, "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "disbalance.settings",
                     "DISBALANCE_RUN_DIR": str(run_dir), "PYTHONUNBUFFERED": "1",
                     "BALANCE_NOTIFY_SECRET": NOTIFY_SECRET,
                     # The limit is per consumer service across all nodes (Redis): the bench's one service would
                     # otherwise be held at 6000/min, which is a consumer's quota, not a capacity.
                     "API_RATE_LIMIT": "1000000/min"})
    node_env = {**base_env, "REDIS_URL": args.redis}

    nodes: list[Node] = []
    sampler: Sampler | None = None
    started_all = time.perf_counter()
    phases: list[Phase] = []
    try:
        out(f"Disbalance nodes benchmark ({'quick' if args.quick else 'full'}), {stamp} UTC")
        out("\nSet-up")
        recreate_database(args.pg, DB_NAME)
        manage("migrate", "--no-input", env=base_env)
        redis.Redis.from_url(args.redis).flushdb()
        web_ports = [free_port() for _ in range(args.web_nodes)]
        emulator, balance_url = start_emulator(base_env, log_dir, extra_args=(
            "--notify-url", f"http://127.0.0.1:{web_ports[0]}/balance/notify?secret={NOTIFY_SECRET}"))
        nodes.append(Node("emulator", "emulator", emulator))
        base_env["BALANCE_URL"] = node_env["BALANCE_URL"] = balance_url
        out(f"  database {DB_NAME} recreated and migrated; Redis {args.redis} emptied; Balance emulator at "
            f"{balance_url} (notifies web node 1)")

        config = GunicornConfig(workers=args.web_workers, threads=args.threads)
        base_urls = []
        for n, port in enumerate(web_ports, 1):
            proc, url = start_gunicorn(config, node_env, log_dir, port=port, log_name=f"web{n}.log")
            nodes.append(Node(f"web{n}", "web", proc))
            base_urls.append(url)
        for n in range(1, args.worker_nodes + 1):
            proc = start_celery(["worker", "--pool=prefork", f"--concurrency={args.concurrency}", "--loglevel=WARNING",
                                 "--without-heartbeat", "--without-gossip", "--without-mingle", "-n",
                                 f"nodes{n}@%h"], f"worker{n}", node_env, log_dir)
            nodes.append(Node(f"worker{n}", "celery", proc))
        if not args.no_beat:
            nodes.append(Node("beat", "beat", start_celery(
                ["beat", "--loglevel=WARNING", "--schedule", str(run_dir / "celerybeat-schedule")], "beat", node_env,
                log_dir)))
        for node in nodes:
            if node.kind == "celery":
                wait_for_children(node.proc, args.concurrency, node.name)
        out(f"  {args.web_nodes} web nodes (gunicorn, {config.describe()} each) at {', '.join(base_urls)}; "
            f"{args.worker_nodes} celery workers (prefork, concurrency {args.concurrency} each)"
            + ("" if args.no_beat else "; 1 beat"))

        os.environ.pop("REDIS_URL", None)
        os.environ.update(base_env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        import logging

        from django.conf import settings
        from django.db import transaction

        logging.getLogger("kombu.connection").setLevel(logging.ERROR)
        from customers.models import Customer
        from payments.models import TopUp
        from wallets.services import wallet_credit_topup

        # The consumer service, its token and products, and one customer (build_world's hot one; not charged).
        world = build_world(Sizes(wallets=0, cold_charges=0, spread_ops=0, hot_ops=0, anatomy_ops=0))
        conn = psycopg.connect(conninfo, autocommit=True)
        pg_version, max_connections, sync_commit = conn.execute(
            "SELECT current_setting('server_version'), current_setting('max_connections'), "
            "current_setting('synchronous_commit')").fetchone()
        sampler = Sampler(conninfo, DB_NAME)
        for node in nodes:
            sampler.add(node.proc.pid, node.kind)
        sampler.start()

        out("\nEnvironment")
        out(f"  code: git {git_state()}")
        out(f"  {os.cpu_count()} CPU cores, PostgreSQL {pg_version} (max_connections={max_connections}, "
            f"synchronous_commit={sync_commit}), DEBUG={settings.DEBUG} in this process "
            f"(DJANGO_DEBUG={os.environ.get('DJANGO_DEBUG', 'unset')} for every node)")
        out(f"  HTTP clients: threads of this process, one requests.Session each, client n on web node n mod "
            f"{args.web_nodes}; API_RATE_LIMIT {base_env['API_RATE_LIMIT']} (throttle counts in Redis)")
        out("  CPU per kind: web = gunicorn masters and workers, celery = worker processes and their pool, postgres = "
            f"backends of {DB_NAME} (PostgreSQL's shared background processes not counted), bench = this process "
            "(the HTTP clients, the sampler)")
        out(f"  load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine "
            "shows up here)")

        rng = random.Random(SEED)
        new_ids = [f"node:{n:05d}" for n in range(workload.customers)]

        def pick(n: int) -> str:
            return base_urls[n % len(base_urls)]

        out("\nPhases")
        # (a1) Registrations: each writes an outbox operation that a worker sends to Balance.
        phases.append(run_phase("a1 registrations (POST /customers)", new_ids,
                                lambda n: RegisterClient(world.token, pick(n)), args.clients, sampler, conn,
                                drain=True, max_connections=int(max_connections)))
        statuses = Counter(Customer.objects.filter(external_id__in=new_ids).values_list("status", flat=True))
        out(f"    customers after the drain: {dict(statuses)}")
        customers = {c.external_id: c for c in Customer.objects.filter(external_id__in=new_ids, status="active")
                     .select_related("service")}

        def fund(external_id: str) -> None:
            with transaction.atomic():
                wallet_credit_topup(customer=customers[external_id], payer_agency=None, amount=FUNDING,
                                    reference_kind="bench", reference_id=f"funding:{external_id}",
                                    description="Benchmark funding")

        parallel(sorted(customers), fund)
        active = sorted(customers)
        world.customer_ids = [customers[e].pk for e in active]
        world.external_ids = list(active)
        out(f"    (untimed: {len(active)} wallets funded in this process with wallet_credit_topup, {FUNDING} each)")

        # (a2) First charges: each new (customer, product) creates its Balance orders through the outbox.
        first = [(i, p, Decimal(rng.randint(100, 10_000)) / 100) for i in range(len(active)) for p in
                 range(len(PRODUCTS))]
        rng.shuffle(first)
        phases.append(run_phase("a2 first charges (POST /charges, orders created in Balance)", first,
                                lambda n: HttpClient(world, pick(n)), args.clients, sampler, conn, drain=True,
                                max_connections=int(max_connections)))
        load_accounts(world)

        # (b) Warm charges: no Balance work on the path.
        for clients in warm_clients:
            ops = [(rng.randrange(len(active)), rng.randrange(len(PRODUCTS)), Decimal(rng.randint(100, 10_000)) / 100)
                   for _ in range(workload.warm_ops)]
            phases.append(run_phase(f"b warm charges, {clients} clients", ops, lambda n: HttpClient(world, pick(n)),
                                    clients, sampler, conn, drain=True, drain_timeout=60,
                                    max_connections=int(max_connections)))

        # (c1) Top-ups: a worker asks Balance for each payment request; (c2) the payers pay, Balance notifies.
        topup_ops = [(rng.randrange(len(active)), Decimal(rng.randint(10, 500))) for _ in range(workload.topups)]
        since = datetime.now(UTC)
        phases.append(run_phase("c1 top-ups (POST /topups, payment requests made in Balance)", topup_ops,
                                lambda n: TopUpClient(world, pick(n)), args.clients, sampler, conn, drain=True,
                                max_connections=int(max_connections)))
        topups = dict(TopUp.objects.filter(created_at__gte=since, customer__external_id__in=new_ids)
                      .values_list("balance_request_id", "pk"))
        request_ids = sorted(request_id for request_id in topups if request_id)
        paid: set[int] = set()
        paid_mark = time.time()
        phases.append(run_phase("c2 payments (Emulator.PayRequest; Balance notifies web node 1)", request_ids,
                                lambda n: PayClient(balance_url, paid), args.clients, sampler, conn, drain=False,
                                max_connections=int(max_connections)))
        paid_pks = [topups[request_id] for request_id in paid]
        deadline = time.monotonic() + 120
        while TopUp.objects.filter(pk__in=paid_pks).exclude(status="succeeded").exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        wait_outbox(conn, 60)
        credited = conn.execute(
            "SELECT EXTRACT(EPOCH FROM MAX(succeeded_at)) FROM payments_topup WHERE id = ANY(%s)",
            (paid_pks,)).fetchone()[0]
        statuses = Counter(TopUp.objects.filter(pk__in=list(topups.values())).values_list("status", flat=True))
        out(f"    top-ups: {dict(statuses)} ({len(paid)} paid); the last paid one credited "
            f"{float(credited or paid_mark) - paid_mark:.1f} s after the first payment started")

        sampler.close()
        sampler = None
        out("\nSummary (per phase: throughput, latency, busy cores by kind while the clients ran, outbox)")
        out(f"  {'phase':<58} {'ops/s':>7} {'p50':>6} {'p99':>7} {'web':>5} {'celery':>6} {'pg':>5} {'emu':>5} "
            f"{'bench':>5} {'mach':>5} {'load':>5} {'backlog':>7} {'drain s':>7}")
        for p in phases:
            c = {k: p.cpu_clients[k] / p.seconds for k in KINDS}
            out(f"  {p.name[:58]:<58} {p.rate:>7.1f} {percentile(p.latencies_ms, 50):>6.0f} "
                f"{percentile(p.latencies_ms, 99):>7.0f} {c['web']:>5.2f} {c['celery']:>6.2f} {c['postgres']:>5.2f} "
                f"{c['emulator']:>5.2f} {c['bench']:>5.2f} {p.machine_cores:>5.2f} {max(p.load):>5.1f} "
                f"{max((s.backlog for s in p.samples), default=0):>7} "
                f"{'' if p.drain_seconds is None else f'{p.drain_seconds:.1f}':>7}")
        out("\nBalance calls of the run (BalanceCall rows: as the workers timed them, queueing in the emulator "
            "included)")
        for method, count, mean, p99 in conn.execute(
                "SELECT method, COUNT(*), AVG(duration_ms), PERCENTILE_CONT(0.99) WITHIN GROUP (ORDER BY duration_ms) "
                "FROM balance_gateway_balancecall GROUP BY method ORDER BY COUNT(*) DESC").fetchall():
            out(f"  {method:<28} {count:>6} calls, mean {mean:.0f} ms, p99 {p99:.0f} ms")
        verdict = verify_ledger()
        out(f"\nverify_ledger: {verdict}")
        out(f"Load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}. Total time "
            f"{time.perf_counter() - started_all:.0f}s. Database {DB_NAME} kept; logs in {log_dir.relative_to(ROOT)}")
        broken = not verdict.startswith("ledger OK") or "MISMATCH" in verdict
        return 1 if broken else 0
    finally:
        if sampler is not None:
            sampler.close()
        for node in reversed(nodes):
            stop(node.proc)
        out.save(results_dir / f"nodes-{stamp}.txt")


if __name__ == "__main__":
    raise SystemExit(main())
