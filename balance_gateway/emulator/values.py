"""The values that cross the emulator's XML-RPC boundary: parsing (strict) and formatting (wire-safe).

Inbound: ids are ints or digit strings, money is a decimal with at most 2 places, a quantity (in a product's
units) one with at most 6, numbers are accepted as strings or ints, `None` (XML-RPC `<nil/>`) means "absent".
Anything else is an `INVALID_PARAM` fault.
Outbound: money is a 2-place string, quantities a 6-place string, dates "YYYY-MM-DD", Tids digit strings;
`to_wire` turns whatever is left (Decimal, date, ints beyond 32 bits, None) into something XML-RPC can carry.
"""

from __future__ import annotations

import datetime
import re
import xmlrpc.client
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.sax.saxutils import escape

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")  # quantities in a product's units carry up to 6 decimals
ZERO = Decimal("0.00")
MAX_INT32 = 2**31 - 1
MAX_MONEY = Decimal("1000000000000000")  # 10^15: far beyond any real amount, keeps arithmetic sane

_DIGITS = re.compile(r"[0-9]{1,30}")
_MONEY = re.compile(r"-?[0-9]{1,16}(\.[0-9]{1,2})?")
_QTY = re.compile(r"-?[0-9]{1,16}(\.[0-9]{1,6})?")
_DATE = re.compile(r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})([T ].*)?")


class BalanceError(Exception):
    """A Balance-level error: becomes the fault `<error><msg/><wo-rollback/><method/><code/><parent-codes/>
    <contents/></error>` (see `server.fault_body`)."""

    def __init__(self, code: str, msg: str, *, parent_codes: tuple[str, ...] = ()) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.parent_codes = parent_codes


def invalid(msg: str) -> BalanceError:
    return BalanceError("INVALID_PARAM", msg)


def not_found(msg: str) -> BalanceError:
    return BalanceError("NOT_FOUND", msg)


def today() -> datetime.date:
    """The emulator's business date: the local date of the machine it runs on."""
    return datetime.datetime.now(datetime.UTC).astimezone().date()


