"""Overdraft and credit: GetOverdraftParams, SetOverdraftParams, GetClientCreditLimits, NotifyClient2.

- A client's overdraft is per (firm, service): the limit Balance computed (set with `Emulator.GrantOverdraft`),
  the payment term, and the client's auto-overdraft settings (SetOverdraftParams). GetOverdraftParams answers the
  auto-overdraft settings (`ClientLimit` 0 and empty fields when none are set), never the limit.
- OverdraftSpent = the unpaid overdraft invoices + what auto-overdraft covers now + the debt set with
  `Emulator.SetOverdraftSpent`. MinPaymentTerm is today + the term when a debt appears, "0000-00-00" when there
  is none; OverdraftBan is 1 while a debt is past its term.
- NotifyClient2 goes out per (firm, service) overdraft whenever its limit, spent, term or ban changes.
- Credit: LIMIT_SPENT of a postpaid contract is its unpaid credit invoices.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from balance_gateway.emulator.accounting import Settlement
from balance_gateway.emulator.records import POSTPAID, Client, Overdraft
from balance_gateway.emulator.requests import Requests
from balance_gateway.emulator.values import (
    ZERO,
    BalanceError,
    fmt_date,
    fmt_money,
    invalid,
    parse_id,
    parse_money,
    parse_optional_id,
    parse_str,
    struct,
)


class Overdrafts(Requests):
    def overdraft_spent(self, client_id: int, service_id: int, settlement: Settlement | None = None) -> Decimal:
        od = self.overdraft(client_id, service_id)
        if od is None:
            return ZERO
        settlement = settlement or self.settlement()
        return (od.external_spent + self.overdraft_invoices_unpaid(client_id, service_id)
                + settlement.auto_spent[(client_id, od.key)])  # fmt: skip

    def get_overdraft_params(self, service_id: Any, client_id: Any) -> dict:
        service = parse_id(service_id, "ServiceID")
        client = self.client(client_id, "ClientID")
        od = self.overdraft(client.client_id, service)
        if od is None or od.client_limit <= 0:
            return {"PersonID": 0, "PaymentMethodCC": "", "Currency": "", "ClientLimit": "0.00"}
        return {"PersonID": od.person_id, "PaymentMethodCC": od.payment_method_cc, "Currency": od.currency,
                "ClientLimit": fmt_money(od.client_limit)}  # fmt: skip

    def set_overdraft_params(self, params: Any) -> list:
        p = struct(params, "SetOverdraftParams params", required=("PersonID", "ServiceID", "ClientLimit"),
                   optional=("PaymentMethodCC", "Currency"))  # fmt: skip
        service = parse_id(p["ServiceID"], "ServiceID")
        person = self.persons.get(parse_id(p["PersonID"], "PersonID"))
        if person is None:
            raise BalanceError("PERSON_NOT_FOUND", f"Person with ID {p['PersonID']} not found in DB")
        client = self.clients[person.client_id]
        limit = parse_money(p["ClientLimit"], "ClientLimit")
        currency = parse_str(p.get("Currency", ""), "Currency").upper()
        if client.is_agency:
            raise BalanceError("OVERDRAFT_NOT_ALLOWED", "Agencies can't have an overdraft")
        od = self.overdraft(client.client_id, service)
        if od is None or od.limit <= 0:
            raise BalanceError("OVERDRAFT_NOT_ALLOWED", f"Client {client.client_id} has no overdraft limit")
        if not currency:
            raise BalanceError("OVERDRAFT_NOT_ALLOWED", "Currency is required for an auto-overdraft")
        if limit > od.limit:
            raise invalid(f"ClientLimit {fmt_money(limit)} is above the overdraft limit {fmt_money(od.limit)}")
        od.client_limit, od.person_id, od.currency = limit, person.person_id, currency
        od.payment_method_cc = parse_str(p.get("PaymentMethodCC", ""), "PaymentMethodCC")
        self.save_overdraft(client.client_id, od)
        self.settle()
        return [0, "SUCCESS"]

    def get_client_credit_limits(self, client_id: Any, product_id: Any) -> dict:
        client = self.client(client_id)
        product = parse_id(product_id, "product_id")
        day = self.today()
        limits = [
            self.credit_limit_struct(c, self.credit_spent(c.contract_id))
            for c in sorted(self.contracts.values(), key=lambda c: c.contract_id)
            if c.client_id == client.client_id and c.payment_type == POSTPAID and c.active_on(day)
        ]
        currency = self.options.credit_currency if client.currency == "RUB" else client.currency
        return {"CURRENCY": currency, "LIMITS": limits, "PRODUCT_PRICE": str(self.options.price(product)[1])}

    # ------------------------------------------------------------------------------------------ NotifyClient2
    def settle_clients(self, settlement: Settlement, *, notify: bool, force: tuple[tuple[int, str], ...] = ()) -> None:
        today = self.today()
        for client in self.clients.values():
            for data in list(client.overdrafts.values()):
                od = Overdraft.from_json(data)
                spent = self.overdraft_spent(client.client_id, od.service_id, settlement)
                if spent > 0 and od.min_term is None:
                    od.min_term = today + datetime.timedelta(days=od.term_days)
                elif spent <= 0:
                    od.min_term = None
                ban = int(spent > 0 and od.min_term is not None and od.min_term < today)
                signature = f"{od.limit}|{spent}|{od.min_term}|{ban}"
                if signature != od.signature or (client.client_id, od.key) in force:
                    od.signature, od.tid = signature, self.next_tid()
                    if notify:
                        self.outbox.append(("BalanceClient.NotifyClient2", self.client_notification(client, od, spent,
                                                                                                    ban)))  # fmt: skip
                self.save_overdraft(client.client_id, od)

    def client_notification(self, client: Client, od: Overdraft, spent: Decimal, ban: int) -> dict:
        payload = {
            "ClientID": str(client.client_id),
            "ClientCurrency": client.currency,
            "OverdraftLimit": fmt_money(od.limit),
            "OverdraftSpent": fmt_money(spent),
            "MinPaymentTerm": fmt_date(od.min_term) or "0000-00-00",
            "OverdraftBan": ban,
            "BusinessUnit": 0,
            "NonResident": int(client.region_id != 225),
            "MigrateToCurrencyDone": 1,
            "CanBeForceCurrencyConverted": 0,
            "HasEquivalentOrBrandClients": 0,
            "Tid": str(od.tid),
        }
        if self.options.client_notify_ids:
            payload.update(ServiceID=od.service_id, FirmID=od.firm_id)
        return payload

    def grant_overdraft(self, client_id: Any, limit: Any, payment_term_days: Any, where: Any = None) -> list:
        """Emulator.GrantOverdraft: Balance computes a limit (for `where` = {ServiceID, FirmID}; default the
        firm option and every service the client has orders in, or `options.default_service_id`)."""
        client = self.client(client_id)
        amount = parse_money(limit, "limit")
        try:
            days = int(payment_term_days)
        except (TypeError, ValueError) as exc:
            raise invalid(f"payment_term_days must be an integer, got {payment_term_days!r}") from exc
        w = struct(where if where is not None else {}, "GrantOverdraft where", optional=("ServiceID", "FirmID"))
        if client.is_agency:
            raise BalanceError("OVERDRAFT_NOT_ALLOWED", "Agencies can't have an overdraft")
        firm = parse_optional_id(w.get("FirmID"), "FirmID") or self.options.firm_id
        if "ServiceID" in w:
            services = [parse_id(w["ServiceID"], "ServiceID")]
        else:
            services = sorted({o.service_id for o in self.orders.values() if o.client_id == client.client_id}) or [
                self.options.default_service_id]
        granted = []
        for service in services:
            od = self.overdraft(client.client_id, service, firm) or Overdraft(service_id=service, firm_id=firm)
            od.limit, od.term_days = amount, days
            od.client_limit = min(od.client_limit, amount)
            self.save_overdraft(client.client_id, od)
            granted.append((client.client_id, od.key))
        self.settle_clients(self.settlement(), notify=True, force=tuple(granted))
        return [0, "SUCCESS"]

    def set_overdraft_spent(self, client_id: Any, amount: Any, service_id: Any = None) -> list:
        client = self.client(client_id)
        value = parse_money(amount, "amount")
        keys = [k for k, d in client.overdrafts.items() if service_id is None or d["service_id"] == int(service_id)]
        if not keys:
            raise BalanceError("OVERDRAFT_NOT_FOUND", f"Client {client.client_id} has no overdraft")
        for key in keys:
            od = Overdraft.from_json(client.overdrafts[key])
            od.external_spent = value
            self.save_overdraft(client.client_id, od)
        self.settle()
        return [0, "SUCCESS"]
