"""What the emulated Balance stores: clients, persons, contracts, orders, requests and invoices.

Plain dataclasses with a JSON round trip (Decimals as strings, dates as ISO strings) for the state file.
Money is Decimal with 2 places; an order's quantities are Decimal with 6 places, in its product's units.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from typing import Any, ClassVar

from balance_gateway.emulator.values import ZERO

PREPAID, POSTPAID = 2, 3
DEFAULT_CURRENCY = "RUB"
FIRST_IDS = {"client": 100000, "person": 200000, "request": 300000, "contract": 400000, "invoice": 500000,
             "order": 600000}  # fmt: skip
PREPAYMENT, OVERDRAFT, CREDIT = "prepayment", "overdraft", "credit"

OrderKey = tuple[int, str]


class Record:
    """JSON round trip for the dataclasses below."""

    DECIMALS: ClassVar[tuple[str, ...]] = ()
    DATES: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict:
        data = asdict(self)  # type: ignore[call-overload]
        for name in self.DECIMALS:
            data[name] = str(data[name])
        for name in self.DATES:
            data[name] = data[name].isoformat() if data[name] else None
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
class Overdraft(Record):
    """A client's overdraft for one (firm, service): the limit Balance computed, and the auto-overdraft settings
    the client chose (SetOverdraftParams; `client_limit` 0 = no auto-overdraft)."""

    DECIMALS = ("limit", "client_limit", "external_spent")
    DATES = ("min_term",)

    service_id: int
    firm_id: int
    limit: Decimal = ZERO
    term_days: int = 15
    client_limit: Decimal = ZERO
    person_id: int = 0
    payment_method_cc: str = ""
    currency: str = ""
    external_spent: Decimal = ZERO  # debt set by Emulator.SetOverdraftSpent, tied to no order
    min_term: datetime.date | None = None
    signature: str = ""  # what the last NotifyClient2 said, to notify on change only
    tid: int = 0

    @property
    def key(self) -> str:
        return f"{self.firm_id}:{self.service_id}"


@dataclass
class Client(Record):
    client_id: int
    name: str
    email: str = ""
    phone: str = ""
    fax: str = ""
    url: str = ""
    city: str = ""
    region_id: int = 225
    client_type_id: int = 0
    is_agency: int = 0
    agency_id: int = 0
    currency: str = DEFAULT_CURRENCY
    service_client_id: str = ""
    tid: int = 0
    overdrafts: dict[str, dict] = field(default_factory=dict)  # Overdraft.key -> Overdraft.to_json()


@dataclass
class Person(Record):
    person_id: int
    client_id: int
    type: str
    fields: dict[str, str] = field(default_factory=dict)
    hidden: int = 0


@dataclass
class Contract(Record):
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
    is_signed: int = 1
    is_suspended: int = 0
    person_id: int = 0
    currency: str = DEFAULT_CURRENCY

    def active_on(self, day: datetime.date) -> bool:
        return bool(self.is_active) and self.dt <= day and (self.finish_dt is None or day < self.finish_dt)


@dataclass
class Order(Record):
    """One order. `consume_sum` is the money physically on it and `consume_qty` the same in its product's units;
    what it reports depends on the group type (see accounting.py)."""

    DECIMALS = ("consume_qty", "consume_sum", "completion_qty")

    order_id: int  # Balance's own id (`id` in GetOrdersInfo)
    service_id: int
    service_order_id: str
    client_id: int
    product_id: int
    agency_id: int = 0
    contract_id: int = 0
    group_order_id: str = ""
    text: str = ""
    consume_qty: Decimal = ZERO
    consume_sum: Decimal = ZERO
    completion_qty: Decimal = ZERO
    tid: int = 0
    seq: int = 0
    stop: int = 0
    blocked: int = 0
    last_dt: str = ""
    signature: str = ""  # what the last NotifyOrder2 said

    @property
    def key(self) -> OrderKey:
        return (self.service_id, self.service_order_id)

    @property
    def payer_id(self) -> int:
        return self.agency_id or self.client_id


@dataclass
class Request(Record):
    """A request (CreateRequest2): lines of [ServiceID, ServiceOrderID, Qty in units, money]."""

    DATES = ("created",)

    request_id: int
    client_id: int
    uid: int
    lines: list[list]
    created: datetime.date
    qty_is_amount: int = 0
    overdraft: int = 0
    return_path: str = ""
    invoice_ids: list[int] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((Decimal(line[3]) for line in self.lines), ZERO)


@dataclass
class Invoice(Record):
    """An invoice on a request. A prepayment invoice puts money on the orders when paid; an overdraft or credit
    invoice puts it there at once (`consumed`) and its payment settles the debt."""

    DECIMALS = ("amount", "paid_amount")
    DATES = ("dt", "paid_dt")

    invoice_id: int
    request_id: int
    client_id: int
    kind: str
    amount: Decimal
    dt: datetime.date
    person_id: int = 0
    contract_id: int = 0
    paysys_id: int = 0
    service_id: int = 0
    consumed: bool = False
    paid_amount: Decimal = ZERO
    paid_dt: datetime.date | None = None

    @property
    def paid(self) -> bool:
        return self.paid_dt is not None
