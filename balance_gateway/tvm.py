"""TVM2 service tickets: for calls to Balance (`X-Ya-Service-Ticket`) and for checking Balance's notifications.

Pluggable by BALANCE_TVM_PROVIDER: "none" (the bundled emulator, local development), "tvmtool" (the local tvmtool
daemon's HTTP API, production), or a dotted path to a class with the `TicketProvider` interface.

tvmtool's HTTP API (its client is public: `library/cpp/tvmauth/client` in ydb-platform/ydb): every request carries
the local auth token in `Authorization`; `GET /tvm/tickets?src=<self>&dsts=<dst>` answers
`{"<alias>": {"ticket": "3:serv:...", "tvm_id": 123}}` (or `{"error": ...}` for that dst);
`GET /tvm/checksrv?dst=<self>` with the incoming ticket in `X-Ya-Service-Ticket` answers 200 with `{"src": <id>}`
for a valid ticket and 403 otherwise. tvmtool refreshes tickets itself; they are cached here for a minute.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import requests
from django.conf import settings
from django.utils.module_loading import import_string

from balance_gateway.exceptions import BalanceRetryableError

TICKET_HEADER = "X-Ya-Service-Ticket"
_CACHE_SECONDS = 60.0
_TIMEOUT = (1.0, 2.0)


class TicketProvider(Protocol):
    def service_ticket(self) -> str | None:
        """The ticket to send to Balance, or None to send no header."""

    def check_service_ticket(self, ticket: str) -> int | None:
        """The TVM id of the ticket's source if the ticket is valid for us, else None."""


class NoTickets:
    """No TVM at all: the emulator and tests. Checks nothing, so it never accepts a ticket."""

    def service_ticket(self) -> str | None:
        return None

    def check_service_ticket(self, ticket: str) -> int | None:
        return None


class TvmToolProvider:
    """Tickets from the local tvmtool daemon."""

    def __init__(self, url: str | None = None, auth_token: str | None = None, self_alias: str | None = None,
                 dst: str | None = None) -> None:
        self.url = (url or settings.BALANCE_TVMTOOL_URL).rstrip("/")
        self.auth_token = auth_token if auth_token is not None else settings.BALANCE_TVMTOOL_AUTH_TOKEN
        self.self_alias = self_alias if self_alias is not None else settings.BALANCE_TVM_SELF
        self.dst = dst or settings.BALANCE_TVM_DST
        self._lock = threading.Lock()
        self._cached: tuple[float, str] | None = None

    def _get(self, path: str, params: dict[str, str], headers: dict[str, str] | None = None) -> requests.Response:
        try:
            return requests.get(f"{self.url}{path}", params=params, timeout=_TIMEOUT,
                                headers={"Authorization": self.auth_token, **(headers or {})})
        except requests.RequestException as exc:
            raise BalanceRetryableError(f"tvmtool unreachable: {type(exc).__name__}", code="TVM_UNAVAILABLE",
                                        outcome="connection_error") from exc

    def service_ticket(self) -> str | None:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < _CACHE_SECONDS:
                return self._cached[1]
        params = {"dsts": self.dst}
        if self.self_alias:
            params["src"] = self.self_alias
        response = self._get("/tvm/tickets", params)
        try:
            body = response.json() if response.status_code == 200 else {}
            entries = list(body.values()) if isinstance(body, dict) else []
            ticket = next((e.get("ticket") for e in entries if isinstance(e, dict) and e.get("ticket")), None)
        except ValueError:
            ticket = None
        if not isinstance(ticket, str) or not ticket:
            raise BalanceRetryableError(f"tvmtool gave no ticket for {self.dst} (HTTP {response.status_code})",
                                        code="TVM_NO_TICKET", outcome="connection_error")
        with self._lock:
            self._cached = (time.monotonic(), ticket)
        return ticket

    def check_service_ticket(self, ticket: str) -> int | None:
        params = {"dst": self.self_alias} if self.self_alias else {}
        try:
            response = self._get("/tvm/checksrv", params, headers={TICKET_HEADER: ticket})
        except BalanceRetryableError:
            return None
        if response.status_code != 200:
            return None
        try:
            src = response.json().get("src")
        except (ValueError, AttributeError):
            return None
        return src if isinstance(src, int) and not isinstance(src, bool) else None


_PROVIDERS = {"none": NoTickets, "tvmtool": TvmToolProvider}
_instance: tuple[tuple[str, ...], TicketProvider] | None = None
_instance_lock = threading.Lock()


def ticket_provider() -> TicketProvider:
    """The configured provider (one per process; re-made when its settings change)."""
    global _instance
    name = settings.BALANCE_TVM_PROVIDER or "none"
    key = (name, settings.BALANCE_TVMTOOL_URL, settings.BALANCE_TVMTOOL_AUTH_TOKEN, settings.BALANCE_TVM_SELF,
           settings.BALANCE_TVM_DST)
    with _instance_lock:
        if _instance is None or _instance[0] != key:
            factory = _PROVIDERS.get(name) or import_string(name)
            _instance = (key, factory())
        return _instance[1]
