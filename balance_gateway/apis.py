"""`/balance/notify`: Balance's XML-RPC callbacks. Only with the shared secret or from allowed addresses."""

from __future__ import annotations

import hmac
import logging
import xml.parsers.expat
import xmlrpc.client
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.xmlrpc import DefusedExpatParser
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from balance_gateway.notifications import UnknownObject, notification_receive
from disbalance.money import MAX_AMOUNT, from_balance

logger = logging.getLogger(__name__)


def _fault(code: str, message: str, method: str, status: int = 200) -> HttpResponse:
    text = f"<error><msg>{xmlrpc.client.escape(message)}</msg><code>{code}</code><method>{method}</method></error>"
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(-1, text), methodresponse=True, encoding="utf-8")
    return HttpResponse(body, status=status, content_type="text/xml; charset=utf-8")


def _success() -> HttpResponse:
    body = xmlrpc.client.dumps(([0, "SUCCESS"],), methodresponse=True, encoding="utf-8")
    return HttpResponse(body, content_type="text/xml; charset=utf-8")


def _allowed(request: HttpRequest) -> bool:
    secret = settings.BALANCE_NOTIFY_SECRET
    given = request.GET.get("secret") or request.headers.get("X-Balance-Secret") or ""
    if secret and given and hmac.compare_digest(given.encode(), secret.encode()):
        return True
    return request.META.get("REMOTE_ADDR", "") in settings.BALANCE_NOTIFY_ALLOWED_IPS


def _loads_call(body: bytes) -> tuple[str, tuple[Any, ...]]:
    unmarshaller = xmlrpc.client.Unmarshaller(use_datetime=True, use_builtin_types=True)
    parser = DefusedExpatParser(unmarshaller, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    parser.feed(body)
    parser.close()
    method = unmarshaller.getmethodname()
    if not method:
        raise ValueError("not a methodCall")
    return method, unmarshaller.close()


def _int(value: Any, name: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or len(text) > 18:
        raise ValueError(f"{name} must be a non-negative integer")
    return int(text)


def _amount(value: Any, name: str) -> None:
    """An order total must be a finite amount from 0 to MAX_AMOUNT (absent means 0), or the call is malformed."""
    try:
        amount = from_balance(value)
    except (ArithmeticError, ValueError) as exc:
        raise ValueError(f"{name} must be an amount") from exc
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        raise ValueError(f"{name} must be an amount from 0 to {MAX_AMOUNT}")


@csrf_exempt
@require_POST
def balance_notify(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        return HttpResponse("forbidden", status=403, content_type="text/plain")
    body = request.read(settings.MAX_REQUEST_BODY_BYTES + 1)
    if len(body) > settings.MAX_REQUEST_BODY_BYTES:
        return _fault("INVALID_PARAM", "document too large", "unknown", status=413)
    try:
        method, params = _loads_call(body)
    except (DefusedXmlException, xml.parsers.expat.ExpatError, ValueError, TypeError, KeyError, IndexError,
            OverflowError, AttributeError, xmlrpc.client.ResponseError) as exc:
        return _fault("INVALID_PARAM", f"malformed XML-RPC call: {type(exc).__name__}", "unknown", status=400)
    kinds = {"BalanceClient.NotifyOrder2": "order", "BalanceClient.NotifyClient2": "client"}
    kind = kinds.get(method)
    if kind is None:
        return _fault("INVALID_PARAM", f"unknown method {method[:100]}", method[:100])
    if len(params) != 1 or not isinstance(params[0], dict):
        return _fault("INVALID_PARAM", "one struct expected", method)
    if any(isinstance(v, list | dict) for v in params[0].values()):  # Balance sends scalars only
        return _fault("INVALID_PARAM", "struct members must be scalar values", method)
    payload = {str(k): (v if isinstance(v, int | str | bool) else str(v)) for k, v in params[0].items()}
    try:
        tid = _int(payload.get("Tid"), "Tid")
        if kind == "order":
            object_key = f"{_int(payload.get('ServiceID'), 'ServiceID')}:" \
                         f"{_int(payload.get('ServiceOrderID'), 'ServiceOrderID')}"
            _amount(payload.get("ConsumeQty"), "ConsumeQty")
            _amount(payload.get("CompletionQty"), "CompletionQty")
        else:
            object_key = str(_int(payload.get("ClientID"), "ClientID"))
    except ValueError as exc:
        return _fault("INVALID_PARAM", str(exc), method)
    try:
        outcome = notification_receive(kind=kind, object_key=object_key, tid=tid, payload=payload)
    except UnknownObject as exc:
        return _fault("NOT_FOUND", str(exc), method)
    except (ValueError, ArithmeticError) as exc:  # a value of the wrong shape: nothing was stored (rolled back)
        return _fault("INVALID_PARAM", str(exc)[:200], method, status=400)
    logger.info("notification answered", extra={"method": method, "object": object_key, "outcome": outcome})
    return _success()
