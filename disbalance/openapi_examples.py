"""Success examples of the OpenAPI schema: real answers of the API (the README walkthrough under `make run`, with
the emulator), so a consumer sees what a response really looks like. `tests/api/test_contract.py` checks that
every success answer has one and that each still matches its response schema."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

CUSTOMER = {
    "external_id": "dealer:777", "kind": "company", "name": "Fast Cars LLC", "email": "cars@example.com",
    "phone": "", "legal": {"inn": "7712345678", "kpp": "771201001", "long_name": "Fast Cars Limited Liability Company",
                           "legal_address": "Moscow, Arbat 10", "postal_address": "Moscow, Arbat 10",
                           "postcode": "119002", "lname": "", "fname": "", "mname": ""},
    "status": "active", "status_reason": "", "agency": None, "blocked": False, "user_uids": [4001],
    "created_at": "2026-12-02T07:23:32.222369Z", "updated_at": "2026-12-02T07:23:32.278998Z",
    "balance": {"client_id": 100000, "person_id": 200000},
}
TOPUP = {
    "id": "2158fc0c-6bb9-416e-b550-6c6711f225b3", "customer": "dealer:777", "amount": "1500.00",
    "status": "awaiting_payment", "status_reason": "", "payment_url": "http://127.0.0.1:8002/paystep/300000",
    "payer": None, "created_at": "2026-12-02T07:23:32.401300Z", "succeeded_at": None,
    "expires_at": "2026-12-05T07:23:32.401163Z",
}
CHARGE = {
    "id": "f590d9de-7c95-4454-951c-4183a9bf0dea", "customer": "dealer:777", "product": "placement",
    "amount": "300.00", "refunded": "0.00", "status": "succeeded", "payer": None, "description": "", "metadata": {},
    "hold": None, "created_at": "2026-12-02T07:23:32.667594Z",
}
HOLD_CAPTURED = {
    "id": "0d87c23c-2ea0-4cda-b974-244cbc72f907", "customer": "dealer:777", "product": "boost",
    "status": "captured", "amount": "200.00", "captured": "150.00", "payer": None,
    "expires_at": "2026-12-09T07:23:32.691747Z", "description": "", "metadata": {},
    "created_at": "2026-12-02T07:23:32.692270Z", "closed_at": "2026-12-02T07:23:32.867102Z",
}
WALLET = {
    "currency": "RUB", "balance": "0.00", "held": "0.00", "overdraft_limit": "0.00", "available": "0.00",
    "debt": "0.00", "debt_due_at": None, "overdue": False, "blocked": False, "payer": "agency:1",
    "other_payers": [{"payer": None, "balance": "1100.00"}],
}

AGENCY = {
    "external_id": "agency:1", "name": "Demo Agency LLC", "email": "agency@example.com", "phone": "",
    "legal": {"inn": "7701234567", "kpp": "770101001", "long_name": "Demo Agency Limited Liability Company",
              "legal_address": "Moscow, Tverskaya 1", "postal_address": "Moscow, Tverskaya 1", "postcode": "125009"},
    "status": "active",
    "status_reason": "",
    "contracts": [{"id": 400000, "number": "EMU-400000", "active": True, "payment_type": "prepaid",
                   "credit_limit": "0.00", "valid_from": "2026-12-02", "valid_to": None}],
    "created_at": "2026-12-02T07:38:37.536140Z", "updated_at": "2026-12-02T07:38:37.998221Z",
    "balance": {"client_id": 100000, "person_id": 200000},
}
HOLD = {**HOLD_CAPTURED, "status": "held", "captured": "0.00", "closed_at": None}
HOLD_RELEASED = {**HOLD, "status": "released", "closed_at": "2026-12-02T07:39:27.763356Z"}
REFUND = {
    "id": "0d18acf4-b0cb-41ae-8ef0-3f8e1ea5308b", "charge": "79eef50c-e1d0-4b4e-a8b8-cbe79fa5597e", "amount": "50.00",
    "reason": "bad photo", "created_at": "2026-12-02T07:39:27.931441Z",
}
STATEMENT_ROW = {
    "id": "ce2e4f43-48a6-446c-872c-118aad5850d8", "type": "capture", "amount": "-150.00", "balance_after": "1050.00",
    "held_change": "-200.00", "held_after": "0.00", "payer": None,
    "reference": {"kind": "hold", "id": "c9f91487-e09d-407f-94d0-79c66c04766f"},
    "created_at": "2026-12-02T07:39:27.748873Z", "description": "Capture of hold c9f91487-e09d-407f-94d0-79c66c04766f",
}
PRODUCTS = [{"code": "boost", "name": "Boost to the top", "kind": "vas"},
            {"code": "highlight", "name": "Highlighting", "kind": "vas"},
            {"code": "placement", "name": "Listing placement", "kind": "placement"}]
AGENCY_CHANGE = {"agency": "agency:1", "since": "2026-12-02T07:39:28.301547Z"}
AGENCY_HISTORY = [
    {"agency": "agency:1", "since": "2026-12-02T07:39:28.301547Z", "until": None, "changed_by": "service:demo",
     "reason": "signed with the agency"},
    {"agency": None, "since": "2026-12-02T07:39:18.132296Z", "until": "2026-12-02T07:39:28.301547Z",
     "changed_by": "service:demo", "reason": "registration"},
]
OVERDRAFT = {"limit": "0.00", "granted_by_balance": "0.00", "spent": "0.00", "due_at": None, "overdue": False,
             "blocked": False}


def page(results: list, next_url: str | None = None) -> dict:
    return {"next": next_url, "previous": None, "results": results}


def ok(name: str, value: dict, status: int = 200) -> OpenApiExample:
    """A success example. For a plain-array response give one item: drf-spectacular shows it as a list."""
    return OpenApiExample(name, value=value, response_only=True, status_codes=[str(status)])

RECONCILIATION_STATEMENT = {
    "payer": "self", "from": "2026-12-01", "to": "2026-12-31", "currency": "RUB", "opening_balance": "0.00",
    "money_in": "1500.00", "spend": [{"product": "placement", "amount": "300.00"}],
    "refunds": "50.00", "corrections": "0.00", "closing_balance": "1250.00",
    "lines": [
        {"id": "a3f1c2b9-8d43-4a5e-9b1a-3c2d4e5f6a70", "date": "2026-12-02T07:39:24.878484Z", "type": "topup",
         "product": "", "amount": "1500.00", "balance_after": "1500.00",
         "reference": {"kind": "topup", "id": "c6b66df3-77a5-498b-a45c-c13b3ef94558"}, "description": ""},
        {"id": "b1e2d3c4-8d43-4a5e-9b1a-3c2d4e5f6a71", "date": "2026-12-02T07:39:25.100000Z", "type": "charge",
         "product": "placement", "amount": "-300.00", "balance_after": "1200.00",
         "reference": {"kind": "charge", "id": "79eef50c-e1d0-4b4e-a8b8-cbe79fa5597e"}, "description": ""},
        {"id": "c77ec0e3-8d43-4a5e-9b1a-3c2d4e5f6a72", "date": "2026-12-02T07:39:27.931441Z", "type": "refund",
         "product": "placement", "amount": "50.00", "balance_after": "1250.00",
         "reference": {"kind": "refund", "id": "0d18acf4-b0cb-41ae-8ef0-3f8e1ea5308b"},
         "description": "Refund of charge 79eef50c-e1d0-4b4e-a8b8-cbe79fa5597e: bad photo"},
    ],
}
