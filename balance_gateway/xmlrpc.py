"""XML-RPC at the Balance boundary: marshalling billing's values, and parsing answers safely.

Outgoing: XML-RPC `<int>` is 32-bit, so an int outside int32 (the operator uid, Passport uids, large order ids)
goes as a digit string, which Balance accepts for ids; amounts go as two-place decimal strings, never floats.

Incoming: answers are parsed with defusedxml's expat parser, which refuses DTDs, entity declarations and
external references before anything is expanded (billion laughs, XXE); the caller limits the body size.
"""

from __future__ import annotations

import xml.parsers.expat
import xmlrpc.client
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import defusedxml.ElementTree
from defusedxml import DefusedXmlException
from defusedxml.xmlrpc import DefusedExpatParser

from disbalance.money import to_balance

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


Fault = xmlrpc.client.Fault


class ResponseParseError(ValueError):
    """The body is not a well-formed, safe XML-RPC response."""


def wire_value(value: Any, *, allow_float: bool = False) -> Any:
    """Make a value XML-RPC-safe for Balance: int32 or digit string, Decimal as "0.00", no None, no float.

    `allow_float` is for the emulator's controls only (fault rates); money is never a float.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if INT32_MIN <= value <= INT32_MAX else str(value)
    if isinstance(value, Decimal):
        return to_balance(value)
    if isinstance(value, str | bytes | xmlrpc.client.DateTime):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): wire_value(v, allow_float=allow_float) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [wire_value(v, allow_float=allow_float) for v in value]
    if isinstance(value, float) and allow_float:
        return value
    if isinstance(value, float):
        raise TypeError("floats are never sent to Balance: use Decimal for money")
    raise TypeError(f"cannot send {type(value).__name__} to Balance")


def dumps_call(method: str, params: tuple[Any, ...], *, allow_float: bool = False) -> bytes:
    """A `<methodCall>` body, UTF-8."""
    wire = tuple(wire_value(p, allow_float=allow_float) for p in params)
    body = xmlrpc.client.dumps(wire, methodname=method, encoding="utf-8")
    return body.encode("utf-8")


def loads_response(body: bytes) -> Any:
    """The single result of a `<methodResponse>`; raises `xmlrpc.client.Fault` or `ResponseParseError`."""
    unmarshaller = xmlrpc.client.Unmarshaller(use_datetime=True, use_builtin_types=True)
    parser = DefusedExpatParser(unmarshaller, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    try:
        parser.feed(body)
        parser.close()
        if unmarshaller.getmethodname() is not None:
            raise ResponseParseError("a methodCall came back instead of a methodResponse")
        result = unmarshaller.close()  # raises Fault for a <fault>
    except xmlrpc.client.Fault:
        raise
    except ResponseParseError:
        raise
    except DefusedXmlException as exc:
        raise ResponseParseError(f"forbidden XML construct: {type(exc).__name__}") from exc
    except (xml.parsers.expat.ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError, KeyError,
            IndexError, OverflowError, AttributeError) as exc:
        raise ResponseParseError(f"malformed XML-RPC response: {type(exc).__name__}: {exc}"[:300]) from exc
    if not isinstance(result, tuple) or len(result) != 1:
        raise ResponseParseError("a methodResponse must carry exactly one value")
    return result[0]


def parse_fault_string(fault_string: str) -> tuple[str, str, str] | None:
    """`<error><msg>text</msg><code>CODE</code><method>Balance2.Name</method></error>` -> (code, msg, method).

    None when the fault does not have that shape. Parsed with defusedxml: a faultString is text from the other
    side and may itself be hostile XML.
    """
    text = (fault_string or "").strip()
    if not text.startswith("<"):
        return None
    try:
        root = defusedxml.ElementTree.fromstring(text, forbid_dtd=True)
    except (DefusedXmlException, defusedxml.ElementTree.ParseError, ValueError):
        return None
    if root.tag != "error":
        return None
    code = (root.findtext("code") or "").strip()
    if not code:
        return None
    return code, (root.findtext("msg") or "").strip(), (root.findtext("method") or "").strip()
