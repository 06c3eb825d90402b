"""The soak's TVM ticket provider, for the ticket-on emulator variant (`BALANCE_EMULATOR_OPTIONS` with
`required_ticket`): billing's processes send the ticket the emulator requires (`SOAK_SERVICE_TICKET`, set by
`soak.run`), as production sends tvmtool's. Notifications are still accepted by the shared secret."""

from __future__ import annotations

import os


class StaticTicket:
    def service_ticket(self) -> str | None:
        return os.environ.get("SOAK_SERVICE_TICKET") or None

    def check_service_ticket(self, ticket: str) -> int | None:
        return None
