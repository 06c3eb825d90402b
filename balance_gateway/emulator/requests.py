"""Requests and invoices: CreateRequest2, CreateInvoice, and paying (the paystep page, `Emulator.PayRequest`).

- `Qty` of a request line is in the product's units unless `QtyIsAmount=1` (then it is money, 2 places).
- A request is a wish; money comes through an **invoice** on it:
  - a prepayment invoice (the paystep page, `Emulator.PayRequest`, or CreateInvoice without Credit/Overdraft)
    puts its money on the request's orders when it is paid (split by the lines' money, cents rounded down, the
    rest to the first line); an amount less or more than the invoice is accepted;
  - an **overdraft invoice** (`CreateRequest2` with `Overdraft=1`, which issues it at once, or CreateInvoice with
    `Overdraft=1`) puts the money on the orders at once, within the client's overdraft limit for (firm, service)
    less what is already spent; agencies can't have one; paying it settles the debt;
  - a **credit invoice** (CreateInvoice with `Credit=1` and the `ContractID` of the payer's active postpaid
    contract for the service) puts the money on the orders at once, within LIMIT_TOTAL less LIMIT_SPENT (the
    unpaid credit invoices of that contract); paying it frees the limit.
- `Emulator.PayRequest(request_id[, amount])` pays the request's oldest unpaid invoice, making a prepayment
  invoice first if it has none; a request whose invoices are all paid cannot be paid again.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from balance_gateway.emulator.orders import Orders
from balance_gateway.emulator.records import CREDIT, OVERDRAFT, POSTPAID, PREPAYMENT, Invoice, Request
from balance_gateway.emulator.values import (
    CENT,
    ZERO,
    BalanceError,
    array,
    fmt_money,
    fmt_qty,
    invalid,
    parse_flag,
    parse_id,
    parse_money,
    parse_optional_id,
    parse_order_id,
    parse_qty,
    parse_str,
    parse_uid,
    struct,
)

REQUEST_PARAMS = ("QtyIsAmount", "Overdraft", "InvoiceDesireType", "FirmID", "ReturnPath", "AdminPath", "PromoCode")
INVOICE_PARAMS = ("RequestID", "PaysysID", "PersonID", "Credit", "ContractID", "Overdraft")


class Requests(Orders):
    def user_path(self, request_id: int) -> str:
        return f"{self.base_url}/paystep/{request_id}"

    def create_request2(self, uid: Any, client_id: Any, lines: Any, params: Any = None) -> dict:
        user = parse_uid(uid)
        payer = self.client(client_id)
        p = struct(params if params is not None else {}, "CreateRequest2 params", optional=REQUEST_PARAMS)
        qty_is_amount = parse_flag(p.get("QtyIsAmount", 0), "QtyIsAmount")
        overdraft = parse_flag(p.get("Overdraft", 0), "Overdraft")
        return_path = parse_str(p.get("ReturnPath", ""), "ReturnPath", max_len=2000)
        if return_path and not return_path.startswith(("http://", "https://")):
            raise invalid(f"ReturnPath must be an http(s) URL, got {return_path!r}")
        parsed = []
        for item in array(lines, "request orders"):
            q = struct(item, "request order", required=("ServiceID", "ServiceOrderID", "Qty"),
                       optional=("BeginDT", "Discount"))  # fmt: skip
            order = self.order(parse_id(q["ServiceID"], "ServiceID"), parse_order_id(q["ServiceOrderID"]))
            price = self.unit_price(order)[1]
            if qty_is_amount:
                money = parse_money(q["Qty"], "Qty", positive=True)
                qty = self.to_qty(money, price)
            else:
                qty = parse_qty(q["Qty"], "Qty", positive=True)
                money = self.to_money(qty, price)
            if order.payer_id != payer.client_id and order.client_id != payer.client_id:
                raise BalanceError("PERMISSION_DENIED", f"Client {payer.client_id} cannot pay order "
                                   f"{order.service_id}-{order.service_order_id}")  # fmt: skip
            parsed.append([order.service_id, order.service_order_id, str(qty), str(money)])
        if len({(line[0], line[1]) for line in parsed}) != len(parsed):
            raise invalid("an order appears twice in the request")
        request = Request(request_id=self.next_id("request"), client_id=payer.client_id, uid=user, lines=parsed,
                          created=self.today(), qty_is_amount=qty_is_amount, overdraft=overdraft,
                          return_path=return_path)  # fmt: skip
        if overdraft:
            self._check_overdraft(request, request.total)
        self.requests[request.request_id] = request
        if overdraft:
            self._issue(request, OVERDRAFT)
            self.settle()
        user_path = self.user_path(request.request_id)
        return {"RequestID": request.request_id, "UserPath": user_path, "AdminPath": f"{user_path}?admin=1"}

    def create_invoice(self, uid: Any, params: Any) -> int:
        parse_uid(uid)
        p = struct(params, "CreateInvoice params", required=("RequestID",), optional=INVOICE_PARAMS)
        request = self.request(p["RequestID"])
        credit = parse_flag(p.get("Credit", 0), "Credit")
        overdraft = parse_flag(p.get("Overdraft", 0), "Overdraft")
        person_id = parse_optional_id(p.get("PersonID"), "PersonID")
        contract_id = parse_optional_id(p.get("ContractID"), "ContractID")
        if person_id and getattr(self.persons.get(person_id), "client_id", None) != request.client_id:
            raise BalanceError("PERSON_NOT_FOUND", f"Person {person_id} is not a person of client {request.client_id}")
        if credit and overdraft:
            raise invalid("an invoice is either Credit or Overdraft")
        if credit:
            self._check_credit(request, contract_id)
            kind = CREDIT
        elif overdraft:
            self._check_overdraft(request, request.total)
            kind = OVERDRAFT
        else:
            kind = PREPAYMENT
        invoice = self._issue(request, kind, person_id=person_id, contract_id=contract_id,
                              paysys_id=parse_optional_id(p.get("PaysysID"), "PaysysID"))  # fmt: skip
        self.settle()
        return invoice.invoice_id

    def _service(self, request: Request) -> int:
        return int(request.lines[0][0])

    def _check_overdraft(self, request: Request, amount: Decimal) -> None:
        payer = self.clients[request.client_id]
        if payer.is_agency:
            raise BalanceError("AGENCY_OVERDRAFT", "Agencies can't have an overdraft")
        service_id = self._service(request)
        od = self.overdraft(payer.client_id, service_id)
        spent = self.overdraft_spent(payer.client_id, service_id)
        if od is None or od.limit - spent < amount:
            available = (od.limit - spent) if od else ZERO
            raise BalanceError("NOT_ENOUGH_OVERDRAFT_LIMIT", f"Client {payer.client_id} has overdraft "
                               f"{fmt_money(max(available, ZERO))} available, {fmt_money(amount)} asked")  # fmt: skip

    def _check_credit(self, request: Request, contract_id: int) -> None:
        if not contract_id:
            raise invalid("a credit invoice needs ContractID")
        contract = self.contracts.get(contract_id)
        service_id = self._service(request)
        if contract is None or contract.client_id != request.client_id:
            raise BalanceError("CONTRACT_NOT_FOUND", f"Contract {contract_id} of client {request.client_id} not found")
        if contract.payment_type != POSTPAID or contract not in self.active_contracts(contract.client_id, service_id):
            raise BalanceError("CREDIT_NOT_ALLOWED", f"Contract {contract_id} is not an active postpaid contract "
                               f"for service {service_id}")  # fmt: skip
        room = contract.credit_limit - self.credit_spent(contract_id)
        if request.total > room:
            raise BalanceError("CREDIT_LIMIT_EXCEEDED", f"Contract {contract_id} has credit {fmt_money(room)} left, "
                               f"{fmt_money(request.total)} asked")  # fmt: skip

    def credit_spent(self, contract_id: int) -> Decimal:
        return sum((i.amount - i.paid_amount for i in self.invoices.values()
                    if i.kind == CREDIT and i.contract_id == contract_id and not i.paid), ZERO)  # fmt: skip

    def _issue(self, request: Request, kind: str, **extra: Any) -> Invoice:
        invoice = Invoice(invoice_id=self.next_id("invoice"), request_id=request.request_id,
                          client_id=request.client_id, kind=kind, amount=request.total, dt=self.today(),
                          service_id=self._service(request), **extra)  # fmt: skip
        self.invoices[invoice.invoice_id] = invoice
        request.invoice_ids.append(invoice.invoice_id)
        if kind != PREPAYMENT:
            self._consume(request, invoice.amount)
            invoice.consumed = True
        return invoice

    def _consume(self, request: Request, amount: Decimal) -> None:
        """Put `amount` on the request's orders, split by the lines' money."""
        total = request.total
        moneys = [Decimal(line[3]) for line in request.lines]
        parts = [(amount * m / total).quantize(CENT, rounding=ROUND_DOWN) for m in moneys[1:]]
        parts.insert(0, amount - sum(parts, ZERO))
        for line, part in zip(request.lines, parts, strict=True):
            order = self.orders.get((int(line[0]), str(line[1])))
            if order is not None and part > 0:
                self.add_money(order, part)

    def pay_invoice(self, invoice: Invoice, amount: Decimal | None) -> Decimal:
        paid = invoice.amount - invoice.paid_amount if amount is None else amount
        if invoice.kind == PREPAYMENT:
            self._consume(self.requests[invoice.request_id], paid)
            invoice.consumed = True
            invoice.paid_amount += paid
            invoice.paid_dt = self.today()
        else:
            invoice.paid_amount = min(invoice.amount, invoice.paid_amount + paid)
            if invoice.paid_amount >= invoice.amount:
                invoice.paid_dt = self.today()
        self.settle()
        return paid

    def pay_request(self, request_id: Any, amount: Any = None) -> list:
        request = self.request(request_id)
        value = None if amount in (None, "") else parse_money(amount, "amount", positive=True)
        unpaid = [self.invoices[i] for i in request.invoice_ids if not self.invoices[i].paid]
        if not unpaid and request.invoice_ids:
            raise invalid(f"Request {request.request_id} is already paid")
        invoice = unpaid[0] if unpaid else self._issue(request, PREPAYMENT)
        paid = self.pay_invoice(invoice, value)
        return [0, "SUCCESS", fmt_money(paid)]

    def request_struct(self, request: Request) -> dict:
        invoices = [self.invoices[i] for i in request.invoice_ids]
        if not invoices:
            status = "unpaid"
        elif all(i.paid for i in invoices):
            status = "paid"
        else:
            status = next(i.kind for i in invoices if not i.paid)
        return {
            "RequestID": request.request_id,
            "ClientID": request.client_id,
            "Status": status,
            "Sum": fmt_money(request.total),
            "PaidAmount": fmt_money(sum((i.paid_amount for i in invoices), ZERO)),
            "ReturnPath": request.return_path,
            "UserPath": self.user_path(request.request_id),
            "QtyIsAmount": request.qty_is_amount,
            "Overdraft": request.overdraft,
            "Orders": [{"ServiceID": int(sid), "ServiceOrderID": soid, "Qty": fmt_qty(Decimal(qty)),
                        "Sum": fmt_money(Decimal(money))} for sid, soid, qty, money in request.lines],
            "Invoices": [self.invoice_struct(i) for i in invoices],
        }

    def invoice_struct(self, invoice: Invoice) -> dict:
        return {
            "InvoiceID": invoice.invoice_id,
            "Kind": invoice.kind,
            "Amount": fmt_money(invoice.amount),
            "PaidAmount": fmt_money(invoice.paid_amount),
            "Paid": int(invoice.paid),
            "ContractID": invoice.contract_id,
            "PersonID": invoice.person_id,
        }
