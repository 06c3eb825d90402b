"""Balance's wire format, the layer between the transport and the typed calls (docs/balance-protocol.md, v2).

- Reading values: every reader raises ValueError/TypeError/KeyError on a value of the wrong shape; the call then
  fails as a bad response (an unknown outcome), never with a half-parsed result. Structs are read by the exact
  key names the protocol page gives; `struct_ci` is only for shapes the page leaves open (persons).
- Quantities (`*Qty` in the product's unit) are exact decimals with up to 6 places; money has 2 places.
- Writing values: amounts as "1500.00", quantities as "828.333333", never floats; the operator uid as a string;
  `dt` as an XML-RPC dateTime in Balance's zone (BALANCE_TIME_ZONE), never in the future.
- Faults: a faultString `<error><msg/>...<code/></error>` carries Balance's code (final unless the code says
  "try again"); any other fault (`Error: DatabaseError ... ORA-03113`) is a transient failure of Balance itself.
  The marshalling of XML-RPC bodies lives in `xmlrpc.py`.
"""

from __future__ import annotations

import re
import xmlrpc.client
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from balance_gateway.exceptions import BalanceError, BalanceFinalError, BalanceRetryableError, BalanceUnknownOutcome
from balance_gateway.xmlrpc import Fault, parse_fault_string
from disbalance.money import from_balance, quantize, to_balance

# BalanceCall.Outcome values (kept as strings so that importing this module needs no app registry).
OK = "ok"
FAULT = "fault"
HTTP_ERROR = "http_error"
CONNECTION_ERROR = "connection_error"
TIMEOUT = "timeout"
LOST_RESPONSE = "lost_response"
BAD_RESPONSE = "bad_response"

# Fault codes that mean "not now" rather than "no".
RETRYABLE_FAULT_CODES = frozenset({"REQUEST_IS_LOCKED", "INTERNAL_ERROR"})
MESSAGE_LIMIT = 2000
SHAPE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, InvalidOperation)

QTY_PLACES = Decimal("0.000001")
_ID_RE = re.compile(r"-?\d{1,30}")
_NUMBER_RE = re.compile(r"-?\d{1,18}(\.\d{1,12})?")
_ARG_TEXT_LIMIT = 100
_BATCH_KEYS_SHOWN = 5


# --- reading ------------------------------------------------------------------------------------------------

