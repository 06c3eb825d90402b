"""The typed calls of Balance's XML-RPC interface, version 2 of docs/balance-protocol.md.

Each method sends exactly the arguments the protocol page gives and parses exactly the answer shape it gives
into a dataclass: the domain never sees a raw dict. An answer in another shape (version 1's `[client]` for
GetClientByIdBatch, a list from UpdateCampaigns, GetOrdersInfo without its money fields...) is a bad response
(`BalanceUnknownOutcome`, code BAD_RESPONSE), never half-read. The wire details are in `wire.py`, HTTP, tickets,
retries and the call log in `transport.py`; docs/balance-conformance.md lists every call with the test that pins it.

- The operator uid (and a user's uid) go as strings; read methods take no uid.
- Money goes as "1500.00"; quantities in the product's unit as up to 6 decimals; `dt` as an XML-RPC dateTime in
  BALANCE_TIME_ZONE, never in the future.
- Whatever Balance or the network does surfaces as a `BalanceError` subclass (see `exceptions.py`); only a value
  that cannot be sent at all (a float amount, say) raises TypeError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from django.conf import settings

from balance_gateway import wire
from balance_gateway.exceptions import BalanceFinalError
from balance_gateway.transport import CallNote, Transport, current_operation_id, operation_context
from balance_gateway.xmlrpc import dumps_call

__all__ = [
    "AssociationResult", "AutoOverdraft", "BalanceClient", "ClientInfo", "CompletionReport", "ContractInfo",
    "CreditLimit", "CreditLimits", "OrderInfo", "OrderResult", "OrderSpec", "PersonInfo", "PersonSpec",
    "RequestInfo", "RequestItem", "TransferDestination", "TransferSource", "current_operation_id",
    "operation_context",
]

T = TypeVar("T")

# CreateUserClientAssociation's answer when the user is linked to another client [seen].
LINKED_TO_ANOTHER_CLIENT = 4008
# CreateUserClientAssociation's codes [seen], as `[code, "..."]` in the answer or as a fault (faultCode, or the
# `<code>` of the XML faultString): 4008 is an answer; 1003 and 2 are final errors with this meaning.
ASSOCIATION_CODES = {LINKED_TO_ANOTHER_CLIENT: "the user is linked to another client", 1003: "no such client",
                     2: "no such user"}
UNITS = ("Bucks", "Money", "Days", "Shows", "Clicks", "Units")


# --- Results and arguments ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssociationResult:
    """`linked`: the user is linked to this client now (also when it already was); `linked_elsewhere`: Balance
    refused because the user belongs to another client (4008)."""

    linked: bool
    linked_elsewhere: bool
    message: str


@dataclass(frozen=True, slots=True)
class ClientInfo:
    client_id: int
    name: str
    email: str
    phone: str
    is_agency: bool
    agency_id: int | None
    url: str = ""
    city: str = ""
    region_id: int | None = None
    client_type_id: int | None = None
    single_account_number: str = ""


@dataclass(frozen=True, slots=True)
class PersonSpec:
    """A person to create or edit. `ur` (company) needs name, long_name, phone, email, postcode, postal_address,
    legal_address, inn, kpp; `ph` (individual) needs lname, fname, phone, email."""

    person_type: str
    name: str = ""
    email: str = ""
    phone: str = ""
    inn: str | None = None
    kpp: str | None = None
    long_name: str | None = None
    legal_address: str | None = None
    postal_address: str | None = None
    postcode: str | None = None
    lname: str | None = None
    fname: str | None = None
    mname: str | None = None


@dataclass(frozen=True, slots=True)
class PersonInfo:
    person_id: int
    type: str
    name: str
    inn: str | None
    hidden: bool
    kpp: str | None = None
    email: str | None = None
    phone: str | None = None
    legal_address: str | None = None
    lname: str | None = None
    fname: str | None = None
    mname: str | None = None
    long_name: str | None = None
    postcode: str | None = None
    postal_address: str | None = None


@dataclass(frozen=True, slots=True)
class ContractInfo:
    """A signed contract; no credit limit here (GetClientCreditLimits has it)."""

    contract_id: int
    external_id: str
    is_active: bool
    dt: date | None
    finish_dt: date | None
    payment_type: Literal["prepaid", "postpaid"]
    person_id: int | None
    services: list[int]
    is_signed: bool = True
    is_suspended: bool = False
    currency: str = ""


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """The whole order as billing wants it: an update replaces the order in Balance, so every field is sent
    every time (a missing ContractID unlinks the contract, a missing GroupServiceOrderID leaves the group)."""

    service_id: int
    service_order_id: int | str
    product_id: int
    client_id: int
    agency_id: int | None = None
    contract_id: int | None = None
    group_service_order_id: int | str | None = None
    group_without_transfer: bool = True
    text: str | None = None


@dataclass(frozen=True, slots=True)
class OrderResult:
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class OrderInfo:
    """GetOrdersInfo's view of an order. No owner, payer or Tid: Balance does not return them. `*_qty` are in the
    product's unit; money is `consume_amount` / `completion_amount` (and the `*_money_qty` fields)."""

    service_id: int
    service_order_id: str
    balance_order_id: int | None
    product_id: int
    is_group_root: bool
    group_service_order_id: str | None
    consume_qty: Decimal
    completion_qty: Decimal
    consume_amount: Decimal
    completion_amount: Decimal
    consume_money_qty: Decimal
    completion_money_qty: Decimal
    completion_fixed_money_qty: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class RequestItem:
    """Money to put on an order; sent with QtyIsAmount=1 so that Balance reads it as money, not units."""

    service_id: int
    service_order_id: int | str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class RequestInfo:
    request_id: int
    user_path: str
    admin_path: str


