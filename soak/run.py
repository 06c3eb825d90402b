"""`make soak`: the fault-injection soak. Real processes, real faults, and a checker that counts every kopeck.

    .venv/bin/python -m soak.run [--seed N] [--duration SECONDS] [--clients N]      # make soak / make soak-ci

1. A fresh PostgreSQL database (`disbalance_soak`), migrated; its own Redis server (port 6390, or a free one; DB
   13), so that restarting it disturbs nobody; the Balance emulator, gunicorn (2 workers), a Celery worker and
   beat (periodic jobs 20x more often: PERIODIC_SCALE=0.05) as subprocesses, logs in `.run/soak/<seed>/`.
2. A service, a token and products (management commands); three agencies (prepaid contract, postpaid contract
   with credit, none), contracts made in the emulator; then faults on: errors, timeouts and lost responses on
   every Balance2 method, duplicated, reordered, delayed and failing notifications.
3. Several client processes (`soak.workload`) drive a seeded random workload over HTTP, retrying with the same
   idempotency keys; meanwhile a chaos thread, at seeded random times, kills the Celery worker (SIGKILL),
   restarts Redis (`shutdown nosave`: the queue is lost) and restarts gunicorn (SIGTERM).
4. Faults off; the system drains (outbox empty, notifications delivered, spend reported); `spend_report` and
   `orders_pull` run once more, beat stops (its jobs would start new work during the checks), then reconciliation
   (`manage.py reconcile`) twice; `soak.checker` checks
   everything, prints a summary and every violation. Exit 0 only without violations.

Seeded: the same seed gives the same workload plan, fault sequence and chaos schedule (timing still varies).
"""

# ruff: noqa: T201, S603, S607

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
DB_NAME = "disbalance_soak"
REDIS_DB = 13
SERVICE_SLUG = "soak"
BALANCE_SERVICE_ID = 7
PRODUCTS = (("placement", "Placement", "placement", 503162), ("boost", "Boost", "vas", 503163),
            ("highlight", "Highlight", "vas", 503164))
FAULTS = {
    "*": {"error_rate": 0.10, "timeout_rate": 0.05, "lost_response_rate": 0.05, "latency_ms": 5},
    "notify": {"duplicate_rate": 0.2, "reorder": 0.2, "delay_ms": 300, "fail_rate": 0.15},
}
FINISH_BUDGET = 150.0  # seconds after the deadline for requests in flight to get a final answer (> the 120 s
#                        after which a crashed request's idempotency claim may be taken over)


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port(preferred: int | None = None) -> int:
    if preferred:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis does: TIME_WAIT is no obstacle
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    raise SoakSetupError(f"{what} did not come up within {timeout:.0f}s")


class SoakSetupError(Exception):
    pass


# --- processes ----------------------------------------------------------------------------------------------------

