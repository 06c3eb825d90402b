"""The emulator's own state (never billing's tables) and every Balance operation on it.

Conventions (see docs/balance-protocol.md for the contract; these are the emulator's choices where it is silent):
- Ids are small ints from counters: clients 100000+, persons 200000+, requests 300000+, contracts 400000+.
  ServiceOrderID is billing's, any positive integer, kept and returned as its canonical digit string.
- "No agency" is `AgencyID = 0`; "no group" is `GroupServiceOrderID = ""` (XML-RPC has no null).
  On input, absent, None, "", 0 and "0" all mean "none" for both.
- Money is Decimal inside, a 2-place string outside. ConsumeSum always equals ConsumeQty (1 unit = 1 RUB).
- Tid is one global counter (at least the current time in microseconds, so it also grows across restarts and
  `Emulator.Reset`), bumped on every money change of an order and every overdraft change of a client, and sent
  as a digit string (GetOrdersInfo and notifications alike), as it does not fit XML-RPC's 32-bit int.
- Unified account: an order without GroupServiceOrderID is a root; with its children it forms one pot whose
  free money is sum(consume) - sum(completion) over the root and its children (children normally have no
  consume, which gives the protocol's `ConsumeQty - sum(children CompletionQty)`). A pot's overspend is covered
  by the client's overdraft when the root has no agency, or by the credit limit of the agency's first active
  postpaid contract for the service when it has one; the rest is unpaid completion (`UnpaidQty` on the root in
  `Emulator.State()`). Coverage is derived from the current totals (allocated to pots in order-creation order),
  so a payment onto the wallet repays the overdraft first, and a lowered limit turns debt into unpaid completion.
- Overdraft: per client, for all services (GetOverdraftParams validates ServiceID but does not filter by it).
  OverdraftSpent = the debt set by Emulator.SetOverdraftSpent + the overspend of the client's direct pots covered
  by the limit. MinPaymentTerm is set to today + payment_term_days when the debt appears and cleared when it is
  repaid; OverdraftBan is 1 while a debt is past its term (a negative payment_term_days makes it overdue at once).
  ClientLimit = OverdraftLimit. A limit of 0 keeps the overdraft (GetOverdraftParams answers it with limit 0).
- Credit limits: LIMIT_SPENT of a postpaid contract = the overspend of the agency's pots covered by it;
  GetClientCreditLimits validates product_id but does not filter by it (the emulator has no product catalogue).
- A contract is active on day d when IS_ACTIVE and DT <= d < FINISH_DT (no FINISH_DT: open-ended);
  GetClientContracts returns all the client's contracts with IS_ACTIVE computed for Dt (default today).
- Payments: a request is paid once (any later payment: INVALID_PARAM). The amount (default the request's sum;
  less or more is accepted) is split across the request's orders in proportion to their Qty, rounded down to
  cents, the remainder going to the first order.
- Struct arguments are strict: an unknown field is INVALID_PARAM (it catches typos such as "ClientId").
"""

from __future__ import annotations

import datetime
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

from balance_gateway.emulator.values import (
    CENT,
    ZERO,
    BalanceError,
    array,
    fmt_date,
    fmt_money,
    invalid,
    not_found,
    parse_date,
    parse_flag,
    parse_id,
    parse_int,
    parse_money,
    parse_optional_id,
    parse_optional_order_id,
    parse_order_id,
    parse_str,
    struct,
    today,
)

PREPAID, POSTPAID = 2, 3
DEFAULT_CURRENCY = "RUB"
FIRST_IDS = {"client": 100000, "person": 200000, "request": 300000, "contract": 400000}

OrderKey = tuple[int, str]


class _Record:
    """JSON round trip for the dataclasses below: Decimals as strings, dates as ISO strings."""

    DECIMALS: ClassVar[tuple[str, ...]] = ()
    DATES: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict:
        data = asdict(self)  # type: ignore[call-overload]
        for name in self.DECIMALS:
            data[name] = fmt_money(data[name])
        for name in self.DATES:
            data[name] = fmt_date(data[name]) or None
        return data

    @classmethod
    def from_json(cls, data: dict) -> Any:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        values = {key: value for key, value in data.items() if key in known}
        for name in cls.DECIMALS:
            if name in values:
                values[name] = Decimal(values[name])
        for name in cls.DATES:
            if values.get(name):
                values[name] = datetime.date.fromisoformat(values[name])
        return cls(**values)


@dataclass
class Client(_Record):
    DECIMALS = ("overdraft_limit", "overdraft_external", "overdraft_spent")
    DATES = ("overdraft_min_term",)

    client_id: int
    name: str
    email: str = ""
    phone: str = ""
    city: str = ""
    is_agency: int = 0
    agency_id: int = 0
    currency: str = DEFAULT_CURRENCY
    service_id: int = 0
    service_client_id: str = ""
    tid: int = 0
    overdraft_granted: bool = False
    overdraft_limit: Decimal = ZERO
    overdraft_term_days: int = 0
    overdraft_external: Decimal = ZERO  # debt set by Emulator.SetOverdraftSpent, not tied to any order
    overdraft_spent: Decimal = ZERO  # the last computed OverdraftSpent
    overdraft_min_term: datetime.date | None = None
    overdraft_signature: str = ""  # what the last NotifyClient2 said, to notify on change only


@dataclass
class Person(_Record):
    person_id: int
    client_id: int
    type: str
    name: str
    email: str = ""
    phone: str = ""
    inn: str = ""
    kpp: str = ""
    legaladdress: str = ""
    lname: str = ""
    fname: str = ""
    mname: str = ""
    hidden: int = 0


@dataclass
class Contract(_Record):
    DECIMALS = ("credit_limit",)
    DATES = ("dt", "finish_dt")

    contract_id: int
    client_id: int
    external_id: str
    payment_type: int
    credit_limit: Decimal
    services: list[int]
    dt: datetime.date
    finish_dt: datetime.date | None = None
    is_active: int = 1
    person_id: int = 0

    def active_on(self, day: datetime.date) -> bool:
        return bool(self.is_active) and self.dt <= day and (self.finish_dt is None or day < self.finish_dt)


