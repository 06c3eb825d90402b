"""A consumer's webhook endpoint over real HTTP, for the webhook and event tests."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 200


@dataclass
class Receiver:
    """A consumer's endpoint: records every request and answers the scripted replies in order, then 200."""

    url: str
    requests: list[ReceivedRequest] = field(default_factory=list)
    replies: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    default: int = 200  # the answer when nothing is scripted (503: the consumer is down)

    def script(self, *statuses: int, headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        with self.lock:
            self.replies.extend((status, headers or {}, delay) for status in statuses)

    def next_reply(self) -> tuple[int, dict[str, str], float]:
        with self.lock:
            return self.replies.pop(0) if self.replies else (self.default, {}, 0.0)

    def accepted(self) -> list[ReceivedRequest]:
        """Requests answered 2xx, in the order received."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]


@pytest.fixture
def receiver():
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, headers, delay = state.next_reply()
            with state.lock:
                state.requests.append(ReceivedRequest(self.path, dict(self.headers.items()), body, status))
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (read timeout)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/billing"
    yield state
    server.shutdown()
    server.server_close()
