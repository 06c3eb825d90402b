"""The customer's timeline and the reconciliation statement in the console: for a customer with top-ups, charges,
a hold, a refund, an agency change and a fixed mismatch, the timeline's running balance equals the statement at
every row, the statement's totals equal the ledger's, and the console's CSV agrees with the API to the kopeck."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from customers.services import agency_change
from payments.models import Refund, TopUp
from payments.services import charge_create, hold_create, topup_create
from reconciliation.actions import mismatch_fix
from support.timeline import customer_timeline
from tests.factories import CustomerFactory
from tests.support.conftest import with_contract
from tests.wallets.ledger_time import ledger_time
from tests.wallets.test_statement import _csv_figures, _json_figures, _parse_csv, at
from wallets import services as ledger
from wallets.models import LedgerEntry
from wallets.selectors import reconciliation_statement

D = Decimal


def url(customer, name: str) -> str:
    return reverse(f"admin:customers_customer_{name}", args=[customer.pk])


def ledger_balance(customer, payer) -> Decimal:
    return LedgerEntry.objects.filter(account__customer=customer, account__payer_agency=payer,
                                      account__kind__in=("wallet", "holds")).aggregate(s=Sum("amount"))["s"] or D(0)


@pytest.fixture
def story(service, balance_live, emulator, run_outbox, products, mismatched, billing_admin, billing_client):
    """The whole story of one customer, through the services and the console, with Balance (the emulator)."""
    customer, _order, mismatch = mismatched
    assert mismatch_fix(mismatch=mismatch, user=billing_admin).ok
    for amount in ("1000.00", "500.00"):
        with transaction.atomic():
            topup = topup_create(customer=customer, amount=D(amount))
        run_outbox()
        topup.refresh_from_db()
        assert topup.payment_url, topup.status_reason
        emulator.pay_request(topup.balance_request_id)
        assert balance_live.wait_notifications_idle(timeout=10)
    assert set(TopUp.objects.filter(customer=customer).values_list("status", flat=True)) == {"succeeded"}
    charge = charge_create(customer=customer, product=products["placement"], amount=D("300.00"))
    hold_create(customer=customer, product=products["boost"], amount=D("200.00"))
    response = billing_client.post(url(customer, "refund"), {"charge": str(charge.pk), "amount": "50.00",
                                                             "reason": "bad photo"})
    assert response.status_code == 302, response.content.decode()[:2000]
    agency = with_contract(service.agencies.get(external_id="agency:other"), service)
    agency_change(customer=customer, agency=agency, reason="moved to the agency", changed_by="user:billing",
                  user=billing_admin)
    run_outbox()
    customer.refresh_from_db()
    return customer, charge, agency


@pytest.mark.django_db(transaction=True)
def test_the_timeline_balance_is_the_statement_and_the_statement_is_the_ledger(story, billing_admin,
                                                                               billing_client, api):
    customer, charge, _agency = story
    today = timezone.localdate()
    timeline = customer_timeline(customer=customer, payer=None, date_from=today, date_to=today)
    statement = reconciliation_statement(customer=customer, payer=None, date_from=today, date_to=today)
    kinds = {row.kind for row in timeline.rows}
    assert {"money", "topup", "balance_call", "notification", "agency", "support", "mismatch", "webhook"} <= kinds
    # Every ledger row carries the statement line's balance; every other row the balance at that moment.
    lines = {str(line.transaction_id): line for line in statement.lines}
    balance = statement.opening_balance
    money_rows = 0
    for row in timeline.rows:
        if row.kind == "money":
            assert row.balance == lines[row.transaction_id].balance_after
            assert row.amount == lines[row.transaction_id].amount
            balance = row.balance
            money_rows += 1
        else:
            assert row.balance == balance, row
    assert money_rows == len(statement.lines) == 5  # 2 top-ups, charge, hold, refund
    assert [row.at for row in timeline.rows] == sorted(row.at for row in timeline.rows)
    # The statement's totals are the ledger's.
    assert statement.opening_balance == D("0")
    assert (statement.money_in, statement.spend, statement.refunds) == (D("1500.00"), {"placement": D("300.00")},
                                                                        D("50.00"))
    assert statement.closing_balance == D("1250.00") == ledger_balance(customer, None)
    assert Refund.objects.get(charge=charge).reason == "bad photo"
    # The support action is in the timeline with who and why.
    support = [row for row in timeline.rows if row.kind == "support"]
    assert any(row.who == billing_admin.username and "bad photo" in row.details for row in support)

    # Filters keep the running balance: only the mismatches and the agency change.
    filtered = customer_timeline(customer=customer, payer=None, date_from=today, date_to=today,
                                 kinds={"mismatch", "agency"})
    assert {row.kind for row in filtered.rows} == {"mismatch", "agency"}
    assert filtered.rows[-1].balance == D("1250.00")  # the agency changed after everything else

    # The page renders the same rows, and the console's CSV is the API's statement.
    page = billing_client.get(url(customer, "timeline"), {"payer": "self", "date_from": today.isoformat(),
                                                          "date_to": today.isoformat()})
    assert page.status_code == 200
    assert len(page.context["timeline"].rows) == len(timeline.rows)
    query = {"payer": "self", "date_from": today.isoformat(), "date_to": today.isoformat(), "format": "csv"}
    console_csv = billing_client.get(url(customer, "statement"), query)
    assert console_csv["Content-Type"].startswith("text/csv")
    body = api.get(f"/api/v1/customers/{customer.external_id}/statement?payer=self&from={today}&to={today}").json()
    assert _csv_figures(_parse_csv(console_csv.content)) == _json_figures(body)
    assert D(body["closing_balance"]) == ledger_balance(customer, None)


@pytest.fixture
def busy_customer(service):
    """A customer with a year of random money under itself and an agency (no Balance needed)."""
    from tests.factories import AgencyFactory

    agency = AgencyFactory(service=service, external_id="agency:9")
    customer = CustomerFactory(service=service, external_id="dealer:777", agency=agency)
    chooser = random.Random(20260115)
    for n in range(60):
        when = at(1, 1) + timedelta(days=chooser.randrange(0, 360), hours=chooser.randrange(0, 24))
        payer = chooser.choice([None, agency])
        amount = D(chooser.randrange(100, 50_000)) / 100
        kind = chooser.choice(["topup", "topup", "charge", "adjust"])
        with ledger_time(when), transaction.atomic():
            if kind == "topup":
                ledger.wallet_credit_topup(customer=customer, payer_agency=payer, amount=amount,
                                           reference_kind="topup", reference_id=f"t{n}")
            elif kind == "charge":
                ledger.wallet_charge(customer=customer, payer_agency=payer, product_code=chooser.choice(["a", "b"]),
                                     amount=amount, overdraft_limit=D("1000000"), reference_kind="charge",
                                     reference_id=f"c{n}")
            else:
                ledger.wallet_adjust(customer=customer, payer_agency=payer, amount=-amount, reason="test",
                                     created_by=None)
    return customer, agency


def test_the_console_csv_and_the_api_agree_for_any_period_and_payer(busy_customer, billing_client, api):
    customer, agency = busy_customer
    chooser = random.Random(7)
    for _ in range(8):
        first = date(2025, 12, 1) + timedelta(days=chooser.randrange(0, 400))
        last = first + timedelta(days=chooser.randrange(0, 120))
        payer = chooser.choice(["self", agency.external_id])
        console = billing_client.get(url(customer, "statement"), {
            "payer": payer, "date_from": first.isoformat(), "date_to": last.isoformat(), "format": "csv"})
        assert console.status_code == 200, console.content[:500]
        answer = api.get(f"/api/v1/customers/{customer.external_id}/statement?payer={payer}&from={first}&to={last}")
        assert answer.status_code == 200
        figures = _csv_figures(_parse_csv(console.content))
        assert figures == _json_figures(answer.json()), (payer, first, last)
        # and the figures add up
        total = (D(figures["opening_balance"]) + D(figures["money_in"]) - sum(map(D, figures["spend"].values()), D(0))
                 + D(figures["refunds"]) + D(figures["corrections"]))
        assert total == D(figures["closing_balance"])


def test_the_statement_page_shows_the_totals_in_russian(busy_customer, service):
    from django.test import Client

    from tests.support.conftest import make_staff

    customer, _agency = busy_customer
    client = Client(headers={"Accept-Language": "ru"})
    from django.core.management import call_command
    call_command("setup_groups", verbosity=0)
    client.force_login(make_staff("ru-support", "support"))
    page = client.get(url(customer, "statement"), {"payer": "self", "date_from": "2026-01-01",
                                                    "date_to": "2026-12-31"})
    html = page.content.decode()
    statement = page.context["statement"]
    assert "Акт сверки" in html and "Сальдо на начало" in html
    closing = f"{statement.closing_balance:,.2f}".replace(",", "\xa0").replace(".", ",")
    assert f"{closing}\xa0₽" in html


def test_the_pages_need_the_view_permission(client, busy_customer, groups):
    from tests.support.conftest import make_staff

    customer, _agency = busy_customer
    client.force_login(make_staff("nobody"))
    assert client.get(url(customer, "timeline")).status_code == 403
    assert client.get(url(customer, "statement")).status_code == 403
