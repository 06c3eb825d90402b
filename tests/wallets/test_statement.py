"""The reconciliation statement (акт сверки): figures, lines traceable to ledger transactions, the API as JSON and
CSV, and its errors."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from rest_framework.test import APIClient

from tests.factories import AgencyFactory, CustomerFactory
from tests.wallets.ledger_time import ledger_time
from wallets import services
from wallets.models import LedgerEntry, LedgerTransaction
from wallets.selectors import reconciliation_statement

D = Decimal


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture
def agency(service):
    return AgencyFactory(service=service, external_id="agency:7")


@pytest.fixture
def customer(service, agency):
    """A customer with money in three months, under itself and (from March) under an agency."""
    customer = CustomerFactory(service=service, external_id="dealer:20101")
    post = [
        (at(1, 10), lambda: services.wallet_credit_topup(customer=customer, payer_agency=None, amount=D("1000.00"),
                                                         reference_kind="topup", reference_id="t1")),
        (at(2, 1, 0), lambda: services.wallet_charge(customer=customer, payer_agency=None, product_code="placement",
                                                     amount=D("200.00"), reference_kind="charge", reference_id="c1")),
        (at(2, 3), lambda: services.wallet_hold(customer=customer, payer_agency=None, amount=D("100.00"),
                                                reference_kind="hold", reference_id="h1")),
        (at(2, 4), lambda: services.wallet_capture(customer=customer, payer_agency=None, product_code="boost",
                                                   hold_amount=D("100.00"), captured=D("60.00"),
                                                   reference_kind="hold", reference_id="h1")),
        (at(2, 5), lambda: services.wallet_refund(customer=customer, payer_agency=None, product_code="placement",
                                                  amount=D("50.00"), reference_kind="refund", reference_id="r1")),
        (at(2, 6), lambda: services.wallet_adjust(customer=customer, payer_agency=None, amount=D("-10.00"),
                                                  reason="double credit", created_by=None)),
        (at(2, 28, 23), lambda: services.wallet_credit_topup(customer=customer, payer_agency=None,
                                                             amount=D("500.00"), reference_kind="topup",
                                                             reference_id="t2")),
        (at(3, 1, 0), lambda: services.wallet_charge(customer=customer, payer_agency=None, product_code="placement",
                                                     amount=D("30.00"), reference_kind="charge", reference_id="c2")),
        (at(3, 2), lambda: services.wallet_transfer(customer=customer, from_payer=None, to_payer=agency,
                                                    amount=D("70.00"), reason="back to the agency", created_by=None)),
        (at(3, 3), lambda: services.wallet_charge(customer=customer, payer_agency=agency, product_code="boost",
                                                  amount=D("25.00"), reference_kind="charge", reference_id="c3")),
    ]
    for when, posting in post:
        with ledger_time(when), transaction.atomic():
            posting()
    return customer


def ledger_balance(customer, payer, before: datetime) -> Decimal:
    return LedgerEntry.objects.filter(
        account__customer=customer, account__payer_agency=payer, account__kind__in=("wallet", "holds"),
        transaction__created_at__lt=before,
    ).aggregate(total=Sum("amount"))["total"] or D("0")


def test_the_figures_of_a_month_add_up_and_equal_the_ledger(customer):
    statement = reconciliation_statement(customer=customer, payer=None, date_from=date(2026, 2, 1),
                                         date_to=date(2026, 2, 28))
    assert statement.opening_balance == D("1000.00") == ledger_balance(customer, None, at(2, 1, 0))
    assert statement.money_in == D("500.00")
    assert statement.spend == {"boost": D("60.00"), "placement": D("200.00")}
    assert statement.refunds == D("50.00")
    assert statement.corrections == D("-10.00")
    assert statement.closing_balance == D("1280.00") == ledger_balance(customer, None, at(3, 1, 0))
    assert [line.type for line in statement.lines] == ["charge", "hold", "capture", "refund", "adjustment", "topup"]
    assert [line.balance_after for line in statement.lines] == [D(v) for v in (
        "800.00", "800.00", "740.00", "790.00", "780.00", "1280.00")]
    # Each line is one ledger transaction of the customer.
    ids = {line.transaction_id for line in statement.lines}
    assert set(LedgerTransaction.objects.filter(public_id__in=ids).values_list("customer", flat=True)) == {customer.pk}
    assert len(ids) == 6


def test_the_next_period_opens_with_the_closing_balance_and_payers_are_apart(customer, agency):
    february = reconciliation_statement(customer=customer, payer=None, date_from=date(2026, 2, 1),
                                        date_to=date(2026, 2, 28))
    march = reconciliation_statement(customer=customer, payer=None, date_from=date(2026, 3, 1),
                                     date_to=date(2026, 3, 31))
    assert march.opening_balance == february.closing_balance
    assert march.spend == {"placement": D("30.00")} and march.corrections == D("-70.00")
    assert march.closing_balance == D("1180.00")
    under_agency = reconciliation_statement(customer=customer, payer=agency, date_from=date(2026, 1, 1),
                                            date_to=date(2026, 3, 31))
    assert under_agency.opening_balance == D("0")
    assert under_agency.corrections == D("70.00") and under_agency.spend == {"boost": D("25.00")}
    assert under_agency.closing_balance == D("45.00") == ledger_balance(customer, agency, at(4, 1))


def statement_end(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day) + timedelta(days=1), time.min, tzinfo=UTC)


def _parse_csv(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"))))


def _csv_figures(rows: list[dict[str, str]]) -> dict:
    figures: dict = {"spend": {}, "lines": []}
    for row in rows:
        if row["section"] == "line":
            figures["lines"].append((row["transaction_id"], row["type"], row["amount"], row["balance_after"]))
        elif row["section"] == "spend":
            figures["spend"][row["product"]] = row["amount"]
        else:
            figures[row["section"]] = row["amount"]
    return figures


def _json_figures(body: dict) -> dict:
    return {
        "opening_balance": body["opening_balance"], "money_in": body["money_in"], "refunds": body["refunds"],
        "corrections": body["corrections"], "closing_balance": body["closing_balance"],
        "spend": {item["product"]: item["amount"] for item in body["spend"]},
        "lines": [(line["id"], line["type"], line["amount"], line["balance_after"]) for line in body["lines"]],
    }


@pytest.mark.parametrize(("payer", "date_from", "date_to"), [
    ("self", "2026-01-01", "2026-12-31"), ("self", "2026-02-01", "2026-02-28"), ("self", "2026-02-04", "2026-03-01"),
    ("agency:7", "2026-03-01", "2026-03-31"), ("", "2026-03-03", "2026-03-03"), ("self", "2025-01-01", "2025-12-31"),
])
def test_the_api_answers_json_and_the_same_as_csv(api, customer, agency, payer, date_from, date_to):
    query = f"payer={payer}&from={date_from}&to={date_to}"
    answer = api.get(f"/api/v1/customers/dealer:20101/statement?{query}")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["from"] == date_from and body["to"] == date_to and body["currency"] == "RUB"
    assert body["payer"] == (payer or "self")  # the factory's customer pays itself
    as_csv = api.get(f"/api/v1/customers/dealer:20101/statement?{query}&format=csv")
    assert as_csv.status_code == 200 and as_csv["Content-Type"].startswith("text/csv")
    assert "attachment" in as_csv["Content-Disposition"]
    by_accept = api.get(f"/api/v1/customers/dealer:20101/statement?{query}", HTTP_ACCEPT="text/csv")
    assert by_accept.status_code == 200 and by_accept.content == as_csv.content
    assert _csv_figures(_parse_csv(as_csv.content)) == _json_figures(body)
    payer_agency = None if payer in ("", "self") else agency
    statement = reconciliation_statement(customer=customer, payer=payer_agency,
                                         date_from=date.fromisoformat(date_from), date_to=date.fromisoformat(date_to))
    assert D(body["closing_balance"]) == statement.closing_balance
    assert statement.closing_balance == ledger_balance(customer, payer_agency, statement_end(date_to))


def test_statement_lines_name_their_ledger_transaction(api, customer):
    body = api.get("/api/v1/customers/dealer:20101/statement?payer=self&from=2026-02-01&to=2026-02-28").json()
    refund = next(line for line in body["lines"] if line["type"] == "refund")
    assert refund["reference"] == {"kind": "refund", "id": "r1"} and refund["product"] == "placement"
    assert refund["amount"] == "50.00"
    txn = LedgerTransaction.objects.get(public_id=refund["id"])
    assert (txn.type, txn.reference_id) == ("refund", "r1")


@pytest.mark.parametrize("query", ["from=2026-13-01", "to=yesterday", "from=2026-03-02&to=2026-03-01",
                                   "from=2026-02-30"])
@pytest.mark.parametrize("as_csv", [False, True])
def test_bad_dates_are_problem_json_in_english(api, customer, query, as_csv):
    answer = api.get(f"/api/v1/customers/dealer:20101/statement?{query}{'&format=csv' if as_csv else ''}",
                     HTTP_ACCEPT_LANGUAGE="ru")
    assert answer.status_code == 400, answer.content
    assert answer["Content-Type"] == "application/problem+json"
    body = answer.json()
    assert body["code"] == "validation_error"
    assert body["detail"].isascii(), body  # English, whatever the caller's language


def test_unknown_customer_and_payer_are_404(api, customer):
    assert api.get("/api/v1/customers/nobody/statement").json()["code"] == "not_found"
    answer = api.get("/api/v1/customers/dealer:20101/statement?payer=agency:nobody")
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"


def test_the_schema_documents_the_statement():
    schema = APIClient().get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/customers/{external_id}/statement"]["get"]
    assert operation["operationId"] == "customer_statement"
    assert {"from", "to", "payer", "format"} <= {param["name"] for param in operation["parameters"]}
    assert {"200", "400", "404"} <= set(operation["responses"])
    assert "text/csv" in operation["responses"]["200"]["content"]
