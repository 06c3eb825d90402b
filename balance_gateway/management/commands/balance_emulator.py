"""`manage.py balance_emulator`: run the bundled Balance emulator in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from balance_gateway.emulator import BalanceEmulator, BalanceError


class Command(BaseCommand):
    help = (
        "Run the Balance emulator (XML-RPC at /xmlrpc, payment pages at /paystep/<id>) until SIGINT/SIGTERM, "
        "logging one line per call."
    )
    requires_system_checks: list[str] = []  # the emulator uses nothing of the project: no database, no models

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8002, help="port to listen on (default 8002; 0 = any)")
        parser.add_argument("--notify-url", default=None, help="billing's XML-RPC notification URL (with its secret)")
        parser.add_argument("--state-file", default=None, help="JSON file: loaded at start, saved on every change")
        parser.add_argument(
            "--seed-file", default=None, metavar="F",
            help="JSON document of a consumer's legacy Balance state ({clients, persons, contracts, orders, "
            "user_links}, the state file's record shape) put in with Emulator.Seed at start; skipped when the state "
            "already holds its orders (a restart with --state-file)",
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of the fault-injection generators")
        parser.add_argument(
            "--timeout-seconds", type=float, default=2.0, help="how long an injected timeout holds the answer"
        )
        parser.add_argument("--public-url", default=None, help="base URL for payment links (default from host:port)")
        parser.add_argument(
            "--option", action="append", default=[], metavar="KEY=VALUE",
            help="an emulator option (see balance_gateway/emulator/options.py), e.g. group_type=enqueue; the value "
            "is read as JSON when it parses, else as text; repeatable; BALANCE_EMULATOR_OPTIONS (a JSON object) "
            "is applied first",
        )  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        logger = logging.getLogger("balance_gateway.emulator")
        if not logger.handlers and not logging.getLogger().handlers:  # else the project's LOGGING prints it
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if options["verbosity"] >= 3 else logging.INFO)

        emulator_options = json.loads(os.environ.get("BALANCE_EMULATOR_OPTIONS") or "{}")
        for item in options["option"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--option takes KEY=VALUE, got {item!r}")
            try:
                emulator_options[key.strip()] = json.loads(value)
            except ValueError:
                emulator_options[key.strip()] = value
        try:
            emulator = self._emulator(options, emulator_options)
        except BalanceError as error:
            raise CommandError(error.msg) from error
        seed_data = self._seed_data(options["seed_file"])
        stop = threading.Event()
        self._serve(emulator, stop, logger, seed_data)

    @staticmethod
    def _emulator(options: dict[str, Any], emulator_options: dict[str, Any]) -> BalanceEmulator:
        return BalanceEmulator(
            host=options["host"],
            port=options["port"],
            notify_url=options["notify_url"],
            state_file=options["state_file"],
            seed=options["seed"],
            timeout_seconds=options["timeout_seconds"],
            public_url=options["public_url"],
            options=emulator_options,
        )

    @staticmethod
    def _seed_data(path: str | None) -> dict[str, Any] | None:
        if not path:
            return None
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read the seed file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise CommandError(f"The seed file {path} must hold a JSON object")
        return data

    def _seed(self, emulator: BalanceEmulator, data: dict[str, Any], logger: logging.Logger) -> None:
        """Seed once: a state that already has every order of the file (a restart) is left alone; one that has
        some of its ids but not all is refused rather than overwritten."""
        state = emulator.call("Emulator.State")
        orders = {(int(o["ServiceID"]), str(o["ServiceOrderID"])) for o in state["orders"]}
        wanted = {(int(o["service_id"]), str(o["service_order_id"])) for o in data.get("orders", [])}
        if wanted and wanted <= orders:
            logger.info("seed file: its %d orders are already in the state; not seeded again", len(wanted))
            return
        clients = {int(c["CLIENT_ID"]) for c in state["clients"]}
        taken = sorted(clients & {int(c["client_id"]) for c in data.get("clients", [])})
        if wanted & orders or taken:
            raise CommandError(f"The state already holds part of the seed file (clients {taken[:5]}, orders "
                               f"{sorted(wanted & orders)[:5]}): start from an empty state")
        try:
            emulator.call("Emulator.Seed", [data])
        except BalanceError as error:
            raise CommandError(f"Seed refused: {error.msg}") from error
        logger.info("seeded %d clients, %d orders", len(data.get("clients", [])), len(wanted))

    def _serve(self, emulator: BalanceEmulator, stop: threading.Event, logger: logging.Logger,
               seed_data: dict[str, Any] | None = None) -> None:
        def request_stop(signum: int, frame: Any) -> None:
            logger.info("got %s, stopping", signal.Signals(signum).name)
            stop.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        emulator.start()
        if seed_data is not None:
            try:
                self._seed(emulator, seed_data, logger)
            except CommandError:
                emulator.stop()
                raise
        self.stdout.write(f"Balance emulator at {emulator.url} (payment pages at {emulator.base_url}/paystep/<id>)")
        self.stdout.flush()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            emulator.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Balance emulator stopped")
