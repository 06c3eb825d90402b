"""The lean charge's database function writes exactly the rows of the ORM path (PostgreSQL only).

Two customers of the same shape get the same charges: one through `charge_create` (on PostgreSQL the function
`payments_charge_create` for every warm charge), the other through the ORM path alone. Every row written for each
(ledger transactions, entries, accounts, charges, events, outbox operations) is compared field by field, ids,
uuids and timestamps replaced by their order of appearance; refusals must raise the same exception with the same
message and write nothing; `verify_ledger` must pass.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, models, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import Customer
from disbalance.exceptions import ApplicationError, CustomerBlocked, CustomerNotActive, InsufficientFunds
from disbalance.models import OutboxOperation, WebhookEvent
from payments.models import Charge
from payments.services import charge_create, hold_create
from payments.services.charges import _charge_orm
from tests.customers.test_api import COMPANY
from wallets.models import Account, LedgerEntry, LedgerTransaction
from wallets.services import wallet_credit_topup

pytestmark = [
    pytest.mark.skipif(not settings.IS_POSTGRES, reason="payments_charge_create exists on PostgreSQL only (SQLite "
                       "always takes the ORM path); set DATABASE_URL to a PostgreSQL database"),
    pytest.mark.django_db(transaction=True),
]

# (product, amount, description, metadata): the first charge of each product creates its account and Balance
# order (the ORM path on both sides); the rest are warm. The threshold (50.00) is crossed downwards once.
CHARGES = [
    ("placement", "10.00", "", None),
    ("boost", "5.50", "first boost", {"campaign": "c1"}),
    ("placement", "12.34", "", None),
    ("placement", "0.01", "a cent", {"k": "v", "other": "w"}),
    ("boost", "20.00", "", None),
    ("placement", "2.15", "x" * 500, None),
    ("boost", "1.00", "", None),
]


def _register(api, run_outbox, external_id: str) -> Customer:
    assert api.post("/api/v1/customers", {**COMPANY, "external_id": external_id}, format="json").status_code == 201
    run_outbox()
    customer = Customer.objects.get(external_id=external_id)
    assert customer.status == "active", customer.status_reason
    Customer.objects.filter(pk=customer.pk).update(low_balance_threshold=Decimal("50.00"))
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("100.00"),
                            reference_kind="test", reference_id=f"funding:{external_id}")
    return Customer.objects.get(pk=customer.pk)


class Normalizer:
    """Replaces what differs by nature between the two customers' rows: ids and uuids by their order of
    appearance, the customer by a placeholder, timestamps by whether they are set."""

    def __init__(self, customer: Customer) -> None:
        self.customer = customer
        self.tokens: dict[str, str] = {}

    def token(self, value: Any, kind: str) -> str:
        key = f"{kind}:{value}" if isinstance(value, int) else str(value)  # uuids are unique across tables
        if key not in self.tokens:
            self.tokens[key] = f"{kind}#{sum(t.startswith(kind) for t in self.tokens.values())}"
        return self.tokens[key]

    def value(self, field: models.Field | None, value: Any) -> Any:
        if isinstance(value, datetime) or (isinstance(value, str) and _is_time(value)):
            return "<time>"
        if value == self.customer.pk and field is not None and field.name in ("customer", "customer_pk"):
            return "<customer>"
        if isinstance(value, uuid.UUID) or (isinstance(value, str) and _is_uuid(value)):
            return self.token(value, "uuid")
        if isinstance(value, str):  # account keys, subjects, references and dedup keys name the customer
            value = value.replace(self.customer.external_id, "<customer>").replace(f"c{self.customer.pk}:",
                                                                                   "c<customer>:")
            suffix = f":{self.customer.pk}"
            return value[:-len(suffix)] + ":<customer>" if value.endswith(suffix) else value
        if isinstance(value, dict):
            return {k: "<customer>" if k == "customer_id" and v == self.customer.pk else self.value(None, v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(None, v) for v in value]
        return value

    def order(self, value: Any) -> int:
        return list(self.tokens).index(str(value))

    def rows(self, queryset: models.QuerySet, kind: str) -> list[dict[str, Any]]:
        out = []
        for obj in queryset:
            row = {}
            for field in obj._meta.concrete_fields:
                value = getattr(obj, field.attname)
                if field.primary_key:
                    row[field.name] = self.token(value, kind)
                elif field.is_relation and field.related_model in (LedgerTransaction, Account, Charge):
                    row[field.name] = None if value is None else self.token(value, field.related_model.__name__)
                else:
                    row[field.name] = self.value(field, value)
            out.append(row)
        return out


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _is_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return "T" in value


def _written(customer: Customer, since: datetime) -> dict[str, list[dict[str, Any]]]:
    """Every row of the customer's ledger, and its events and outbox operations from `since` on (registration's
    name the customer and its request)."""
    norm = Normalizer(customer)
    accounts = Account.objects.filter(customer=customer).order_by("id")
    transactions = LedgerTransaction.objects.filter(customer=customer).order_by("id")
    snapshot = {
        "accounts": norm.rows(accounts, "Account"),
        "transactions": norm.rows(transactions, "LedgerTransaction"),  # reference ids name the charges in order
        "entries": norm.rows(LedgerEntry.objects.filter(transaction__customer=customer).order_by("id"), "LedgerEntry"),
    }
    charges = sorted(Charge.objects.filter(customer=customer), key=lambda c: norm.order(c.id))
    snapshot["charges"] = norm.rows(charges, "Charge")
    snapshot["events"] = norm.rows(WebhookEvent.objects.filter(customer_pk=customer.pk, created_at__gte=since)
                                   .order_by("sequence"), "WebhookEvent")
    snapshot["outbox"] = norm.rows(OutboxOperation.objects.filter(subject=f"customer:{customer.pk}",
                                                                  created_at__gte=since).order_by("id"),
                                   "OutboxOperation")
    return snapshot


def _charge(path, customer: Customer, products, product: str, amount: str, description: str = "",
            metadata: dict | None = None, queries: list | None = None) -> Charge:
    """A charge through `path` on a fresh customer row (as the API passes it); `queries` gets its statements."""
    customer = Customer.objects.get(pk=customer.pk)
    captured = CaptureQueriesContext(connection)
    try:
        with captured:
            return path(customer=customer, product=products[product], amount=Decimal(amount),
                        description=description, metadata=metadata)
    finally:
        if queries is not None:
            queries.extend(captured.captured_queries)


def test_the_function_writes_the_rows_of_the_orm_path(api, emulator, run_outbox, products):
    lean = _register(api, run_outbox, "dealer:lean")
    orm = _register(api, run_outbox, "dealer:orm")
    since = timezone.now()
    for customer in (lean, orm):  # held money: the events' balance is wallet + held
        hold_create(customer=customer, product=products["boost"], amount=Decimal("3.00"))
    through_function = 0
    for product, amount, description, metadata in CHARGES:
        queries: list = []
        _charge(charge_create, lean, products, product, amount, description, metadata, queries)
        if len(queries) == 1:  # the warm charges: one statement, the function's call, its own transaction
            assert "payments_charge_create" in queries[0]["sql"]
            through_function += 1
        _charge(_charge_orm, orm, products, product, amount, description, metadata)
        run_outbox()
    assert through_function == len(CHARGES) - 2  # all but each product's first
    # Inside a caller's transaction the function runs under a savepoint: the same rows.
    with transaction.atomic():
        _charge(charge_create, lean, products, "boost", "0.99", "in a transaction")
    _charge(_charge_orm, orm, products, "boost", "0.99", "in a transaction")
    run_outbox()

    written_lean, written_orm = _written(lean, since), _written(orm, since)
    assert len(written_lean["events"]) == len(CHARGES) + 3 and written_lean["outbox"]  # hold, charges, low balance
    assert [e["type"] for e in written_lean["events"]].count("wallet.low_balance") == 1
    for table in written_orm:
        assert written_lean[table] == written_orm[table], table
    call_command("verify_ledger")


def _refused(path, customer: Customer, products, amount: str) -> tuple[type, str]:
    queries: list = []
    with pytest.raises(ApplicationError) as refused:
        _charge(path, customer, products, "placement", amount, queries=queries)
    if path is charge_create:  # the lean case: the function's one statement refused it
        assert len(queries) == 1 and "payments_charge_create" in queries[0]["sql"]
    return type(refused.value), str(refused.value).replace(customer.external_id, "<customer>")


def _counts() -> tuple[int, ...]:
    return (LedgerTransaction.objects.count(), LedgerEntry.objects.count(), Charge.objects.count(),
            WebhookEvent.objects.count(), OutboxOperation.objects.count(),
            *Account.objects.order_by("id").values_list("balance", flat=True))


def test_refusals_are_the_orm_paths_and_write_nothing(api, emulator, run_outbox, products):
    lean = _register(api, run_outbox, "dealer:lean")
    orm = _register(api, run_outbox, "dealer:orm")
    for customer in (lean, orm):
        _charge(_charge_orm, customer, products, "placement", "1.00")  # accounts and orders: warm from now on
    run_outbox()
    before = _counts()
    refused = _refused(charge_create, lean, products, "99.01")
    assert refused[0] is InsufficientFunds
    assert refused == _refused(_charge_orm, orm, products, "99.01")
    for field, value, error in (("blocked", True, CustomerBlocked), ("status", "registering", CustomerNotActive)):
        Customer.objects.filter(pk__in=[lean.pk, orm.pk]).update(**{field: value})
        refused = _refused(charge_create, lean, products, "1.00")
        assert refused[0] is error
        assert refused == _refused(_charge_orm, orm, products, "1.00")
        Customer.objects.filter(pk__in=[lean.pk, orm.pk]).update(blocked=False, status="active")
    # A refusal inside a caller's transaction leaves that transaction usable (savepoint).
    with transaction.atomic():
        with pytest.raises(InsufficientFunds):
            _charge(charge_create, lean, products, "placement", "99.01")
        assert Customer.objects.filter(pk=lean.pk).exists()
    assert _counts() == before
    call_command("verify_ledger")
