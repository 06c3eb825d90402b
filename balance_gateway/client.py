"""The typed client of Balance's XML-RPC interface (see docs/balance-protocol.md), over `requests`.

- One `requests.Session` per `BalanceClient`; not shared between threads (make one per task or thread).
- `(connect, read)` timeouts from BALANCE_CONNECT_TIMEOUT / BALANCE_READ_TIMEOUT; no automatic retries:
  retrying is the outbox's decision, and the error class says whether it may (see `exceptions.py`).
- Ids go out as XML-RPC ints when they fit in int32, else as digit strings; amounts as "1500.00" strings.
  Ids come back as ints, amounts as `Decimal`, dates as `date`.
- Answers are parsed with defusedxml and limited to `MAX_RESPONSE_BYTES`.
- Every call writes one `BalanceCall` row (method, key arguments, outcome, duration, the outbox operation
  from `current_operation_id`) and one log line on the "balance_gateway.client" logger. Writing the row
  never changes the call's result.

`EmulatorControl` drives the bundled emulator's test helpers (`Emulator.*`); its calls are not recorded.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeVar

import requests
import urllib3.exceptions
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from balance_gateway.exceptions import (
    BalanceError,
    BalanceFinalError,
    BalanceRetryableError,
    BalanceUnknownOutcome,
)
from balance_gateway.xmlrpc import Fault, ResponseParseError, dumps_call, loads_response, parse_fault_string
from disbalance import metrics
from disbalance.logging import request_id_var
from disbalance.money import from_balance, to_balance

logger = logging.getLogger("balance_gateway.client")

MAX_RESPONSE_BYTES = 10 * 1024 * 1024
RETRYABLE_FAULT_CODES = frozenset({"REQUEST_IS_LOCKED", "INTERNAL_ERROR"})
ALREADY_LINKED_CODE = 4006
_MESSAGE_LIMIT = 2000
_ARG_TEXT_LIMIT = 100
_BATCH_KEYS_SHOWN = 5

# BalanceCall.Outcome values (kept as strings so that importing this module needs no app registry).
OK = "ok"
FAULT = "fault"
HTTP_ERROR = "http_error"
CONNECTION_ERROR = "connection_error"
TIMEOUT = "timeout"
LOST_RESPONSE = "lost_response"
BAD_RESPONSE = "bad_response"

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


# --- Results ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociationResult:
    linked: bool
    already_linked: bool
    message: str


@dataclass(frozen=True, slots=True)
class ClientInfo:
    client_id: int
    name: str
    email: str
    phone: str
    is_agency: bool
    agency_id: int | None


@dataclass(frozen=True, slots=True)
class PersonInfo:
    person_id: int
    type: str
    name: str
    inn: str | None
    hidden: bool
    # Extras, when Balance sends them.
    kpp: str | None = None
    email: str | None = None
    phone: str | None = None
    legal_address: str | None = None
    lname: str | None = None
    fname: str | None = None
    mname: str | None = None


@dataclass(frozen=True, slots=True)
class ContractInfo:
    contract_id: int
    external_id: str
    is_active: bool
    dt: date | None
    finish_dt: date | None
    payment_type: Literal["prepaid", "postpaid"]
    credit_limit: Decimal
    person_id: int | None
    services: list[int]


@dataclass(frozen=True, slots=True)
class OrderSpec:
    service_id: int
    service_order_id: int | str
    product_id: int
    client_id: int
    agency_id: int | None = None
    group_service_order_id: int | str | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class OrderResult:
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class OrderInfo:
    service_id: int
    service_order_id: str
    client_id: int
    agency_id: int | None
    product_id: int
    group_service_order_id: str | None
    consume_qty: Decimal
    consume_sum: Decimal
    completion_qty: Decimal
    tid: int


@dataclass(frozen=True, slots=True)
class RequestItem:
    service_id: int
    service_order_id: int | str
    qty: Decimal


@dataclass(frozen=True, slots=True)
class RequestInfo:
    request_id: int
    user_path: str
    admin_path: str


@dataclass(frozen=True, slots=True)
class CompletionReport:
    """`money` is the cumulative completed money of the order since its creation, never a delta."""

    service_id: int
    service_order_id: int | str
    money: Decimal
    dt: datetime
    stop: bool = False


@dataclass(frozen=True, slots=True)
class TransferSource:
    service_id: int
    service_order_id: int | str
    qty_old: Decimal
    qty_new: Decimal


@dataclass(frozen=True, slots=True)
class TransferDestination:
    service_id: int
    service_order_id: int | str
    qty_delta: Decimal


@dataclass(frozen=True, slots=True)
class OverdraftParams:
    client_limit: Decimal
    overdraft_limit: Decimal
    overdraft_spent: Decimal
    min_payment_term: date | None
    currency: str


@dataclass(frozen=True, slots=True)
class CreditLimit:
    contract_id: int
    limit_total: Decimal
    limit_spent: Decimal


@dataclass(frozen=True, slots=True)
class CreditLimits:
    currency: str
    limits: list[CreditLimit] = field(default_factory=list)


# --- Reading Balance's values -------------------------------------------------------------------------------
# Every helper raises ValueError/TypeError on a value of the wrong shape; the call then fails as a bad response.

_ID_RE = re.compile(r"-?\d{1,30}")
_SHAPE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, InvalidOperation)


def _struct(value: Any) -> dict[str, Any]:
    """A struct with keys normalised (CLIENT_ID, ClientID and ClientId all become CLIENTID)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a struct, got {type(value).__name__}")
    return {str(k).replace("_", "").upper(): v for k, v in value.items()}


