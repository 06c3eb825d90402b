"""Test controls (`Emulator.*`), never part of Balance: paying, contracts, overdraft limits, products, changing an
order behind billing's back, seeding legacy data, and `Emulator.State`, the emulator's own view:

    {clients, persons, contracts, orders, requests, invoices}

each order with ServiceID, ServiceOrderID (a digit string), ClientID, AgencyID, ProductID, GroupServiceOrderID
("" for none), ConsumeQty, ConsumeSum, CompletionQty (as Balance reports them, see accounting.py) and UnpaidQty
(completion beyond all coverage, in the product's units; UnpaidSum in money), plus details (Unit, Price,
ConsumeAmount, CompletionSum, OwnConsumeSum, OverdraftSum, ContractID, Stop, Blocked, Tid, ...).
"""

from __future__ import annotations

from typing import Any

from balance_gateway.emulator.options import UNITS
from balance_gateway.emulator.overdraft import Overdrafts
from balance_gateway.emulator.records import POSTPAID, PREPAID, Client, Contract, Order, Overdraft, Person
from balance_gateway.emulator.values import (
    array,
    fmt_date,
    fmt_money,
    fmt_qty,
    invalid,
    not_found,
    parse_date,
    parse_flag,
    parse_id,
    parse_int,
    parse_money,
    parse_optional_id,
    parse_order_id,
    parse_qty,
    parse_str,
    struct,
)

UPDATE_ORDER_FIELDS = ("AgencyID", "ClientID", "ConsumeQty", "ConsumeSum", "CompletionQty", "ProductID",
                       "GroupServiceOrderID", "ContractID", "Blocked")  # fmt: skip


