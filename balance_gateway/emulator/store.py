"""The emulator's storage: the records, id counters, Tids, the notification outbox, delayed work, the state file's
JSON, and lookups. The operations live in mixins (clients.py, orders.py, requests.py, overdraft.py, control.py)
over this and accounting.py; `state.EmulatorState` puts them together.

Conventions where the protocol is silent:
- Ids are small ints from counters: clients 100000+, persons 200000+, requests 300000+, contracts 400000+,
  invoices 500000+, Balance's own order ids 600000+. ServiceOrderID is billing's, any positive integer, kept as
  its canonical digit string.
- "No agency" is AgencyID 0, "no group" GroupServiceOrderID "" (absent, "", 0, "0" and -1 all mean "none").
- Tid is one global counter, at least the current time in microseconds (16 digits, so it grows across restarts
  and `Emulator.Reset`), bumped whenever a notification is due; sent as a digit string.
- Delayed work (asynchronous completions, group-join money moves) is kept in `pending` with a due time on the
  monotonic clock; the server's ticker calls `run_due`.
"""

from __future__ import annotations

import datetime
import threading
import time
import zoneinfo
from typing import Any

from balance_gateway.emulator.options import EmulatorOptions
from balance_gateway.emulator.records import (
    FIRST_IDS,
    Client,
    Contract,
    Invoice,
    Order,
    OrderKey,
    Person,
    Request,
)
from balance_gateway.emulator.values import BalanceError, not_found, parse_id


class Store:
    """Everything Balance knows, in memory. Callers hold `lock` around every call (the server does).

    Operations validate before they change anything, so a fault leaves the state untouched; notifications
    produced by an operation are appended to `outbox` as (method, payload) for the caller to hand to the notifier.
    """

    def __init__(self, options: EmulatorOptions | None = None) -> None:
        self.lock = threading.RLock()
        self.base_url = ""
        self.options = options or EmulatorOptions()
        self._last_tid = 0
        self.outbox: list[tuple[str, dict]] = []
        self.reset()

    def reset(self) -> None:
        self.clients: dict[int, Client] = {}
        self.persons: dict[int, Person] = {}
        self.contracts: dict[int, Contract] = {}
        self.orders: dict[OrderKey, Order] = {}
        self.requests: dict[int, Request] = {}
        self.invoices: dict[int, Invoice] = {}
        self.user_links: dict[int, int] = {}  # user uid -> client id
        self.unknown_users: set[int] = set()  # uids Passport does not know (Emulator.ForgetUser)
        self.logins: dict[str, int] = {}  # Passport login -> uid (Emulator.SetLogin)
        self.next_ids = dict(FIRST_IDS)
        self.order_seq = 0
        self.outbox = []
        self.pending: list[tuple[float, str, dict]] = []  # (due on time.monotonic(), kind, payload)

    # ------------------------------------------------------------------------------------------------ plumbing
    def take_outbox(self) -> list[tuple[str, dict]]:
        out, self.outbox = self.outbox, []
        return out

    def next_tid(self) -> int:
        self._last_tid = max(self._last_tid + 1, time.time_ns() // 1000)
        return self._last_tid

    def next_id(self, kind: str) -> int:
        value = self.next_ids[kind]
        self.next_ids[kind] = value + 1
        return value

    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.options.dt_zone)

    def today(self) -> datetime.date:
        """Balance's business date: today in its zone."""
        return datetime.datetime.now(self.zone()).date()

    def local_now(self) -> datetime.datetime:
        """Now in Balance's zone, naive (as an XML-RPC dateTime is)."""
        return datetime.datetime.now(self.zone()).replace(tzinfo=None)

    def schedule(self, kind: str, payload: dict) -> None:
        """Run `kind` later (after `completion_delay_ms`), or now when the delay is 0."""
        delay = self.options.completion_delay_ms / 1000
        if delay <= 0:
            self.run_task(kind, payload)
        else:
            self.pending.append((time.monotonic() + delay, kind, payload))

    def run_due(self, now: float | None = None) -> int:
        """Run the delayed work that is due (all of it with `now=inf`); returns how many ran."""
        now = time.monotonic() if now is None else now
        due = [item for item in self.pending if item[0] <= now]
        if not due:
            return 0
        self.pending = [item for item in self.pending if item[0] > now]
        for _, kind, payload in sorted(due, key=lambda item: item[0]):
            self.run_task(kind, payload)
        self.settle()
        return len(due)

    def run_task(self, kind: str, payload: dict) -> None:  # overridden by the mixins' dispatcher
        raise NotImplementedError(kind)

    def settle(self, *, notify: bool = True) -> Any:  # accounting.py
        raise NotImplementedError

    # -------------------------------------------------------------------------------------------- state file
    def to_json(self) -> dict:
        return {
            "version": 2,
            "last_tid": self._last_tid,
            "next_ids": self.next_ids,
            "order_seq": self.order_seq,
            "options": self.options.to_json(),  # for the reader only: the command line decides them at start
            "user_links": {str(uid): client_id for uid, client_id in self.user_links.items()},
            "unknown_users": sorted(self.unknown_users),
            "logins": self.logins,
            "clients": [c.to_json() for c in self.clients.values()],
            "persons": [p.to_json() for p in self.persons.values()],
            "contracts": [c.to_json() for c in self.contracts.values()],
            "orders": [o.to_json() for o in self.orders.values()],
            "requests": [r.to_json() for r in self.requests.values()],
            "invoices": [i.to_json() for i in self.invoices.values()],
            "pending": [[kind, payload] for _, kind, payload in self.pending],
        }

    def load_json(self, data: dict) -> None:
        """Load a state file (or a seed: the same shape, every section optional). A version-1 file (money in
        `consume_qty`, flat person fields, per-client overdraft) is upgraded on the way in."""
        if int(data.get("version", 2)) < 2:
            data = upgrade_v1(data, self.options.firm_id, self.options.default_service_id)
        self.reset()
        self._last_tid = max(self._last_tid, int(data.get("last_tid", 0)))
        self.next_ids.update(data.get("next_ids", {}))
        self.order_seq = int(data.get("order_seq", 0))
        self.user_links = {int(uid): int(client_id) for uid, client_id in data.get("user_links", {}).items()}
        self.unknown_users = {int(uid) for uid in data.get("unknown_users", [])}
        self.logins = {str(login): int(uid) for login, uid in data.get("logins", {}).items()}
        for kind, store in (("clients", self.clients), ("persons", self.persons), ("contracts", self.contracts),
                            ("requests", self.requests), ("invoices", self.invoices)):  # fmt: skip
            record_class = {"clients": Client, "persons": Person, "contracts": Contract, "requests": Request,
                            "invoices": Invoice}[kind]  # fmt: skip
            for item in data.get(kind, []):
                record = record_class.from_json(item)
                store[getattr(record, f"{kind[:-1]}_id")] = record
        for item in data.get("orders", []):
            order = Order.from_json({"order_id": 0, **item})
            if not order.order_id:
                order.order_id = self.next_id("order")
            self.orders[order.key] = order
            self.order_seq = max(self.order_seq, order.seq)
        for kind, payload in data.get("pending", []):
            self.pending.append((0.0, kind, payload))
        self.after_load()

    def after_load(self) -> None:
        """Recompute what follows from the loaded records (accounting.py: units from money)."""

    # ------------------------------------------------------------------------------------------------ lookups
    def client(self, value: Any, field_name: str = "client_id") -> Client:
        client_id = parse_id(value, field_name)
        client = self.clients.get(client_id)
        if client is None:
            raise BalanceError("CLIENT_NOT_FOUND", f"Client with ID {client_id} not found in DB")
        return client

    def order(self, service_id: int, service_order_id: str) -> Order:
        order = self.orders.get((service_id, service_order_id))
        if order is None:
            raise BalanceError("ORDER_NOT_FOUND", f"Order {service_id}-{service_order_id} not found")
        return order

    def children(self, order: Order) -> list[Order]:
        return sorted(
            (o for o in self.orders.values() if o.group_order_id and (o.service_id, o.group_order_id) == order.key),
            key=lambda o: o.seq,
        )

    def root(self, order: Order) -> Order:
        if order.group_order_id:
            return self.orders.get((order.service_id, order.group_order_id), order)
        return order

    def active_contracts(self, client_id: int, service_id: int, payment_type: int | None = None) -> list[Contract]:
        day = self.today()
        return [
            c
            for c in sorted(self.contracts.values(), key=lambda c: c.contract_id)
            if c.client_id == client_id
            and service_id in c.services
            and c.active_on(day)
            and (payment_type is None or c.payment_type == payment_type)
        ]

    def currency(self, client_id: int) -> str:
        client = self.clients.get(client_id)
        return client.currency if client else "RUB"

    def request(self, value: Any) -> Request:
        request = self.requests.get(parse_id(value, "RequestID"))
        if request is None:
            raise not_found(f"Request {value} not found")
        return request