@dataclass
class Order(_Record):
    DECIMALS = ("consume_qty", "completion_qty")
    DATES = ("last_completion_dt",)

    service_id: int
    service_order_id: str
    client_id: int
    product_id: int
    agency_id: int = 0
    group_order_id: str = ""
    text: str = ""
    consume_qty: Decimal = ZERO
    completion_qty: Decimal = ZERO
    tid: int = 0
    seq: int = 0
    stop: int = 0
    last_completion_dt: datetime.date | None = None

    @property
    def key(self) -> OrderKey:
        return (self.service_id, self.service_order_id)

    @property
    def payer_id(self) -> int:
        return self.agency_id or self.client_id


@dataclass
class Request(_Record):
    DECIMALS = ("paid_amount",)
    DATES = ("created", "paid_at")

    request_id: int
    client_id: int
    uid: int
    lines: list[list]  # [ServiceID, ServiceOrderID, Qty as a 2-place string]
    created: datetime.date
    return_path: str = ""
    status: str = "unpaid"
    paid_amount: Decimal = ZERO
    paid_at: datetime.date | None = None

    @property
    def total(self) -> Decimal:
        return sum((Decimal(line[2]) for line in self.lines), ZERO)


@dataclass
class Coverage:
    """One pot (a root order and its children): money in, money spent, and how the overspend is covered."""

    money: Decimal = ZERO
    spent: Decimal = ZERO
    covered: Decimal = ZERO  # by the client's overdraft or the agency's credit limit
    unpaid: Decimal = ZERO

    @property
    def free(self) -> Decimal:
        return self.money - self.spent


@dataclass
class _Settlement:
    pots: dict[OrderKey, Coverage] = field(default_factory=dict)
    client_spent: dict[int, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    contract_spent: dict[int, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))