@dataclass(frozen=True, slots=True)
class CompletionReport:
    """`qty` is the order's cumulative completion in the product's `unit` since its creation, never a delta."""

    service_id: int
    service_order_id: int | str
    unit: str
    qty: Decimal
    dt: datetime
    stop: bool = False


@dataclass(frozen=True, slots=True)
class TransferSource:
    service_id: int
    service_order_id: int | str
    qty_old: Decimal
    qty_new: Decimal


@dataclass(frozen=True, slots=True)
class TransferDestination:
    service_id: int
    service_order_id: int | str
    qty_delta: Decimal


@dataclass(frozen=True, slots=True)
class AutoOverdraft:
    """GetOverdraftParams: the client's auto-overdraft settings (how far Balance covers completion beyond paid
    money, and who pays the invoice), not its overdraft limit."""

    person_id: int | None
    payment_method: str
    currency: str
    client_limit: Decimal


@dataclass(frozen=True, slots=True)
class CreditLimit:
    contract_id: int
    contract_external_id: str
    currency: str
    limit_total: Decimal
    limit_spent: Decimal


@dataclass(frozen=True, slots=True)
class CreditLimits:
    currency: str
    limits: list[CreditLimit] = field(default_factory=list)
    product_price: Decimal | None = None


# --- The client -------------------------------------------------------------------------------------------