def _array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return value


def _id(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _ID_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError(f"not an id: {value!r:.50}")


def _optional_id(value: Any) -> int | None:
    """Balance says "no such link" with 0, "", or nothing."""
    if value is None or value == "" or value is False:
        return None
    number = _id(value)
    return number or None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _optional_text(value: Any) -> str | None:
    return _text(value) or None


def _key_text(value: Any) -> str | None:
    """An order key (ServiceOrderID), with 0 and "" meaning none."""
    text = _text(value).strip()
    return None if text in ("", "0") else text


def _flag(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false", ""):
        return value.strip().lower() in ("1", "true")
    raise ValueError(f"not a flag: {value!r:.50}")


def _money(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal | None):
        raise TypeError(f"not an amount: {type(value).__name__}")
    amount = from_balance(value)
    if not amount.is_finite():
        raise ValueError("not a finite amount")
    return amount


def _day(value: Any) -> date | None:
    if value is None or value == "" or value is False:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text or text.startswith("0000-00-00"):
            return None
        return date.fromisoformat(text[:10])
    raise TypeError(f"not a date: {type(value).__name__}")


def _checked(raw: Any, method: str) -> list[Any]:
    """A `[code, message, payload?]` result: code 0 or a final error carrying Balance's code."""
    result = _array(raw)
    if not result:
        raise ValueError("empty result")
    code = _id(result[0])
    if code != 0:
        message = _text(result[1]) if len(result) > 1 else ""
        raise BalanceFinalError(message, method=method, code=str(code), outcome=FAULT)
    return result


def _short(value: Any) -> Any:
    """A key argument for the call log: JSON-safe and small."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, Decimal):
        return to_balance(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)[:_ARG_TEXT_LIMIT]


def _batch(keys: Sequence[Any]) -> dict[str, Any]:
    return {"count": len(keys), "first": [_short_all(k) for k in keys[:_BATCH_KEYS_SHOWN]]}


def _short_all(key: Any) -> Any:
    if isinstance(key, list | tuple):
        return [_short(v) for v in key]
    return _short(key)


def _amount(value: Decimal | int) -> str:
    """An amount for Balance: "1500.00". Floats are refused (TypeError): money is never a float."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"an amount must be a Decimal, got {type(value).__name__}")
    return to_balance(Decimal(value))


def _wire_datetime(value: datetime) -> str:
    """Balance's "YYYY-MM-DD HH:MM:SS", in the project's time zone when the value is aware."""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime("%Y-%m-%d %H:%M:%S")


# --- Transport --------------------------------------------------------------------------------------------


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


def _fault_error(fault: Fault, method: str) -> BalanceError:
    parsed = parse_fault_string(str(fault.faultString))
    if parsed is None:
        message = f"fault {fault.faultCode}: {fault.faultString}"
        return BalanceFinalError(message[:_MESSAGE_LIMIT], method=method, code="UNKNOWN_FAULT", outcome=FAULT)
    code, message, _ = parsed
    error_class = BalanceRetryableError if code in RETRYABLE_FAULT_CODES else BalanceFinalError
    return error_class(message[:_MESSAGE_LIMIT], method=method, code=code[:64], outcome=FAULT)


class _Transport:
    """POST one XML-RPC call and return its parsed value, or raise the `BalanceError` that fits."""

    def __init__(self, url: str, connect_timeout: float, read_timeout: float,
                 max_response_bytes: int = MAX_RESPONSE_BYTES, allow_float: bool = False) -> None:
        self.url = url
        self.allow_float = allow_float
        self.timeout = (connect_timeout, read_timeout)
        self.max_response_bytes = max_response_bytes
        self.session = requests.Session()
        self.session.headers.update({
            "Content-Type": "text/xml; charset=utf-8",
            "Accept": "text/xml",
            # No compressed answers: the size limit then bounds what is parsed, and no gzip bombs.
            "Accept-Encoding": "identity",
            "User-Agent": "disbalance-balance-gateway",
        })

    def close(self) -> None:
        self.session.close()

    def call(self, method: str, xmlrpc_method: str, params: tuple[Any, ...]) -> Any:
        return self.send(method, dumps_call(xmlrpc_method, params, allow_float=self.allow_float))

    def send(self, method: str, body: bytes) -> Any:
        try:
            response = self.session.post(self.url, data=body, timeout=self.timeout, stream=True,
                                         allow_redirects=False)
        except requests.RequestException as exc:
            raise _transport_error(exc, method) from exc
        with contextlib.closing(response):
            if response.status_code != 200:
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
            raise _fault_error(exc, method) from exc

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


# --- The client -------------------------------------------------------------------------------------------


@dataclass
class _CallNote:
    """What a result parser may add to the call's record (an informational Balance code)."""

    error_code: str = ""
    error_message: str = ""


class BalanceClient:
    """Balance2.* over XML-RPC. Whatever Balance or the network does surfaces as a `BalanceError` subclass
    (see `exceptions.py`); only a value that cannot be sent at all (a float amount, say) raises TypeError."""

    def __init__(self, url: str | None = None, operator_uid: int | None = None,
                 connect_timeout: float | None = None, read_timeout: float | None = None) -> None:
        self.url = url or settings.BALANCE_URL
        self.operator_uid = int(operator_uid if operator_uid is not None else settings.BALANCE_OPERATOR_UID)
        self.connect_timeout = float(
            connect_timeout if connect_timeout is not None else settings.BALANCE_CONNECT_TIMEOUT
        )
        self.read_timeout = float(read_timeout if read_timeout is not None else settings.BALANCE_READ_TIMEOUT)
        self._transport = _Transport(self.url, self.connect_timeout, self.read_timeout)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> BalanceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- clients and persons ---

    def create_client(
        self, *, service_id: int, name: str, email: str = "", phone: str = "", is_agency: bool = False,
        client_id: int | None = None, service_client_id: str | None = None, city: str | None = None,
        currency: str | None = None, agency_id: int | None = None,
    ) -> int:
        """Create a client, or edit it when `client_id` is given (IS_AGENCY is then not sent: it cannot change).

        A create repeating (service_id, service_client_id) returns the existing client: safe to repeat.
        On an edit, a field passed as None is kept and "" clears it (so pass the current email and phone);
        `agency_id=0` unlinks the client from its agency.
        """
        fields: dict[str, Any] = {
            "CLIENT_ID": client_id, "NAME": name, "EMAIL": email, "PHONE": phone, "CITY": city,
            "AGENCY_ID": agency_id, "CURRENCY": currency, "SERVICE_ID": service_id,
            "SERVICE_CLIENT_ID": service_client_id,
        }
        if client_id is None:
            fields["IS_AGENCY"] = 1 if is_agency else 0
        key_args = {"service_id": service_id, "service_client_id": _short(service_client_id),
                    "client_id": client_id, "name": _short(name), "is_agency": is_agency, "agency_id": agency_id}

        def parse(raw: Any, note: _CallNote) -> int:
            result = _checked(raw, "CreateClient")
            return _id(result[2])

        return self._call("CreateClient", (self.operator_uid, fields), key_args, parse)

    def create_person(
        self, *, client_id: int, person_type: str, name: str, email: str = "", phone: str = "",
        inn: str | None = None, kpp: str | None = None, legal_address: str | None = None,
        lname: str | None = None, fname: str | None = None, mname: str | None = None,
        person_id: int | None = None,
    ) -> int:
        """Create a person (payer) of the client, or edit it with `person_id`. Not idempotent: after an
        unknown outcome, look the client's persons up before creating again."""
        fields: dict[str, Any] = {
            "client_id": client_id, "person_id": person_id, "type": person_type, "name": name, "email": email,
            "phone": phone, "inn": inn, "kpp": kpp, "legaladdress": legal_address, "lname": lname,
            "fname": fname, "mname": mname,
        }
        key_args = {"client_id": client_id, "person_id": person_id, "type": _short(person_type),
                    "name": _short(name), "inn": _short(inn)}

        def parse(raw: Any, note: _CallNote) -> int:
            if isinstance(raw, list):  # tolerate the [0, "SUCCESS", person_id] form too
                return _id(_checked(raw, "CreatePerson")[2])
            return _id(raw)

        return self._call("CreatePerson", (self.operator_uid, fields), key_args, parse)

    def create_user_client_association(self, *, client_id: int, user_uid: int) -> AssociationResult:
        """Link a Passport user to the client. Already linked (4006, to this or another client) is an answer,
        not an error; any other non-zero code is a `BalanceFinalError`."""
        key_args = {"client_id": client_id, "user_uid": str(user_uid)}

        def parse(raw: Any, note: _CallNote) -> AssociationResult:
            result = _array(raw)
            code = _id(result[0])
            message = _text(result[1]) if len(result) > 1 else ""
            if code == ALREADY_LINKED_CODE:
                note.error_code, note.error_message = str(code), message
                return AssociationResult(linked=False, already_linked=True, message=message)
            _checked(result, "CreateUserClientAssociation")
            return AssociationResult(linked=True, already_linked=False, message=message)

        return self._call("CreateUserClientAssociation", (self.operator_uid, client_id, user_uid), key_args,
                          parse)

    def find_client(
        self, *, client_id: int | None = None, service_id: int | None = None,
        service_client_id: str | None = None, name: str | None = None, email: str | None = None,
    ) -> list[ClientInfo]:
        criteria = {"ClientID": client_id, "ServiceID": service_id, "ServiceClientID": service_client_id,
                    "Name": name, "Email": email}
        key_args = {k: _short(v) for k, v in criteria.items() if v is not None}

        def parse(raw: Any, note: _CallNote) -> list[ClientInfo]:
            result = _checked(raw, "FindClient")
            found = result[2] if len(result) > 2 else []
            return [_client_info(item) for item in _array(found)]

        return self._call("FindClient", (criteria,), key_args, parse)

    def get_client_by_id_batch(self, client_ids: list[int]) -> list[ClientInfo]:
        if not client_ids:
            return []

        def parse(raw: Any, note: _CallNote) -> list[ClientInfo]:
            return [_client_info(item) for item in _array(raw)]

        return self._call("GetClientByIdBatch", (list(client_ids),), _batch(client_ids), parse)

    def get_client_persons(self, client_id: int) -> list[PersonInfo]:
        def parse(raw: Any, note: _CallNote) -> list[PersonInfo]:
            return [_person_info(item) for item in _array(raw)]

        return self._call("GetClientPersons", (client_id,), {"client_id": client_id}, parse)

    def get_client_contracts(self, client_id: int, dt: date | None = None) -> list[ContractInfo]:
        criteria: dict[str, Any] = {"ClientID": client_id}
        if dt is not None:
            criteria["Dt"] = dt.isoformat() if not isinstance(dt, datetime) else dt.date().isoformat()

        def parse(raw: Any, note: _CallNote) -> list[ContractInfo]:
            return [_contract_info(item) for item in _array(raw)]

        return self._call("GetClientContracts", (criteria,), {"client_id": client_id, "dt": _short(dt)}, parse)

    # --- orders, payments, completions ---

    def create_or_update_orders_batch(self, orders: list[OrderSpec]) -> list[OrderResult]:
        """One result per order, in order; `ok=False` carries Balance's reason (the order was not changed)."""
        if not orders:
            return []
        payload = [
            {"ServiceID": o.service_id, "ServiceOrderID": o.service_order_id, "ProductID": o.product_id,
             "ClientID": o.client_id, "AgencyID": o.agency_id, "GroupServiceOrderID": o.group_service_order_id,
             "Text": o.text}
            for o in orders
        ]
        key_args = _batch([[o.service_id, o.service_order_id] for o in orders])

        def parse(raw: Any, note: _CallNote) -> list[OrderResult]:
            items = _array(raw)
            if len(items) != len(orders):
                raise ValueError(f"{len(items)} results for {len(orders)} orders")
            results = []
            for item in items:
                pair = _array(item)
                results.append(OrderResult(ok=_id(pair[0]) == 0, message=_text(pair[1]) if len(pair) > 1 else ""))
            failed = [r.message for r in results if not r.ok]
            if failed:
                note.error_code = "-1"
                note.error_message = f"{len(failed)} of {len(results)} refused: {failed[0]}"
            return results

        return self._call("CreateOrUpdateOrdersBatch", (self.operator_uid, payload), key_args, parse)

    def get_orders_info(self, keys: list[tuple[int, int | str]]) -> list[OrderInfo]:
        """Known orders only: unknown keys are absent from the answer."""
        if not keys:
            return []
        payload = [{"ServiceID": service_id, "ServiceOrderID": order_id} for service_id, order_id in keys]

        def parse(raw: Any, note: _CallNote) -> list[OrderInfo]:
            return [_order_info(item) for item in _array(raw)]

        return self._call("GetOrdersInfo", (payload,), _batch([list(k) for k in keys]), parse)

    def create_request2(
        self, *, payer_client_id: int, items: list[RequestItem], return_path: str | None = None,
    ) -> RequestInfo:
        """An invoice for the payer (the order's agency if it has one, else its client); harmless to repeat."""
        payload = [{"ServiceID": i.service_id, "ServiceOrderID": i.service_order_id, "Qty": _amount(i.qty)}
                   for i in items]
        options = {"ReturnPath": return_path} if return_path else {}
        key_args = {"payer_client_id": payer_client_id,
                    **_batch([[i.service_id, i.service_order_id, i.qty] for i in items])}

        def parse(raw: Any, note: _CallNote) -> RequestInfo:
            data = _struct(raw)
            return RequestInfo(request_id=_id(data["REQUESTID"]), user_path=_text(data.get("USERPATH")),
                               admin_path=_text(data.get("ADMINPATH")))

        return self._call("CreateRequest2", (self.operator_uid, payer_client_id, payload, options), key_args,
                          parse)

    def update_campaigns(self, items: list[CompletionReport]) -> list[bool]:
        """Report cumulative completed money per order; one accepted/not flag per item, in order."""
        if not items:
            return []
        payload = [
            {"ServiceID": i.service_id, "ServiceOrderID": i.service_order_id, "dt": _wire_datetime(i.dt),
             "Money": _amount(i.money), "stop": 1 if i.stop else 0}
            for i in items
        ]
        key_args = _batch([[i.service_id, i.service_order_id, i.money] for i in items])

        def parse(raw: Any, note: _CallNote) -> list[bool]:
            flags = [_flag(v) for v in _array(raw)]
            if len(flags) != len(items):
                raise ValueError(f"{len(flags)} results for {len(items)} reports")
            if not all(flags):
                note.error_code = "0"
                note.error_message = f"{flags.count(False)} of {len(flags)} not accepted"
            return flags

        return self._call("UpdateCampaigns", (payload,), key_args, parse)

    def create_transfer_multiple(
        self, *, sources: list[TransferSource], destinations: list[TransferDestination],
    ) -> None:
        """Move free money between orders. `qty_old` must equal the source's consume now, else
        ORDERS_NOT_SYNCHRONIZED (final: re-read the orders and compute the transfer again)."""
        src = [{"ServiceID": s.service_id, "ServiceOrderID": s.service_order_id, "QtyOld": _amount(s.qty_old),
                "QtyNew": _amount(s.qty_new)} for s in sources]
        dst = [{"ServiceID": d.service_id, "ServiceOrderID": d.service_order_id,
                "QtyDelta": _amount(d.qty_delta)} for d in destinations]
        key_args = {
            "sources": _batch([[s.service_id, s.service_order_id, s.qty_old, s.qty_new] for s in sources]),
            "destinations": _batch([[d.service_id, d.service_order_id, d.qty_delta] for d in destinations]),
        }

        def parse(raw: Any, note: _CallNote) -> None:
            _checked(raw, "CreateTransferMultiple")

        self._call("CreateTransferMultiple", (self.operator_uid, src, dst), key_args, parse)

    # --- overdraft and credit ---

    def get_overdraft_params(self, *, service_id: int, client_id: int) -> OverdraftParams | None:
        """None when the client has no overdraft (Balance's NOT_FOUND)."""

        def parse(raw: Any, note: _CallNote) -> OverdraftParams:
            data = _struct(raw)
            return OverdraftParams(
                client_limit=_money(data.get("CLIENTLIMIT")), overdraft_limit=_money(data.get("OVERDRAFTLIMIT")),
                overdraft_spent=_money(data.get("OVERDRAFTSPENT")),
                min_payment_term=_day(data.get("MINPAYMENTTERM")), currency=_text(data.get("CURRENCY")),
            )

        return self._call("GetOverdraftParams", (service_id, client_id),
                          {"service_id": service_id, "client_id": client_id}, parse,
                          answer_faults=frozenset({"NOT_FOUND"}))

    def get_client_credit_limits(self, *, client_id: int, product_id: int) -> CreditLimits:
        def parse(raw: Any, note: _CallNote) -> CreditLimits:
            data = _struct(raw)
            limits = [
                CreditLimit(contract_id=_id(d["CONTRACTID"]), limit_total=_money(d.get("LIMITTOTAL")),
                            limit_spent=_money(d.get("LIMITSPENT")))
                for d in map(_struct, _array(data.get("LIMITS") or []))
            ]
            return CreditLimits(currency=_text(data.get("CURRENCY")), limits=limits)

        return self._call("GetClientCreditLimits", (client_id, product_id),
                          {"client_id": client_id, "product_id": product_id}, parse)

    # --- machinery ---

    def _call(self, method: str, params: tuple[Any, ...], key_args: dict[str, Any],
              parse: Callable[[Any, _CallNote], T], *, answer_faults: frozenset[str] = frozenset()) -> Any:
        """Send, parse, record. `answer_faults` are fault codes that are answers (the method returns None)."""
        # A value that cannot be sent is a bug of the caller: TypeError here, before anything is sent or recorded.
        body = dumps_call(f"Balance2.{method}", params)
        started = time.monotonic()
        note = _CallNote()
        try:
            raw = self._transport.send(method, body)
            result: Any = parse(raw, note)
        except BalanceFinalError as exc:
            if exc.outcome == FAULT and exc.code in answer_faults:
                self._record(method, key_args, started, OK, exc.code, exc.message)
                return None
            self._record(method, key_args, started, exc.outcome or FAULT, exc.code, exc.message)
            raise
        except BalanceError as exc:
            self._record(method, key_args, started, exc.outcome or CONNECTION_ERROR, exc.code, exc.message)
            raise
        except _SHAPE_ERRORS as exc:
            error = BalanceUnknownOutcome(f"unexpected answer: {type(exc).__name__}: {exc}"[:_MESSAGE_LIMIT],
                                          method=method, code="BAD_RESPONSE", outcome=BAD_RESPONSE)
            self._record(method, key_args, started, BAD_RESPONSE, error.code, error.message)
            raise error from exc
        self._record(method, key_args, started, OK, note.error_code, note.error_message)
        return result

    def _record(self, method: str, key_args: dict[str, Any], started: float, outcome: str, error_code: str,
                error_message: str) -> None:
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
                    error_message=error_message[:_MESSAGE_LIMIT], duration_ms=duration_ms,
                    operation_id=operation_id, request_id=request_id_var.get(),
                )
        except Exception:  # the call log must never hide or change the call's result
            logger.exception("BalanceCall not recorded", extra={"balance_method": method, "operation": operation_id})


def _client_info(raw: Any) -> ClientInfo:
    data = _struct(raw)
    return ClientInfo(
        client_id=_id(data["CLIENTID"]), name=_text(data.get("NAME")), email=_text(data.get("EMAIL")),
        phone=_text(data.get("PHONE")), is_agency=_flag(data.get("ISAGENCY")),
        agency_id=_optional_id(data.get("AGENCYID")),
    )


def _person_info(raw: Any) -> PersonInfo:
    data = _struct(raw)
    return PersonInfo(
        person_id=_id(data["ID"] if "ID" in data else data["PERSONID"]), type=_text(data.get("TYPE")),
        name=_text(data.get("NAME")), inn=_optional_text(data.get("INN")), hidden=_flag(data.get("HIDDEN")),
        kpp=_optional_text(data.get("KPP")), email=_optional_text(data.get("EMAIL")),
        phone=_optional_text(data.get("PHONE")), legal_address=_optional_text(data.get("LEGALADDRESS")),
        lname=_optional_text(data.get("LNAME")), fname=_optional_text(data.get("FNAME")),
        mname=_optional_text(data.get("MNAME")),
    )


_PAYMENT_TYPES: dict[str, Literal["prepaid", "postpaid"]] = {
    "2": "prepaid", "3": "postpaid", "prepaid": "prepaid", "postpaid": "postpaid",
}


def _contract_info(raw: Any) -> ContractInfo:
    data = _struct(raw)
    payment_type = _PAYMENT_TYPES.get(_text(data.get("PAYMENTTYPE")).strip().lower())
    if payment_type is None:
        raise ValueError(f"unknown PAYMENT_TYPE {data.get('PAYMENTTYPE')!r:.20}")
    return ContractInfo(
        contract_id=_id(data["ID"]), external_id=_text(data.get("EXTERNALID")),
        is_active=_flag(data.get("ISACTIVE")), dt=_day(data.get("DT")), finish_dt=_day(data.get("FINISHDT")),
        payment_type=payment_type, credit_limit=_money(data.get("CREDITLIMIT")),
        person_id=_optional_id(data.get("PERSONID")),
        services=[_id(s) for s in _array(data.get("SERVICES") or [])],
    )


def _order_info(raw: Any) -> OrderInfo:
    data = _struct(raw)
    service_order_id = _key_text(data["SERVICEORDERID"])
    if service_order_id is None:
        raise ValueError("an order without ServiceOrderID")
    return OrderInfo(
        service_id=_id(data["SERVICEID"]), service_order_id=service_order_id, client_id=_id(data["CLIENTID"]),
        agency_id=_optional_id(data.get("AGENCYID")), product_id=_id(data["PRODUCTID"]),
        group_service_order_id=_key_text(data.get("GROUPSERVICEORDERID")),
        consume_qty=_money(data.get("CONSUMEQTY")), consume_sum=_money(data.get("CONSUMESUM")),
        completion_qty=_money(data.get("COMPLETIONQTY")), tid=_id(data.get("TID") or 0),
    )


# --- The emulator's test helpers -----------------------------------------------------------------------------


class EmulatorControl:
    """`Emulator.*` calls of the bundled emulator, for tests, the demo loader and support. Not recorded."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self._transport = _Transport(url, connect_timeout=min(timeout, 3.0), read_timeout=timeout, allow_float=True)

    def close(self) -> None:
        self._transport.close()

    def _call(self, name: str, *params: Any) -> Any:
        return self._transport.call(name, f"Emulator.{name}", params)

    def pay_request(self, request_id: int, amount: Decimal | None = None) -> Any:
        if amount is None:
            return self._call("PayRequest", request_id)
        return self._call("PayRequest", request_id, _amount(amount))

    def grant_overdraft(self, client_id: int, limit: Decimal, payment_term_days: int) -> Any:
        return self._call("GrantOverdraft", client_id, _amount(limit), payment_term_days)

    def set_overdraft_spent(self, client_id: int, amount: Decimal) -> Any:
        return self._call("SetOverdraftSpent", client_id, _amount(amount))

    def create_contract(self, agency_client_id: int, payment_type: str = "prepaid",
                        credit_limit: Decimal = Decimal(0), services: Sequence[int] = (), **extra: Any) -> int:
        options = {"payment_type": payment_type, "credit_limit": _amount(credit_limit),
                   "services": list(services), **extra}
        result = self._call("CreateContract", agency_client_id, options)
        if isinstance(result, dict):
            data = _struct(result)
            return _id(data.get("ID", data.get("CONTRACTID")))
        return _id(result)

    def reset(self) -> Any:
        return self._call("Reset")

    def state(self) -> dict[str, Any]:
        result = self._call("State")
        if not isinstance(result, dict):
            raise BalanceUnknownOutcome("State did not return a struct", method="State", code="BAD_RESPONSE",
                                        outcome=BAD_RESPONSE)
        return result

    def update_order(self, service_id: int, service_order_id: int | str, changes: dict[str, Any]) -> Any:
        return self._call("UpdateOrder", service_id, service_order_id, changes)

    def set_faults(self, faults: dict[str, Any]) -> Any:
        return self._call("SetFaults", faults)

    def drop_next_notifications(self, n: int) -> Any:
        return self._call("DropNextNotifications", n)
