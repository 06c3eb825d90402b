"""A ticket provider for tests: the ticket the emulator requires (`required_ticket`), set by the `balance` fixture.

Production uses `balance_gateway.tvm.TvmToolProvider`; this one only hands out `settings.TEST_SERVICE_TICKET` (or,
in a `manage.py` subprocess a test starts, the environment variable of that name)."""

from __future__ import annotations

import os

from django.conf import settings


class StaticTickets:
    def service_ticket(self) -> str | None:
        return getattr(settings, "TEST_SERVICE_TICKET", "") or os.environ.get("TEST_SERVICE_TICKET") or None

    def check_service_ticket(self, ticket: str) -> int | None:
        return None