class Service:
    """One subprocess in its own process group, logging (appending) to `<run dir>/<name>.log`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], run_dir: Path,
                 ready: Callable[[], bool] | None = None) -> None:
        self.name, self.argv, self.env, self.ready = name, argv, env, ready
        self.log_path = run_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0, *, wait: bool = True) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"\n==== start #{self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.starts += 1
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        if self.ready is not None:
            def check() -> bool:
                if self.proc is not None and self.proc.poll() is not None:
                    raise SoakSetupError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
                return bool(self.ready())
            try:
                wait_for(self.name, check, timeout)
            except SoakSetupError as exc:
                raise SoakSetupError(f"{exc}; see {self.log_path}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            self.signal_group(signal.SIGKILL)  # children left behind, if any
            return
        self.signal_group(signal.SIGTERM)
        if not self.wait(timeout):
            self.signal_group(signal.SIGKILL)
            self.wait(5)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - 127.0.0.1 only
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Stack:
    run_dir: Path
    env: dict[str, str]
    web_port: int
    emulator_port: int
    redis_port: int
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/api/v1"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}/xmlrpc"

    def add(self, service: Service) -> Service:
        self.services[service.name] = service
        return service

    def redis_cli(self, *args: str) -> str:
        result = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), *args],
                                capture_output=True, text=True, timeout=10, check=False)
        return result.stdout.strip()

    def command(self, *args: str) -> str:
        """A management command in this process (Django is set up): its stdout; output also in manage.log."""
        from django.core.management import call_command

        out, err = io.StringIO(), io.StringIO()
        try:
            call_command(*args, stdout=out, stderr=err)
        except Exception as exc:
            raise SoakSetupError(f"manage.py {' '.join(args)} failed: {exc}\n{err.getvalue()[-2000:]}") from exc
        finally:
            with (self.run_dir / "manage.log").open("a") as log_file:
                log_file.write(f"\n==== manage.py {' '.join(args)}\n{out.getvalue()}{err.getvalue()}")
        return out.getvalue()

    def manage(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        with (self.run_dir / "manage.log").open("a") as out:
            out.write(f"\n==== manage.py {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}")
        if check and result.returncode != 0:
            raise SoakSetupError(f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        return result

    def stop_all(self) -> None:
        for name in ("beat", "worker", "web", "emulator", "redis"):
            service = self.services.get(name)
            if service is not None:
                service.stop()


def build_stack(args: argparse.Namespace, run_dir: Path) -> Stack:
    web_port, emulator_port = free_port(), free_port()
    redis_port = free_port(args.redis_port)
    secret = f"soak-notify-{args.seed}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "disbalance.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{args.db}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/{REDIS_DB}",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "BALANCE_URL": f"http://127.0.0.1:{emulator_port}/xmlrpc",
        "BALANCE_NOTIFY_SECRET": secret,
        "BALANCE_CONNECT_TIMEOUT": "1",
        "BALANCE_READ_TIMEOUT": "1",
        "OUTBOX_BACKOFF_BASE_SECONDS": "0.2",
        "OUTBOX_BACKOFF_CAP_SECONDS": "3",
        "OUTBOX_MAX_ATTEMPTS": "100",
        "OUTBOX_LEASE_SECONDS": "15",
        "OUTBOX_SWEEP_GRACE_SECONDS": "5",
        "PERIODIC_SCALE": str(args.periodic_scale),
        "API_RATE_LIMIT": "1000000/min",
        "DJANGO_DEBUG": "false",
        "DISBALANCE_RUN_DIR": str(run_dir),
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CI_DATABASE_URL", None)
    env.update(billing_settings_for(variant_options()))
    stack = Stack(run_dir, env, web_port, emulator_port, redis_port)
    stack.add(Service("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                                "--appendonly", "no", "--daemonize", "no"], env, run_dir,
                      ready=lambda: stack.redis_cli("ping") == "PONG"))
    stack.add(Service("emulator", [PYTHON, "manage.py", "balance_emulator", "--port", str(emulator_port),
                                   "--notify-url", f"http://127.0.0.1:{web_port}/balance/notify?secret={secret}",
                                   "--seed", str(args.seed), "--timeout-seconds", "1.5"], env, run_dir,
                      ready=lambda: port_open(emulator_port)))
    stack.add(Service("web", [str(VENV_BIN / "gunicorn"), "disbalance.wsgi:application", "--bind",
                              f"127.0.0.1:{web_port}", "--workers", "2", "--threads", "4", "--graceful-timeout", "10",
                              "--timeout", "60", "--no-control-socket", "--access-logfile", str(run_dir / "access.log"),
                              "--access-logformat", '%(t)s "%(r)s" %(s)s %(M)sms'], env, run_dir,
                      ready=lambda: http_ok(f"http://127.0.0.1:{web_port}/healthz")))
    # The production pool (prefork), so that the chaos thread's SIGKILL meets what production runs.
    stack.add(Service("worker", [str(VENV_BIN / "celery"), "-A", "disbalance", "worker", "--pool=prefork",
                                 "--concurrency=4", "--loglevel=INFO", "--without-heartbeat", "--without-gossip",
                                 "--without-mingle", "-n", f"soak{args.seed}@%h"], env, run_dir))
    stack.add(Service("beat", [str(VENV_BIN / "celery"), "-A", "disbalance", "beat", "--loglevel=INFO",
                               "--schedule", str(run_dir / "celerybeat-schedule")], env, run_dir))
    return stack


def variant_options() -> dict[str, Any]:
    """The emulator variant (`BALANCE_EMULATOR_OPTIONS`, a JSON object, as for the suite): the emulator subprocess
    reads it from its environment; billing is configured to match below."""
    from soak.workload import emulator_options

    try:
        options = emulator_options()
    except ValueError as exc:
        raise SoakSetupError(f"BALANCE_EMULATOR_OPTIONS is not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise SoakSetupError("BALANCE_EMULATOR_OPTIONS must be a JSON object")
    return options


def billing_settings_for(options: dict[str, Any]) -> dict[str, str]:
    """Billing's settings for the emulator's variant, as production is told how Balance is set up for the service:
    the unified-account reporting type, and a TVM ticket on every call when the emulator requires one. (The
    notification protocol needs nothing: /balance/notify takes both, authenticated by the secret in the URL.)"""
    settings = {"BALANCE_GROUP_REPORTING": str(options.get("group_type") or "parent")}
    if options.get("required_ticket"):
        settings.update(BALANCE_TVM_PROVIDER="soak.tickets.StaticTicket",
                        SOAK_SERVICE_TICKET=str(options["required_ticket"]))
    return settings


def close_connections() -> None:
    from django.db import connections

    connections.close_all()


def create_database(name: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


# --- setup over the API and the emulator -----------------------------------------------------------------------------

def api_request(stack: Stack, token: str, method: str, path: str, body: Any = None, key: str | None = None,
                timeout: float = 30) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(stack.api_url + path, data=data, method=method)  # noqa: S310
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def setup_service(stack: Stack) -> str:
    stack.command("create_service", SERVICE_SLUG, "--name", "Soak", "--balance-service-id", str(BALANCE_SERVICE_ID))
    token = stack.command("issue_service_token", SERVICE_SLUG).strip()
    for code, name, kind, product_id in PRODUCTS:
        stack.command("create_product", SERVICE_SLUG, code, "--name", name, "--kind", kind,
                      "--balance-product-id", str(product_id))
    return token


def setup_agencies(stack: Stack, token: str, seed: int) -> tuple[str, ...]:
    """Three agencies: a prepaid contract, a postpaid contract with credit, and no contract (changes to it: 409)."""
    from disbalance.periodic import PERIODIC_JOBS
    from soak.workload import emulator

    agencies = (f"s{seed}-ag-prepaid", f"s{seed}-ag-postpaid", f"s{seed}-ag-nocontract")
    for i, external_id in enumerate(agencies):
        status, body = api_request(stack, token, "POST", "/agencies", {
            "external_id": external_id, "name": f"Soak Agency {i}",
            "legal": {"inn": f"770000000{i}", "legal_address": "Moscow, Agency st. 1", "kpp": "770101001",
                      "long_name": "Limited Liability Company", "postal_address": "Moscow, Agency st. 1",
                      "postcode": "101000"}}, key=f"setup-{external_id}")
        if status not in (200, 201):
            raise SoakSetupError(f"POST /agencies {external_id}: {status} {body}")
    client_ids: dict[str, int] = {}

    def all_active() -> bool:
        for external_id in agencies:
            status, body = api_request(stack, token, "GET", f"/agencies/{external_id}")
            if status != 200 or body["status"] != "active":
                return False
            client_ids[external_id] = body["balance"]["client_id"]
        return True

    wait_for("agency registration", all_active, timeout=60, interval=0.5)
    control = emulator(stack.emulator_url)
    control.Emulator.CreateContract(client_ids[agencies[0]], {"payment_type": "prepaid",
                                                              "services": [BALANCE_SERVICE_ID]})
    # The postpaid contract's credit: billing draws it in Balance with credit invoices (payments.services.credit), so
    # the spend of the agency's customers beyond their money is never unpaid completion. The credit is large enough
    # that Balance's LIMIT_SPENT (which top-ups of a customer do not lower: only the agency paying its credit
    # invoices does) never refuses a draw billing allowed; that case is shown to support (a refused CreditDraw, an
    # unpaid_completion mismatch), not exercised here.
    control.Emulator.CreateContract(client_ids[agencies[1]], {"payment_type": "postpaid", "credit_limit": "100000.00",
                                                              "services": [BALANCE_SERVICE_ID]})
    stack.command("run_periodic", "agency_contracts_refresh")
    if "agency_credits_pull" in {job.name for job in PERIODIC_JOBS}:
        stack.command("run_periodic", "agency_credits_pull")
    for external_id in agencies[:2]:
        status, body = api_request(stack, token, "GET", f"/agencies/{external_id}")
        if not any(c["active"] for c in body.get("contracts", [])):
            raise SoakSetupError(f"agency {external_id} has no active contract after the refresh: {body}")
    return agencies


# --- chaos ----------------------------------------------------------------------------------------------------------

class Supervisor(threading.Thread):
    """Restarts a service that exits on its own, as systemd's `Restart=always` would in production (the chaos
    thread's kills hold `lock` meanwhile and are not seen here). Each restart is reported in the summary."""

    WATCHED = ("redis", "web", "worker", "beat")

    def __init__(self, stack: Stack, lock: threading.Lock, t0: float) -> None:
        super().__init__(name="supervisor", daemon=True)
        self.stack, self.lock, self.t0 = stack, lock, t0
        self.stop_event = threading.Event()
        self.events: list[str] = []

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            with self.lock:
                for name in self.WATCHED:
                    service = self.stack.services[name]
                    if service.proc is None or service.alive():
                        continue
                    when = time.time() - self.t0
                    note = f"{name} exited by itself with code {service.proc.returncode} at +{when:.0f}s"
                    self.events.append(note)
                    log(f"supervisor: {note}; restarting it")
                    service.signal_group(signal.SIGKILL)  # anything it left behind
                    try:
                        service.start(wait=False)
                    except OSError as exc:
                        self.events.append(f"{name} could not be restarted: {exc}")


