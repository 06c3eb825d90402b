"""Balance's transport: HTTP(S) POSTs of XML-RPC bodies, TLS settings, the TVM ticket header, timeouts, quick
retries of transient failures, and the call log.

- One `requests.Session` per `Transport`; not shared between threads (make one per task or thread).
- `(connect, read)` timeouts from BALANCE_CONNECT_TIMEOUT / BALANCE_READ_TIMEOUT.
- HTTPS: BALANCE_VERIFY_TLS and BALANCE_CA_BUNDLE; every call carries `X-Ya-Service-Ticket` from the configured
  ticket provider (`tvm.py`; none for the emulator).
- Retries: a transient failure (connection refused, HTTP 502/503, a non-XML fault such as
  `Error: DatabaseError ... ORA-03113`, REQUEST_IS_LOCKED) is retried BALANCE_TRANSIENT_RETRIES times inside the
  call, with a short backoff, only for calls that are safe to repeat; a creation is never repeated here: its caller
  looks the object up first (see `services.py`). Beyond that, retrying is the outbox's decision.
- Answers are parsed with defusedxml and limited to `MAX_RESPONSE_BYTES`.
- Every attempt writes one `BalanceCall` row (method, key arguments, outcome, duration, the outbox operation
  from `current_operation_id`) and one log line on the "balance_gateway.client" logger. Writing the row
  never changes the call's result.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import urllib3.exceptions
from django.conf import settings
from django.db import transaction

from balance_gateway import wire
from balance_gateway.exceptions import (
    BalanceError,
    BalanceFinalError,
    BalanceRetryableError,
    BalanceUnknownOutcome,
)
from balance_gateway.tvm import TICKET_HEADER, TicketProvider, ticket_provider
from balance_gateway.wire import (
    BAD_RESPONSE,
    CONNECTION_ERROR,
    FAULT,
    HTTP_ERROR,
    LOST_RESPONSE,
    MESSAGE_LIMIT,
    OK,
    SHAPE_ERRORS,
    TIMEOUT,
)
from balance_gateway.xmlrpc import Fault, ResponseParseError, loads_response
from disbalance import metrics
from disbalance.logging import request_id_var

logger = logging.getLogger("balance_gateway.client")

MAX_RESPONSE_BYTES = 10 * 1024 * 1024

T = TypeVar("T")

# --- The outbox operation a call belongs to -----------------------------------------------------------------

current_operation_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "balance_current_operation_id", default=None
)


@contextlib.contextmanager
def operation_context(operation_id: int | None) -> Iterator[None]:
    """Calls made inside are recorded with this outbox operation id."""
    token = current_operation_id.set(operation_id)
    try:
        yield
    finally:
        current_operation_id.reset(token)


# --- Mapping failures -------------------------------------------------------------------------------


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])


def _cause(exc: BaseException) -> str:
    """The socket-level reason behind a `requests` error ("[Errno 111] Connection refused"), for messages."""
    for item in _exception_chain(exc):
        if isinstance(item, OSError) and not isinstance(item, requests.RequestException):
            return f"{type(item).__name__}: {item}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def _transport_error(exc: requests.RequestException, method: str) -> BalanceError:
    """Map a `requests` failure: was anything sent, and did the answer get lost?"""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return BalanceRetryableError(f"cannot connect in time ({_cause(exc)})", method=method,
                                     code="CONNECT_TIMEOUT", outcome=CONNECTION_ERROR)
    unknown = "the call may have been applied"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return BalanceUnknownOutcome(f"no answer in time; {unknown}", method=method, code="TIMEOUT", outcome=TIMEOUT)
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema):
        return BalanceFinalError(f"bad BALANCE_URL: {exc}"[:300], method=method, code="BAD_URL",
                                 outcome=CONNECTION_ERROR)
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return BalanceUnknownOutcome(f"undecodable answer; {unknown} ({_cause(exc)})", method=method,
                                     code="BAD_RESPONSE", outcome=BAD_RESPONSE)
    chain = list(_exception_chain(exc))
    if any(isinstance(e, urllib3.exceptions.ReadTimeoutError) for e in chain):
        return BalanceUnknownOutcome(f"no answer in time; {unknown}", method=method, code="TIMEOUT", outcome=TIMEOUT)
    if isinstance(exc, requests.exceptions.SSLError | requests.exceptions.ProxyError) or any(
        isinstance(e, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)
        for e in chain
    ):
        # The connection was never established: nothing reached Balance.
        return BalanceRetryableError(f"cannot connect ({_cause(exc)})", method=method, code="CONNECTION_ERROR",
                                     outcome=CONNECTION_ERROR)
    # Reset or closed after the request went out (or while it was going out): it may have been applied.
    return BalanceUnknownOutcome(f"connection lost without an answer; {unknown} ({_cause(exc)})", method=method,
                                 code="LOST_RESPONSE", outcome=LOST_RESPONSE)


def _http_error(status: int, reason: str, method: str) -> BalanceError:
    message = f"HTTP {status} {reason}".strip()
    code = f"HTTP_{status}"
    if status in (408, 429, 503):
        # Refused before processing (overloaded, throttled, request timeout): nothing applied.
        return BalanceRetryableError(message, method=method, code=code, outcome=HTTP_ERROR)
    if status >= 500:
        # 500/502/504...: the server or a proxy failed while handling the request; it may have been applied.
        return BalanceUnknownOutcome(message, method=method, code=code, outcome=HTTP_ERROR)
    return BalanceFinalError(message, method=method, code=code, outcome=HTTP_ERROR)



class Transport:
    """POST one XML-RPC body and return its parsed value, or raise the `BalanceError` that fits."""

    def __init__(self, url: str, connect_timeout: float, read_timeout: float,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, tickets: TicketProvider | None = None,
                 verify: bool | str | None = None) -> None:
        self.url = url
        self.timeout = (connect_timeout, read_timeout)
        self.max_response_bytes = max_response_bytes
        self.tickets = tickets if tickets is not None else ticket_provider()
        self.session = requests.Session()
        if verify is None:
            verify = (settings.BALANCE_CA_BUNDLE or True) if settings.BALANCE_VERIFY_TLS else False
        self.session.verify = verify
        self.session.headers.update({
            "Content-Type": "text/xml; charset=utf-8",
            "Accept": "text/xml",
            # No compressed answers: the size limit then bounds what is parsed, and no gzip bombs.
            "Accept-Encoding": "identity",
            "User-Agent": "disbalance-balance-gateway",
        })

    def close(self) -> None:
        self.session.close()

    def exchange(self, method: str, body: bytes, key_args: dict[str, Any], parse: Callable[[Any, CallNote], T], *,
                 answer_faults: frozenset[str] = frozenset(), repeatable: bool = False,
                 fault_codes: frozenset[str] = frozenset()) -> T | None:
        """Send, parse, record; retry a transient failure quickly when the call is `repeatable`.

        `answer_faults` are fault codes that are answers (the result is then None). `fault_codes` are the method's
        own numeric codes: a fault whose faultCode is one of them is Balance's answer with that code even when its
        faultString is not Balance's XML document (otherwise such a fault is transient)."""
        retries = max(0, settings.BALANCE_TRANSIENT_RETRIES) if repeatable else 0
        attempt = 0
        while True:
            try:
                return self._attempt(method, body, key_args, parse, answer_faults, fault_codes)
            except BalanceRetryableError as exc:
                if attempt >= retries or exc.code in ("TIMEOUT", "RESPONSE_TOO_LARGE"):
                    raise
            attempt += 1
            time.sleep(settings.BALANCE_RETRY_BACKOFF_SECONDS * attempt)

    def _attempt(self, method: str, body: bytes, key_args: dict[str, Any], parse: Callable[[Any, CallNote], T],
                 answer_faults: frozenset[str], fault_codes: frozenset[str] = frozenset()) -> T | None:
        started = time.monotonic()
        note = CallNote()
        try:
            raw = self.send(method, body, fault_codes)
            result = parse(raw, note)
        except BalanceFinalError as exc:
            if exc.outcome == FAULT and exc.code in answer_faults:
                record_call(method, key_args, started, OK, exc.code, exc.message)
                return None
            record_call(method, key_args, started, exc.outcome or FAULT, exc.code, exc.message)
            raise
        except BalanceError as exc:
            record_call(method, key_args, started, exc.outcome or CONNECTION_ERROR, exc.code, exc.message)
            raise
        except SHAPE_ERRORS as exc:
            error = wire.bad_response(exc, method)
            record_call(method, key_args, started, BAD_RESPONSE, error.code, error.message)
            raise error from exc
        record_call(method, key_args, started, OK, note.error_code, note.error_message)
        return result

    def send(self, method: str, body: bytes, fault_codes: frozenset[str] = frozenset()) -> Any:
        ticket = self.tickets.service_ticket()
        headers = {TICKET_HEADER: ticket} if ticket else None
        try:
            response = self.session.post(self.url, data=body, timeout=self.timeout, stream=True,
                                         allow_redirects=False, headers=headers)
        except requests.RequestException as exc:
            raise _transport_error(exc, method) from exc
        with contextlib.closing(response):
            if response.status_code != 200:
                fault = self._fault_in(response, method)
                if fault is not None:
                    raise wire.fault_error(fault, method, fault_codes) from None
                raise _http_error(response.status_code, response.reason or "", method)
            try:
                content = self._read_body(response, method)
            except requests.RequestException as exc:
                raise _transport_error(exc, method) from exc
        try:
            return loads_response(content)
        except ResponseParseError as exc:
            raise BalanceUnknownOutcome(str(exc), method=method, code="BAD_RESPONSE", outcome=BAD_RESPONSE) from exc
        except Fault as exc:
            raise wire.fault_error(exc, method, fault_codes) from exc

    def _fault_in(self, response: requests.Response, method: str) -> Fault | None:
        """An XML-RPC fault sent with an error status. XML-RPC says a fault comes with 200 and the page does not say
        what Balance does; some servers answer faults with 500. A fault is Balance's answer whatever the status
        (final or transient by its code, as with 200); any other body is an HTTP error."""
        try:
            loads_response(self._read_body(response, method))
        except Fault as fault:
            return fault
        except Exception:  # noqa: BLE001 - not a fault: the status decides
            return None
        return None

    def _read_body(self, response: requests.Response, method: str) -> bytes:
        too_large = BalanceUnknownOutcome(
            f"response larger than {self.max_response_bytes} bytes", method=method, code="RESPONSE_TOO_LARGE",
            outcome=BAD_RESPONSE,
        )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise too_large
        # The read timeout bounds each socket read; this bounds a body that trickles in.
        deadline = time.monotonic() + self.timeout[1]
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > self.max_response_bytes:
                raise too_large
            if time.monotonic() > deadline:
                raise BalanceUnknownOutcome("response body too slow", method=method, code="TIMEOUT",
                                            outcome=TIMEOUT)
            chunks.append(chunk)
        return b"".join(chunks)



