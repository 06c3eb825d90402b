"""The emulator's HTTP handling: XML-RPC at `POST /xmlrpc` (ticket check, injected faults, Balance's fault
documents) and the payer's pages at `/paystep/<id>`. `server.BalanceEmulator` owns the state it serves.

With `options.required_ticket` set, every XML-RPC call must carry that value in `X-Ya-Service-Ticket` (the
paystep page, used by people, needs none). A missing or wrong ticket is answered, before anything else (faults
included), as a TVM-protected service would: HTTP 403 with a short text body (`options.ticket_failure="403"`,
the default), or the Balance fault `TVM_TICKET_INVALID` (`"fault"`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import time
import xmlrpc.client
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pyexpat import ExpatError
from typing import Any
from urllib.parse import parse_qs, urlsplit

from balance_gateway.emulator import faults as fault_kinds
from balance_gateway.emulator import pages
from balance_gateway.emulator.options import TICKET_FAULT
from balance_gateway.emulator.values import BalanceError, error_xml, safe_loads, to_wire

logger = logging.getLogger("balance_gateway.emulator")

MAX_BODY = 10 * 1024 * 1024
_PAYSTEP = re.compile(r"/paystep/([0-9]{1,10})/?")

DB_ERROR = (
    "Error: DatabaseError\nDescription: ORA-03113: end-of-file on communication channel\n"
    "Process ID: 0\nSession ID: 0 Serial number: 0"
)


def fault_body(code: str, msg: str, method: str, parent_codes: tuple[str, ...] = ()) -> bytes:
    text = error_xml(code, msg, method, parent_codes)
    return xmlrpc.client.dumps(xmlrpc.client.Fault(-1, text), methodresponse=True).encode()


def raw_fault_body(text: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(-1, text), methodresponse=True).encode()


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    emulator: Any  # server.BalanceEmulator


class Server6(Server):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.0"
    server_version = "BalanceEmulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    @property
    def emulator(self) -> Any:
        return self.server.emulator

    # ---------------------------------------------------------------------------------------------- routing
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        match = _PAYSTEP.fullmatch(path)
        if match:
            self._paystep_get(int(match[1]))
        elif path in ("/", "/health"):
            self._send(HTTPStatus.OK, b"Balance emulator: XML-RPC at POST /xmlrpc\n", "text/plain; charset=utf-8")
        elif path in ("/xmlrpc", "/xmlrpc/"):
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"POST XML-RPC here\n", "text/plain; charset=utf-8")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"Not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        match = _PAYSTEP.fullmatch(path)
        if path in ("/xmlrpc", "/xmlrpc/"):
            self._xmlrpc()
        elif match:
            self._paystep_post(int(match[1]))
        else:
            self._send(HTTPStatus.NOT_FOUND, b"Not found\n", "text/plain; charset=utf-8")

    # ------------------------------------------------------------------------------------------------- I/O
    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self._send(HTTPStatus.LENGTH_REQUIRED, b"Content-Length required\n", "text/plain; charset=utf-8")
            return None
        if int(length) > MAX_BODY:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"Too large\n", "text/plain; charset=utf-8")
            return None
        return self.rfile.read(int(length))

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("the client went away before the answer")

    # ---------------------------------------------------------------------------------------------- XML-RPC
    def _xmlrpc(self) -> None:
        started = time.monotonic()
        body = self._body()
        if body is None:
            return
        try:
            params, method = safe_loads(body)
        except (ExpatError, ValueError, TypeError, IndexError, KeyError, xmlrpc.client.Error) as error:
            logger.info("malformed XML-RPC request: %s", error)
            self._send(
                HTTPStatus.OK, fault_body("INVALID_PARAM", f"malformed XML-RPC request: {error}", ""), "text/xml"
            )
            return
        if not method:
            self._send(HTTPStatus.OK, fault_body("INVALID_PARAM", "no methodName", ""), "text/xml")
            return
        emulator = self.emulator
        required = emulator.options.required_ticket
        if required and self.headers.get("X-Ya-Service-Ticket", "") != required:
            reason = "no service ticket" if not self.headers.get("X-Ya-Service-Ticket") else "invalid service ticket"
            if emulator.options.ticket_failure == TICKET_FAULT:
                self._send(HTTPStatus.OK, fault_body("TVM_TICKET_INVALID", reason, method), "text/xml")
            else:
                self._send(HTTPStatus.FORBIDDEN, f"{reason}\n".encode(), "text/plain; charset=utf-8")
            self._log(method, params, f"refused: {reason}", "", started)
            return
        decision = emulator.faults.decide(method)
        if decision.latency:
            emulator._stopping.wait(decision.latency)
        if decision.outcome == fault_kinds.ERROR_XML:
            self._send(HTTPStatus.OK, fault_body("INTERNAL_ERROR", "injected error", method), "text/xml")
            self._log(method, params, "fault INTERNAL_ERROR", decision.outcome, started)
            return
        if decision.outcome == fault_kinds.ERROR_DB:
            self._send(HTTPStatus.OK, raw_fault_body(DB_ERROR), "text/xml")
            self._log(method, params, "fault DatabaseError (not XML)", decision.outcome, started)
            return
        if decision.outcome == fault_kinds.ERROR_502:
            self._send(HTTPStatus.BAD_GATEWAY, b"<html><body><h1>502 Bad Gateway</h1></body></html>\n", "text/html")
            self._log(method, params, "HTTP 502", decision.outcome, started)
            return
        try:
            result = emulator.call(method, params)
            response = xmlrpc.client.dumps((to_wire(result),), methodresponse=True).encode()
            summary = "ok " + _short(result, 200)
        except BalanceError as error:
            response = fault_body(error.code, error.msg, method, error.parent_codes)
            summary = f"fault {error.code}: {error.msg}"
        if decision.outcome == fault_kinds.LOST_RESPONSE:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            self._log(method, params, summary, "lost_response (applied, no answer)", started)
            return
        if decision.outcome == fault_kinds.TIMEOUT:
            emulator._stopping.wait(emulator.timeout_seconds)
        self._send(HTTPStatus.OK, response, "text/xml")
        extra = "timeout (applied, answered late)" if decision.outcome == fault_kinds.TIMEOUT else ""
        self._log(method, params, summary, extra, started)

    def _log(self, method: str, params: Any, summary: str, fault: str, started: float) -> None:
        elapsed = (time.monotonic() - started) * 1000
        suffix = f" [injected {fault}]" if fault and fault != fault_kinds.OK else ""
        logger.info("%s%s -> %s (%.0f ms)%s", method, _short(tuple(params)), summary, elapsed, suffix)

    # ---------------------------------------------------------------------------------------- payment page
    def _paystep_get(self, request_id: int) -> None:
        state = self.emulator.state
        with state.lock:
            request = state.requests.get(request_id)
            data = state.request_struct(request) if request else None
        if data is None:
            self._send(HTTPStatus.NOT_FOUND, pages.message_page("Not found", f"No request {request_id}"), "text/html")
            return
        self._send(HTTPStatus.OK, pages.request_page(data), "text/html; charset=utf-8")

    def _paystep_post(self, request_id: int) -> None:
        body = self._body()
        if body is None:
            return
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        amount = (form.get("amount") or [""])[0].strip()
        params: tuple = (request_id, amount) if amount else (request_id,)
        try:
            self.emulator.call("Emulator.PayRequest", params)
        except BalanceError as error:
            status = HTTPStatus.NOT_FOUND if error.code == "NOT_FOUND" else HTTPStatus.BAD_REQUEST
            logger.info("POST /paystep/%s amount=%r -> %s: %s", request_id, amount, error.code, error.msg)
            self._send(status, pages.message_page("Cannot pay", error.msg), "text/html; charset=utf-8")
            return
        state = self.emulator.state
        with state.lock:
            data = state.request_struct(state.requests[request_id])
        logger.info("POST /paystep/%s -> paid %s", request_id, data["PaidAmount"])
        if data["ReturnPath"]:
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": data["ReturnPath"]})
        else:
            self._send(HTTPStatus.OK, pages.paid_page(data), "text/html; charset=utf-8")
