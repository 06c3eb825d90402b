"""Seeded, reproducible fault injection for `Balance2.*` calls and for notifications.

`Emulator.SetFaults({method or "*": {error_rate, timeout_rate, lost_response_rate, latency_ms},
"notify": {duplicate_rate, reorder, delay_ms, fail_rate}, "errors": [kinds], "seed": N})` replaces the whole
configuration (`{}` clears it); a "seed" key reseeds both generators. A method's own entry replaces "*" for that
method.

Each faulted call draws exactly one number from the calls' generator, so the same seed and the same sequence of
calls give the same sequence of outcomes: u < error_rate is an error, then timeout, then lost response, by
cumulative thresholds. Errors cycle through `errors` (default all three, in this order), the transient failures
the real Balance shows:
- "xml": a fault in Balance's XML shape with code INTERNAL_ERROR;
- "db": a fault that is not XML: `Error: DatabaseError\nDescription: ORA-03113: end-of-file on communication
  channel...`;
- "502": HTTP 502 Bad Gateway from the balancer in front of Balance.
Notifications use their own generator (drawn by the notifier's single thread), so concurrent calls and
notifications never disturb each other's sequence.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from balance_gateway.emulator.values import invalid

OK, TIMEOUT, LOST_RESPONSE = "ok", "timeout", "lost_response"
ERROR_XML, ERROR_DB, ERROR_502 = "xml", "db", "502"
ERROR_KINDS = (ERROR_XML, ERROR_DB, ERROR_502)


@dataclass(frozen=True)
class CallFaults:
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    lost_response_rate: float = 0.0
    latency_ms: float = 0.0


@dataclass(frozen=True)
class NotifyFaults:
    duplicate_rate: float = 0.0
    reorder: float = 0.0  # True = 1.0
    delay_ms: float = 0.0
    fail_rate: float = 0.0


@dataclass(frozen=True)
class Decision:
    outcome: str = OK
    latency: float = 0.0  # seconds


def _rate(value: Any, name: str) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or not 0 <= value <= 1:
        raise invalid(f"{name} must be a rate between 0 and 1, got {value!r}")
    return float(value)


def _millis(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 600_000:
        raise invalid(f"{name} must be milliseconds between 0 and 600000, got {value!r}")
    return float(value)


def _parse(spec: Any, kind: type, where: str) -> Any:
    if not isinstance(spec, dict):
        raise invalid(f"SetFaults: {where} must be a struct")
    known = {name for name in kind.__dataclass_fields__}
    unknown = set(spec) - known
    if unknown:
        raise invalid(f"SetFaults: unknown key(s) {', '.join(sorted(unknown))} in {where}")
    values = {}
    for name, value in spec.items():
        values[name] = _millis(value, f"{where}.{name}") if name.endswith("_ms") else _rate(value, f"{where}.{name}")
    if (
        kind is CallFaults
        and values.get("error_rate", 0) + values.get("timeout_rate", 0) + values.get("lost_response_rate", 0) > 1
    ):
        raise invalid(f"SetFaults: the rates of {where} add up to more than 1")
    return kind(**values)


class FaultPlan:
    """The current fault configuration and the calls' random generator. Thread-safe."""

    def __init__(self, seed: int, methods: set[str]) -> None:
        self._lock = threading.Lock()
        self._methods = methods  # full names, "Balance2.X"
        self.seed = seed
        self.calls: dict[str, CallFaults] = {}
        self.notify = NotifyFaults()
        self._rng = random.Random(seed)
        self.errors: tuple[str, ...] = ERROR_KINDS
        self._next_error = 0

    def reset(self, seed: int | None = None) -> None:
        with self._lock:
            self.calls, self.notify, self.errors = {}, NotifyFaults(), ERROR_KINDS
            self._reseed(self.seed if seed is None else seed)

    def _reseed(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._next_error = 0

    def configure(self, spec: Any) -> int | None:
        """Replace the configuration; returns the new seed if the spec carried one."""
        if not isinstance(spec, dict):
            raise invalid("SetFaults takes a struct")
        calls: dict[str, CallFaults] = {}
        notify = NotifyFaults()
        seed = None
        errors = ERROR_KINDS
        for key, value in spec.items():
            if key == "errors":
                if not isinstance(value, list | tuple) or not value or set(value) - set(ERROR_KINDS):
                    raise invalid(f"SetFaults: errors must be a non-empty list of {', '.join(ERROR_KINDS)}")
                errors = tuple(value)
            elif key == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise invalid(f"SetFaults: seed must be an integer, got {value!r}")
                seed = value
            elif key == "notify":
                notify = _parse(value, NotifyFaults, "notify")
            elif key == "*":
                calls["*"] = _parse(value, CallFaults, "*")
            else:
                name = key if key.startswith("Balance2.") else f"Balance2.{key}"
                if name not in self._methods:
                    raise invalid(f"SetFaults: unknown method {key!r} (faults apply to Balance2.* methods only)")
                calls[name] = _parse(value, CallFaults, key)
        with self._lock:
            self.calls, self.notify, self.errors = calls, notify, errors
            if seed is not None:
                self._reseed(seed)
        return seed

    def describe(self) -> dict:
        with self._lock:
            data: dict[str, Any] = {name: vars(faults).copy() for name, faults in self.calls.items()}
            data["notify"] = vars(self.notify).copy()
            data["seed"] = self.seed
            data["errors"] = list(self.errors)
            return data

    def decide(self, method: str) -> Decision:
        """The outcome of one call to `method`. Only Balance2.* methods are ever faulted."""
        if method not in self._methods:
            return Decision()
        with self._lock:
            faults = self.calls.get(method) or self.calls.get("*")
            if faults is None:
                return Decision()
            latency = faults.latency_ms / 1000
            if not (faults.error_rate or faults.timeout_rate or faults.lost_response_rate):
                return Decision(OK, latency)
            draw = self._rng.random()
            if draw < faults.error_rate:
                outcome = self.errors[self._next_error % len(self.errors)]
                self._next_error += 1
            elif draw < faults.error_rate + faults.timeout_rate:
                outcome = TIMEOUT
            elif draw < faults.error_rate + faults.timeout_rate + faults.lost_response_rate:
                outcome = LOST_RESPONSE
            else:
                outcome = OK
            return Decision(outcome, latency)
