"""The emulator's options: where the real Balance is configured per service, or where public sources leave a
behaviour [unknown] (docs/balance-protocol.md), the emulator takes a setting, so that tests can run each variant.

Set them with `BalanceEmulator(options={...})`, `manage.py balance_emulator --option KEY=VALUE`, the environment
variable `BALANCE_EMULATOR_OPTIONS` (a JSON object, read by the test fixtures), or at run time with
`Emulator.SetOptions({...})` (only the keys given change). Unknown keys are refused.
"""

from __future__ import annotations

import dataclasses
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from balance_gateway.emulator.values import invalid

UNITS = ("Bucks", "Money", "Days", "Shows", "Clicks", "Units")
GROUP_PARENT, GROUP_ENQUEUE = "parent", "enqueue"
NOTIFY_XMLRPC, NOTIFY_JSON = "xmlrpc", "json"
TICKET_403, TICKET_FAULT = "403", "fault"


@dataclass
class EmulatorOptions:
    # [unknown] whether Balance honours a service-side client key: by default it does not, and a repeated
    # CreateClient makes a duplicate client (as the page requires billing to assume).
    honour_service_client_id: bool = False
    # [seen, per service] the unified-account reporting type: "parent" (the parent reports the group's consume,
    # children ConsumeQty 0 / ConsumeSum 0 / ConsumeAmount = what covers them) or "enqueue" (money is moved onto
    # children as they complete; the parent carries TotalConsumeQty when `total_consume_qty`).
    group_type: str = GROUP_PARENT
    total_consume_qty: bool = True
    # [seen, per service] notification delivery: XML-RPC to the notify URL, or JSON
    # (`POST <url>/BalanceClient/NotifyOrder2`, body the struct).
    notify_protocol: str = NOTIFY_XMLRPC
    # [client] a TVM2 service ticket sent in `X-Ya-Service-Ticket` on notifications ("" = no header).
    notify_ticket: str = ""
    # [client] a ticket required on incoming calls ("" = none required); a missing or wrong ticket gets an HTTP 403
    # (`ticket_failure="403"`, what a TVM-protected HTTP service answers) or an XML-RPC fault `TVM_TICKET_INVALID`.
    required_ticket: str = ""
    ticket_failure: str = TICKET_403
    # [client] UpdateCampaigns is processed asynchronously: completions (and the group-join money move) are applied
    # this many milliseconds after the call, then NotifyOrder2 goes out. 0 applies them before the call answers.
    completion_delay_ms: float = 0.0
    # [unknown] the zone of UpdateCampaigns' `dt` (an XML-RPC dateTime carries no zone).
    dt_zone: str = "Europe/Moscow"
    # Products: {product_id: {"unit": one of UNITS, "price": money per unit}}; an unknown product has the default.
    products: dict[str, dict[str, str]] = field(default_factory=dict)
    default_unit: str = "Money"
    default_price: str = "1.00"
    # [seen, general rule unknown] changing the agency (or client) of an order that has money is refused.
    refuse_owner_change_with_money: bool = True
    # [unknown] CreateTransferMultiple between orders of different agencies (same client): refused by default.
    transfer_across_agencies: bool = False
    # [seen] NotifyClient2 is per (firm, service); the struct carries neither id. With this on, the emulator adds
    # `ServiceID` and `FirmID` to it (an emulator-only extra: billing must not depend on it).
    client_notify_ids: bool = False
    # The service an `Emulator.GrantOverdraft` without ServiceID applies to, when the client has no orders yet.
    default_service_id: int = 7
    # The firm that bills everyone (REGION_ID/CURRENCY decide it in Balance; the emulator has one by default).
    firm_id: int = 1
    # [seen] GetClientCreditLimits may say "RUR" for roubles.
    credit_currency: str = "RUR"

    def price(self, product_id: int) -> tuple[str, Decimal]:
        """(unit, price per unit) of a product."""
        spec = self.products.get(str(product_id))
        if spec is None:
            return self.default_unit, Decimal(self.default_price)
        return spec.get("unit", self.default_unit), Decimal(str(spec.get("price", self.default_price)))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def update(self, changes: Any) -> None:
        """Apply `changes` (a struct of option names), validating everything before changing anything."""
        if not isinstance(changes, dict):
            raise invalid("options must be a struct")
        known = {f.name: f for f in dataclasses.fields(self)}
        new = dataclasses.replace(self)
        for key, value in changes.items():
            if key not in known:
                raise invalid(f"unknown emulator option {key!r} (known: {', '.join(sorted(known))})")
            current = getattr(self, key)
            if isinstance(current, bool):
                if value not in (True, False, 0, 1, "0", "1", "true", "false"):
                    raise invalid(f"option {key} must be a boolean, got {value!r}")
                value = value in (True, 1, "1", "true")
            elif isinstance(current, int):
                value = int(value)
            elif isinstance(current, float):
                value = float(value)
            elif isinstance(current, dict):
                value = _products(value)
            else:
                value = str(value)
            setattr(new, key, value)
        new.validate()
        for key in changes:
            setattr(self, key, getattr(new, key))

    def validate(self) -> None:
        choices = {
            "group_type": (GROUP_PARENT, GROUP_ENQUEUE),
            "notify_protocol": (NOTIFY_XMLRPC, NOTIFY_JSON),
            "ticket_failure": (TICKET_403, TICKET_FAULT),
            "default_unit": UNITS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise invalid(f"option {key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        try:
            zoneinfo.ZoneInfo(self.dt_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise invalid(f"option dt_zone: unknown zone {self.dt_zone!r}") from exc
        if self.completion_delay_ms < 0:
            raise invalid("option completion_delay_ms must be >= 0")
        _products(self.products)
        _price(self.default_price, "default_price")


def _price(value: Any, what: str) -> Decimal:
    try:
        price = Decimal(str(value))
    except ArithmeticError as exc:
        raise invalid(f"{what} must be a decimal, got {value!r}") from exc
    if not price.is_finite() or price <= 0 or price != price.quantize(Decimal("0.0001")):
        raise invalid(f"{what} must be a positive amount with at most 4 places, got {value!r}")
    return price


def _products(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise invalid("option products must be a struct {product_id: {unit, price}}")
    clean = {}
    for product_id, spec in value.items():
        if not str(product_id).isdigit() or not isinstance(spec, dict) or set(spec) - {"unit", "price"}:
            raise invalid(f"option products: bad entry {product_id!r}: {spec!r}")
        unit = spec.get("unit", "Money")
        if unit not in UNITS:
            raise invalid(f"option products: unit of {product_id} must be one of {', '.join(UNITS)}")
        clean[str(int(product_id))] = {"unit": unit, "price": str(_price(spec.get("price", "1"), "price"))}
    return clean
