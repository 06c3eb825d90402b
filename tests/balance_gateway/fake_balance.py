"""A tiny local HTTP server that answers Balance's XML-RPC with recorded version-2 replies (written from
docs/balance-protocol.md, not from the emulator) and records every request, to pin what billing sends and how it
reads each answer.

`fake.reply(method, *answers)`: each call of `Balance2.<method>` takes the next answer (the last one repeats). An
answer is a value (sent as a methodResponse), an `xmlrpc.client.Fault`, or `Raw(status, body)`.
"""

from __future__ import annotations

import threading
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Raw:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"


@dataclass
class Request:
    method: str
    params: tuple[Any, ...]
    headers: dict[str, str]
    body: bytes


def balance_fault(code: str, message: str = "", method: str = "") -> xmlrpc.client.Fault:
    """A fault as Balance sends it: the faultString is an `<error>` document."""
    text = (f"<error><msg>{message}</msg><wo-rollback>0</wo-rollback><method>Balance2.{method}</method>"
            f"<code>{code}</code><parent-codes><code>EXCEPTION</code></parent-codes><contents>{message}</contents>"
            f"</error>")
    return xmlrpc.client.Fault(-1, text)


@dataclass
class FakeBalance:
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    answers: dict[str, list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, method: str, *answers: Any) -> None:
        with self.lock:
            self.answers[method] = list(answers)

    def calls(self, method: str) -> list[Request]:
        return [r for r in self.requests if r.method == method]

    def last(self, method: str) -> Request:
        found = self.calls(method)
        assert found, f"no {method} call was made"
        return found[-1]

    def next_answer(self, method: str) -> Any:
        with self.lock:
            queue = self.answers.get(method)
            if not queue:
                return Raw(500, f"no answer recorded for {method}".encode())
            return queue.pop(0) if len(queue) > 1 else queue[0]


def _handler(fake: FakeBalance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            params, full_method = xmlrpc.client.loads(body, use_builtin_types=True)
            method = (full_method or "").removeprefix("Balance2.")
            fake.requests.append(Request(method, params, dict(self.headers), body))
            answer = fake.next_answer(method)
            if isinstance(answer, Raw):
                status, payload, content_type = answer.status, answer.body, answer.content_type
            elif isinstance(answer, xmlrpc.client.Fault):
                status, content_type = 200, "text/xml"
                payload = xmlrpc.client.dumps(answer, methodresponse=True, encoding="utf-8").encode()
            else:
                status, content_type = 200, "text/xml"
                payload = xmlrpc.client.dumps((answer,), methodresponse=True, encoding="utf-8",
                                              allow_none=True).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def fake_balance() -> Iterator[FakeBalance]:
    fake = FakeBalance()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/xmlrpc"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