@dataclass
class CallNote:
    """What a result parser may add to the call's record (an informational Balance code)."""

    error_code: str = ""
    error_message: str = ""


def record_call(method: str, key_args: dict[str, Any], started: float, outcome: str, error_code: str,
                error_message: str) -> None:
    """One log line and one `BalanceCall` row per attempt."""
    elapsed = max(0.0, time.monotonic() - started)
    duration_ms = round(elapsed * 1000)
    operation_id = current_operation_id.get()
    metrics.BALANCE_CALLS.labels(method=method, outcome=outcome).inc()
    metrics.BALANCE_CALL_SECONDS.labels(method=method).observe(elapsed)
    log = logger.info if outcome == OK else logger.warning
    log("balance call %s %s", method, outcome, extra={
        "balance_method": method, "balance_outcome": outcome, "balance_error_code": error_code,
        "duration_ms": duration_ms, "operation": operation_id, "balance_args": key_args,
    })
    try:
        from balance_gateway.models import BalanceCall

        with transaction.atomic():
            BalanceCall.objects.create(
                method=method, arguments=key_args, outcome=outcome, error_code=error_code[:64],
                error_message=error_message[:MESSAGE_LIMIT], duration_ms=duration_ms,
                operation_id=operation_id, request_id=request_id_var.get(),
            )
    except Exception:  # the call log must never hide or change the call's result
        logger.exception("BalanceCall not recorded", extra={"balance_method": method, "operation": operation_id})
