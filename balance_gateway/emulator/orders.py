"""Orders: CreateOrUpdateOrdersBatch, GetOrdersInfo, UpdateCampaigns, CreateTransferMultiple.

- An update **replaces** the order: a field left out is reset (no ContractID unlinks the contract, no
  GroupServiceOrderID leaves the group; 0, -1 and "" mean "none" too).
- Joining a group moves the child's free money (its money less its completion money) into the group root,
  asynchronously (like completions, after `options.completion_delay_ms`), unless `GroupWithoutTransfer=1`.
- Changing ClientID, AgencyID or ProductID of an order with money is refused ("only equivalent clients are
  permitted") when `options.refuse_owner_change_with_money` (default).
- UpdateCampaigns: per item 1 (accepted) or 0 (unknown or blocked order, a `dt` that is not an XML-RPC dateTime or
  lies in the future in `options.dt_zone`, a malformed quantity). Values are cumulative and in the product's unit
  (`Bucks`, `Money`, `Days`, `Shows`, `Clicks`, `Units`); other units are ignored ("stay unset"). Accepted
  completions are applied after `options.completion_delay_ms`, then NotifyOrder2 goes out.
- CreateTransferMultiple: QtyOld must equal the source's ConsumeQty as GetOrdersInfo reports it, to 6 places,
  else ORDERS_NOT_SYNCHRONIZED; the money moved is split among destinations by their QtyDelta weights; all orders
  belong to one client (and one agency unless `options.transfer_across_agencies`); a source cannot give more
  than its free money (NOT_ENOUGH_FUNDS).
"""

from __future__ import annotations

import logging
from decimal import ROUND_DOWN, Decimal
from typing import Any

from balance_gateway.emulator.clients import Clients
from balance_gateway.emulator.options import GROUP_ENQUEUE, UNITS
from balance_gateway.emulator.records import Order
from balance_gateway.emulator.values import (
    CENT,
    ZERO,
    BalanceError,
    array,
    error_xml,
    fmt_money,
    fmt_qty,
    invalid,
    parse_datetime,
    parse_flag,
    parse_id,
    parse_optional_id,
    parse_order_id,
    parse_qty,
    parse_str,
    parse_uid,
    struct,
)

logger = logging.getLogger("balance_gateway.emulator")

ORDER_FIELDS = ("AgencyID", "ContractID", "GroupServiceOrderID", "GroupWithoutTransfer", "Text", "ManagerUID",
                "Comment", "RegionID", "UnitName")  # fmt: skip


def _group_id(value: Any) -> str:
    if value in (None, "", 0, "0", -1, "-1"):
        return ""
    return parse_order_id(value, "GroupServiceOrderID")


