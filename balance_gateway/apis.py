"""`/balance/notify`: Balance's callbacks, as XML-RPC (`POST /balance/notify`, methodCall
`BalanceClient.NotifyOrder2|NotifyClient2`) or as JSON (`POST /balance/notify/BalanceClient/NotifyOrder2`, the body
the struct), as Balance is configured per service. The service whose URL Balance called is in the path
(`/balance/notify/<ServiceID>`; JSON: `/balance/notify/<ServiceID>/BalanceClient/<method>`, since Balance builds
it by appending `/BalanceClient/<method>` to the configured URL) or, for XML-RPC only, in `?service=<ServiceID>`.
Accepted with a valid TVM ticket (`X-Ya-Service-Ticket`, checked by the ticket provider, from
BALANCE_NOTIFY_TVM_SOURCES), with the shared secret (the emulator and tests), or from an allowed address. Each call
is parsed once into a typed notification (`notifications.py`)."""

from __future__ import annotations

import hmac
import json
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

from balance_gateway.notifications import (
    METHOD_KINDS,
    InvalidNotification,
    UnknownObject,
    notification_receive,
    parse_notification,
)
from balance_gateway.tvm import TICKET_HEADER, ticket_provider

logger = logging.getLogger(__name__)


def _fault(code: str, message: str, method: str, status: int = 200) -> HttpResponse:
    text = f"<error><msg>{xmlrpc.client.escape(message)}</msg><code>{code}</code><method>{method}</method></error>"
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(-1, text), methodresponse=True, encoding="utf-8")
    return HttpResponse(body, status=status, content_type="text/xml; charset=utf-8")


def _success() -> HttpResponse:
    body = xmlrpc.client.dumps(([0, "SUCCESS"],), methodresponse=True, encoding="utf-8")
    return HttpResponse(body, content_type="text/xml; charset=utf-8")


def _allowed(request: HttpRequest) -> bool:
    ticket = request.headers.get(TICKET_HEADER, "")
    if ticket and settings.BALANCE_NOTIFY_TVM_CHECK:
        source = ticket_provider().check_service_ticket(ticket)
        if source is not None and source in settings.BALANCE_NOTIFY_TVM_SOURCES:
            return True
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


def _read_body(request: HttpRequest) -> bytes | None:
    body = request.read(settings.MAX_REQUEST_BODY_BYTES + 1)
    return None if len(body) > settings.MAX_REQUEST_BODY_BYTES else body


def _service_id(request: HttpRequest, from_path: int | None) -> int | None:
    """The service whose notification URL Balance called: `/balance/notify/<ServiceID>` (or `?service=`), set per
    service in Balance."""
    if from_path is not None:
        return from_path
    value = request.GET.get("service", "")
    return int(value) if value.isdigit() and len(value) < 10 else None


def _receive(method: str, data: dict[str, Any], service_id: int | None) -> tuple[str, str, str]:
    """(status, code, message): status "ok" with the outcome, or an error code to answer."""
    try:
        notification = parse_notification(method, data, service_id=service_id)
    except InvalidNotification as exc:
        return "error", "INVALID_PARAM", str(exc)
    try:
        outcome = notification_receive(notification=notification, raw=data)
    except UnknownObject as exc:
        return "error", "NOT_FOUND", str(exc)
    except (ValueError, ArithmeticError) as exc:  # a value the applier cannot use: nothing was stored
        return "error", "INVALID_PARAM", str(exc)[:200]
    logger.info("notification answered", extra={"method": method, "object": notification.object_key,
                                                 "outcome": outcome})
    return "ok", outcome, ""


@csrf_exempt
@require_POST
def balance_notify(request: HttpRequest, service_id: int | None = None) -> HttpResponse:
    """XML-RPC: answered `[0, "SUCCESS"]`, or a fault (NOT_FOUND: Balance retries later)."""
    if not _allowed(request):
        return HttpResponse("forbidden", status=403, content_type="text/plain")
    body = _read_body(request)
    if body is None:
        return _fault("INVALID_PARAM", "document too large", "unknown", status=413)
    try:
        full_method, params = _loads_call(body)
    except (DefusedXmlException, xml.parsers.expat.ExpatError, ValueError, TypeError, KeyError, IndexError,
            OverflowError, AttributeError, xmlrpc.client.ResponseError) as exc:
        return _fault("INVALID_PARAM", f"malformed XML-RPC call: {type(exc).__name__}", "unknown", status=400)
    # The page gives JSON's path (`BalanceClient/NotifyOrder2`), not the XML-RPC methodName: `BalanceClient.` as
    # that path says, or the bare name; nothing else.
    prefix, dot, method = full_method.rpartition(".")
    if (dot and prefix != "BalanceClient") or method not in METHOD_KINDS:
        return _fault("INVALID_PARAM", f"unknown method {full_method[:100]}", full_method[:100])
    if len(params) != 1 or not isinstance(params[0], dict):
        return _fault("INVALID_PARAM", "one struct expected", full_method)
    status, code, message = _receive(method, params[0], _service_id(request, service_id))
    if status != "ok":
        return _fault(code, message[:300], full_method, status=400 if code == "INVALID_PARAM" else 200)
    return _success()


def _json(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


@csrf_exempt
@require_POST
def balance_notify_json(request: HttpRequest, method: str, service_id: int | None = None) -> HttpResponse:
    """JSON: `POST .../BalanceClient/<method>` with the struct as the body; 200 `{"status": "ok"}`, or an error
    status Balance retries on (404 for an object billing does not know yet)."""
    if not _allowed(request):
        return _json(403, {"status": "error", "code": "FORBIDDEN"})
    if method not in METHOD_KINDS:
        return _json(404, {"status": "error", "code": "INVALID_PARAM", "message": "unknown method"})
    body = _read_body(request)
    if body is None:
        return _json(413, {"status": "error", "code": "INVALID_PARAM", "message": "document too large"})
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _json(400, {"status": "error", "code": "INVALID_PARAM", "message": "malformed JSON"})
    if not isinstance(data, dict):
        return _json(400, {"status": "error", "code": "INVALID_PARAM", "message": "a JSON object expected"})
    status, code, message = _receive(method, data, _service_id(request, service_id))
    if status != "ok":
        return _json(404 if code == "NOT_FOUND" else 400, {"status": "error", "code": code, "message": message})
    return _json(200, {"status": "ok", "outcome": code})
