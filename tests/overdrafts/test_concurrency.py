"""Overdraft and agency credit under concurrent charges (PostgreSQL row locks).

`test_agency_credit_under_16_clients` fails when the AgencyCredit lock is removed: see
`test_the_credit_lock_is_what_keeps_the_limit`, which shows the last slot of the credit taken twice without it.
"""

import random
import threading
import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from overdrafts import selectors
from overdrafts.models import AgencyCredit
from payments.models import Charge, Hold
from tests.conftest import requires_postgres
from tests.locking import without_row_locks
from tests.overdrafts.conftest import agency_with_contract, grant, register
from wallets.models import Account

THREADS = 16


def _run(token, paths, operations, seed, amounts=(100, 90000)):
    """THREADS threads over HTTP, thread n on paths[n % len(paths)]: charges (and some holds); returns the 2xx
    bodies per path, the unexpected answers, and every `available` seen."""
    successes, errors, available, lock = [], [], [], threading.Lock()
    barrier = threading.Barrier(THREADS)

    def loop(n):
        rng = random.Random(seed * 100 + n)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        path = paths[n % len(paths)]
        barrier.wait()
        try:
            for _ in range(operations):
                kind = rng.choice(["charges", "charges", "charges", "holds", "wallet"])
                if kind == "wallet":
                    value = Decimal(client.get(f"{path}/wallet").json()["available"])
                    with lock:
                        available.append(value)
                    continue
                amount = f"{rng.randint(*amounts) / 100:.2f}"
                product = "placement" if kind == "charges" else "boost"
                r = client.post(f"{path}/{kind}", {"product": product, "amount": amount}, format="json",
                                HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
                with lock:
                    if r.status_code == 201:
                        successes.append((path, kind, Decimal(r.json()["amount"])))
                    elif r.status_code != 402:
                        errors.append((r.status_code, r.content[:300]))
        finally:
            connection.close()

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return successes, errors, available


def _wallet(external_id, payer=None):
    account = Account.objects.filter(kind="wallet", customer__external_id=external_id, payer_agency=payer).first()
    return account.balance if account else Decimal("0.00")


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_one_customer_with_a_5000_limit_under_16_clients(token, emulator, active_customer):
    emulator.grant_overdraft(active_customer.balance_client_id, Decimal("5000.00"), 15)
    grant(active_customer, "5000.00")  # what Balance's NotifyClient2 brings (a pull reads no limit in version 2)
    assert selectors.overdraft_limit(customer=active_customer) == Decimal("5000.00")
    successes, errors, available = _run(token, ["/api/v1/customers/dealer:20101"], operations=12, seed=3,
                                        amounts=(100, 60000))
    assert errors == []
    call_command("verify_ledger")
    wallet = _wallet("dealer:20101")
    assert wallet >= Decimal("-5000.00"), "the balance went below the overdraft limit"
    assert all(a >= 0 for a in available)
    spent = sum((a for _, _, a in successes), Decimal(0))
    assert -wallet == spent
    assert Charge.objects.count() + Hold.objects.count() == len(successes)
    assert wallet < Decimal("-4000.00"), "the workload did not reach the limit: the test proves little"


def _agency_setup(api, emulator, run_outbox):
    agency = agency_with_contract(api, emulator, run_outbox, credit_limit="10000.00")
    register(api, run_outbox, "dealer:a", agency="agency:1")
    register(api, run_outbox, "dealer:b", agency="agency:1", inn="7707654321")
    return agency


def _agency_workload(token, agency, operations=12, amounts=(100, 120000)):
    successes, errors, available = _run(token, ["/api/v1/customers/dealer:a", "/api/v1/customers/dealer:b"],
                                        operations=operations, seed=5, amounts=amounts)
    used = -(_wallet("dealer:a", agency) + _wallet("dealer:b", agency))
    return successes, errors, available, used


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_agency_credit_under_16_clients(api, token, emulator, run_outbox, balance, products):
    agency = _agency_setup(api, emulator, run_outbox)
    successes, errors, available, used = _agency_workload(token, agency)
    assert errors == []
    call_command("verify_ledger")
    assert used <= Decimal("10000.00"), f"the agency's customers spent {used} on a 10000.00 credit"
    assert used == sum((a for _, _, a in successes), Decimal(0))
    assert {p for p, _, _ in successes} == {"/api/v1/customers/dealer:a", "/api/v1/customers/dealer:b"}
    assert all(a >= 0 for a in available)
    assert used > Decimal("9000.00"), "the workload did not reach the limit: the test proves little"
    assert AgencyCredit.objects.get(agency=agency).used == used


def _charge(token, path, amount):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.post(f"{path}/charges", {"product": "placement", "amount": amount}, format="json",
                       HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


@requires_postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("locked", [True, False], ids=["with the lock", "without the lock"])
def test_the_credit_lock_is_what_keeps_the_limit(api, token, emulator, run_outbox, balance, products, monkeypatch,
                                                 locked):
    """The last 1,000.00 of the shared credit, asked for by a customer on each side at once. Each spend reads the
    other's use, then waits at a barrier for the other's read: the interleaving is certain, no sleep decides it.

    Without the AgencyCredit lock both reads come before either write and both spends pass: nothing else (the
    customer locks, the agency's `credit.draw` outbox rows, ...) serializes the spends of one agency's customers,
    so `test_agency_credit_under_16_clients` would catch a missing lock. With it, the second spend cannot read
    until the first commits (the barrier times out for the first) and is refused."""
    agency = _agency_setup(api, emulator, run_outbox)
    a, b = "/api/v1/customers/dealer:a", "/api/v1/customers/dealer:b"
    assert _charge(token, a, "5000.00").status_code == 201
    assert _charge(token, b, "4000.00").status_code == 201  # 9,000.00 of 10,000.00 used: one slot left
    if not locked:
        without_row_locks(monkeypatch, AgencyCredit)
    barrier = threading.Barrier(2, timeout=1.0 if locked else 30.0)
    read = selectors.agency_credit_used

    def read_then_meet(**kwargs):
        value = read(**kwargs)
        if kwargs.get("exclude_customer_id") is not None:  # spend_limit's read of the others' use
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass  # the other spend never got to its read while this one ran
        return value

    monkeypatch.setattr(selectors, "agency_credit_used", read_then_meet)
    answers = {}

    def spend(path):
        try:
            answers[path] = _charge(token, path, "1000.00").status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=spend, args=(path,)) for path in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = -(_wallet("dealer:a", agency) + _wallet("dealer:b", agency))
    if locked:
        assert barrier.broken, "both spends read the shared use at once although the lock was taken"
        assert sorted(answers.values()) == [201, 402]
        assert used == Decimal("10000.00")
    else:
        assert not barrier.broken, "without the lock something else kept one spend from reading until the other " \
                                   "committed: the lock would not be what keeps the limit"
        assert answers == {a: 201, b: 201}
        assert used == Decimal("11000.00"), "without the lock the shared limit held"
