"""Balance emulator fixtures over real HTTP. `tests/conftest.py` does `from tests.emulator_fixtures import *`.

- `balance_emulator`: a fresh emulator per test (`BalanceEmulator(port=0, seed=1234, timeout_seconds=1.5)`),
  no notify URL (set `balance_emulator.notify_url` to receive notifications), stopped afterwards.
- `emulator_proxy(emu)`: an `xmlrpc.client.ServerProxy` on it (note: xmlrpc.client silently re-sends a request
  once when the server closes the connection without answering, so use `raw_xmlrpc_call` to see a lost response).
- `notify_receiver`: a stand-in for billing's notification endpoint that records what Balance sends and can
  answer the next N notifications with a NOT_FOUND fault.
"""

from __future__ import annotations

import threading
import xmlrpc.client
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from balance_gateway.emulator import BalanceEmulator

__all__ = ["NotifyReceiver", "balance_emulator", "emulator_proxy", "notify_receiver", "raw_xmlrpc_call"]


@pytest.fixture
def balance_emulator() -> Iterator[BalanceEmulator]:
    emulator = BalanceEmulator(port=0, seed=1234, timeout_seconds=1.5).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def emulator_proxy(emu: BalanceEmulator) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(emu.url, allow_none=True)


def raw_xmlrpc_call(url: str, method: str, *params: Any, timeout: float = 5.0) -> tuple[str, Any]:
    """One XML-RPC call over `requests` (never retried): ("ok", result), ("fault", (code, faultString)),
    ("http", status), ("timeout", None) or ("lost", None) when the connection closed without an answer."""
    body = xmlrpc.client.dumps(params, methodname=method, allow_none=True).encode()
    try:
        response = requests.post(url, data=body, headers={"Content-Type": "text/xml"}, timeout=timeout)
    except requests.exceptions.ReadTimeout:
        return "timeout", None
    except requests.exceptions.ConnectionError:
        return "lost", None
    if response.status_code != 200:
        return "http", response.status_code
    try:
        (result,), _ = xmlrpc.client.loads(response.content)
    except xmlrpc.client.Fault as fault:
        code = fault.faultString.split("<code>", 1)[-1].split("</code>", 1)[0]
        return "fault", (code, fault.faultString)
    return "ok", result


class NotifyReceiver:
    """Billing's notification endpoint, reduced to a recorder: `received` holds (method, payload, path)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict, str]] = []
        self.fail_next = 0  # answer that many notifications with a NOT_FOUND fault
        self.faulted = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
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
                        answer = xmlrpc.client.dumps(([0, "SUCCESS"],), methodresponse=True)
                    receiver._cond.notify_all()
                data = answer.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
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