class Chaos(threading.Thread):
    """At seeded random times: SIGKILL the Celery worker, restart Redis, restart gunicorn. One at a time; each kind
    at least once. Records each event's window (wall clock) for the checker and the summary."""

    KINDS = ("kill_worker", "restart_redis", "restart_web")

    def __init__(self, stack: Stack, seed: int, start: float, end: float, lock: threading.Lock) -> None:
        super().__init__(name="chaos", daemon=True)
        self.stack = stack
        self.lock = lock
        self.rng = random.Random(f"soak:{seed}:chaos")
        self.stop_event = threading.Event()
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        span = max(end - start - 10, 10)
        count = max(3, int(span // 20))
        kinds = list(self.KINDS) + [self.rng.choice(self.KINDS) for _ in range(count - 3)]
        self.rng.shuffle(kinds)
        slot = span / count
        self.plan = [(start + 5 + i * slot + self.rng.uniform(0, slot * 0.6), kind, self.rng.uniform(0.5, 4.0))
                     for i, kind in enumerate(kinds)]
        self.t0 = start

    def run(self) -> None:
        for at, kind, downtime in self.plan:
            if self.stop_event.wait(max(0.0, at - time.time())):
                return
            with self.lock:
                event: dict[str, Any] = {"kind": kind, "t0": time.time(), "downtime": round(downtime, 2)}
                try:
                    getattr(self, kind)(downtime)
                except Exception as exc:  # noqa: BLE001 - recorded and reported; the stack is restored afterwards
                    self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                event["t1"] = time.time()
            self.events.append(event)
            log(f"chaos: {kind} at +{event['t0'] - self.t0:.1f}s, back after {event['t1'] - event['t0']:.1f}s")

    def kill_worker(self, downtime: float) -> None:
        worker = self.stack.services["worker"]
        worker.signal_group(signal.SIGKILL)
        worker.wait(10)
        time.sleep(downtime)
        worker.start()

    def restart_redis(self, downtime: float) -> None:
        redis = self.stack.services["redis"]
        self.stack.redis_cli("shutdown", "nosave")
        if not redis.wait(10):
            redis.signal_group(signal.SIGKILL)
            redis.wait(5)
        time.sleep(downtime)
        redis.start()

    def restart_web(self, downtime: float) -> None:
        web = self.stack.services["web"]
        web.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        if not web.wait(20):
            web.signal_group(signal.SIGKILL)
            web.wait(5)
        time.sleep(min(downtime, 1.5))
        web.start()


def ensure_running(stack: Stack) -> list[str]:
    """Everything the chaos may have left down is up again (never the emulator: its state is the test's)."""
    restarted = []
    for name in ("redis", "web", "worker", "beat"):
        service = stack.services[name]
        if not service.alive():
            service.start()
            restarted.append(name)
    return restarted


# --- main -------------------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soak.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="seed of everything random (default: a new one)")
    parser.add_argument("--duration", type=float, default=300, help="seconds of workload and chaos (default 300)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--db", default=DB_NAME, help=f"database to (re)create (default {DB_NAME})")
    parser.add_argument("--redis-port", type=int, default=6390, help="port of the soak's own Redis (default 6390)")
    parser.add_argument("--periodic-scale", type=float, default=0.05, help="PERIODIC_SCALE of beat (default 0.05)")
    parser.add_argument("--drain-timeout", type=float, default=180, help="seconds to converge after faults off")
    parser.add_argument("--no-chaos", action="store_true", help="no process kills/restarts (faults only)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randint(1, 999_999)
    return args


def replay_command(args: argparse.Namespace) -> str:
    extra = f" --clients {args.clients}" if args.clients != 4 else ""
    extra += " --no-chaos" if args.no_chaos else ""
    extra += f" --db {args.db}" if args.db != DB_NAME else ""
    variant = os.environ.get("BALANCE_EMULATOR_OPTIONS")
    prefix = f"BALANCE_EMULATOR_OPTIONS={shlex.quote(variant)} " if variant else ""
    return f"{prefix}.venv/bin/python -m soak.run --seed {args.seed} --duration {args.duration:g}{extra}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    run_dir = ROOT / ".run" / "soak" / str(args.seed)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    log(f"seed {args.seed}, {args.duration:g}s, {args.clients} clients; logs in {run_dir.relative_to(ROOT)}")
    try:
        variant = variant_options()
    except SoakSetupError as exc:
        log(f"setup failed: {exc}")
        return 2
    log(f"emulator variant: {json.dumps(variant) if variant else 'default'}; billing: {billing_settings_for(variant)}")
    log(f"replay with: {replay_command(args)}")
    stack = build_stack(args, run_dir)
    os.environ.update({**stack.env, "LOG_LEVEL": "WARNING"})  # this process: Django for setup and checks
    timeline: dict[str, float] = {"started": started}
    chaos: Chaos | None = None
    supervisor: Supervisor | None = None
    lock = threading.Lock()
    try:
        stack.services["redis"].start()
        stack.redis_cli("-n", str(REDIS_DB), "flushdb")
        create_database(args.db)
        import django

        django.setup()
        stack.command("migrate", "--no-input", "--verbosity", "0")
        for name in ("emulator", "web", "worker", "beat"):
            stack.services[name].start(wait=False)
        token = setup_service(stack)
        for name in ("emulator", "web"):
            stack.services[name].wait_ready()
        close_connections()
        agencies = setup_agencies(stack, token, args.seed)
        timeline["setup_done"] = time.time()
        log(f"stack up in {timeline['setup_done'] - started:.1f}s (web :{stack.web_port}, emulator "
            f":{stack.emulator_port}, redis :{stack.redis_port}/{REDIS_DB}, database {args.db})")

        from soak.workload import ClientConfig, config_dict, emulator, run_client

        control = emulator(stack.emulator_url)
        control.Emulator.SetFaults({**FAULTS, "seed": args.seed})
        start = time.time()
        deadline = start + args.duration
        supervisor = Supervisor(stack, lock, start)
        supervisor.start()
        if not args.no_chaos:
            chaos = Chaos(stack, args.seed, start, deadline, lock)
            chaos.start()
        context = multiprocessing.get_context("spawn")
        clients = []
        for index in range(args.clients):
            cfg = ClientConfig(index=index, seed=args.seed, api_url=stack.api_url, emulator_url=stack.emulator_url,
                               token=token, deadline=deadline, finish_by=deadline + FINISH_BUDGET,
                               log_path=str(run_dir / f"ops-{index}.jsonl"), agencies=agencies,
                               max_customers=6 + int(args.duration // 30))
            process = context.Process(target=run_client, args=(config_dict(cfg),), name=f"soak-client-{index}")
            process.start()
            clients.append(process)
        log(f"workload running for {args.duration:g}s with faults on")
        close_connections()
        if chaos is not None:
            chaos.join(args.duration + 60)
        for process in clients:
            process.join(max(1.0, deadline + FINISH_BUDGET + 30 - time.time()))
            if process.is_alive():
                process.kill()
        timeline["workload_done"] = time.time()
        if chaos is not None:
            chaos.stop_event.set()
        with lock:
            restarted = ensure_running(stack)
        if restarted:
            log(f"restarted after chaos: {', '.join(restarted)}")
        control.Emulator.SetFaults({})
        timeline["faults_off"] = time.time()
        log("faults off; draining")
        from soak import checker

        report = checker.Report(seed=args.seed, duration=args.duration, clients=args.clients,
                                replay=replay_command(args))
        report.client_exit_codes = [p.exitcode for p in clients]
        converged = checker.drain(control, timeout=args.drain_timeout, report=report)
        timeline["drained"] = time.time()
        checker.final_jobs(report)
        checker.drain(control, timeout=60, report=report, label="after spend_report/orders_pull")
        # Beat's periodic jobs (20x more often here) may start new Balance work at any moment, e.g. an auto-overdraft
        # update after overdrafts_pull: beat stops now, and what it started is drained, so that the checks read a
        # still system (seed 101, enqueue variant: an overdraft.params operation created during the checks, done
        # 6 s later, was reported as left waiting).
        supervisor.stop_event.set()
        supervisor.join(timeout=30)
        with lock:
            stack.services["beat"].stop()
        checker.drain(control, timeout=60, report=report, label="after beat stopped")
        timeline["converged"] = time.time()
        report.converge_seconds = timeline["converged"] - timeline["faults_off"] if converged else None
        report.supervisor = supervisor.events
        checker.check_all(report, run_dir=run_dir, control=control, stack=stack,
                          chaos_events=chaos.events if chaos else [], chaos_errors=chaos.errors if chaos else [])
        report.check("the emulator kept running", [] if stack.services["emulator"].alive() else [
            "the Balance emulator exited: its state is gone; see emulator.log"])
        report.timeline = {k: round(v - started, 1) for k, v in timeline.items()}
        report.total_seconds = time.time() - started
        report.print()
        (run_dir / "report.json").write_text(json.dumps(report.as_dict(), indent=1, default=str))
        return 0 if not report.violations else 1
    except SoakSetupError as exc:
        log(f"setup failed: {exc}")
        return 2
    finally:
        for thread in (chaos, supervisor):
            if thread is not None:
                thread.stop_event.set()
        with lock:
            stack.stop_all()


if __name__ == "__main__":
    sys.exit(main())
