"""Success examples of the OpenAPI schema: real answers of the API (the README walkthrough against the emulator),
so a consumer sees what a response really looks like. `tests/api/test_contract.py` checks that each one still
matches its response schema."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample

CUSTOMER = {
    "external_id": "dealer:777", "kind": "company", "name": "Fast Cars LLC", "email": "cars@example.com",
    "phone": "", "legal": {"inn": "7712345678", "kpp": "771201001", "legal_address": "Moscow, Arbat 10",
                           "lname": "", "fname": "", "mname": ""},
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


def ok(name: str, value: dict, status: int = 200) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=[str(status)])