def struct(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a struct, got {type(value).__name__}")
    return value


def struct_ci(value: Any) -> dict[str, Any]:
    """A struct with keys normalised (CLIENT_ID, ClientID and ClientId all become CLIENTID)."""
    return {str(k).replace("_", "").upper(): v for k, v in struct(value).items()}


def array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected an array, got {type(value).__name__}")
    return value


def id_(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _ID_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError(f"not an id: {value!r:.50}")


def optional_id(value: Any) -> int | None:
    """Balance says "no such link" with 0, -1, "", or nothing."""
    if value is None or value == "" or value is False:
        return None
    number = id_(value)
    return number if number > 0 else None


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def optional_text(value: Any) -> str | None:
    return text(value) or None


def key_text(value: Any) -> str | None:
    """An order key (ServiceOrderID), with 0, -1 and "" meaning none."""
    result = text(value).strip()
    return None if result in ("", "0", "-1") else result


def flag(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false", ""):
        return value.strip().lower() in ("1", "true")
    raise ValueError(f"not a flag: {value!r:.50}")


def _number(value: Any) -> Decimal:
    """A number as Balance sends it: a string or an int (an XML-RPC double through its printed digits)."""
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        value = repr(value)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
        result = Decimal(value.strip())
    else:
        raise ValueError(f"not a number: {value!r:.50}")
    if not result.is_finite():
        raise ValueError("not a finite number")
    return result


def number(value: Any) -> Decimal:
    """Any exact number as Balance sends it, whatever its places."""
    return _number(value)


def informational(value: Any, reader: Callable[[Any], Any], default: Any) -> Any:
    """A member billing keeps but never acts on, in a type or precision the page leaves open (a notification's
    `Signal` or `BusinessUnit`, GetClientCreditLimits' `PRODUCT_PRICE`): read when it can be, else the default.
    Refusing a whole answer or notification over it would hold back the figures billing does need (and make Balance
    send a notification again and again)."""
    if value is None or value == "":
        return default
    try:
        return reader(value)
    except SHAPE_ERRORS:
        return default


def money(value: Any) -> Decimal:
    """Money: exact, two places (Balance's money fields never carry more)."""
    number = _number(value)
    amount = from_balance(number)
    if amount != number:
        raise ValueError(f"money with more than 2 decimal places: {value!r:.50}")
    return amount


def computed_money(value: Any) -> Decimal:
    """Money Balance derives from a quantity (GetOrdersInfo's `completion_amount`: completion in the product's unit
    times its price): the page's samples carry two places, but a quantity has six, so up to six are read and
    rounded half-up to kopecks, as Balance shows them. More than six is still a bad response."""
    return quantize(qty(value))


def qty(value: Any) -> Decimal:
    """A quantity in the product's unit: exact, up to 6 places ("828.333333")."""
    number = _number(value)
    result = number.quantize(QTY_PLACES)
    if result != number:
        raise ValueError(f"a quantity with more than 6 decimal places: {value!r:.50}")
    return result


def day(value: Any) -> date | None:
    if value is None or value == "" or value is False:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, xmlrpc.client.DateTime):
        value = value.value
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped or stripped.startswith("0000-00-00"):
            return None
        return date.fromisoformat(stripped[:10])
    raise TypeError(f"not a date: {type(value).__name__}")


def currency(value: Any) -> str:
    """ISO code; Balance says "RUR" for roubles in places."""
    code = text(value).strip().upper()
    return "RUB" if code == "RUR" else code


def checked(raw: Any, method: str, length: int) -> list[Any]:
    """A `[code, message, ...]` result of exactly `length` items: code 0, or a final error with Balance's code."""
    result = array(raw)
    if not result:
        raise ValueError("empty result")
    code = id_(result[0])
    if code != 0:
        if len(result) != 2 or not isinstance(result[1], str):
            raise ValueError(f"expected [code, message], got {len(result)} items")
        raise BalanceFinalError(result[1] or f"result code {code}", method=method, code=str(code), outcome=FAULT)
    if len(result) != length:
        raise ValueError(f"expected [0, ...] of {length} items, got {len(result)}")
    return result


def error_text(value: Any) -> str:
    """Balance's per-item refusal: `<error><msg>...</msg>...</error>` or plain text, made readable."""
    message = text(value)
    parsed = parse_fault_string(message)
    if parsed is not None:
        code, msg, _ = parsed
        return f"{code}: {msg}" if msg else code
    return message


# --- writing ------------------------------------------------------------------------------------------------

def amount(value: Decimal | int) -> str:
    """An amount for Balance: "1500.00". Floats are refused (TypeError): money is never a float."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"an amount must be a Decimal, got {type(value).__name__}")
    return to_balance(Decimal(value))


def quantity(value: Decimal | int) -> str:
    """A quantity for Balance, exact to 6 places: "828.333333" (trailing zeros kept off: "100")."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"a quantity must be a Decimal, got {type(value).__name__}")
    exact = Decimal(value).quantize(QTY_PLACES, rounding=ROUND_HALF_UP)
    formatted = f"{exact:f}"
    return formatted.rstrip("0").rstrip(".") if "." in formatted else formatted


def uid(value: int | str) -> str:
    """A Passport uid (the operator's or a user's): always a digit string."""
    result = str(value).strip()
    if not result.isdigit():
        raise TypeError(f"a uid must be digits, got {value!r:.30}")
    return result


def balance_datetime(value: datetime, *, now: datetime | None = None) -> xmlrpc.client.DateTime:
    """`dt` for UpdateCampaigns: an XML-RPC dateTime in Balance's zone, never later than now minus the lag."""
    now = now or timezone.now()
    latest = now - timedelta(seconds=settings.BALANCE_COMPLETION_DT_LAG_SECONDS)
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    value = min(value, latest)
    local = value.astimezone(ZoneInfo(settings.BALANCE_TIME_ZONE)).replace(tzinfo=None, microsecond=0)
    return xmlrpc.client.DateTime(local)


# --- the call log's arguments ---------------------------------------------------------------------------------

def short(value: Any) -> Any:
    """A key argument for the call log: JSON-safe and small."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)[:_ARG_TEXT_LIMIT]


def short_all(key: Any) -> Any:
    if isinstance(key, list | tuple):
        return [short(v) for v in key]
    return short(key)


def batch(keys: Sequence[Any]) -> dict[str, Any]:
    return {"count": len(keys), "first": [short_all(k) for k in keys[:_BATCH_KEYS_SHOWN]]}


# --- faults -------------------------------------------------------------------------------------------------

def fault_error(fault: Fault, method: str, fault_codes: frozenset[str] = frozenset()) -> BalanceError:
    """Balance's fault as the error that says what to do next (see `exceptions.py`): an `<error>` document with a
    code is Balance's answer (final unless the code says "try again"), and so is a fault whose faultCode is one of
    the method's own numeric codes (`fault_codes`, e.g. CreateUserClientAssociation's 4008); anything else is
    transient."""
    fault_string = str(fault.faultString)
    parsed = parse_fault_string(fault_string)
    if parsed is None and str(fault.faultCode) in fault_codes:
        message = fault_string.strip().splitlines()[0] if fault_string.strip() else f"fault {fault.faultCode}"
        return BalanceFinalError(message[:MESSAGE_LIMIT], method=method, code=str(fault.faultCode), outcome=FAULT)
    if parsed is None:
        # `Error: DatabaseError\nDescription: ...ORA-03113...` and the like: Balance itself failed on the way,
        # so the call may or may not have been applied. Transient: retried, creations looked up first.
        lines = fault_string.strip().splitlines()
        first_line = lines[0] if lines else f"fault {fault.faultCode}"
        message = f"transient Balance failure: {first_line}"
        return BalanceUnknownOutcome(message[:300], method=method, code="TRANSIENT_FAULT", outcome=FAULT)
    code, message, _ = parsed
    error_class = BalanceRetryableError if code in RETRYABLE_FAULT_CODES else BalanceFinalError
    return error_class(message[:MESSAGE_LIMIT] or code, method=method, code=code[:64], outcome=FAULT)


def bad_response(exc: Exception, method: str) -> BalanceUnknownOutcome:
    return BalanceUnknownOutcome(f"unexpected answer: {type(exc).__name__}: {exc}"[:MESSAGE_LIMIT], method=method,
                                 code="BAD_RESPONSE", outcome=BAD_RESPONSE)
