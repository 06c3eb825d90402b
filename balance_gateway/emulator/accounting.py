"""Money on orders: units and prices, unified-account groups, coverage, unpaid completion, NotifyOrder2.

- Every order has a product with a unit and a price (options.products). `consume_sum` is money (2 places),
  `consume_qty` the same money in the product's units (6 places); `completion_qty` is in units and its money is
  `completion_qty * price`, rounded to cents.
- A group (pot) is a root order and its children (GroupServiceOrderID). Its money is the sum of its members'
  money; it covers its members' completion money in order (root first, then children in creation order).
- What covers the rest: for a direct client (no agency), its auto-overdraft (SetOverdraftParams: ClientLimit,
  capped by the overdraft limit less the unpaid overdraft invoices); for an agency, nothing (agency spending is
  covered by credit invoices, which are money on the orders). What is still uncovered is **unpaid completion**.
- Reporting depends on `options.group_type`:
  "parent": the root reports the group's money (ConsumeSum, and ConsumeQty in its units); each child reports
  ConsumeQty 0, ConsumeSum 0 and ConsumeAmount = the money that covers its completion.
  "enqueue": money is moved from the root onto each child as the child completes (only the root's free money);
  each order reports the money on it, and the root adds TotalConsumeQty (the group's money in its units) when
  `options.total_consume_qty`.
- NotifyOrder2 goes out whenever what an order reports changes (a new Tid each time): totals, never deltas.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from balance_gateway.emulator.options import GROUP_ENQUEUE
from balance_gateway.emulator.records import OVERDRAFT, Order, OrderKey, Overdraft
from balance_gateway.emulator.store import Store
from balance_gateway.emulator.values import CENT, MICRO, ZERO, fmt_money, fmt_qty, to_wire


@dataclass
class Share:
    """How one order's completion money is covered."""

    spent: Decimal = ZERO
    paid: Decimal = ZERO  # by money on the group
    covered: Decimal = ZERO  # by the client's auto-overdraft
    unpaid: Decimal = ZERO


@dataclass
class Settlement:
    shares: dict[OrderKey, Share] = field(default_factory=dict)
    pot_money: dict[OrderKey, Decimal] = field(default_factory=dict)  # root key -> the group's money
    children: dict[OrderKey, list[Order]] = field(default_factory=dict)  # root key -> its children, oldest first
    auto_spent: dict[tuple[int, str], Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))


