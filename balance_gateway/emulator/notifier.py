"""Balance-to-billing notifications: NotifyOrder2 and NotifyClient2, at least once.

The protocol is the service's setting in Balance (`options.notify_protocol`): XML-RPC to the notify URL
(`BalanceClient.NotifyOrder2(struct)`), or JSON over HTTP: `POST <url>/BalanceClient/NotifyOrder2` (the path
appended before the URL's query string), body the struct, any 2xx counting as delivered. With
`options.notify_ticket` set, every send carries it in `X-Ya-Service-Ticket`.

One thread sends the queue. Each notification carries the object's state as it was when queued. A send fails on a
connection error, a timeout, an HTTP error, a fault (billing answers NOT_FOUND for objects it does not know yet)
or a non-zero `[code, ...]` answer; it is then retried with exponential backoff (0.2 s doubling to 5 s) until it
succeeds or `give_up_after` seconds (10 minutes) have passed since it was queued, when it counts as failed.
A failing notification does not hold up the others (so delivery may be out of order, as with the real Balance).
With no notify URL at send time a notification is only counted (`skipped`).

Injected faults (see faults.py): `delay_ms` postpones a notification's first send; `fail_rate` makes an attempt
fail without sending; `reorder` holds a notification back until the next one is sent (or 1 s has passed);
`duplicate_rate` sends a delivered notification a second time.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import xmlrpc.client
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pyexpat import ExpatError
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from balance_gateway.emulator.faults import NotifyFaults
from balance_gateway.emulator.values import safe_parser

logger = logging.getLogger("balance_gateway.emulator.notifier")


@dataclass
class _Item:
    seq: int
    generation: int
    method: str
    payload: dict
    created: float
    next_at: float
    attempts: int = 0
    held_until: float = 0.0
    was_held: bool = False


class _TimeoutMixin:
    timeout: float

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        connection = super().make_connection(host)  # type: ignore[misc]
        connection.timeout = self.timeout
        return connection

    def getparser(self) -> tuple[Any, Any]:
        return safe_parser()


class _Transport(_TimeoutMixin, xmlrpc.client.Transport):
    def __init__(self, timeout: float, headers: list[tuple[str, str]]) -> None:
        super().__init__(headers=headers)
        self.timeout = timeout


class _SafeTransport(_TimeoutMixin, xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float, headers: list[tuple[str, str]]) -> None:
        super().__init__(headers=headers)
        self.timeout = timeout


def json_url(url: str, method: str) -> str:
    """`http://h/balance/notify?x=1` + `BalanceClient.NotifyOrder2` -> `http://h/balance/notify/BalanceClient/
    NotifyOrder2?x=1`."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") + "/" + method.replace(".", "/")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class Notifier:
    def __init__(
        self,
        url: Callable[[], str | None],
        faults: Callable[[], NotifyFaults],
        *,
        protocol: Callable[[], tuple[str, str]] = lambda: ("xmlrpc", ""),
        seed: int = 0,
        timeout: float = 5.0,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
        give_up_after: float = 600.0,
        reorder_hold: float = 1.0,
    ) -> None:
        self._url = url
        self._faults = faults
        self._protocol = protocol
        self.timeout = timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.give_up_after = give_up_after
        self.reorder_hold = reorder_hold
        self._cond = threading.Condition()
        self._pending: list[_Item] = []
        self._in_flight: _Item | None = None
        self._held: _Item | None = None
        self._seq = 0
        self._generation = 0
        self._drop_next = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._rng = random.Random()
        self.reseed(seed)
        self.counts = dict.fromkeys(("sent", "failed", "dropped", "duplicated", "retried", "skipped"), 0)
        # What was delivered, for in-process peeking: (method, payload), oldest first.
        self.delivered: deque[tuple[str, dict]] = deque(maxlen=10_000)

    # --------------------------------------------------------------------------------------------- control
    def reseed(self, seed: int) -> None:
        with self._cond:
            self._rng = random.Random(f"notify:{seed}")

    def start(self) -> None:
        with self._cond:
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name="balance-emulator-notifier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def reset(self, seed: int) -> None:
        """Forget everything queued and every count (an in-flight send finishes but is not counted)."""
        with self._cond:
            self._generation += 1
            self._pending, self._held, self._drop_next = [], None, 0
            self.counts = dict.fromkeys(self.counts, 0)
            self.delivered.clear()
            self._rng = random.Random(f"notify:{seed}")
            self._cond.notify_all()

    def drop_next(self, count: int) -> None:
        with self._cond:
            self._drop_next = count

    def enqueue(self, method: str, payload: dict) -> None:
        with self._cond:
            if self._drop_next > 0:
                self._drop_next -= 1
                self.counts["dropped"] += 1
                logger.info("dropped %s %s (Emulator.DropNextNotifications)", method, payload)
                return
            now = time.monotonic()
            self._seq += 1
            delay = self._faults().delay_ms / 1000
            self._pending.append(_Item(self._seq, self._generation, method, payload, now, now + delay))
            self._cond.notify_all()

    def stats(self) -> dict:
        with self._cond:
            return {**self.counts, "queued": len(self._pending) + (1 if self._in_flight else 0)}

    def pending(self) -> list[dict]:
        """What is still to be delivered (for the state file)."""
        with self._cond:
            items = sorted([*self._pending, *([self._in_flight] if self._in_flight else [])], key=lambda i: i.seq)
            return [{"method": item.method, "payload": item.payload} for item in items]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and self._in_flight is None, timeout)

    # ------------------------------------------------------------------------------------------------ loop
    def _run(self) -> None:
        while True:
            with self._cond:
                item = None
                while item is None:
                    if self._stopping:
                        return
                    item, wait = self._pick(time.monotonic())
                    if item is None:
                        self._cond.wait(wait)
                self._pending.remove(item)
                self._in_flight = item
            try:
                self._attempt(item)
            except Exception:
                logger.exception("notifier: unexpected error sending %s", item.method)
                self._finish(item, ok=False, reason="unexpected error")

    def _pick(self, now: float) -> tuple[_Item | None, float]:
        """The next due notification (the oldest first), applying the reorder fault. Called under the lock."""
        if self._held is not None and self._held.held_until <= now:
            self._held = None
        while True:
            due = [i for i in self._pending if i.next_at <= now and i is not self._held]
            if not due:
                waits = [i.next_at - now for i in self._pending if i is not self._held]
                if self._held is not None:
                    waits.append(self._held.held_until - now)
                return None, max(0.005, min(waits, default=1.0))
            item = min(due, key=lambda i: i.seq)
            reorder = self._faults().reorder
            if not item.was_held and self._held is None and reorder and self._rng.random() < reorder:
                item.held_until, item.was_held = now + self.reorder_hold, True
                self._held = item
                continue
            return item, 0.0

    def _attempt(self, item: _Item) -> None:
        url = self._url()
        if not url:
            with self._cond:
                if item.generation == self._generation:
                    self.counts["skipped"] += 1
                self._in_flight = None
                self._cond.notify_all()
            return
        faults = self._faults()
        item.attempts += 1
        if faults.fail_rate and self._rng.random() < faults.fail_rate:
            ok, reason = False, "injected failure"
        else:
            ok, reason = self._send(url, item)
        duplicated = False
        if ok and faults.duplicate_rate and self._rng.random() < faults.duplicate_rate:
            self._send(url, item)
            duplicated = True
        self._finish(item, ok=ok, reason=reason, duplicated=duplicated)

    def _finish(self, item: _Item, *, ok: bool, reason: str = "", duplicated: bool = False) -> None:
        with self._cond:
            self._in_flight = None
            current = item.generation == self._generation
            if ok:
                if current:
                    self.counts["sent"] += 1
                    self.counts["duplicated"] += int(duplicated)
                    self.delivered.append((item.method, item.payload))
                if self._held is not None:
                    self._held.held_until = 0.0  # the held one goes right after the one that overtook it
            elif current:
                now = time.monotonic()
                if now - item.created >= self.give_up_after:
                    self.counts["failed"] += 1
                    logger.warning(
                        "gave up on %s %s after %d tries: %s", item.method, item.payload, item.attempts, reason
                    )
                else:
                    self.counts["retried"] += 1
                    item.next_at = now + min(self.retry_max, self.retry_initial * 2 ** (item.attempts - 1))
                    self._pending.append(item)
                    logger.info(
                        "%s Tid %s failed (%s); retry #%d", item.method, item.payload.get("Tid"), reason, item.attempts
                    )
            self._cond.notify_all()

    def _send(self, url: str, item: _Item) -> tuple[bool, str]:
        protocol, ticket = self._protocol()
        headers = [("X-Ya-Service-Ticket", ticket)] if ticket else []
        if protocol == "json":
            return self._send_json(url, item, headers)
        transport_class = _SafeTransport if url.startswith("https:") else _Transport
        proxy = xmlrpc.client.ServerProxy(url, transport=transport_class(self.timeout, headers))
        try:
            result = getattr(proxy, item.method)(item.payload)
        except xmlrpc.client.Fault as fault:
            return False, f"fault {fault.faultCode}: {fault.faultString[:200]}"
        except (OSError, http.client.HTTPException, xmlrpc.client.Error, ExpatError, ValueError) as error:
            return False, f"{type(error).__name__}: {error}"
        finally:
            proxy("close")()
        if isinstance(result, list | tuple) and result and result[0] not in (0, "0"):
            return False, f"answered {result!r}"
        logger.debug("delivered %s %s", item.method, item.payload)
        return True, ""

    def _send_json(self, url: str, item: _Item, headers: list[tuple[str, str]]) -> tuple[bool, str]:
        parts = urlsplit(json_url(url, item.method))
        connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(parts.netloc, timeout=self.timeout)
        body = json.dumps(item.payload).encode()
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request("POST", target, body, {"Content-Type": "application/json", **dict(headers)})
            response = connection.getresponse()
            answer = response.read(10_000)
        except (OSError, http.client.HTTPException) as error:
            return False, f"{type(error).__name__}: {error}"
        finally:
            connection.close()
        if not 200 <= response.status < 300:
            return False, f"HTTP {response.status}: {answer[:200]!r}"
        logger.debug("delivered %s %s as JSON", item.method, item.payload)
        return True, ""
