"""The soak's checker: the pure analysis of the clients' logs, and the database checks on real rows."""

from decimal import Decimal

import pytest

from soak.checker import (
    Ledger,
    Report,
    analyze_ops,
    check_charges,
    check_events,
    check_holds,
    check_refunds,
    group_money_on_children,
    in_windows,
)
from soak.run import billing_settings_for
from tests.factories import CustomerFactory

T = 1_700_000_000.0


def op(kind, key, status, *, id=None, code=None, body=None, ref=None, attempts=None, t=T, **extra):
    return {"client": 0, "kind": kind, "key": key, "method": "POST", "path": f"/x/{kind}", "body": body or {},
            "ref": ref or {}, "status": status, "code": code, "replayed": False, "id": id,
            "resp": {"id": id} if id else {}, "attempts": attempts or [[t, status if status else "conn", code]],
            "t0": t, "t1": t + 0.1, **extra}


def test_billing_is_configured_for_the_emulator_variant():
    assert billing_settings_for({}) == {"BALANCE_GROUP_REPORTING": "parent"}
    assert billing_settings_for({"group_type": "enqueue", "notify_protocol": "json"}) == {
        "BALANCE_GROUP_REPORTING": "enqueue"}
    assert billing_settings_for({"required_ticket": "3:serv:soak"}) == {
        "BALANCE_GROUP_REPORTING": "parent", "BALANCE_TVM_PROVIDER": "soak.tickets.StaticTicket",
        "SOAK_SERVICE_TICKET": "3:serv:soak"}


def test_in_the_enqueue_type_a_wallets_money_includes_what_was_moved_onto_its_children():
    state = {"orders": [
        {"ServiceID": 7, "ServiceOrderID": 1, "GroupServiceOrderID": 0, "ConsumeSum": "60.00"},
        {"ServiceID": 7, "ServiceOrderID": 2, "GroupServiceOrderID": 1, "ConsumeSum": "30.00"},
        {"ServiceID": 7, "ServiceOrderID": 3, "GroupServiceOrderID": 1, "ConsumeSum": "10.00"},
        {"ServiceID": 7, "ServiceOrderID": 4, "GroupServiceOrderID": None, "ConsumeSum": "5.00"},
    ]}
    assert group_money_on_children(state, enqueue=True) == {(7, 1): Decimal("40.00")}
    assert group_money_on_children(state, enqueue=False) == {}


def analyze(ops, restarts=()):
    report = Report(seed=1, duration=1, clients=1, replay="")
    return analyze_ops(ops, list(restarts), report), report


def violations(report, check):
    return [detail for name, detail in report.violations if name == check]


def test_final_answers_per_key_and_counts():
    expected, report = analyze([
        op("charge", "k1", 201, id="c1", attempts=[[T, "conn", "ConnectionError"], [T + 1, 201, None]]),
        op("charge", "k2", 402, code="insufficient_funds"),
        op("hold", "k3", 201, id="h1"),
    ])
    assert [r["id"] for r in expected.ok("charge")] == ["c1"]
    assert len(expected.answered("charge")) == 2
    assert report.ops["charge"] == {"201": 1, "402 insufficient_funds": 1}
    assert report.http["conn"] == 1 and report.http["retried"] == 1
    assert report.violations == []


def test_a_500_is_a_violation_but_503_upstream_unavailable_is_not():
    _, report = analyze([
        op("charge", "k1", 201, id="c1", attempts=[[T, 500, None], [T + 1, 201, None]]),
        op("topup", "k2", 201, id="t1", attempts=[[T, 503, "upstream_unavailable"], [T + 1, 201, None]]),
    ])
    assert len(violations(report, "no 5xx (except 503 upstream_unavailable)")) == 1
    assert report.http["503_upstream"] == 1


def test_a_5xx_while_gunicorn_restarts_counts_as_a_connection_error():
    _, report = analyze([op("charge", "k1", 201, id="c1", attempts=[[T + 5, 502, None], [T + 9, 201, None]])],
                        restarts=[(T + 4, T + 8)])
    assert report.violations == []
    assert report.http["5xx_restart"] == 1
    assert in_windows(T + 8.5, [(T + 4, T + 8)]) and not in_windows(T + 10, [(T + 4, T + 8)])


def test_two_answers_to_one_key_must_agree():
    _, report = analyze([op("charge", "k1", 201, id="c1", ref={"concurrent": True}),
                         op("charge", "k1", 201, id="c2", ref={"concurrent": True})])
    assert violations(report, "one answer per idempotency key") == ["key k1: answered 201 id c1 and 201 id c2"]


