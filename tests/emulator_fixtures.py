"""Balance emulator fixtures over real HTTP. `tests/conftest.py` does `from tests.emulator_fixtures import *`.

- `balance_emulator`: a fresh emulator per test (`BalanceEmulator(port=0, seed=1234, timeout_seconds=1.5)`),
  no notify URL (set `balance_emulator.notify_url` to receive notifications), stopped afterwards. Its options
  (balance_gateway/emulator/options.py) come from the environment variable `BALANCE_EMULATOR_OPTIONS` (a JSON
  object), so the whole suite runs against each variant, e.g.
  `BALANCE_EMULATOR_OPTIONS='{"group_type": "enqueue", "notify_protocol": "json"}' make test`;
  a test can change them with `balance_emulator.options.update({...})` or `Emulator.SetOptions`.
- `emulator_factory(**options)`: more emulators with given options (stopped afterwards).
- `emulator_proxy(emu)`: an `xmlrpc.client.ServerProxy` on it (note: xmlrpc.client silently re-sends a request
  once when the server closes the connection without answering, so use `raw_xmlrpc_call` to see a lost response).
- `notify_receiver`: a stand-in for billing's notification endpoint that records what Balance sends (XML-RPC or
  JSON, with the `X-Ya-Service-Ticket` header) and can answer the next N notifications with a NOT_FOUND fault.
"""

from __future__ import annotations

import json
import os
import threading
import xmlrpc.client
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from balance_gateway.emulator import BalanceEmulator

__all__ = [
    "NotifyReceiver",
    "balance_emulator",
    "emulator_factory",
    "emulator_options_from_env",
    "emulator_proxy",
    "notify_receiver",
    "raw_xmlrpc_call",
]


def emulator_options_from_env() -> dict[str, Any]:
    """The emulator options the suite runs with (`BALANCE_EMULATOR_OPTIONS`, a JSON object; default none)."""
    return json.loads(os.environ.get("BALANCE_EMULATOR_OPTIONS") or "{}")


@pytest.fixture
def balance_emulator() -> Iterator[BalanceEmulator]:
    emulator = BalanceEmulator(port=0, seed=1234, timeout_seconds=1.5, options=emulator_options_from_env()).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., BalanceEmulator]]:
    """`emulator_factory(seed=1234, **options)`: a started emulator with those options (over the env's)."""
    started: list[BalanceEmulator] = []

    def make(seed: int = 1234, timeout_seconds: float = 1.5, **options: Any) -> BalanceEmulator:
        emulator = BalanceEmulator(
            port=0, seed=seed, timeout_seconds=timeout_seconds, options={**emulator_options_from_env(), **options}
        ).start()
        started.append(emulator)
        return emulator

    try:
        yield make
    finally:
        for emulator in started:
            emulator.stop()


def emulator_proxy(emu: BalanceEmulator) -> xmlrpc.client.ServerProxy:
    """A proxy that sends the ticket the emulator requires, if it requires one (the ticket-on variant), as billing's
    transport does: tests of the emulator itself then run in every variant."""
    ticket = emu.options.required_ticket
    headers = [("X-Ya-Service-Ticket", ticket)] if ticket else []
    return xmlrpc.client.ServerProxy(emu.url, allow_none=True, headers=headers)


def raw_xmlrpc_call(
    url: str, method: str, *params: Any, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[str, Any]:
    """One XML-RPC call over `requests` (never retried): ("ok", result), ("fault", (code, faultString)),
    ("http", status), ("timeout", None) or ("lost", None) when the connection closed without an answer.
    `code` is the `<code>` of Balance's XML error, or "" for a fault that is not XML (`Error: DatabaseError...`).
    Without `headers`, the ticket the suite's variant requires (`BALANCE_EMULATOR_OPTIONS`' `required_ticket`) is sent.
    """
    if headers is None:
        ticket = emulator_options_from_env().get("required_ticket")
        headers = {"X-Ya-Service-Ticket": ticket} if ticket else {}
    body = xmlrpc.client.dumps(params, methodname=method, allow_none=True).encode()
    try:
        response = requests.post(
            url, data=body, headers={"Content-Type": "text/xml", **(headers or {})}, timeout=timeout
        )
    except requests.exceptions.ReadTimeout:
        return "timeout", None
    except requests.exceptions.ConnectionError:
        return "lost", None
    if response.status_code != 200:
        return "http", response.status_code
    try:
        (result,), _ = xmlrpc.client.loads(response.content)
    except xmlrpc.client.Fault as fault:
        text = fault.faultString
        code = text.split("<code>", 1)[1].split("</code>", 1)[0] if text.startswith("<error>") else ""
        return "fault", (code, text)
    return "ok", result


class NotifyReceiver:
    """Billing's notification endpoint, reduced to a recorder: `received` holds (method, payload, path) and
    `headers` the matching request headers. XML-RPC bodies are parsed as calls; a JSON body (`POST
    .../BalanceClient/NotifyOrder2`) is recorded with the method taken from the path's last two segments."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict, str]] = []
        self.headers: list[dict[str, str]] = []
        self.fail_next = 0  # answer that many notifications with a NOT_FOUND fault
        self.faulted = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                is_json = self.headers.get("Content-Type", "").startswith("application/json")
                if is_json:
                    path = self.path.split("?", 1)[0].rstrip("/").split("/")
                    method, params = ".".join(path[-2:]), (json.loads(body),)
                else:
                    params, method = xmlrpc.client.loads(body)
                with receiver._cond:
                    if receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        receiver.faulted += 1
                        answer = xmlrpc.client.dumps(
                            xmlrpc.client.Fault(
                                -1,
                                f"<error><msg>unknown object</msg><code>NOT_FOUND</code><method>{method}</method>"
                                "</error>",
                            ),
                            methodresponse=True,
                        )
                    else:
                        receiver.received.append((method, params[0], self.path))
                        receiver.headers.append(dict(self.headers.items()))
                        answer = xmlrpc.client.dumps(([0, "SUCCESS"],), methodresponse=True)
                    receiver._cond.notify_all()
                data = answer.encode()
                status = 404 if is_json and answer.find("NOT_FOUND") >= 0 else 200
                if is_json:
                    data = json.dumps({"status": "ok" if status == 200 else "unknown object"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if is_json else "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/balance/notify?secret=s3cret"

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """True once at least `count` notifications were received."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.received) >= count, timeout)

    def payloads(self, method: str = "BalanceClient.NotifyOrder2") -> list[dict]:
        with self._cond:
            return [payload for name, payload, _ in self.received if name == method]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def notify_receiver() -> Iterator[NotifyReceiver]:
    receiver = NotifyReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