class Control(Overdrafts):
    def run_task(self, kind: str, payload: dict) -> None:
        if kind == "completion":
            self.run_completion(payload)
        elif kind == "group_transfer":
            self.run_group_transfer(payload)
        else:
            raise invalid(f"unknown delayed task {kind!r}")

    def pay_invoice_control(self, invoice_id: Any, amount: Any = None) -> list:
        invoice = self.invoices.get(parse_id(invoice_id, "invoice_id"))
        if invoice is None:
            raise not_found(f"Invoice {invoice_id} not found")
        if invoice.paid:
            raise invalid(f"Invoice {invoice.invoice_id} is already paid")
        value = None if amount in (None, "") else parse_money(amount, "amount", positive=True)
        return [0, "SUCCESS", fmt_money(self.pay_invoice(invoice, value))]

    def create_contract(self, client_id: Any, options: Any) -> int:
        client = self.client(client_id, "client_id")
        o = struct(options, "CreateContract options", required=("payment_type", "services"),
                   optional=("credit_limit", "external_id", "dt", "finish_dt", "is_active", "is_signed",
                             "is_suspended", "person_id", "currency"))  # fmt: skip
        payment_type = {"prepaid": PREPAID, "postpaid": POSTPAID, 2: PREPAID, 3: POSTPAID}.get(o["payment_type"])
        if payment_type is None:
            raise invalid(f"payment_type must be prepaid or postpaid, got {o['payment_type']!r}")
        services = sorted({parse_id(s, "services[]") for s in array(o["services"], "services")})
        contract_id = self.next_id("contract")
        person_id = parse_optional_id(o.get("person_id"), "person_id")
        if not person_id:
            own = sorted(p.person_id for p in self.persons.values() if p.client_id == client.client_id)
            person_id = own[0] if own else 0
        self.contracts[contract_id] = Contract(
            contract_id=contract_id, client_id=client.client_id,
            external_id=parse_str(o.get("external_id", ""), "external_id") or f"EMU-{contract_id}",
            payment_type=payment_type, credit_limit=parse_money(o.get("credit_limit", "0"), "credit_limit"),
            services=services, dt=parse_date(o["dt"], "dt") if o.get("dt") else self.today(),
            finish_dt=parse_date(o["finish_dt"], "finish_dt") if o.get("finish_dt") else None,
            is_active=parse_flag(o.get("is_active", 1), "is_active"),
            is_signed=parse_flag(o.get("is_signed", 1), "is_signed"),
            is_suspended=parse_flag(o.get("is_suspended", 0), "is_suspended"),
            person_id=person_id, currency=parse_str(o.get("currency", client.currency), "currency"),
        )  # fmt: skip
        self.settle()
        return contract_id

    def set_product(self, product_id: Any, spec: Any) -> list:
        s = struct(spec, "SetProduct spec", required=("unit", "price"))
        if s["unit"] not in UNITS:
            raise invalid(f"unit must be one of {', '.join(UNITS)}")
        products = {**self.options.products, str(parse_id(product_id, "product_id")): s}
        self.options.update({"products": products})
        for order in self.orders.values():
            self.set_money(order, order.consume_sum)
        self.settle()
        return [0, "SUCCESS"]

    def forget_user(self, user_uid: Any) -> list:
        """Make a Passport uid unknown (CreateUserClientAssociation then answers 2)."""
        self.unknown_users.add(parse_int(user_uid, "user_uid", minimum=1))
        return [0, "SUCCESS"]

    def set_login(self, user_uid: Any, login: Any) -> list:
        """Give a Passport uid a login (for FindClient's Login)."""
        self.logins[parse_str(login, "login").casefold()] = parse_int(user_uid, "user_uid", minimum=1)
        return [0, "SUCCESS"]

    def update_order(self, service_id: Any, service_order_id: Any, changes: Any) -> dict:
        """Change an order behind billing's back: no notification (its Tid still moves)."""
        order = self.order(parse_id(service_id, "ServiceID"), parse_order_id(service_order_id))
        c = struct(changes, "UpdateOrder changes", optional=UPDATE_ORDER_FIELDS)
        client_id = self.client(c["ClientID"], "ClientID").client_id if "ClientID" in c else order.client_id
        agency_id = parse_optional_id(c.get("AgencyID"), "AgencyID") if "AgencyID" in c else order.agency_id
        if agency_id and not getattr(self.clients.get(agency_id), "is_agency", 0):
            raise invalid(f"Client {agency_id} is not an agency")
        group_id = order.group_order_id
        if "GroupServiceOrderID" in c:
            group_id = "" if c["GroupServiceOrderID"] in ("", 0, "0", -1, "-1") else parse_order_id(
                c["GroupServiceOrderID"], "GroupServiceOrderID")  # fmt: skip
            if group_id:
                parent = self.order(order.service_id, group_id)
                if parent is order or parent.group_order_id or self.children(order):
                    raise invalid("a group order must be another order without a group, of an order without children")
        product_id = parse_id(c["ProductID"], "ProductID") if "ProductID" in c else order.product_id
        consume = parse_qty(c["ConsumeQty"], "ConsumeQty") if "ConsumeQty" in c else None
        money = parse_money(c["ConsumeSum"], "ConsumeSum") if "ConsumeSum" in c else None
        completion = parse_qty(c["CompletionQty"], "CompletionQty") if "CompletionQty" in c else None
        order.client_id, order.agency_id, order.product_id, order.group_order_id = (
            client_id, agency_id, product_id, group_id)  # fmt: skip
        if "ContractID" in c:
            order.contract_id = parse_optional_id(c["ContractID"], "ContractID")
        if "Blocked" in c:
            order.blocked = parse_flag(c["Blocked"], "Blocked")
        price = self.unit_price(order)[1]
        if money is not None:
            self.set_money(order, money)
        elif consume is not None:
            self.set_money(order, self.to_money(consume, price))
        else:
            self.set_money(order, order.consume_sum)
        if completion is not None:
            order.completion_qty = completion
        settlement = self.settle(notify=False)
        return self.order_state(order, settlement)

    def seed(self, data: Any) -> list:
        """Add legacy data (clients, persons, contracts, orders as in the state file) to the current state."""
        d = struct(data, "Seed data", optional=("clients", "persons", "contracts", "orders", "user_links"))
        kinds = (("clients", Client, self.clients, "client_id"), ("persons", Person, self.persons, "person_id"),
                 ("contracts", Contract, self.contracts, "contract_id"))  # fmt: skip
        records: list[tuple[dict, Any, str, Any]] = []  # (store, record, counter, id): all parsed before any is kept
        try:
            for name, record_class, store, key in kinds:
                for item in array(d.get(name, []), name, allow_empty=True):
                    record = record_class.from_json(item)
                    records.append((store, record, key.split("_")[0], getattr(record, key)))
            new_orders = [Order.from_json({"order_id": 0, **item})
                          for item in array(d.get("orders", []), "orders", allow_empty=True)]  # fmt: skip
            for order in new_orders:
                order.service_order_id = parse_order_id(order.service_order_id)
            links = {int(uid): int(client_id) for uid, client_id in dict(d.get("user_links", {})).items()}
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise invalid(f"Seed: {exc}") from exc
        for store, record, counter, record_id in records:
            store[record_id] = record
            self.next_ids[counter] = max(self.next_ids[counter], record_id + 1)
        for order in new_orders:
            self.order_seq += 1
            order.order_id, order.seq = self.next_id("order"), self.order_seq
            self.orders[order.key] = order
            self.set_money(order, order.consume_sum)
        self.user_links.update(links)
        self.settle(notify=False)
        return [0, "SUCCESS"]

    # ------------------------------------------------------------------------------------------------ State
    def order_state(self, order: Order, settlement: Any) -> dict:
        unit, price = self.unit_price(order)
        report = self.reported(order, settlement)
        share = settlement.shares.get(order.key)
        unpaid = share.unpaid if share else 0
        data = {
            "ServiceID": order.service_id,
            "ServiceOrderID": order.service_order_id,
            "ClientID": order.client_id,
            "AgencyID": order.agency_id,
            "ProductID": order.product_id,
            "GroupServiceOrderID": order.group_order_id,
            "ConsumeQty": fmt_qty(report["ConsumeQty"]),
            "ConsumeSum": fmt_money(report["ConsumeSum"]),
            "CompletionQty": fmt_qty(report["CompletionQty"]),
            "UnpaidQty": fmt_qty(self.to_qty(unpaid, price)),
            "UnpaidSum": fmt_money(unpaid),
            "ConsumeAmount": fmt_money(report["ConsumeAmount"]),
            "CompletionSum": fmt_money(report["CompletionSum"]),
            "OwnConsumeSum": fmt_money(order.consume_sum),
            "OverdraftSum": fmt_money(share.covered if share else 0),
            "Unit": unit,
            "Price": str(price),
            "ContractID": order.contract_id,
            "Text": order.text,
            "Stop": order.stop,
            "Blocked": order.blocked,
            "Tid": str(order.tid),
            "IsGroupRoot": int(bool(settlement.children.get(order.key))),
        }
        if "TotalConsumeQty" in report:
            data["TotalConsumeQty"] = fmt_qty(report["TotalConsumeQty"])
        return data

    def client_state(self, client: Client, settlement: Any) -> dict:
        data = self.client_struct(client)
        data.update(CURRENCY=client.currency, Tid=str(client.tid),
                    USER_UIDS=sorted(uid for uid, cid in self.user_links.items() if cid == client.client_id))
        overdrafts = []
        for raw in client.overdrafts.values():
            od = Overdraft.from_json(raw)
            overdrafts.append({
                "ServiceID": od.service_id, "FirmID": od.firm_id, "OverdraftLimit": fmt_money(od.limit),
                "OverdraftSpent": fmt_money(self.overdraft_spent(client.client_id, od.service_id, settlement)),
                "ClientLimit": fmt_money(od.client_limit), "MinPaymentTerm": fmt_date(od.min_term) or "0000-00-00",
                "PaymentTermDays": od.term_days,
            })  # fmt: skip
        data["Overdrafts"] = overdrafts
        if overdrafts:
            first = overdrafts[0]
            data.update(OverdraftLimit=first["OverdraftLimit"], OverdraftSpent=first["OverdraftSpent"],
                        MinPaymentTerm=first["MinPaymentTerm"], PaymentTermDays=first["PaymentTermDays"])  # fmt: skip
        return data

    def snapshot(self) -> dict:
        settlement = self.settlement()
        contracts = []
        for c in sorted(self.contracts.values(), key=lambda c: c.contract_id):
            data = self.contract_struct(c)
            data.update(CREDIT_LIMIT=fmt_money(c.credit_limit), LIMIT_SPENT=fmt_money(self.credit_spent(c.contract_id)))
            contracts.append(data)
        return {
            "clients": [self.client_state(c, settlement) for c in sorted(self.clients.values(),
                                                                          key=lambda c: c.client_id)],
            "persons": [self.person_struct(p) for p in sorted(self.persons.values(), key=lambda p: p.person_id)],
            "contracts": contracts,
            "orders": [self.order_state(o, settlement) for o in sorted(self.orders.values(), key=lambda o: o.seq)],
            "requests": [self.request_struct(r) for r in sorted(self.requests.values(), key=lambda r: r.request_id)],
            "pending": len(self.pending),
        }
