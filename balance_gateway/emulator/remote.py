"""`Emulator.*` test controls of the bundled emulator: for tests, the demo loader and benchmarks only.

Not part of the gateway: the real Balance has none of these methods, and nothing in `balance_gateway` outside the
emulator package calls them. Calls are not recorded in the call log.
"""

from __future__ import annotations

import contextlib
import xmlrpc.client
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import requests

from balance_gateway.xmlrpc import dumps_call, loads_response
from disbalance.money import to_balance


class EmulatorControl:
    def __init__(self, url: str, timeout: float = 10.0, ticket: str = "") -> None:
        self.url = url
        self.timeout = (min(timeout, 3.0), timeout)
        self.session = requests.Session()
        if ticket:  # an emulator started with `required_ticket` checks its controls too
            self.session.headers["X-Ya-Service-Ticket"] = ticket

    def close(self) -> None:
        self.session.close()

    def _call(self, name: str, *params: Any) -> Any:
        body = dumps_call(f"Emulator.{name}", params, allow_float=True)
        response = self.session.post(self.url, data=body, timeout=self.timeout,
                                     headers={"Content-Type": "text/xml; charset=utf-8"})
        with contextlib.closing(response):
            response.raise_for_status()
            return loads_response(response.content)

    def pay_request(self, request_id: int, amount: Decimal | None = None) -> Any:
        if amount is None:
            return self._call("PayRequest", request_id)
        return self._call("PayRequest", request_id, to_balance(amount))

    def grant_overdraft(self, client_id: int, limit: Decimal, payment_term_days: int, *extra: Any) -> Any:
        return self._call("GrantOverdraft", client_id, to_balance(limit), payment_term_days, *extra)

    def set_overdraft_spent(self, client_id: int, amount: Decimal) -> Any:
        return self._call("SetOverdraftSpent", client_id, to_balance(amount))

    def create_contract(self, agency_client_id: int, payment_type: str = "prepaid",
                        credit_limit: Decimal = Decimal(0), services: Sequence[int] = (), **extra: Any) -> int:
        options = {"payment_type": payment_type, "credit_limit": to_balance(credit_limit),
                   "services": list(services), **extra}
        result = self._call("CreateContract", agency_client_id, options)
        if isinstance(result, dict):
            value = next((result[k] for k in ("ID", "id", "CONTRACT_ID", "ContractID") if k in result), None)
            return int(value)  # type: ignore[arg-type]
        return int(result)

    def reset(self) -> Any:
        return self._call("Reset")

    def state(self) -> dict[str, Any]:
        result = self._call("State")
        if not isinstance(result, dict):
            raise xmlrpc.client.ResponseError("State did not return a struct")
        return result

    def update_order(self, service_id: int, service_order_id: int | str, changes: dict[str, Any]) -> Any:
        return self._call("UpdateOrder", service_id, service_order_id, changes)

    def set_faults(self, faults: dict[str, Any]) -> Any:
        return self._call("SetFaults", faults)

    def drop_next_notifications(self, n: int) -> Any:
        return self._call("DropNextNotifications", n)

    def set_options(self, options: dict[str, Any]) -> Any:
        return self._call("SetOptions", options)

    def apply_pending(self) -> Any:
        """Apply the asynchronous completions (and group moves) waiting for their delay now."""
        return self._call("ApplyPending")

    def call(self, name: str, *params: Any) -> Any:
        """Any other `Emulator.<name>` control."""
        return self._call(name, *params)