class Orders(Clients):
    def create_or_update_orders_batch(self, uid: Any, orders: Any) -> list:
        parse_uid(uid)
        results = []
        for item in array(orders, "orders"):
            try:
                self._replace_order(item)
            except BalanceError as error:
                results.append([-1, error_xml(error.code, error.msg, "Balance2.CreateOrUpdateOrdersBatch")])
            else:
                results.append([0, "Success"])
        self.settle()
        return results

    def _replace_order(self, item: Any) -> None:
        p = struct(item, "order", required=("ServiceID", "ServiceOrderID", "ProductID", "ClientID"),
                   optional=ORDER_FIELDS)  # fmt: skip
        service_id = parse_id(p["ServiceID"], "ServiceID")
        service_order_id = parse_order_id(p["ServiceOrderID"])
        product_id = parse_id(p["ProductID"], "ProductID")
        client = self.client(p["ClientID"], "ClientID")
        agency_id = parse_optional_id(p.get("AgencyID"), "AgencyID")
        contract_id = parse_optional_id(p.get("ContractID"), "ContractID")
        group_id = _group_id(p.get("GroupServiceOrderID"))
        without_transfer = parse_flag(p.get("GroupWithoutTransfer", 0), "GroupWithoutTransfer")
        text = parse_str(p["Text"], "Text") if "Text" in p else ""
        if agency_id and not self.client(agency_id, "AgencyID").is_agency:
            raise invalid(f"Client {agency_id} is not an agency")
        if contract_id:
            contract = self.contracts.get(contract_id)
            if contract is None:
                raise BalanceError("CONTRACT_NOT_FOUND", f"Contract {contract_id} not found")
            if contract.client_id != (agency_id or client.client_id):
                raise BalanceError("INCOMPATIBLE_CONTRACT", f"Contract {contract_id} belongs to client "
                                   f"{contract.client_id}, not to the order's payer")  # fmt: skip
        existing = self.orders.get((service_id, service_order_id))
        children = self.children(existing) if existing else []
        if group_id:
            if group_id == service_order_id:
                raise invalid("an order cannot be its own group order")
            parent = self.orders.get((service_id, group_id))
            if parent is None:
                raise BalanceError("ORDER_NOT_FOUND", f"Group order {service_id}-{group_id} not found")
            if parent.group_order_id:
                raise invalid(f"Group order {service_id}-{group_id} is itself in a group")
            if (parent.client_id, parent.agency_id) != (client.client_id, agency_id):
                raise BalanceError("ORDERS_FROM_DIFFERENT_CLIENTS", f"Group order {service_id}-{group_id} belongs to "
                                   f"client {parent.client_id}, agency {parent.agency_id}")  # fmt: skip
            if children:
                raise invalid(f"Order {service_id}-{service_order_id} has child orders and cannot join a group")
        if existing is None:
            self.order_seq += 1
            order = Order(order_id=self.next_id("order"), service_id=service_id, service_order_id=service_order_id,
                          client_id=client.client_id, product_id=product_id, agency_id=agency_id,
                          contract_id=contract_id, group_order_id=group_id, text=text, seq=self.order_seq)  # fmt: skip
            self.orders[order.key] = order
            return
        owner_changed = (existing.client_id, existing.agency_id, existing.product_id) != (
            client.client_id, agency_id, product_id)  # fmt: skip
        if owner_changed and self.options.refuse_owner_change_with_money and self._has_money(existing):
            raise BalanceError("NOT_EQUIVALENT_CLIENTS", "Order has money: only equivalent clients are permitted")
        if children and (existing.client_id, existing.agency_id) != (client.client_id, agency_id):
            raise invalid("ClientID and AgencyID cannot change on an order with child orders")
        joins = bool(group_id) and group_id != existing.group_order_id
        existing.client_id, existing.agency_id, existing.product_id = client.client_id, agency_id, product_id
        existing.contract_id, existing.group_order_id, existing.text = contract_id, group_id, text
        self.set_money(existing, existing.consume_sum)  # the product (and so the units) may have changed
        if joins and not without_transfer:
            self.schedule("group_transfer", {"ServiceID": service_id, "ServiceOrderID": service_order_id})

    def _has_money(self, order: Order) -> bool:
        return any(o.consume_sum > 0 or o.completion_qty > 0 for o in self.members(order))

    def run_group_transfer(self, payload: dict) -> None:
        order = self.orders.get((payload["ServiceID"], payload["ServiceOrderID"]))
        if order is None or not order.group_order_id:
            return
        root = self.root(order)
        free = order.consume_sum - self.completion_money(order)
        if root is not order and free > 0:
            self.add_money(order, -free)
            self.add_money(root, free)

    # ------------------------------------------------------------------------------------------- reading
    def orders_info_struct(self, order: Order, settlement: Any) -> dict:
        report = self.reported(order, settlement)
        is_root = bool(settlement.children.get(order.key))
        completion = report["CompletionSum"]
        return {
            "id": order.order_id,
            "ServiceID": order.service_id,
            "ServiceOrderID": int(order.service_order_id),
            "IsGroupRoot": int(is_root),
            "GroupServiceOrderID": int(order.group_order_id) if order.group_order_id else 0,
            "product_id": order.product_id,
            "consume_qty": fmt_qty(report["ConsumeQty"]),
            "completion_qty": fmt_qty(report["CompletionQty"]),
            "consume_amount": fmt_money(report["ConsumeAmount"]),
            "completion_amount": fmt_money(completion),
            "ConsumeMoneyQty": fmt_money(report["ConsumeSum"]),
            "CompletionMoneyQty": fmt_money(completion),
            "CompletionFixedMoneyQty": fmt_money(completion),
            "invoice_currency": self.currency(order.payer_id),
        }

    def get_orders_info(self, items: Any) -> list:
        if isinstance(items, dict):
            p = struct(items, "GetOrdersInfo filter", required=("ContractID",))
            contract_id = parse_id(p["ContractID"], "ContractID")
            found = [o for o in self.orders.values() if o.contract_id == contract_id]
        else:
            found = []
            for item in array(items, "orders", allow_empty=True):
                p = struct(item, "order", required=("ServiceID", "ServiceOrderID"))
                order = self.orders.get((parse_id(p["ServiceID"], "ServiceID"), parse_order_id(p["ServiceOrderID"])))
                if order is not None:
                    found.append(order)
        settlement = self.settlement()
        return [self.orders_info_struct(o, settlement) for o in sorted(found, key=lambda o: o.seq)]

    # ----------------------------------------------------------------------------------------- completions
    def update_campaigns(self, items: Any) -> dict:
        result: dict[str, dict[str, int]] = {}
        now = self.local_now()
        for item in array(items, "campaigns"):
            if not isinstance(item, dict) or "ServiceID" not in item or "ServiceOrderID" not in item:
                raise invalid("every campaign needs ServiceID and ServiceOrderID")
            service_id = parse_id(item["ServiceID"], "ServiceID")
            service_order_id = parse_order_id(item["ServiceOrderID"])
            accepted = self._completion(service_id, service_order_id, item, now)
            result.setdefault(str(service_id), {})[service_order_id] = int(accepted)
        self.settle()  # what was applied at once (no delay) is notified now
        return result

    def _completion(self, service_id: int, service_order_id: str, item: dict, now: Any) -> bool:
        """Accept (and schedule) one campaign item, or say why not: Balance answers only 0, the log says why."""
        order = self.orders.get((service_id, service_order_id))
        reason = "unknown order" if order is None else "blocked order" if order.blocked else ""
        dt = qty = None
        stop = 0
        if order is not None and not reason:
            try:
                if isinstance(item.get("dt"), str):
                    raise invalid("dt must be an XML-RPC dateTime, not a string")
                dt = parse_datetime(item.get("dt"), "dt")
                stop = parse_flag(item.get("stop", 0), "stop")
                unit = self.unit_price(order)[0]
                qty = parse_qty(item[unit], unit) if unit in item else None
                unknown = set(item) - {"ServiceID", "ServiceOrderID", "dt", "stop", *UNITS}
                if unknown:
                    raise invalid(f"unknown field(s) {', '.join(sorted(unknown))}")
            except BalanceError as error:
                reason = error.msg
            else:
                if dt > now:
                    reason = f"dt {dt.isoformat()} is in the future ({self.options.dt_zone} now {now.isoformat()})"
        if reason or dt is None:
            logger.info("UpdateCampaigns %s-%s answered 0: %s", service_id, service_order_id, reason)
            return False
        self.schedule("completion", {"ServiceID": service_id, "ServiceOrderID": service_order_id,
                                     "qty": None if qty is None else str(qty), "stop": stop,
                                     "dt": dt.isoformat()})  # fmt: skip
        return True

    def run_completion(self, payload: dict) -> None:
        order = self.orders.get((payload["ServiceID"], payload["ServiceOrderID"]))
        if order is None:
            return
        if payload["qty"] is not None:
            order.completion_qty = Decimal(payload["qty"])
        order.stop, order.last_dt = payload["stop"], payload["dt"]

    # ------------------------------------------------------------------------------------------- transfers
    def create_transfer_multiple(self, uid: Any, sources: Any, destinations: Any, flag: Any = 0) -> list:
        parse_uid(uid)
        settlement = self.settlement()
        moves: list[tuple[Order, Decimal]] = []  # (source, money out)
        for item in array(sources, "transfer sources"):
            p = struct(item, "transfer source", required=("ServiceID", "ServiceOrderID", "QtyOld", "QtyNew"),
                       optional=("AllQty",))  # fmt: skip
            order = self.order(parse_id(p["ServiceID"], "ServiceID"), parse_order_id(p["ServiceOrderID"]))
            qty_old, qty_new = parse_qty(p["QtyOld"], "QtyOld"), parse_qty(p["QtyNew"], "QtyNew")
            report = self.reported(order, settlement)
            if qty_old != report["ConsumeQty"]:
                raise BalanceError("ORDERS_NOT_SYNCHRONIZED", f"Order {order.service_id}-{order.service_order_id}: "
                                   f"QtyOld {fmt_qty(qty_old)} != consume {fmt_qty(report['ConsumeQty'])}")  # fmt: skip
            if qty_new >= qty_old:
                raise invalid(f"QtyNew must be below QtyOld on {order.service_id}-{order.service_order_id}")
            price = self.unit_price(order)[1]
            out = report["ConsumeSum"] if qty_new == 0 else self.to_money(qty_old - qty_new, price)
            moves.append((order, out))
        targets = []
        for item in array(destinations, "transfer destinations"):
            p = struct(item, "transfer destination", required=("ServiceID", "ServiceOrderID", "QtyDelta"))
            order = self.order(parse_id(p["ServiceID"], "ServiceID"), parse_order_id(p["ServiceOrderID"]))
            targets.append((order, parse_qty(p["QtyDelta"], "QtyDelta", positive=True)))
        everyone = [o for o, _ in moves] + [o for o, _ in targets]
        if len({o.key for o in everyone}) != len(everyone):
            raise invalid("an order appears twice in the transfer")
        first = everyone[0]
        for order in everyone:
            if order.client_id != first.client_id:
                raise BalanceError("NOT_EQUIVALENT_CLIENTS", "transfers go between orders of one client only")
            if order.agency_id != first.agency_id and not self.options.transfer_across_agencies:
                raise BalanceError("NOT_EQUIVALENT_CLIENTS", "transfers between agencies are not permitted")
        for order, out in moves:
            root = self.root(order)
            free = settlement.pot_money.get(root.key, order.consume_sum) - sum(
                (settlement.shares[m.key].spent for m in self.members(root)), ZERO)  # fmt: skip
            free = min(free, sum((m.consume_sum for m in self._givers(order)), ZERO))
            if out > free:
                raise BalanceError("NOT_ENOUGH_FUNDS", f"Order {order.service_id}-{order.service_order_id} has "
                                   f"{fmt_money(max(free, ZERO))} free, {fmt_money(out)} asked")  # fmt: skip
        for order, out in moves:
            self._take_money(order, out)
        total = sum((out for _, out in moves), ZERO)
        weights = sum((w for _, w in targets), ZERO)
        parts = [(total * w / weights).quantize(CENT, rounding=ROUND_DOWN) for _, w in targets[1:]]
        parts.insert(0, total - sum(parts, ZERO))
        for (order, _), part in zip(targets, parts, strict=True):
            self.add_money(order, part)
        self.settle()
        return [0, "SUCCESS"]

    def _givers(self, order: Order) -> list[Order]:
        """Whose money a transfer from `order` takes: a group root in the parent type reports (and gives) the
        money its children hold too."""
        if order.group_order_id or self.options.group_type == GROUP_ENQUEUE:
            return [order]
        return self.members(order)

    def _take_money(self, order: Order, amount: Decimal) -> None:
        left = amount
        for member in self._givers(order):
            part = min(left, member.consume_sum)
            if part > 0:
                self.add_money(member, -part)
                left -= part