def struct(value: Any, what: str, *, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict:
    """A struct argument with exactly the known keys. `None` values count as absent (and are dropped)."""
    if not isinstance(value, dict):
        raise invalid(f"{what} must be a struct, got {type(value).__name__}")
    known = set(required) | set(optional)
    clean = {}
    for key, item in value.items():
        if key not in known:
            raise invalid(f"{what}: unknown field {key!r} (known: {', '.join(sorted(known))})")
        if item is not None:
            clean[key] = item
    missing = [key for key in required if key not in clean]
    if missing:
        raise invalid(f"{what}: missing field(s) {', '.join(missing)}")
    return clean


def array(value: Any, what: str, *, allow_empty: bool = False) -> list:
    if not isinstance(value, list | tuple):
        raise invalid(f"{what} must be an array, got {type(value).__name__}")
    if not value and not allow_empty:
        raise invalid(f"{what} must not be empty")
    return list(value)


def parse_int(value: Any, field: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise invalid(f"{field} must be an integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise invalid(f"{field} must be an integer or a digit string, got {value!r}")
    if number < minimum:
        raise invalid(f"{field} must be >= {minimum}, got {number}")
    return number


def parse_id(value: Any, field: str) -> int:
    """A positive id that must fit XML-RPC's 32-bit int (client, person, contract, request, service, product)."""
    number = parse_int(value, field, minimum=1)
    if number > MAX_INT32:
        raise invalid(f"{field} {number} is out of range")
    return number


def parse_optional_id(value: Any, field: str) -> int:
    """An id where absent, "", 0 and "0" all mean "none" (returned as 0)."""
    if value is None or value == "" or value == 0 or value == "0":
        return 0
    return parse_id(value, field)


def parse_order_id(value: Any, field: str = "ServiceOrderID") -> str:
    """Billing's ServiceOrderID: any positive integer (possibly beyond 32 bits), kept as its canonical string."""
    return str(parse_int(value, field, minimum=1))


def parse_optional_order_id(value: Any, field: str) -> str:
    """A GroupServiceOrderID: absent, "", 0 and "0" mean "no group" (returned as "")."""
    if value is None or value == "" or value == 0 or value == "0":
        return ""
    return parse_order_id(value, field)


def parse_money(value: Any, field: str, *, positive: bool = False, allow_negative: bool = False) -> Decimal:
    """Money: "1500.00" (or a number) with at most 2 places, as an exact Decimal. Never via float arithmetic."""
    if isinstance(value, bool):
        raise invalid(f"{field} must be a decimal amount, got a boolean")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)  # shortest repr: 10.5 -> "10.5"; 0.1 + 0.2 -> rejected below (too many places)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise invalid(f"{field} must be a decimal string, got {type(value).__name__}")
    if not _MONEY.fullmatch(text):
        raise invalid(f"{field} must be a decimal with at most 2 places, got {value!r}")
    try:
        amount = Decimal(text).quantize(CENT)
    except InvalidOperation as exc:
        raise invalid(f"{field} is not a valid amount: {value!r}") from exc
    if abs(amount) >= MAX_MONEY:
        raise invalid(f"{field} is out of range: {value!r}")
    if amount < 0 and not allow_negative:
        raise invalid(f"{field} must not be negative, got {fmt_money(amount)}")
    if positive and amount <= 0:
        raise invalid(f"{field} must be > 0, got {fmt_money(amount)}")
    return amount


def _decimal_text(value: Any, field: str) -> str:
    if isinstance(value, bool):
        raise invalid(f"{field} must be a decimal, got a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value.strip()
    raise invalid(f"{field} must be a decimal string, got {type(value).__name__}")


def parse_qty(value: Any, field: str, *, positive: bool = False, allow_negative: bool = False) -> Decimal:
    """A quantity in a product's units: up to 6 decimals ("828.333333"), exact."""
    text = _decimal_text(value, field)
    if not _QTY.fullmatch(text):
        raise invalid(f"{field} must be a decimal with at most 6 places, got {value!r}")
    amount = Decimal(text).quantize(MICRO)
    if abs(amount) >= MAX_MONEY:
        raise invalid(f"{field} is out of range: {value!r}")
    if amount < 0 and not allow_negative:
        raise invalid(f"{field} must not be negative, got {fmt_qty(amount)}")
    if positive and amount <= 0:
        raise invalid(f"{field} must be > 0, got {fmt_qty(amount)}")
    return amount


def parse_uid(value: Any, field: str = "uid") -> int:
    """The operator's Passport uid, first in every mutating call: a digit string (or an int)."""
    return parse_int(value, field, minimum=1)


def parse_datetime(value: Any, field: str) -> datetime.datetime:
    """An XML-RPC dateTime (naive: local time of the zone the caller and Balance agree on), or its ISO text."""
    if isinstance(value, xmlrpc.client.DateTime):
        try:
            # naive on purpose: an XML-RPC dateTime has no zone; the caller applies options.dt_zone
            return datetime.datetime.strptime(value.value, "%Y%m%dT%H:%M:%S")  # noqa: DTZ007
        except ValueError as exc:
            raise invalid(f"{field} is not a valid dateTime: {value.value!r}") from exc
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.strip()).replace(tzinfo=None)
        except ValueError:
            pass
    raise invalid(f"{field} must be an XML-RPC dateTime, got {value!r}")


def parse_flag(value: Any, field: str) -> int:
    if value in (0, 1, "0", "1") and not isinstance(value, float):
        return int(value)
    raise invalid(f"{field} must be 0 or 1, got {value!r}")


def parse_str(value: Any, field: str, *, max_len: int = 1000) -> str:
    if not isinstance(value, str):
        raise invalid(f"{field} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise invalid(f"{field} is longer than {max_len} characters")
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise invalid(f"{field} contains control characters")
    return value.strip()


def parse_date(value: Any, field: str) -> datetime.date:
    """A date: "YYYY-MM-DD" (a time part is ignored), "YYYYMMDD", an XML-RPC dateTime, or a date/datetime."""
    if isinstance(value, xmlrpc.client.DateTime):
        value = value.value
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        match = _DATE.fullmatch(value.strip())
        if match:
            try:
                return datetime.date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                pass
    raise invalid(f"{field} must be a date (YYYY-MM-DD), got {value!r}")


def fmt_money(amount: Decimal) -> str:
    amount = amount.quantize(CENT)
    return "0.00" if amount == 0 else str(amount)


def fmt_qty(amount: Decimal) -> str:
    amount = amount.quantize(MICRO)
    return "0.000000" if amount == 0 else str(amount)


def fmt_date(value: datetime.date | None) -> str:
    return value.isoformat() if value else ""


def to_wire(value: Any) -> Any:
    """Make a result XML-RPC-safe: no None, no Decimal, no date, no int beyond 32 bits."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if -MAX_INT32 - 1 <= value <= MAX_INT32 else str(value)
    if isinstance(value, Decimal):
        return fmt_money(value)
    if isinstance(value, datetime.date):
        return fmt_date(value)
    if value is None:
        return ""
    if isinstance(value, dict):
        return {str(key): to_wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(item) for item in value]
    return value


def safe_parser() -> tuple[Any, xmlrpc.client.Unmarshaller]:
    """An XML-RPC parser that refuses entity declarations and external references (billion laughs, XXE)."""
    from defusedxml.xmlrpc import DefusedExpatParser

    target = xmlrpc.client.Unmarshaller()
    return DefusedExpatParser(target), target


def safe_loads(data: bytes) -> tuple[tuple, str | None]:
    """`xmlrpc.client.loads`, defused: (params, method name)."""
    parser, target = safe_parser()
    parser.feed(data)
    parser.close()
    return target.close(), target.getmethodname()


def error_xml(code: str, msg: str, method: str = "", parent_codes: tuple[str, ...] = (), contents: str = "") -> str:
    """Balance's error document, the faultString of every Balance fault and the text of a per-item error."""
    parents = "".join(f"<code>{escape(parent)}</code>" for parent in parent_codes)
    return (
        f"<error><msg>{escape(msg)}</msg><wo-rollback>0</wo-rollback><method>{escape(method)}</method>"
        f"<code>{escape(code)}</code><parent-codes>{parents}</parent-codes>"
        f"<contents>{escape(contents or msg)}</contents></error>"
    )