class BalanceClient:
    """Balance2.* over XML-RPC."""

    def __init__(self, url: str | None = None, operator_uid: int | None = None,
                 connect_timeout: float | None = None, read_timeout: float | None = None) -> None:
        self.url = url or settings.BALANCE_URL
        self.operator_uid = wire.uid(operator_uid if operator_uid is not None else settings.BALANCE_OPERATOR_UID)
        self.connect_timeout = float(
            connect_timeout if connect_timeout is not None else settings.BALANCE_CONNECT_TIMEOUT
        )
        self.read_timeout = float(read_timeout if read_timeout is not None else settings.BALANCE_READ_TIMEOUT)
        self._transport = Transport(self.url, self.connect_timeout, self.read_timeout)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> BalanceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- clients and persons ---

    def create_client(
        self, *, name: str, email: str = "", phone: str = "", is_agency: bool = False,
        client_id: int | None = None, url: str | None = None, city: str | None = None,
        currency: str | None = None, agency_id: int | None = None, region_id: int | None = None,
        service_id: int | None = None, service_client_id: str | None = None,
    ) -> int:
        """Create a client, or edit it when `client_id` is given. Not idempotent: after an unknown outcome, find
        the client (FindClient) before creating again. `service_id`/`service_client_id` are sent only when
        BALANCE_TRUSTS_SERVICE_CLIENT_ID says Balance honours them."""
        fields: dict[str, Any] = {
            "CLIENT_ID": client_id, "NAME": name, "EMAIL": email, "PHONE": phone, "URL": url, "CITY": city,
            "REGION_ID": region_id if region_id is not None else settings.BALANCE_REGION_ID,
            "IS_AGENCY": 1 if is_agency else 0, "AGENCY_ID": agency_id, "CURRENCY": currency,
        }
        if settings.BALANCE_TRUSTS_SERVICE_CLIENT_ID and service_client_id:
            fields.update(SERVICE_ID=service_id, SERVICE_CLIENT_ID=service_client_id)
        key_args = {"client_id": client_id, "name": wire.short(name), "is_agency": is_agency,
                    "agency_id": agency_id}

        def parse(raw: Any, note: CallNote) -> int:
            return wire.id_(wire.checked(raw, "CreateClient", 3)[2])

        return self._call("CreateClient", (self.operator_uid, fields), key_args, parse)

    def create_person(self, *, client_id: int, person: PersonSpec, person_id: int | None = None) -> int:
        """Create a person (payer) of the client, or edit it with `person_id`. Not idempotent: after an unknown
        outcome, look the client's persons up before creating again."""
        fields: dict[str, Any] = {
            "client_id": client_id, "person_id": person_id, "type": person.person_type, "name": person.name,
            "email": person.email, "phone": person.phone,
        }
        if person.person_type == "ur":
            fields.update(longname=person.long_name, inn=person.inn, kpp=person.kpp,
                          legaladdress=person.legal_address, postaddress=person.postal_address,
                          postcode=person.postcode)
        else:
            fields.update(lname=person.lname, fname=person.fname, mname=person.mname)
        key_args = {"client_id": client_id, "person_id": person_id, "type": wire.short(person.person_type),
                    "name": wire.short(person.name), "inn": wire.short(person.inn)}

        def parse(raw: Any, note: CallNote) -> int:
            return wire.id_(raw)

        return self._call("CreatePerson", (self.operator_uid, fields), key_args, parse)

    def create_user_client_association(self, *, client_id: int, user_uid: int | str) -> AssociationResult:
        """Link a Passport user to the client: `[0, "SUCCESS"]` also when already linked to it; 4008 (linked to
        another client) is an answer; any other code is a `BalanceFinalError`. Safe to repeat."""
        key_args = {"client_id": client_id, "user_uid": str(user_uid)}

        def parse(raw: Any, note: CallNote) -> AssociationResult:
            result = wire.array(raw)
            code = wire.id_(result[0]) if result else None
            message = wire.text(result[1]) if len(result) > 1 else ""
            if code == LINKED_TO_ANOTHER_CLIENT:
                note.error_code, note.error_message = str(code), message
                return AssociationResult(linked=False, linked_elsewhere=True, message=message)
            wire.checked(result, "CreateUserClientAssociation", 2)
            return AssociationResult(linked=True, linked_elsewhere=False, message=message)

        try:
            result = self._call("CreateUserClientAssociation", (self.operator_uid, client_id, wire.uid(user_uid)),
                                key_args, parse, repeatable=True,
                                answer_faults=frozenset({str(LINKED_TO_ANOTHER_CLIENT)}),
                                fault_codes=frozenset(str(code) for code in ASSOCIATION_CODES))
        except BalanceFinalError as exc:
            meaning = ASSOCIATION_CODES.get(int(exc.code)) if exc.code.isdigit() else None
            if meaning is None or exc.message.startswith(meaning):
                raise
            raise BalanceFinalError(f"{meaning}: {exc.message}"[:500], method=exc.method, code=exc.code,
                                    outcome=exc.outcome) from exc
        if result is None:  # 4008 as a fault
            return AssociationResult(linked=False, linked_elsewhere=True, message="linked to another client")
        return result

    def find_client(self, *, client_id: int | None = None, login: str | None = None, email: str | None = None,
                    name: str | None = None) -> list[ClientInfo]:
        """Clients matching every criterion given (at least one). How Balance matches Name (exact or part) is not
        known: callers compare what comes back themselves."""
        criteria = {"ClientID": client_id, "Login": login, "Email": email, "Name": name}
        criteria = {k: v for k, v in criteria.items() if v is not None}
        if not criteria:
            raise TypeError("FindClient needs at least one criterion")
        key_args = {k: wire.short(v) for k, v in criteria.items()}

        def parse(raw: Any, note: CallNote) -> list[ClientInfo]:
            result = wire.checked(raw, "FindClient", 3)
            return [_client_info(item) for item in wire.array(result[2])]

        return self._call("FindClient", (criteria,), key_args, parse, repeatable=True)

    def get_client_by_id_batch(self, client_ids: list[int]) -> list[ClientInfo]:
        if not client_ids:
            return []

        def parse(raw: Any, note: CallNote) -> list[ClientInfo]:
            result = wire.checked(raw, "GetClientByIdBatch", 2)
            return [_client_info(item) for item in wire.array(result[1])]

        return self._call("GetClientByIdBatch", (list(client_ids),), wire.batch(client_ids), parse,
                          repeatable=True)

    def get_client_persons(self, client_id: int) -> list[PersonInfo]:
        def parse(raw: Any, note: CallNote) -> list[PersonInfo]:
            return [_person_info(item) for item in wire.array(raw)]

        return self._call("GetClientPersons", (client_id, 0), {"client_id": client_id}, parse, repeatable=True)

    def get_client_contracts(self, client_id: int, dt: date | None = None) -> list[ContractInfo]:
        """Signed contracts (Balance's default); credit limits come from `get_client_credit_limits`."""
        criteria: dict[str, Any] = {"ClientID": client_id}
        if dt is not None:
            criteria["Dt"] = dt.date().isoformat() if isinstance(dt, datetime) else dt.isoformat()

        def parse(raw: Any, note: CallNote) -> list[ContractInfo]:
            contracts = [_contract_info(item) for item in wire.array(raw)]
            if None in contracts:
                note.error_code = "OTHER_PAYMENT_TYPE"
                note.error_message = f"{contracts.count(None)} contract(s) of a payment type other than 2 or 3 left out"
            return [contract for contract in contracts if contract is not None]

        return self._call("GetClientContracts", (criteria,), {"client_id": client_id, "dt": wire.short(dt)}, parse,
                          repeatable=True)

    # --- orders, payments, completions ---

    def create_or_update_orders_batch(self, orders: list[OrderSpec]) -> list[OrderResult]:
        """One result per order, in order; `ok=False` carries Balance's reason (the order was not changed).
        Every order is sent whole: an update replaces it."""
        if not orders:
            return []
        payload = [_order_payload(o) for o in orders]
        key_args = wire.batch([[o.service_id, o.service_order_id] for o in orders])

        def parse(raw: Any, note: CallNote) -> list[OrderResult]:
            items = wire.array(raw)
            if len(items) != len(orders):
                raise ValueError(f"{len(items)} results for {len(orders)} orders")
            results = []
            for item in items:
                pair = wire.array(item)
                if len(pair) != 2:
                    raise ValueError(f"an order result must be [code, message], got {len(pair)} items")
                code = wire.id_(pair[0])
                if code not in (0, -1):
                    raise ValueError(f"unknown order result code {code}")
                message = wire.text(pair[1])
                results.append(OrderResult(ok=code == 0, message=message if code == 0 else wire.error_text(message)))
            failed = [r.message for r in results if not r.ok]
            if failed:
                note.error_code = "-1"
                note.error_message = f"{len(failed)} of {len(results)} refused: {failed[0]}"
            return results

        return self._call("CreateOrUpdateOrdersBatch", (self.operator_uid, payload), key_args, parse,
                          repeatable=True)

    def get_orders_info(self, keys: list[tuple[int, int | str]]) -> list[OrderInfo]:
        """Known orders only: unknown keys are absent from the answer."""
        if not keys:
            return []
        payload = [{"ServiceID": service_id, "ServiceOrderID": order_id} for service_id, order_id in keys]

        def parse(raw: Any, note: CallNote) -> list[OrderInfo]:
            return [_order_info(item) for item in wire.array(raw)]

        return self._call("GetOrdersInfo", (payload,), wire.batch([list(k) for k in keys]), parse, repeatable=True)

    def get_orders_info_by_contract(self, contract_id: int) -> list[OrderInfo]:
        def parse(raw: Any, note: CallNote) -> list[OrderInfo]:
            return [_order_info(item) for item in wire.array(raw)]

        return self._call("GetOrdersInfo", ({"ContractID": contract_id},), {"contract_id": contract_id}, parse,
                          repeatable=True)

    def create_request2(
        self, *, payer_client_id: int, items: list[RequestItem], return_path: str | None = None,
        overdraft: bool = False, firm_id: int | None = None,
    ) -> RequestInfo:
        """A payment request (paystep) for the payer (the order's agency if it has one, else its client), for
        money (QtyIsAmount=1). Repeating it after an unknown outcome leaves at most an unpaid request."""
        payload = [{"ServiceID": i.service_id, "ServiceOrderID": i.service_order_id, "Qty": wire.amount(i.amount)}
                   for i in items]
        options: dict[str, Any] = {"QtyIsAmount": 1}
        if return_path:
            options["ReturnPath"] = return_path
        if overdraft:
            options["Overdraft"] = 1
        if firm_id is not None:
            options["FirmID"] = firm_id
        key_args = {"payer_client_id": payer_client_id,
                    **wire.batch([[i.service_id, i.service_order_id, i.amount] for i in items])}

        def parse(raw: Any, note: CallNote) -> RequestInfo:
            data = wire.struct(raw)
            return RequestInfo(request_id=wire.id_(data["RequestID"]), user_path=wire.text(data.get("UserPath")),
                               admin_path=wire.text(data.get("AdminPath")))

        return self._call("CreateRequest2", (self.operator_uid, payer_client_id, payload, options), key_args,
                          parse)

    def update_campaigns(self, items: list[CompletionReport]) -> list[bool | None]:
        """Report cumulative completions; per item True (accepted), False (Balance answered 0: a blocked or stopped
        order, or a `dt` it sees as future) or None (absent from the answer: not known, send again later)."""
        if not items:
            return []
        payload = []
        for i in items:
            if i.unit not in UNITS:
                raise TypeError(f"unknown unit {i.unit!r}")
            payload.append({"ServiceID": i.service_id, "ServiceOrderID": i.service_order_id,
                            "dt": wire.balance_datetime(i.dt), "stop": 1 if i.stop else 0,
                            i.unit: wire.quantity(i.qty)})
        key_args = wire.batch([[i.service_id, i.service_order_id, i.qty] for i in items])

        def parse(raw: Any, note: CallNote) -> list[bool | None]:
            answer: dict[tuple[str, str], bool] = {}
            for service_id, orders in wire.struct(raw).items():
                for order_id, accepted in wire.struct(orders).items():
                    value = wire.id_(accepted)
                    if value not in (0, 1):
                        raise ValueError(f"UpdateCampaigns flag must be 1 or 0, got {value}")
                    answer[(str(service_id), str(order_id))] = value == 1
            flags = [answer.get((str(i.service_id), str(i.service_order_id))) for i in items]
            refused = flags.count(False)
            if refused or None in flags:
                note.error_code = "0"
                note.error_message = f"{refused} of {len(flags)} refused, {flags.count(None)} not answered"
            return flags

        return self._call("UpdateCampaigns", (payload,), key_args, parse, repeatable=True)

    def create_transfer_multiple(
        self, *, sources: list[TransferSource], destinations: list[TransferDestination],
    ) -> None:
        """Move free money between orders. `qty_old` must equal the source's consume now (6 decimals), else
        ORDERS_NOT_SYNCHRONIZED (final: re-read the orders and compute the transfer again)."""
        src = [{"ServiceID": s.service_id, "ServiceOrderID": s.service_order_id, "QtyOld": wire.quantity(s.qty_old),
                "QtyNew": wire.quantity(s.qty_new)} for s in sources]
        dst = [{"ServiceID": d.service_id, "ServiceOrderID": d.service_order_id,
                "QtyDelta": wire.quantity(d.qty_delta)} for d in destinations]
        key_args = {
            "sources": wire.batch([[s.service_id, s.service_order_id, s.qty_old, s.qty_new] for s in sources]),
            "destinations": wire.batch([[d.service_id, d.service_order_id, d.qty_delta] for d in destinations]),
        }

        def parse(raw: Any, note: CallNote) -> None:
            wire.checked(raw, "CreateTransferMultiple", 2)

        self._call("CreateTransferMultiple", (self.operator_uid, src, dst), key_args, parse)

    # --- overdraft and credit ---

    def get_overdraft_params(self, *, service_id: int, client_id: int) -> AutoOverdraft | None:
        """The client's auto-overdraft settings; None when it has none. The page does not say how Balance answers
        for a client without them: a `NOT_FOUND` fault and an empty struct both mean none (a struct with other keys
        but no `ClientLimit`, such as version 1's `{OverdraftLimit, ...}`, is still a bad response)."""

        def parse(raw: Any, note: CallNote) -> AutoOverdraft | None:
            data = wire.struct(raw)
            if not data:
                return None
            return AutoOverdraft(
                person_id=wire.optional_id(data.get("PersonID")),
                payment_method=wire.text(data.get("PaymentMethodCC")),
                currency=wire.currency(data.get("Currency")), client_limit=wire.money(data["ClientLimit"]),
            )

        return self._call("GetOverdraftParams", (service_id, client_id),
                          {"service_id": service_id, "client_id": client_id}, parse,
                          answer_faults=frozenset({"NOT_FOUND"}), repeatable=True)

    def set_overdraft_params(self, *, service_id: int, person_id: int, payment_method: str, currency: str,
                             client_limit: Decimal) -> None:
        """Turn auto-overdraft on (or change it): Balance covers completion beyond paid money up to
        `client_limit` (at most the client's overdraft limit) and invoices the person. Refused for agencies."""
        params = {"PersonID": person_id, "ServiceID": service_id, "PaymentMethodCC": payment_method,
                  "Currency": currency, "ClientLimit": wire.amount(client_limit)}
        key_args = {"service_id": service_id, "person_id": person_id, "client_limit": wire.short(client_limit)}

        def parse(raw: Any, note: CallNote) -> None:
            wire.checked(raw, "SetOverdraftParams", 2)

        self._call("SetOverdraftParams", (params,), key_args, parse, repeatable=True)

    def create_invoice(self, *, request_id: int, person_id: int, contract_id: int | None = None,
                       credit: bool = False, paysys_id: int | None = None) -> int:
        """An invoice on a request; with `credit` a **credit invoice** on the payer's postpaid contract
        (`ContractID`), which puts the request's money on its orders at once, within the contract's credit
        (LIMIT_TOTAL less LIMIT_SPENT). Answers the invoice id [client: the shape is how real clients call it].
        Not repeatable: an invoice is money, so an unknown outcome is looked up by the caller before another."""
        params: dict[str, Any] = {"RequestID": request_id, "PersonID": person_id}
        if paysys_id:
            params["PaysysID"] = paysys_id
        if credit:
            params["Credit"] = 1
        if contract_id is not None:
            params["ContractID"] = contract_id
        key_args = {"request_id": request_id, "person_id": person_id, "contract_id": contract_id,
                    "credit": int(credit), "paysys_id": paysys_id}

        def parse(raw: Any, note: CallNote) -> int:
            if isinstance(raw, dict):
                raw = raw.get("InvoiceID", raw.get("invoice_id"))
            return wire.id_(raw)

        return self._call("CreateInvoice", (self.operator_uid, params), key_args, parse)

    def get_client_credit_limits(self, *, client_id: int, product_id: int) -> CreditLimits:
        def parse(raw: Any, note: CallNote) -> CreditLimits:
            data = wire.struct(raw)
            limits = [
                CreditLimit(
                    contract_id=wire.id_(d["CONTRACT_ID"]), contract_external_id=wire.text(d.get("CONTRACT_EID")),
                    currency=wire.currency(d.get("ISO_CURRENCY")), limit_total=wire.money(d["LIMIT_TOTAL"]),
                    limit_spent=wire.money(d["LIMIT_SPENT"]),
                )
                for d in map(wire.struct, wire.array(data["LIMITS"]))
            ]
            return CreditLimits(currency=wire.currency(data.get("CURRENCY")), limits=limits,
                                product_price=wire.informational(data.get("PRODUCT_PRICE"), wire.number, None))

        return self._call("GetClientCreditLimits", (client_id, product_id),
                          {"client_id": client_id, "product_id": product_id}, parse, repeatable=True)

    # --- machinery ---

    def _call(self, method: str, params: tuple[Any, ...], key_args: dict[str, Any],
              parse: Callable[[Any, CallNote], T], *, answer_faults: frozenset[str] = frozenset(),
              repeatable: bool = False, fault_codes: frozenset[str] = frozenset()) -> Any:
        # A value that cannot be sent is a bug of the caller: TypeError here, before anything is sent or recorded.
        body = dumps_call(f"Balance2.{method}", params)
        return self._transport.exchange(method, body, key_args, parse, answer_faults=answer_faults,
                                        repeatable=repeatable, fault_codes=fault_codes)


