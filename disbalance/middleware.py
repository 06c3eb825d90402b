from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from disbalance.exceptions import problem_response
from disbalance.logging import request_id_var

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class RequestIdMiddleware:
    """Takes `X-Request-ID` from the caller (or makes one), puts it in every log line and in the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class PathGuardMiddleware:
    """A path with a NUL character names nothing: 404, before a view puts it in a query (psycopg refuses NUL in
    text parameters, which would be a 500 on PostgreSQL)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return problem_response(status=404, code="not_found", title="Not found", detail="No such resource.")
        return self.get_response(request)


class BodySizeLimitMiddleware:
    """Refuses bodies over MAX_REQUEST_BODY_BYTES before anything reads them (413 problem+json)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.MAX_REQUEST_BODY_BYTES
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0:
            return problem_response(status=400, code="validation_error", title="Bad Content-Length",
                                    detail="Content-Length is not a number.")
        if size > limit and not request.path.startswith("/admin/"):
            return problem_response(status=413, code="payload_too_large", title="Payload too large",
                                    detail=f"Request body is larger than {limit} bytes.")
        return self.get_response(request)


_CODES_BY_STATUS = {400: ("validation_error", "Bad request"), 401: ("unauthorized", "Unauthorized"),
                    403: ("forbidden", "Forbidden"), 404: ("not_found", "Not found"),
                    405: ("method_not_allowed", "Method not allowed"), 413: ("payload_too_large", "Payload too large"),
                    500: ("internal_error", "Internal server error")}


class ApiProblemMiddleware:
    """The floor under /api/: an error answer that is not JSON (Django's HTML pages for a 500, a bad Host header, a
    CSRF failure, with DEBUG on or off) becomes problem+json with the same status, so a client never gets HTML.
    Errors the API renders itself are left alone; the original error is still logged by Django."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code < 400 or not (request.path == "/api" or request.path.startswith("/api/")):
            return response
        content_type = response.get("Content-Type", "")
        if content_type.startswith(("application/json", "application/problem+json")):
            return response
        code, title = _CODES_BY_STATUS.get(response.status_code, ("error", "Error"))
        detail = "An unexpected error occurred; it has been logged." if response.status_code >= 500 else title + "."
        problem = problem_response(status=response.status_code, code=code, title=title, detail=detail)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                problem[header] = response[header]
        return problem