class Accounting(Store):
    # ------------------------------------------------------------------------------------------ units, money
    def unit_price(self, order: Order) -> tuple[str, Decimal]:
        return self.options.price(order.product_id)

    @staticmethod
    def to_qty(money: Decimal, price: Decimal) -> Decimal:
        return (money / price).quantize(MICRO, rounding=ROUND_HALF_UP)

    @staticmethod
    def to_money(qty: Decimal, price: Decimal) -> Decimal:
        return (qty * price).quantize(CENT, rounding=ROUND_HALF_UP)

    def completion_money(self, order: Order) -> Decimal:
        return self.to_money(order.completion_qty, self.unit_price(order)[1])

    def set_money(self, order: Order, money: Decimal) -> None:
        """Put exactly `money` on the order (its units follow from its price)."""
        order.consume_sum = money.quantize(CENT)
        order.consume_qty = self.to_qty(order.consume_sum, self.unit_price(order)[1])

    def add_money(self, order: Order, money: Decimal) -> None:
        self.set_money(order, order.consume_sum + money)

    def after_load(self) -> None:
        for order in self.orders.values():
            self.set_money(order, order.consume_sum)
        self.settle(notify=False)

    def members(self, root: Order) -> list[Order]:
        return [root, *self.children(root)]

    def groups(self) -> dict[OrderKey, list[Order]]:
        """Every root (an order outside any group, or whose group order is missing) -> its children, in one pass."""
        groups: dict[OrderKey, list[Order]] = {}
        for order in sorted(self.orders.values(), key=lambda o: o.seq):
            parent = (order.service_id, order.group_order_id)
            if order.group_order_id and parent in self.orders:
                groups.setdefault(parent, []).append(order)
            else:
                groups.setdefault(order.key, [])
        return groups

    # --------------------------------------------------------------------------------------------- overdraft
    def overdraft(self, client_id: int, service_id: int, firm_id: int | None = None) -> Overdraft | None:
        client = self.clients.get(client_id)
        firm = self.options.firm_id if firm_id is None else firm_id
        data = client.overdrafts.get(f"{firm}:{service_id}") if client else None
        return Overdraft.from_json(data) if data else None

    def save_overdraft(self, client_id: int, overdraft: Overdraft) -> None:
        self.clients[client_id].overdrafts[overdraft.key] = overdraft.to_json()

    def overdraft_invoices_unpaid(self, client_id: int, service_id: int) -> Decimal:
        return sum(
            (i.amount - i.paid_amount for i in self.invoices.values()
             if i.kind == OVERDRAFT and i.client_id == client_id and i.service_id == service_id and not i.paid),
            ZERO,
        )  # fmt: skip

    def auto_overdraft_room(self, client_id: int, service_id: int) -> Decimal:
        od = self.overdraft(client_id, service_id)
        if od is None or od.client_limit <= 0:
            return ZERO
        cap = min(od.client_limit, od.limit) - od.external_spent - self.overdraft_invoices_unpaid(client_id, service_id)
        return max(ZERO, cap)

    # ------------------------------------------------------------------------------------------- settlement
    def enqueue_money(self) -> None:
        """Enqueue type: move the root's free money onto children whose completion exceeds their money."""
        for root_key, children in self.groups().items():
            root = self.orders[root_key]
            root_free = root.consume_sum - self.completion_money(root)
            for child in children:
                need = self.completion_money(child) - child.consume_sum
                move = min(need, root_free)
                if move > 0:
                    self.add_money(root, -move)
                    self.add_money(child, move)
                    root_free -= move

    def settlement(self) -> Settlement:
        result = Settlement(children=self.groups())
        used: dict[tuple[int, int], Decimal] = defaultdict(lambda: ZERO)
        for root_key, children in result.children.items():
            root = self.orders[root_key]
            members = [root, *children]
            money = sum((o.consume_sum for o in members), ZERO)
            result.pot_money[root.key] = money
            left = money
            for member in members:
                share = Share(spent=self.completion_money(member))
                share.paid = min(share.spent, max(ZERO, left))
                left -= share.paid
                excess = share.spent - share.paid
                if excess > 0 and root.agency_id == 0:
                    key = (root.client_id, root.service_id)
                    room = self.auto_overdraft_room(*key) - used[key]
                    share.covered = min(excess, max(ZERO, room))
                    used[key] += share.covered
                    od_key = f"{self.options.firm_id}:{root.service_id}"
                    result.auto_spent[(root.client_id, od_key)] += share.covered
                share.unpaid = excess - share.covered
                result.shares[member.key] = share
        return result

    def settle(self, *, notify: bool = True) -> Settlement:
        """After every change: move money (enqueue type), recompute coverage, send what changed."""
        if self.options.group_type == GROUP_ENQUEUE:
            self.enqueue_money()
        settlement = self.settlement()
        for order in sorted(self.orders.values(), key=lambda o: o.seq):
            report = self.reported(order, settlement)
            signature = "|".join(str(report.get(k, "")) for k in ("ConsumeQty", "ConsumeSum", "ConsumeAmount",
                                                                   "CompletionQty", "TotalConsumeQty"))  # fmt: skip
            if signature == order.signature:
                continue
            fresh = not order.signature and not any(report.get(k) for k in ("ConsumeSum", "CompletionQty",
                                                                              "ConsumeAmount"))  # fmt: skip
            order.signature = signature
            order.tid = self.next_tid()
            if notify and not fresh:  # a new order with nothing on it is not news
                self.outbox.append(("BalanceClient.NotifyOrder2", self.order_notification(order, report)))
        self.settle_clients(settlement, notify=notify)
        return settlement

    def settle_clients(self, settlement: Settlement, *, notify: bool) -> None:  # overdraft.py
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------- reporting
    def reported(self, order: Order, settlement: Settlement) -> dict:
        """What Balance says about an order's money (NotifyOrder2 and GetOrdersInfo use the same figures)."""
        price = self.unit_price(order)[1]
        share = settlement.shares.get(order.key, Share())
        data = {
            "ConsumeQty": order.consume_qty,
            "ConsumeSum": order.consume_sum,
            "ConsumeAmount": order.consume_sum,
            "CompletionQty": order.completion_qty,
            "CompletionSum": share.spent,
        }
        is_root = order.key in settlement.pot_money
        has_children = is_root and bool(settlement.children.get(order.key))
        if self.options.group_type == GROUP_ENQUEUE:
            if has_children and self.options.total_consume_qty:
                data["TotalConsumeQty"] = self.to_qty(settlement.pot_money[order.key], price)
        elif has_children:
            money = settlement.pot_money[order.key]
            data.update(ConsumeQty=self.to_qty(money, price), ConsumeSum=money, ConsumeAmount=money)
        elif not is_root:
            data.update(ConsumeQty=ZERO, ConsumeSum=ZERO, ConsumeAmount=share.paid)
        return data

    def order_notification(self, order: Order, report: dict) -> dict:
        payload = {
            "ServiceID": order.service_id,
            "ServiceOrderID": to_wire(int(order.service_order_id)),  # an int; a digit string beyond 32 bits
            "ConsumeQty": fmt_qty(report["ConsumeQty"]),
            "ConsumeSum": fmt_money(report["ConsumeSum"]),
            "ConsumeAmount": fmt_money(report["ConsumeAmount"]),
            "CompletionQty": fmt_qty(report["CompletionQty"]),
            "ConsumeCurrency": self.currency(order.payer_id),
            "ProductCurrency": self.currency(order.payer_id),
            "Tid": str(order.tid),
            "Signal": 1,
            "SignalDescription": "Order balance have been changed",
        }
        if "TotalConsumeQty" in report:
            payload["TotalConsumeQty"] = fmt_qty(report["TotalConsumeQty"])
        return payload