def _order_payload(order: OrderSpec) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "ServiceID": order.service_id, "ServiceOrderID": order.service_order_id, "ProductID": order.product_id,
        "ClientID": order.client_id, "Text": order.text,
    }
    # Omitted fields are reset by Balance (an update replaces the order): send each that billing wants set.
    if order.agency_id is not None:
        payload["AgencyID"] = order.agency_id
    if order.contract_id is not None:
        payload["ContractID"] = order.contract_id
    if order.group_service_order_id is not None:
        payload["GroupServiceOrderID"] = order.group_service_order_id
        payload["GroupWithoutTransfer"] = 1 if order.group_without_transfer else 0
    return payload


def _client_info(raw: Any) -> ClientInfo:
    data = wire.struct(raw)
    return ClientInfo(
        client_id=wire.id_(data["CLIENT_ID"]), name=wire.text(data.get("NAME")), email=wire.text(data.get("EMAIL")),
        phone=wire.text(data.get("PHONE")), is_agency=wire.flag(data.get("IS_AGENCY")),
        agency_id=wire.optional_id(data.get("AGENCY_ID")), url=wire.text(data.get("URL")),
        city=wire.text(data.get("CITY")), region_id=wire.optional_id(data.get("REGION_ID")),
        client_type_id=wire.optional_id(data.get("CLIENT_TYPE_ID")),
        single_account_number=wire.text(data.get("SINGLE_ACCOUNT_NUMBER")),
    )