class EmulatorState:
    """Everything Balance knows, in memory. Callers hold `lock` around every call (the server does).

    Operations validate before they change anything, so a fault leaves the state untouched; notifications
    produced by an operation are appended to `outbox` as (method, payload) for the caller to hand to the notifier.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.base_url = ""
        self._last_tid = 0
        self.outbox: list[tuple[str, dict]] = []
        self.reset()

    # ----------------------------------------------------------------------------------------------- plumbing
    def reset(self) -> None:
        self.clients: dict[int, Client] = {}
        self.persons: dict[int, Person] = {}
        self.contracts: dict[int, Contract] = {}
        self.orders: dict[OrderKey, Order] = {}
        self.requests: dict[int, Request] = {}
        self.user_links: dict[int, int] = {}  # user uid -> client id
        self.next_ids = dict(FIRST_IDS)
        self.order_seq = 0
        self.outbox = []

    def take_outbox(self) -> list[tuple[str, dict]]:
        out, self.outbox = self.outbox, []
        return out

    def next_tid(self) -> int:
        self._last_tid = max(self._last_tid + 1, time.time_ns() // 1000)
        return self._last_tid

    def _next_id(self, kind: str) -> int:
        value = self.next_ids[kind]
        self.next_ids[kind] = value + 1
        return value

    def to_json(self) -> dict:
        return {
            "version": 1,
            "last_tid": self._last_tid,
            "next_ids": self.next_ids,
            "order_seq": self.order_seq,
            "user_links": {str(uid): client_id for uid, client_id in self.user_links.items()},
            "clients": [c.to_json() for c in self.clients.values()],
            "persons": [p.to_json() for p in self.persons.values()],
            "contracts": [c.to_json() for c in self.contracts.values()],
            "orders": [o.to_json() for o in self.orders.values()],
            "requests": [r.to_json() for r in self.requests.values()],
        }

    def load_json(self, data: dict) -> None:
        self.reset()
        self._last_tid = max(self._last_tid, int(data.get("last_tid", 0)))
        self.next_ids.update(data.get("next_ids", {}))
        self.order_seq = int(data.get("order_seq", 0))
        self.user_links = {int(uid): int(client_id) for uid, client_id in data.get("user_links", {}).items()}
        for item in data.get("clients", []):
            client = Client.from_json(item)
            self.clients[client.client_id] = client
        for item in data.get("persons", []):
            person = Person.from_json(item)
            self.persons[person.person_id] = person
        for item in data.get("contracts", []):
            contract = Contract.from_json(item)
            self.contracts[contract.contract_id] = contract
        for item in data.get("orders", []):
            order = Order.from_json(item)
            self.orders[order.key] = order
        for item in data.get("requests", []):
            request = Request.from_json(item)
            self.requests[request.request_id] = request

    # ------------------------------------------------------------------------------------------------ lookups
    def _client(self, value: Any, field_name: str = "client_id") -> Client:
        client_id = parse_id(value, field_name)
        client = self.clients.get(client_id)
        if client is None:
            raise not_found(f"Client {client_id} not found")
        return client

    def _order(self, service_id: int, service_order_id: str) -> Order:
        order = self.orders.get((service_id, service_order_id))
        if order is None:
            raise not_found(f"Order {service_id}-{service_order_id} not found")
        return order

    def _children(self, order: Order) -> list[Order]:
        return [o for o in self.orders.values() if o.group_order_id and (o.service_id, o.group_order_id) == order.key]

    def _root(self, order: Order) -> Order:
        if order.group_order_id:
            return self.orders.get((order.service_id, order.group_order_id), order)
        return order

    def _active_contracts(self, agency_id: int, service_id: int, payment_type: int | None = None) -> list[Contract]:
        day = today()
        return [
            c
            for c in sorted(self.contracts.values(), key=lambda c: c.contract_id)
            if c.client_id == agency_id
            and service_id in c.services
            and c.active_on(day)
            and (payment_type is None or c.payment_type == payment_type)
        ]

    def _currency(self, client_id: int) -> str:
        client = self.clients.get(client_id)
        return client.currency if client else DEFAULT_CURRENCY

    # ------------------------------------------------------------------------------------------- structs out
    def client_struct(self, client: Client) -> dict:
        return {
            "CLIENT_ID": client.client_id,
            "NAME": client.name,
            "EMAIL": client.email,
            "PHONE": client.phone,
            "IS_AGENCY": client.is_agency,
            "AGENCY_ID": client.agency_id,
            "CITY": client.city,
            "CURRENCY": client.currency,
            "SERVICE_ID": client.service_id,
            "SERVICE_CLIENT_ID": client.service_client_id,
        }

    def person_struct(self, person: Person) -> dict:
        data = {
            "ID": person.person_id,
            "CLIENT_ID": person.client_id,
            "TYPE": person.type,
            "NAME": person.name,
            "HIDDEN": person.hidden,
            "EMAIL": person.email,
            "PHONE": person.phone,
        }
        if person.type == "ur":
            data.update(INN=person.inn, KPP=person.kpp, LEGALADDRESS=person.legaladdress)
        else:
            data.update(LNAME=person.lname, FNAME=person.fname, MNAME=person.mname)
            if person.inn:
                data["INN"] = person.inn
        return data

    def contract_struct(self, contract: Contract, day: datetime.date | None = None) -> dict:
        return {
            "ID": contract.contract_id,
            "CLIENT_ID": contract.client_id,
            "EXTERNAL_ID": contract.external_id,
            "IS_ACTIVE": int(contract.active_on(day or today())),
            "DT": fmt_date(contract.dt),
            "FINISH_DT": fmt_date(contract.finish_dt),
            "PAYMENT_TYPE": contract.payment_type,
            "CREDIT_LIMIT": fmt_money(contract.credit_limit),
            "PERSON_ID": contract.person_id,
            "SERVICES": list(contract.services),
        }

    def order_struct(self, order: Order) -> dict:
        return {
            "ServiceID": order.service_id,
            "ServiceOrderID": order.service_order_id,
            "ClientID": order.client_id,
            "AgencyID": order.agency_id,
            "ProductID": order.product_id,
            "GroupServiceOrderID": order.group_order_id,
            "ConsumeQty": fmt_money(order.consume_qty),
            "ConsumeSum": fmt_money(order.consume_qty),
            "CompletionQty": fmt_money(order.completion_qty),
            "Tid": str(order.tid),
        }

    def request_struct(self, request: Request) -> dict:
        return {
            "RequestID": request.request_id,
            "ClientID": request.client_id,
            "Status": request.status,
            "Sum": fmt_money(request.total),
            "PaidAmount": fmt_money(request.paid_amount),
            "ReturnPath": request.return_path,
            "UserPath": self.user_path(request.request_id),
            "Orders": [{"ServiceID": sid, "ServiceOrderID": soid, "Qty": qty} for sid, soid, qty in request.lines],
        }

    def user_path(self, request_id: int) -> str:
        return f"{self.base_url}/paystep/{request_id}"

    # -------------------------------------------------------------------------------------- notifications
    def _touch_order(self, order: Order, *, notify: bool = True) -> None:
        """A money change: a new Tid, and a NotifyOrder2 carrying the order's totals as of now."""
        order.tid = self.next_tid()
        if notify:
            self.outbox.append(
                (
                    "BalanceClient.NotifyOrder2",
                    {
                        "ServiceID": order.service_id,
                        "ServiceOrderID": order.service_order_id,
                        "ConsumeQty": fmt_money(order.consume_qty),
                        "ConsumeSum": fmt_money(order.consume_qty),
                        "CompletionQty": fmt_money(order.completion_qty),
                        "ConsumeCurrency": self._currency(order.payer_id),
                        "Tid": str(order.tid),
                        "Signal": 1,
                        "SignalDescription": "Order balance have been changed",
                    },
                )
            )

    def _overdraft_ban(self, client: Client) -> int:
        term = client.overdraft_min_term
        return int(client.overdraft_spent > 0 and term is not None and term < today())

    def _settle(self, *, notify: bool = True, force_clients: tuple[int, ...] = ()) -> _Settlement:
        """Recompute coverage; refresh each overdraft and send NotifyClient2 where it changed."""
        settlement = self._coverage()
        for client in self.clients.values():
            if not client.overdraft_granted:
                continue
            spent = client.overdraft_external + settlement.client_spent[client.client_id]
            if spent > 0 and (client.overdraft_spent <= 0 or client.overdraft_min_term is None):
                client.overdraft_min_term = today() + datetime.timedelta(days=client.overdraft_term_days)
            elif spent <= 0:
                client.overdraft_min_term = None
            client.overdraft_spent = spent
            signature = "|".join(
                (fmt_money(client.overdraft_limit), fmt_money(spent), fmt_date(client.overdraft_min_term))
            )
            if signature == client.overdraft_signature and client.client_id not in force_clients:
                continue
            client.overdraft_signature = signature
            client.tid = self.next_tid()
            if notify:
                self.outbox.append(("BalanceClient.NotifyClient2", self._client_notification(client)))
        return settlement

    def _client_notification(self, client: Client) -> dict:
        return {
            "ClientID": client.client_id,
            "OverdraftLimit": fmt_money(client.overdraft_limit),
            "OverdraftSpent": fmt_money(client.overdraft_spent),
            "MinPaymentTerm": fmt_date(client.overdraft_min_term) or "0000-00-00",
            "OverdraftBan": self._overdraft_ban(client),
            "ClientCurrency": client.currency,
            "Tid": str(client.tid),
        }

    def _coverage(self) -> _Settlement:
        result = _Settlement()
        children: dict[OrderKey, list[Order]] = defaultdict(list)
        for order in self.orders.values():
            if order.group_order_id:
                children[(order.service_id, order.group_order_id)].append(order)
        client_room = {
            c.client_id: max(ZERO, c.overdraft_limit - c.overdraft_external)
            for c in self.clients.values()
            if c.overdraft_granted
        }
        roots = sorted(
            (o for o in self.orders.values() if not o.group_order_id or o.key not in self.orders),
            key=lambda o: o.seq,
        )
        for root in roots:
            members = [root, *children.get(root.key, [])]
            pot = Coverage(
                money=sum((o.consume_qty for o in members), ZERO),
                spent=sum((o.completion_qty for o in members), ZERO),
            )
            excess = max(ZERO, pot.spent - pot.money)
            if excess > 0:
                if root.agency_id == 0:
                    if root.client_id in client_room:
                        used = result.client_spent[root.client_id]
                        pot.covered = min(excess, max(ZERO, client_room[root.client_id] - used))
                        result.client_spent[root.client_id] = used + pot.covered
                else:
                    contracts = self._active_contracts(root.agency_id, root.service_id, POSTPAID)
                    if contracts:
                        contract = contracts[0]
                        used = result.contract_spent[contract.contract_id]
                        pot.covered = min(excess, max(ZERO, contract.credit_limit - used))
                        result.contract_spent[contract.contract_id] = used + pot.covered
            pot.unpaid = excess - pot.covered
            result.pots[root.key] = pot
        return result

    # =========================================================================================== Balance2.*
    def create_client(self, uid: Any, params: Any) -> list:
        parse_int(uid, "uid", minimum=1)
        p = struct(
            params,
            "CreateClient params",
            optional=(
                "CLIENT_ID", "NAME", "EMAIL", "PHONE", "CITY", "IS_AGENCY", "AGENCY_ID", "CURRENCY",
                "SERVICE_ID", "SERVICE_CLIENT_ID",
            ),
        )  # fmt: skip
        client_id = parse_optional_id(p.get("CLIENT_ID"), "CLIENT_ID")
        texts = {key: parse_str(p[key], key, max_len=255) for key in ("NAME", "EMAIL", "PHONE", "CITY") if key in p}
        is_agency = parse_flag(p["IS_AGENCY"], "IS_AGENCY") if "IS_AGENCY" in p else None
        currency = None
        if "CURRENCY" in p:
            currency = parse_str(p["CURRENCY"], "CURRENCY").upper() or DEFAULT_CURRENCY
            if len(currency) != 3 or not currency.isalpha():
                raise invalid(f"CURRENCY must be a 3-letter code, got {p['CURRENCY']!r}")
        service_id = parse_optional_id(p.get("SERVICE_ID"), "SERVICE_ID") if "SERVICE_ID" in p else None
        service_client_id = None
        if "SERVICE_CLIENT_ID" in p:
            raw = p["SERVICE_CLIENT_ID"]
            if isinstance(raw, bool) or not isinstance(raw, int | str):
                raise invalid(f"SERVICE_CLIENT_ID must be a string or an integer, got {raw!r}")
            service_client_id = parse_str(str(raw), "SERVICE_CLIENT_ID", max_len=255)
        agency_id = parse_optional_id(p.get("AGENCY_ID"), "AGENCY_ID") if "AGENCY_ID" in p else None

        if client_id:
            client = self.clients.get(client_id)
            if client is None:
                raise not_found(f"Client {client_id} not found")
            if is_agency is not None and is_agency != client.is_agency:
                raise invalid(f"IS_AGENCY cannot change after creation (client {client_id} has {client.is_agency})")
            if texts.get("NAME") == "":
                raise invalid("NAME cannot be cleared")
            new_service_id = client.service_id if service_id is None else service_id
            new_scid = client.service_client_id if service_client_id is None else service_client_id
            if new_scid:
                if not new_service_id:
                    raise invalid("SERVICE_CLIENT_ID needs a SERVICE_ID")
                other = self._by_service_key(new_service_id, new_scid)
                if other is not None and other.client_id != client_id:
                    raise invalid(f"SERVICE_CLIENT_ID {new_scid} already belongs to client {other.client_id}")
            if agency_id:
                self._check_agency_link(agency_id, client.is_agency)
            for key, value in texts.items():
                setattr(client, key.lower(), value)
            if currency is not None:
                client.currency = currency
            if agency_id is not None:
                client.agency_id = agency_id
            client.service_id, client.service_client_id = new_service_id, new_scid
            return [0, "SUCCESS", client_id]

        missing = [key for key in ("NAME", "IS_AGENCY", "SERVICE_ID") if key not in p]
        if missing:
            raise invalid(f"CreateClient params: missing field(s) {', '.join(missing)}")
        if not texts["NAME"]:
            raise invalid("NAME must not be empty")
        if not service_id:
            raise invalid("SERVICE_ID must be a positive id")
        if service_client_id:
            existing = self._by_service_key(service_id, service_client_id)
            if existing is not None:
                return [0, "SUCCESS", existing.client_id]
        if agency_id:
            self._check_agency_link(agency_id, is_agency or 0)
        client = Client(
            client_id=self._next_id("client"),
            name=texts["NAME"],
            email=texts.get("EMAIL", ""),
            phone=texts.get("PHONE", ""),
            city=texts.get("CITY", ""),
            is_agency=is_agency or 0,
            agency_id=agency_id or 0,
            currency=currency or DEFAULT_CURRENCY,
            service_id=service_id,
            service_client_id=service_client_id or "",
            tid=self.next_tid(),
        )
        self.clients[client.client_id] = client
        return [0, "SUCCESS", client.client_id]

    def _by_service_key(self, service_id: int, service_client_id: str) -> Client | None:
        for client in self.clients.values():
            if client.service_id == service_id and client.service_client_id == service_client_id:
                return client
        return None

    def _check_agency_link(self, agency_id: int, is_agency: int) -> None:
        if is_agency:
            raise invalid("an agency cannot have an AGENCY_ID")
        agency = self.clients.get(agency_id)
        if agency is None:
            raise not_found(f"Agency {agency_id} not found")
        if not agency.is_agency:
            raise invalid(f"Client {agency_id} is not an agency")

    def create_person(self, uid: Any, params: Any) -> int:
        parse_int(uid, "uid", minimum=1)
        p = struct(
            params,
            "CreatePerson params",
            required=("client_id", "type"),
            optional=("person_id", "name", "email", "phone", "inn", "kpp", "legaladdress", "lname", "fname", "mname"),
        )
        person_type = p["type"]
        if person_type not in ("ur", "ph"):
            raise BalanceError("INVALID_PERSON_TYPE", f"Invalid person type {person_type!r} (ur or ph)")
        texts = {}
        for key in ("name", "email", "phone", "legaladdress", "lname", "fname", "mname"):
            if key in p:
                texts[key] = parse_str(p[key], key, max_len=500)
        for key, sizes in (("inn", (10, 12)), ("kpp", (9,))):
            if key in p:
                raw = p[key]
                value = str(raw).strip() if isinstance(raw, int | str) and not isinstance(raw, bool) else None
                if value is None or (value and (not value.isdigit() or len(value) not in sizes)):
                    raise invalid(f"{key} must be {' or '.join(map(str, sizes))} digits, got {raw!r}")
                texts[key] = value
        client = self._client(p["client_id"])
        person_id = parse_optional_id(p.get("person_id"), "person_id")
        if person_id:
            person = self.persons.get(person_id)
            if person is None:
                raise not_found(f"Person {person_id} not found")
            if person.client_id != client.client_id:
                raise BalanceError(
                    "PERMISSION_DENIED", f"Person {person_id} does not belong to client {client.client_id}"
                )
            if person.type != person_type:
                raise invalid(f"Person {person_id} is of type {person.type}; the type cannot change")
            self._check_person(person_type, {**asdict(person), **texts})
            for key, value in texts.items():
                setattr(person, key, value)
            return person_id
        missing = [key for key in ("name", "email", "phone") if key not in p]
        if missing:
            raise invalid(f"CreatePerson params: missing field(s) {', '.join(missing)}")
        self._check_person(person_type, texts)
        person = Person(person_id=self._next_id("person"), client_id=client.client_id, type=person_type, **texts)
        self.persons[person.person_id] = person
        return person.person_id

    @staticmethod
    def _check_person(person_type: str, values: dict) -> None:
        if not values.get("name"):
            raise invalid("name must not be empty")
        if person_type == "ur":
            if not values.get("inn"):
                raise invalid("a ur person needs inn (10 or 12 digits)")
            if not values.get("legaladdress"):
                raise invalid("a ur person needs legaladdress")
        elif not values.get("lname") or not values.get("fname"):
            raise invalid("a ph person needs lname and fname")

    def create_user_client_association(self, uid: Any, client_id: Any, user_uid: Any) -> list:
        parse_int(uid, "uid", minimum=1)
        client = self._client(client_id)
        user = parse_int(user_uid, "user_uid", minimum=1)
        linked = self.user_links.get(user)
        if linked is not None:
            return [4006, f"User {user} is already linked to client {linked}"]
        self.user_links[user] = client.client_id
        return [0, "SUCCESS"]

    def find_client(self, params: Any) -> list:
        p = struct(params, "FindClient params", optional=("ClientID", "ServiceID", "ServiceClientID", "Name", "Email"))
        p = {key: value for key, value in p.items() if value != ""}
        if not p:
            raise invalid(
                "FindClient needs at least one criterion (ClientID, ServiceID + ServiceClientID, Name, Email)"
            )
        if ("ServiceID" in p) != ("ServiceClientID" in p):
            raise invalid("ServiceID and ServiceClientID go together")
        matches = list(self.clients.values())
        if "ClientID" in p:
            client_id = parse_id(p["ClientID"], "ClientID")
            matches = [c for c in matches if c.client_id == client_id]
        if "ServiceID" in p:
            service_id = parse_id(p["ServiceID"], "ServiceID")
            scid = str(p["ServiceClientID"]).strip()
            matches = [c for c in matches if c.service_id == service_id and c.service_client_id == scid]
        for key in ("Name", "Email"):
            if key in p:
                wanted = parse_str(p[key], key).casefold()
                matches = [c for c in matches if getattr(c, key.lower()).casefold() == wanted]
        return [0, "", [self.client_struct(c) for c in sorted(matches, key=lambda c: c.client_id)]]

    def get_client_by_id_batch(self, client_ids: Any) -> list:
        ids = [parse_id(value, "client_id") for value in array(client_ids, "client ids", allow_empty=True)]
        return [self.client_struct(self.clients[i]) for i in ids if i in self.clients]

    def get_client_persons(self, client_id: Any) -> list:
        client = self._client(client_id)
        persons = [p for p in self.persons.values() if p.client_id == client.client_id]
        return [self.person_struct(p) for p in sorted(persons, key=lambda p: p.person_id)]

    def get_client_contracts(self, params: Any) -> list:
        p = struct(params, "GetClientContracts params", required=("ClientID",), optional=("Dt",))
        client = self._client(p["ClientID"], "ClientID")
        day = parse_date(p["Dt"], "Dt") if p.get("Dt") else today()
        contracts = [c for c in self.contracts.values() if c.client_id == client.client_id]
        return [self.contract_struct(c, day) for c in sorted(contracts, key=lambda c: c.contract_id)]

    def create_or_update_orders_batch(self, uid: Any, orders: Any) -> list:
        parse_int(uid, "uid", minimum=1)
        results = []
        for item in array(orders, "orders"):
            try:
                self._upsert_order(item)
            except BalanceError as error:
                results.append([-1, error.msg])
            else:
                results.append([0, "Success"])
        self._settle()
        return results

    def _upsert_order(self, item: Any) -> None:
        p = struct(
            item,
            "order",
            required=("ServiceID", "ServiceOrderID", "ProductID", "ClientID"),
            optional=("AgencyID", "GroupServiceOrderID", "Text"),
        )
        service_id = parse_id(p["ServiceID"], "ServiceID")
        service_order_id = parse_order_id(p["ServiceOrderID"])
        product_id = parse_id(p["ProductID"], "ProductID")
        client_id = parse_id(p["ClientID"], "ClientID")
        agency_id = parse_optional_id(p.get("AgencyID"), "AgencyID")
        group_id = parse_optional_order_id(p.get("GroupServiceOrderID"), "GroupServiceOrderID")
        text = parse_str(p["Text"], "Text") if "Text" in p else None
        if client_id not in self.clients:
            raise not_found(f"Client {client_id} not found")
        if agency_id:
            agency = self.clients.get(agency_id)
            if agency is None:
                raise not_found(f"Agency {agency_id} not found")
            if not agency.is_agency:
                raise invalid(f"Client {agency_id} is not an agency")
            if not self._active_contracts(agency_id, service_id):
                raise BalanceError(
                    "CONTRACT_RULE_VIOLATION", f"Agency {agency_id} has no active contract for service {service_id}"
                )
        existing = self.orders.get((service_id, service_order_id))
        children = self._children(existing) if existing else []
        if group_id:
            if group_id == service_order_id:
                raise invalid("an order cannot be its own group order")
            parent = self.orders.get((service_id, group_id))
            if parent is None:
                raise not_found(f"Group order {service_id}-{group_id} not found")
            if parent.group_order_id:
                raise invalid(f"Group order {service_id}-{group_id} is itself in a group")
            if parent.client_id != client_id or parent.agency_id != agency_id:
                raise invalid(
                    f"Group order {service_id}-{group_id} has client {parent.client_id} and agency "
                    f"{parent.agency_id}, not {client_id} and {agency_id}"
                )
            if children:
                raise invalid(f"Order {service_id}-{service_order_id} has child orders and cannot join a group")
        if existing:
            changed = (existing.client_id, existing.agency_id, existing.product_id) != (
                client_id,
                agency_id,
                product_id,
            )
            if changed and existing.consume_qty > 0:
                raise BalanceError(
                    "CONTRACT_RULE_VIOLATION",
                    "ClientID, AgencyID and ProductID cannot change once the order has consume",
                )
            if children and (existing.client_id, existing.agency_id) != (client_id, agency_id):
                raise invalid("ClientID and AgencyID cannot change on an order with child orders")
            existing.client_id, existing.agency_id, existing.product_id = client_id, agency_id, product_id
            existing.group_order_id = group_id
            if text is not None:
                existing.text = text
            return
        self.order_seq += 1
        order = Order(
            service_id=service_id,
            service_order_id=service_order_id,
            client_id=client_id,
            product_id=product_id,
            agency_id=agency_id,
            group_order_id=group_id,
            text=text or "",
            tid=self.next_tid(),
            seq=self.order_seq,
        )
        self.orders[order.key] = order

    def get_orders_info(self, items: Any) -> list:
        result = []
        for item in array(items, "orders", allow_empty=True):
            p = struct(item, "order", required=("ServiceID", "ServiceOrderID"))
            order = self.orders.get((parse_id(p["ServiceID"], "ServiceID"), parse_order_id(p["ServiceOrderID"])))
            if order is not None:
                result.append(self.order_struct(order))
        return result

    def create_request2(self, uid: Any, client_id: Any, lines: Any, params: Any = None) -> dict:
        user = parse_int(uid, "uid", minimum=1)
        payer = self._client(client_id)
        p = struct(params if params is not None else {}, "CreateRequest2 params", optional=("ReturnPath",))
        return_path = parse_str(p.get("ReturnPath", ""), "ReturnPath", max_len=2000)
        if return_path and (
            not return_path.startswith(("http://", "https://")) or any(ch.isspace() for ch in return_path)
        ):
            raise invalid(f"ReturnPath must be an http(s) URL, got {return_path!r}")
        parsed = []
        for item in array(lines, "request orders"):
            q = struct(item, "request order", required=("ServiceID", "ServiceOrderID", "Qty"))
            key = (parse_id(q["ServiceID"], "ServiceID"), parse_order_id(q["ServiceOrderID"]))
            parsed.append((key, parse_money(q["Qty"], "Qty", positive=True)))
        if len({key for key, _ in parsed}) != len(parsed):
            raise invalid("an order appears twice in the request")
        for key, _ in parsed:
            order = self._order(*key)
            if order.payer_id != payer.client_id:
                raise BalanceError(
                    "PERMISSION_DENIED",
                    f"Client {payer.client_id} is not the payer of order {key[0]}-{key[1]} (payer {order.payer_id})",
                )
        request = Request(
            request_id=self._next_id("request"),
            client_id=payer.client_id,
            uid=user,
            lines=[[sid, soid, fmt_money(qty)] for (sid, soid), qty in parsed],
            created=today(),
            return_path=return_path,
        )
        self.requests[request.request_id] = request
        user_path = self.user_path(request.request_id)
        return {"RequestID": request.request_id, "UserPath": user_path, "AdminPath": f"{user_path}?admin=1"}

    def update_campaigns(self, items: Any) -> list:
        results = []
        for item in array(items, "campaigns"):
            try:
                p = struct(item, "campaign", required=("ServiceID", "ServiceOrderID", "dt", "Money", "stop"))
                key = (parse_id(p["ServiceID"], "ServiceID"), parse_order_id(p["ServiceOrderID"]))
                day = parse_date(p["dt"], "dt")
                money = parse_money(p["Money"], "Money")
                stop = parse_flag(p["stop"], "stop")
            except BalanceError:
                results.append(0)
                continue
            order = self.orders.get(key)
            if order is None:
                results.append(0)
                continue
            order.stop, order.last_completion_dt = stop, day
            if money != order.completion_qty:
                order.completion_qty = money
                self._touch_order(order)
            results.append(1)
        self._settle()
        return results

    def create_transfer_multiple(self, uid: Any, sources: Any, destinations: Any) -> list:
        parse_int(uid, "uid", minimum=1)
        moves: list[tuple[OrderKey, Decimal | None, Decimal]] = []  # (order, QtyOld of a source, signed delta)
        for item in array(sources, "transfer sources"):
            p = struct(item, "transfer source", required=("ServiceID", "ServiceOrderID", "QtyOld", "QtyNew"))
            key = (parse_id(p["ServiceID"], "ServiceID"), parse_order_id(p["ServiceOrderID"]))
            qty_old, qty_new = parse_money(p["QtyOld"], "QtyOld"), parse_money(p["QtyNew"], "QtyNew")
            if qty_new >= qty_old:
                raise invalid(f"QtyNew must be below QtyOld on source {key[0]}-{key[1]}")
            moves.append((key, qty_old, qty_new - qty_old))
        for item in array(destinations, "transfer destinations"):
            p = struct(item, "transfer destination", required=("ServiceID", "ServiceOrderID", "QtyDelta"))
            key = (parse_id(p["ServiceID"], "ServiceID"), parse_order_id(p["ServiceOrderID"]))
            moves.append((key, None, parse_money(p["QtyDelta"], "QtyDelta", positive=True)))
        if len({key for key, _, _ in moves}) != len(moves):
            raise invalid("an order appears twice in the transfer")
        if sum((delta for _, _, delta in moves), ZERO) != 0:
            raise invalid("the sources' decrease must equal the destinations' total QtyDelta")
        orders = [(self._order(*key), qty_old, delta) for key, qty_old, delta in moves]
        for order, qty_old, _ in orders:
            if qty_old is not None and qty_old != order.consume_qty:
                raise BalanceError(
                    "ORDERS_NOT_SYNCHRONIZED",
                    f"Order {order.service_id}-{order.service_order_id} has ConsumeQty "
                    f"{fmt_money(order.consume_qty)}, not {fmt_money(qty_old)}",
                )
        first = orders[0][0]
        for order, _, _ in orders:
            if (order.client_id, order.payer_id) != (first.client_id, first.payer_id):
                raise BalanceError(
                    "CONTRACT_RULE_VIOLATION", "a transfer moves money between orders of one client and payer only"
                )
        pots = self._coverage().pots
        outflow: dict[OrderKey, Decimal] = defaultdict(lambda: ZERO)
        for order, _, delta in orders:
            outflow[self._root(order).key] -= delta
        for root_key, amount in outflow.items():
            pot = pots.get(root_key)
            if amount > 0 and pot is not None and amount > pot.free:
                raise BalanceError(
                    "CONTRACT_RULE_VIOLATION",
                    f"not enough free money on order {root_key[0]}-{root_key[1]}: "
                    f"{fmt_money(max(ZERO, pot.free))} free, {fmt_money(amount)} asked",
                )
        for order, _, delta in orders:
            order.consume_qty += delta
            self._touch_order(order)
        self._settle()
        return [0, "SUCCESS"]

    def get_overdraft_params(self, service_id: Any, client_id: Any) -> dict:
        parse_id(service_id, "ServiceID")
        client = self._client(client_id, "ClientID")
        if not client.overdraft_granted:
            raise not_found(f"Client {client.client_id} has no overdraft")
        return {
            "ClientLimit": fmt_money(client.overdraft_limit),
            "OverdraftLimit": fmt_money(client.overdraft_limit),
            "OverdraftSpent": fmt_money(client.overdraft_spent),
            "MinPaymentTerm": fmt_date(client.overdraft_min_term) or "0000-00-00",
            "Currency": client.currency,
        }

    def get_client_credit_limits(self, client_id: Any, product_id: Any) -> dict:
        client = self._client(client_id)
        parse_id(product_id, "product_id")
        spent = self._coverage().contract_spent
        day = today()
        limits = [
            {
                "CONTRACT_ID": c.contract_id,
                "LIMIT_TOTAL": fmt_money(c.credit_limit),
                "LIMIT_SPENT": fmt_money(spent[c.contract_id]),
            }
            for c in sorted(self.contracts.values(), key=lambda c: c.contract_id)
            if c.client_id == client.client_id and c.payment_type == POSTPAID and c.active_on(day)
        ]
        return {"CURRENCY": client.currency, "LIMITS": limits}

    # =========================================================================================== Emulator.*
    def pay_request(self, request_id: Any, amount: Any = None) -> list:
        request = self.requests.get(parse_id(request_id, "request_id"))
        if request is None:
            raise not_found(f"Request {request_id} not found")
        if request.status == "paid":
            raise invalid(f"Request {request.request_id} is already paid")
        total = request.total
        paid = total if amount is None or amount == "" else parse_money(amount, "amount", positive=True)
        parts = [(paid * Decimal(qty) / total).quantize(CENT, rounding=ROUND_DOWN) for _, _, qty in request.lines[1:]]
        parts.insert(0, paid - sum(parts, ZERO))
        for (service_id, service_order_id, _), part in zip(request.lines, parts, strict=True):
            order = self.orders.get((service_id, service_order_id))
            if order is None or part <= 0:
                continue
            order.consume_qty += part
            self._touch_order(order)
        request.status, request.paid_amount, request.paid_at = "paid", paid, today()
        self._settle()
        return [0, "SUCCESS", fmt_money(paid)]

    def grant_overdraft(self, client_id: Any, limit: Any, payment_term_days: Any) -> list:
        client = self._client(client_id)
        amount = parse_money(limit, "limit")
        if isinstance(payment_term_days, bool) or not isinstance(payment_term_days, int | str):
            raise invalid("payment_term_days must be an integer")
        try:
            days = int(payment_term_days)
        except ValueError as exc:
            raise invalid(f"payment_term_days must be an integer, got {payment_term_days!r}") from exc
        if client.is_agency:
            raise BalanceError("CONTRACT_RULE_VIOLATION", f"Client {client.client_id} is an agency: no overdraft")
        client.overdraft_granted, client.overdraft_limit, client.overdraft_term_days = True, amount, days
        self._settle(force_clients=(client.client_id,))
        return [0, "SUCCESS"]

    def set_overdraft_spent(self, client_id: Any, amount: Any) -> list:
        client = self._client(client_id)
        value = parse_money(amount, "amount")
        if not client.overdraft_granted:
            raise not_found(f"Client {client.client_id} has no overdraft")
        client.overdraft_external = value
        self._settle()
        return [0, "SUCCESS"]

    def create_contract(self, agency_client_id: Any, options: Any) -> int:
        agency = self._client(agency_client_id, "agency_client_id")
        o = struct(
            options,
            "CreateContract options",
            required=("payment_type", "services"),
            optional=("credit_limit", "external_id", "dt", "finish_dt", "is_active", "person_id"),
        )
        payment_type = {"prepaid": PREPAID, "postpaid": POSTPAID, 2: PREPAID, 3: POSTPAID}.get(o["payment_type"])
        if payment_type is None:
            raise invalid(f"payment_type must be prepaid or postpaid, got {o['payment_type']!r}")
        if not agency.is_agency:
            raise BalanceError("CONTRACT_RULE_VIOLATION", f"Client {agency.client_id} is not an agency")
        services = sorted({parse_id(s, "services[]") for s in array(o["services"], "services")})
        contract_id = self._next_id("contract")
        person_id = parse_optional_id(o.get("person_id"), "person_id")
        if not person_id:
            own = sorted(p.person_id for p in self.persons.values() if p.client_id == agency.client_id)
            person_id = own[0] if own else 0
        contract = Contract(
            contract_id=contract_id,
            client_id=agency.client_id,
            external_id=parse_str(o.get("external_id", ""), "external_id") or f"EMU-{contract_id}",
            payment_type=payment_type,
            credit_limit=parse_money(o.get("credit_limit", "0"), "credit_limit"),
            services=services,
            dt=parse_date(o["dt"], "dt") if o.get("dt") else today(),
            finish_dt=parse_date(o["finish_dt"], "finish_dt") if o.get("finish_dt") else None,
            is_active=parse_flag(o.get("is_active", 1), "is_active"),
            person_id=person_id,
        )
        self.contracts[contract_id] = contract
        self._settle()
        return contract_id

    def update_order(self, service_id: Any, service_order_id: Any, changes: Any) -> dict:
        """Change an order behind billing's back: no notification (the Tid still moves on a money change)."""
        order = self._order(parse_id(service_id, "ServiceID"), parse_order_id(service_order_id))
        c = struct(
            changes,
            "UpdateOrder changes",
            optional=("AgencyID", "ClientID", "ConsumeQty", "CompletionQty", "ProductID", "GroupServiceOrderID"),
        )
        if "ClientID" in c:
            client_id = self._client(c["ClientID"], "ClientID").client_id
        else:
            client_id = order.client_id
        agency_id = parse_optional_id(c.get("AgencyID"), "AgencyID") if "AgencyID" in c else order.agency_id
        if agency_id and not getattr(self.clients.get(agency_id), "is_agency", 0):
            raise invalid(f"Client {agency_id} is not an agency")
        consume = parse_money(c["ConsumeQty"], "ConsumeQty") if "ConsumeQty" in c else order.consume_qty
        completion = parse_money(c["CompletionQty"], "CompletionQty") if "CompletionQty" in c else None
        group_id = order.group_order_id
        if "GroupServiceOrderID" in c:
            group_id = parse_optional_order_id(c["GroupServiceOrderID"], "GroupServiceOrderID")
            if group_id:  # behind billing's back, but still one level deep (no cycles)
                parent = self._order(order.service_id, group_id)
                if parent is order or parent.group_order_id or self._children(order):
                    raise invalid("a group order must be another order without a group, of an order without children")
        product_id = parse_id(c["ProductID"], "ProductID") if "ProductID" in c else order.product_id
        order.group_order_id, order.product_id = group_id, product_id
        order.client_id, order.agency_id = client_id, agency_id
        money_changed = consume != order.consume_qty or (completion is not None and completion != order.completion_qty)
        order.consume_qty = consume
        if completion is not None:
            order.completion_qty = completion
        if money_changed:
            self._touch_order(order, notify=False)
        self._settle(notify=False)
        return self.order_struct(order)

    def snapshot(self) -> dict:
        settlement = self._coverage()
        wallets = {(o.service_id, o.group_order_id) for o in self.orders.values() if o.group_order_id}
        orders = []
        for order in sorted(self.orders.values(), key=lambda o: o.seq):
            data = self.order_struct(order)
            pot = settlement.pots.get(order.key)
            data.update(
                Text=order.text,
                Stop=order.stop,
                IsWallet=int(order.key in wallets),
                FreeQty=fmt_money(pot.free) if pot else "0.00",
                OverdraftQty=fmt_money(pot.covered) if pot else "0.00",
                UnpaidQty=fmt_money(pot.unpaid) if pot else "0.00",
            )
            orders.append(data)
        clients = []
        for client in sorted(self.clients.values(), key=lambda c: c.client_id):
            data = self.client_struct(client)
            data["Tid"] = str(client.tid)
            data["USER_UIDS"] = sorted(uid for uid, cid in self.user_links.items() if cid == client.client_id)
            if client.overdraft_granted:
                data.update(
                    OverdraftLimit=fmt_money(client.overdraft_limit),
                    OverdraftSpent=fmt_money(client.overdraft_spent),
                    MinPaymentTerm=fmt_date(client.overdraft_min_term) or "0000-00-00",
                    OverdraftBan=self._overdraft_ban(client),
                    PaymentTermDays=client.overdraft_term_days,
                )
            clients.append(data)
        return {
            "clients": clients,
            "persons": [self.person_struct(p) for p in sorted(self.persons.values(), key=lambda p: p.person_id)],
            "contracts": [
                self.contract_struct(c) for c in sorted(self.contracts.values(), key=lambda c: c.contract_id)
            ],
            "orders": orders,
            "requests": [self.request_struct(r) for r in sorted(self.requests.values(), key=lambda r: r.request_id)],
        }