def test_a_replay_must_answer_as_the_first_time():
    _, report = analyze([
        op("replay", "k1", 201, id="c1", expected_status=201, expected_id="c1"),
        op("replay", "k2", 201, id="c9", expected_status=402, expected_id=None),
    ])
    assert len(violations(report, "replays answer as the first time")) == 1


def test_a_request_without_a_final_answer_is_reported_and_left_to_the_server_record():
    expected, report = analyze([op("charge", "k1", None, attempts=[[T, "conn", "ReadTimeout"]])])
    assert "k1" in expected.unanswered and not expected.final
    assert len(violations(report, "every request got a final answer")) == 1


# --- database checks --------------------------------------------------------------------------------------------

@pytest.fixture
def funded(service, products):
    from wallets.services import wallet_credit_topup

    customer = CustomerFactory(service=service)
    wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("500.00"), reference_kind="topup",
                        reference_id="t-1")
    return customer


@pytest.mark.django_db
def test_check_charges_accepts_exactly_the_2xx_charges(service, products, funded):
    from payments.services import charge_create

    charge = charge_create(customer=funded, product=products["placement"], amount=Decimal("30.00"))
    body = {"product": "placement", "amount": "30.00"}
    told_201, _ = analyze([op("charge", "k1", 201, id=str(charge.id), body=body)])
    assert check_charges(told_201, service, Ledger(service)) == []

    told_402, _ = analyze([op("charge", "k1", 402, code="insufficient_funds", body=body)])
    assert check_charges(told_402, service, Ledger(service)) == [
        f"charge {charge.id} (30.00) exists without a 2xx answer"]

    told_other, _ = analyze([op("charge", "k1", 201, id=str(charge.id), body=body),
                             op("charge", "k2", 201, id="00000000-0000-0000-0000-000000000000", body=body)])
    assert check_charges(told_other, service, Ledger(service)) == [
        "charge 00000000-0000-0000-0000-000000000000 was answered 2xx but does not exist"]


@pytest.mark.django_db
def test_check_holds_finds_a_hold_closed_twice_and_a_wrong_capture(service, products, funded):
    from payments.services import hold_capture, hold_create

    hold = hold_create(customer=funded, product=products["boost"], amount=Decimal("80.00"))
    hold_capture(hold=hold, amount=Decimal("50.00"))
    ops = [op("hold", "h", 201, id=str(hold.id)),
           op("capture", "c1", 200, ref={"hold": str(hold.id)}, body={"amount": "50.00"})]
    expected, _ = analyze(ops)
    assert check_holds(expected, service, Ledger(service)) == []

    expected, _ = analyze([*ops, op("release", "r1", 200, ref={"hold": str(hold.id)})])
    problems = check_holds(expected, service, Ledger(service))
    assert len(problems) == 1 and "closed 2 times with 2xx" in problems[0]

    expected, _ = analyze([ops[0], op("capture", "c1", 200, ref={"hold": str(hold.id)}, body={"amount": "60.00"})])
    problems = check_holds(expected, service, Ledger(service))
    assert any("capture of 60.00 answered 2xx, hold has 50.00" in p for p in problems)


@pytest.mark.django_db
def test_check_refunds_sums_per_charge(service, products, funded):
    from payments.services import charge_create, refund_create

    charge = charge_create(customer=funded, product=products["placement"], amount=Decimal("40.00"))
    refund = refund_create(charge=charge, amount=Decimal("15.00"), reason="test")
    expected, _ = analyze([op("refund", "r", 201, id=str(refund.id), ref={"charge": str(charge.id)})])
    assert check_refunds(expected, service, Ledger(service)) == []
    expected, _ = analyze([])
    assert check_refunds(expected, service, Ledger(service)) == [f"refund {refund.id} exists without a 2xx answer"]


@pytest.mark.django_db
def test_check_events_finds_a_wallet_the_events_do_not_explain(service, products, funded):
    from django.db import transaction

    from payments.services import charge_create
    from wallets.models import Account

    charge_create(customer=funded, product=products["placement"], amount=Decimal("10.00"))
    assert check_events(service) == []
    with transaction.atomic():  # a movement that bypassed the services (no event)
        Account.objects.filter(customer=funded, kind="wallet").update(balance=Decimal("1.00"))
    problems = check_events(service)
    assert len(problems) == 1 and "events say" in problems[0]