def _person_info(raw: Any) -> PersonInfo:
    # The page leaves the person's key spelling open: read it case- and underscore-blind.
    data = wire.struct_ci(raw)
    return PersonInfo(
        person_id=wire.id_(data["ID"] if "ID" in data else data["PERSONID"]), type=wire.text(data.get("TYPE")),
        name=wire.text(data.get("NAME")), inn=wire.optional_text(data.get("INN")),
        hidden=wire.flag(data.get("HIDDEN")), kpp=wire.optional_text(data.get("KPP")),
        email=wire.optional_text(data.get("EMAIL")), phone=wire.optional_text(data.get("PHONE")),
        legal_address=wire.optional_text(data.get("LEGALADDRESS")), lname=wire.optional_text(data.get("LNAME")),
        fname=wire.optional_text(data.get("FNAME")), mname=wire.optional_text(data.get("MNAME")),
        long_name=wire.optional_text(data.get("LONGNAME")), postcode=wire.optional_text(data.get("POSTCODE")),
        postal_address=wire.optional_text(data.get("POSTADDRESS")),
    )


_PAYMENT_TYPES: dict[str, Literal["prepaid", "postpaid"]] = {"2": "prepaid", "3": "postpaid"}


def _contract_info(raw: Any) -> ContractInfo | None:
    """A contract, or None for one of a payment type billing does not use: the page names 2 (prepaid) and 3
    (postpaid) only, and a client's other contracts must not make its prepaid and postpaid ones unreadable."""
    data = wire.struct(raw)
    payment_type = _PAYMENT_TYPES.get(wire.text(data["PAYMENT_TYPE"]).strip())
    if payment_type is None:
        return None
    return ContractInfo(
        contract_id=wire.id_(data["ID"]), external_id=wire.text(data.get("EXTERNAL_ID")),
        is_active=wire.flag(data.get("IS_ACTIVE")), dt=wire.day(data.get("DT")),
        finish_dt=wire.day(data.get("FINISH_DT")), payment_type=payment_type,
        person_id=wire.optional_id(data.get("PERSON_ID")),
        services=[wire.id_(s) for s in wire.array(data.get("SERVICES") or [])],
        is_signed=wire.flag(data.get("IS_SIGNED", 1)), is_suspended=wire.flag(data.get("IS_SUSPENDED")),
        currency=wire.currency(data.get("CURRENCY")),
    )


def _order_info(raw: Any) -> OrderInfo:
    data = wire.struct(raw)
    service_order_id = wire.key_text(data["ServiceOrderID"])
    if service_order_id is None:
        raise ValueError("an order without ServiceOrderID")
    return OrderInfo(
        service_id=wire.id_(data["ServiceID"]), service_order_id=service_order_id,
        balance_order_id=wire.optional_id(data.get("id")), product_id=wire.id_(data["product_id"]),
        is_group_root=wire.flag(data.get("IsGroupRoot")),
        group_service_order_id=wire.key_text(data.get("GroupServiceOrderID")),
        consume_qty=wire.qty(data["consume_qty"]), completion_qty=wire.qty(data["completion_qty"]),
        consume_amount=wire.money(data["consume_amount"]),
        completion_amount=wire.computed_money(data["completion_amount"]),
        consume_money_qty=wire.qty(data.get("ConsumeMoneyQty")),
        completion_money_qty=wire.qty(data.get("CompletionMoneyQty")),
        completion_fixed_money_qty=wire.qty(data.get("CompletionFixedMoneyQty")),
        currency=wire.currency(data.get("invoice_currency")),
    )
