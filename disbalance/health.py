"""Probes: `/healthz` (the process answers), `/readyz` (database, broker and Balance reachable)."""

from __future__ import annotations

import time

import requests
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _check_broker() -> str:
    if not settings.REDIS_URL:
        return "embedded"
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    client.ping()
    return "ok"


def _check_balance() -> str:
    # Any HTTP answer means Balance is reachable; the XML-RPC endpoint answers GET with an error page.
    requests.get(settings.BALANCE_URL, timeout=(2, 3))
    return "ok"


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, dict[str, object]] = {}
    ready = True
    for name, check in (("database", _check_database), ("broker", _check_broker), ("balance", _check_balance)):
        started = time.monotonic()
        try:
            status = check()
        except Exception as exc:  # noqa: BLE001 - a probe reports any failure, whatever its type
            ready = False
            checks[name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            checks[name] = {"status": status}
        checks[name]["ms"] = round((time.monotonic() - started) * 1000)
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
