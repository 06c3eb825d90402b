"""A consumer's legacy Balance state, made up for rehearsing a migration (tests, `make run`'s demo, the guide).

`legacy_rehearsal(...)` makes, deterministically from a seed: Balance clients (customers and agencies), their
persons, the agencies' prepaid contracts and the consumer's own orders with money and completions, as an
`Emulator.Seed` document (the emulator's state-file record shape: `manage.py balance_emulator --seed-file`), plus
the two files the cut-over runs: the customers file of `import_customers` and the orders file of `adopt_orders`.
Some orders are broken on purpose (a wrong owner, a wrong payer, unpaid completion, an order Balance does not
have, a wrong product), each with the reason adoption must give.

`manage.py legacy_rehearsal --out DIR` writes them (`seed.json`, `customers.csv`, `orders.csv`).
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from customers.import_file import COLUMNS as CUSTOMER_COLUMNS
from payments.adopting import COLUMNS as ORDER_COLUMNS

# Legacy ids far from what billing and the emulator hand out, so a seeded state never collides with them.
FIRST_CLIENT_ID, FIRST_PERSON_ID, FIRST_CONTRACT_ID = 700000, 800000, 900000
# The consumer's own ServiceOrderIDs: beyond 32 bits (they travel as digit strings), far above billing's order ids.
FIRST_LEGACY_ORDER_ID = 9_000_000_000

# Broken on purpose: the kind and the words adoption's reason must contain.
BROKEN_KINDS = {
    "owner": "Balance refused to move the money",  # the order belongs to another client
    "payer": "Balance refused to move the money",  # the order is under an agency, the row says the customer pays
    "unpaid": "unpaid completion",  # completion beyond the money paid
    "missing": "not found in Balance",  # the row names an order Balance does not have
    "product": "product differs",  # the order is of another product than the row says
}


@dataclass
class LegacyState:
    seed: dict[str, Any]
    customers: list[dict[str, str]]
    orders: list[dict[str, str]]
    broken: dict[str, str]  # ServiceOrderID -> broken kind
    # (customer external id, agency external id or "") -> free money the good orders bring to that payer's wallet
    free_money: dict[tuple[str, str], Decimal] = field(default_factory=dict)

    def write(self, directory: str | Path) -> dict[str, Path]:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"seed": out / "seed.json", "customers": out / "customers.csv", "orders": out / "orders.csv"}
        paths["seed"].write_text(json.dumps(self.seed, indent=1), encoding="utf-8")
        for name, columns, rows in (("customers", CUSTOMER_COLUMNS, self.customers),
                                    ("orders", ORDER_COLUMNS, self.orders)):
            with paths[name].open("w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(columns))
                writer.writeheader()
                writer.writerows(rows)
        return paths


def _company_fields(name: str, n: int) -> dict[str, str]:
    return {"name": name, "email": f"legacy{n}@example.com", "phone": "+7 495 000-00-00",
            "inn": "7701234567", "kpp": "770101001", "longname": f"LLC {name}", "legaladdress": "Moscow, Tverskaya 1",
            "postaddress": "Moscow, Tverskaya 1", "postcode": "101000"}


def legacy_rehearsal(*, customers: int = 300, orders: int = 1000, agencies: int = 5, broken: int = 5,
                     service_id: int = 7, products: dict[str, int] | None = None, seed: int = 14,
                     prefix: str = "legacy") -> LegacyState:
    """The legacy state of a consumer of `service_id`: `customers` customers (every fifth under one of
    `agencies` agencies, some of those with orders they paid themselves before), `orders` orders with money (a
    third untouched, a third partly spent, some fully spent), the last `broken` of them broken on purpose.
    `products`: billing's product code -> Balance ProductID (priced one unit per rouble)."""
    products = products or {"placement": 503162, "boost": 503163}
    codes = sorted(products)
    rng = random.Random(seed)
    clients: list[dict[str, Any]] = []
    persons: list[dict[str, Any]] = []
    contracts: list[dict[str, Any]] = []
    customer_rows: list[dict[str, str]] = []
    next_client, next_person = FIRST_CLIENT_ID, FIRST_PERSON_ID

    agency_clients: list[tuple[str, int]] = []
    for a in range(agencies):
        external_id, name = f"{prefix}-agency:{a + 1}", f"Legacy Agency {a + 1}"
        clients.append({"client_id": next_client, "name": name, "is_agency": 1})
        fields = _company_fields(name, next_client)
        persons.append({"person_id": next_person, "client_id": next_client, "type": "ur", "fields": fields})
        contracts.append({"contract_id": FIRST_CONTRACT_ID + a, "client_id": next_client,
                          "external_id": f"LEG-{a + 1}", "payment_type": 2, "credit_limit": "0",
                          "services": [service_id], "dt": "2020-01-01", "person_id": next_person})
        customer_rows.append({"external_id": external_id, "kind": "agency", "balance_client_id": str(next_client),
                              "name": name, "inn": fields["inn"], "kpp": fields["kpp"],
                              "legal_address": fields["legaladdress"], "long_name": fields["longname"],
                              "postal_address": fields["postaddress"], "postcode": fields["postcode"],
                              "balance_person_id": str(next_person)})
        agency_clients.append((external_id, next_client))
        next_client, next_person = next_client + 1, next_person + 1

    people: list[tuple[str, int, tuple[str, int] | None]] = []  # (external id, client id, agency)
    for c in range(customers):
        external_id = f"{prefix}-dealer:{c + 1}"
        company = c % 2 == 0
        agency = agency_clients[(c // 5) % agencies] if agencies and c % 5 == 0 else None
        name = f"Legacy Dealer {c + 1}" if company else f"Legacy Person {c + 1}"
        clients.append({"client_id": next_client, "name": name, "agency_id": agency[1] if agency else 0})
        row = {"external_id": external_id, "kind": "company" if company else "individual",
               "balance_client_id": str(next_client), "name": name, "agency_external_id": agency[0] if agency else "",
               "balance_person_id": str(next_person)}
        if company:
            fields = _company_fields(name, next_client)
            persons.append({"person_id": next_person, "client_id": next_client, "type": "ur", "fields": fields})
            row.update(inn=fields["inn"], kpp=fields["kpp"], legal_address=fields["legaladdress"],
                       long_name=fields["longname"], postal_address=fields["postaddress"],
                       postcode=fields["postcode"])
        else:
            persons.append({"person_id": next_person, "client_id": next_client, "type": "ph",
                            "fields": {"name": name, "lname": "Petrov", "fname": f"Ivan{c + 1}",
                                       "email": "p@example.com", "phone": "+7 495 000-00-00"}})
            row.update(lname="Petrov", fname=f"Ivan{c + 1}")
        customer_rows.append(row)
        people.append((external_id, next_client, agency))
        next_client, next_person = next_client + 1, next_person + 1

    seeded: list[dict[str, Any]] = []
    order_rows: list[dict[str, str]] = []
    broken_ids: dict[str, str] = {}
    free: dict[tuple[str, str], Decimal] = defaultdict(lambda: Decimal("0.00"))
    kinds = list(BROKEN_KINDS)
    first_broken = orders - broken
    for n in range(orders):
        soid = str(FIRST_LEGACY_ORDER_ID + n)
        external_id, client_id, agency = people[n % customers]
        # A customer under an agency paid its first order itself, before it signed with the agency.
        pays = agency if agency and n >= customers else None
        code = codes[n % len(codes)]
        paid = Decimal(rng.randrange(100_00, 10_000_00)) / 100
        share = n % 3
        spent = Decimal("0.00") if share == 0 else paid if n % 17 == 0 else (paid * rng.randrange(1, 100) / 100)
        spent = spent.quantize(Decimal("0.01"))
        order = {"service_id": service_id, "service_order_id": soid, "client_id": client_id,
                 "product_id": products[code], "agency_id": pays[1] if pays else 0,
                 "consume_sum": str(paid), "completion_qty": str(spent), "text": f"legacy order of {external_id}"}
        row = {"customer_external_id": external_id, "service_order_id": soid, "product": code,
               "agency_external_id": pays[0] if pays else ""}
        if n >= first_broken:
            kind = kinds[(n - first_broken) % len(kinds)]
            broken_ids[soid] = kind
            if kind == "owner":
                order["client_id"] = people[(n + 1) % customers][1]
                order["agency_id"] = 0
                row["agency_external_id"] = ""
            elif kind == "payer":
                order["agency_id"] = agency_clients[0][1] if agency_clients else 0
                order["client_id"] = client_id
                row["agency_external_id"] = ""
            elif kind == "unpaid":
                order["completion_qty"] = str(paid + Decimal("10.00"))
            elif kind == "missing":
                order = {}
            elif kind == "product":
                row["product"] = codes[(n + 1) % len(codes)]
        else:
            free[(external_id, row["agency_external_id"])] += paid - spent
        if order:
            seeded.append(order)
        order_rows.append(row)
    seed_doc = {"clients": clients, "persons": persons, "contracts": contracts, "orders": seeded}
    return LegacyState(seed=seed_doc, customers=customer_rows, orders=order_rows, broken=broken_ids,
                       free_money=dict(free))