PERSON_V1_FIELDS = ("name", "email", "phone", "inn", "kpp", "legaladdress", "lname", "fname", "mname")


def upgrade_v1(data: dict, firm_id: int, default_service_id: int) -> dict:
    """A version-1 state file in version-2 records (its money was in `consume_qty`, 1 unit = 1 rouble)."""
    clients = []
    for item in data.get("clients", []):
        client = {k: v for k, v in item.items() if not k.startswith("overdraft_") and k != "service_id"}
        if item.get("service_client_id"):
            client["service_client_id"] = f"{item.get('service_id', '')}:{item['service_client_id']}"
        if item.get("overdraft_granted"):
            service_id = item.get("service_id") or default_service_id
            client["overdrafts"] = {f"{firm_id}:{service_id}": {
                "service_id": service_id, "firm_id": firm_id, "limit": item.get("overdraft_limit", "0"),
                "term_days": item.get("overdraft_term_days", 15),
                "external_spent": item.get("overdraft_external", "0")}}  # fmt: skip
        clients.append(client)
    persons = [
        {"person_id": p["person_id"], "client_id": p["client_id"], "type": p["type"], "hidden": p.get("hidden", 0),
         "fields": {k: str(p[k]) for k in PERSON_V1_FIELDS if p.get(k)}}
        for p in data.get("persons", [])
    ]  # fmt: skip
    orders = [{**{k: v for k, v in o.items() if k != "last_completion_dt"},
               "consume_sum": o.get("consume_qty", "0")} for o in data.get("orders", [])]  # fmt: skip
    return {**data, "version": 2, "clients": clients, "persons": persons, "orders": orders, "requests": []}

