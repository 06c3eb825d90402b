"""Many clients on one wallet at once (PostgreSQL): the ledger stays exact and nothing is counted twice.

`test_one_wallet_under_16_clients` fails when the customer lock is removed (see
`test_the_lock_is_what_keeps_it_exact`, which removes it and expects the violation).
"""

import importlib
import random
import threading
import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from rest_framework.test import APIClient

from customers.models import Customer
from payments.models import Charge, Hold, Refund
from payments.services import charge_create
from tests.conftest import requires_postgres
from tests.locking import without_row_locks
from wallets import services as wallet_services
from wallets.models import Account, LedgerTransaction

CUSTOMER = "/api/v1/customers/dealer:20101"
THREADS, OPERATIONS = 16, 50


def _run_clients(token, seed):
    """16 threads, each 50 random operations over HTTP; returns every 2xx with what it created."""
    successes, errors, lock = [], [], threading.Lock()
    barrier = threading.Barrier(THREADS)
    min_available = []

    def client_loop(n):
        rng = random.Random(seed * 100 + n)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        my_holds, my_charges = [], []
        barrier.wait()
        try:
            for _ in range(OPERATIONS):
                action = rng.choice(["charge", "charge", "hold", "capture", "release", "refund", "wallet"])
                key = {"HTTP_IDEMPOTENCY_KEY": str(uuid.uuid4())}
                amount = f"{rng.randint(1, 4000) / 100:.2f}"
                if action == "charge":
                    r = client.post(f"{CUSTOMER}/charges", {"product": "placement", "amount": amount},
                                    format="json", **key)
                    if r.status_code == 201:
                        my_charges.append(r.json()["id"])
                elif action == "hold":
                    r = client.post(f"{CUSTOMER}/holds", {"product": "boost", "amount": amount}, format="json", **key)
                    if r.status_code == 201:
                        my_holds.append(r.json()["id"])
                elif action in ("capture", "release") and my_holds:
                    hold_id = rng.choice(my_holds)
                    body = {"amount": amount} if action == "capture" and rng.random() < 0.5 else {}
                    r = client.post(f"/api/v1/holds/{hold_id}/{action}", body, format="json", **key)
                elif action == "refund" and my_charges:
                    r = client.post(f"/api/v1/charges/{rng.choice(my_charges)}/refunds",
                                    {"amount": amount, "reason": "test"}, format="json", **key)
                elif action == "wallet":
                    r = client.get(f"{CUSTOMER}/wallet")
                    min_available.append(Decimal(r.json()["available"]))
                    continue
                else:
                    continue
                if r.status_code not in (200, 201, 400, 402, 409):
                    with lock:
                        errors.append((r.status_code, r.content[:300]))
                if r.status_code in (200, 201):
                    with lock:
                        successes.append((action, r.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return successes, errors, min_available


def _assert_exact(successes, errors, min_available, start):
    assert errors == []
    call_command("verify_ledger")
    assert all(a >= 0 for a in min_available)
    wallet = Account.objects.get(kind="wallet", customer__external_id="dealer:20101", payer_agency=None)
    assert wallet.balance >= 0, "available went below zero"
    charges = [b["id"] for a, b in successes if a == "charge"]
    holds = [b["id"] for a, b in successes if a == "hold"]
    refunds = [b["id"] for a, b in successes if a == "refund"]
    closes = [b["id"] for a, b in successes if a in ("capture", "release")]
    # Every 2xx is in the ledger exactly once.
    for kind, ids in (("charge", charges), ("refund", refunds)):
        refs = list(LedgerTransaction.objects.filter(reference_kind=kind).values_list("reference_id", flat=True))
        assert sorted(refs) == sorted(ids)
    assert LedgerTransaction.objects.filter(type="hold").count() == len(holds)
    assert LedgerTransaction.objects.filter(type__in=["capture", "release"]).count() == len(closes)
    assert len(set(closes)) == len(closes), "a hold was captured or released twice"
    assert Charge.objects.filter(hold__isnull=True).count() == len(charges)
    assert Refund.objects.count() == len(refunds)
    # Money adds up: start = wallet + held + spent.
    held = sum((h.amount for h in Hold.objects.filter(status="held")), Decimal(0))
    spent = sum((c.amount - c.refunded_amount for c in Charge.objects.all()), Decimal(0))
    assert wallet.balance + held + spent == start


def _fund(customer, amount):
    with transaction.atomic():
        wallet_services.wallet_credit_topup(customer=customer, payer_agency=None, amount=amount)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_one_wallet_under_16_clients(token, active_customer):
    _fund(active_customer, Decimal("3000.00"))
    successes, errors, min_available = _run_clients(token, seed=7)
    assert len(successes) > 200
    _assert_exact(successes, errors, min_available, Decimal("3000.00"))


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_the_lock_is_what_keeps_it_exact(token, active_customer, monkeypatch):
    """The same workload with the row locks removed must break an invariant (this proves the test can fail)."""
    without_row_locks(monkeypatch, Customer, Account)
    _fund(active_customer, Decimal("3000.00"))
    try:
        successes, errors, min_available = _run_clients(token, seed=7)
        _assert_exact(successes, errors, min_available, Decimal("3000.00"))
    except (AssertionError, SystemExit, Exception):
        return
    pytest.fail("without the lock the ledger stayed exact: the concurrency test would not catch a missing lock")


# --- the lean charge's database function (payments_charge_create) ----------------------------------------------

def _charge_clients(customer_pk, products, seed):
    """16 threads, each 30 charges through `charge_create` (on PostgreSQL: the function for every warm charge)."""
    successes, errors, lock = [], [], threading.Lock()
    barrier = threading.Barrier(THREADS)

    def client_loop(n):
        rng = random.Random(seed * 100 + n)
        barrier.wait()
        try:
            for _ in range(30):
                product = products[rng.choice(["placement", "boost"])]
                try:
                    charge = charge_create(customer=Customer(pk=customer_pk), product=product,
                                           amount=Decimal(rng.randint(100, 4000)) / 100)
                except Exception as exc:
                    if getattr(exc, "code", "") != "insufficient_funds":  # the only expected refusal
                        with lock:
                            errors.append(repr(exc))
                    continue
                with lock:
                    successes.append(charge)
        finally:
            connection.close()

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return successes, errors


def _assert_charges_exact(customer, charges, errors, start):
    """Every successful charge is in the ledger once, nothing else is, and the wallet is never overdrawn."""
    assert errors == []
    call_command("verify_ledger")
    wallet = Account.objects.get(kind="wallet", customer=customer, payer_agency=None)
    assert wallet.balance >= 0, "the wallet was overdrawn"
    refs = sorted(LedgerTransaction.objects.filter(reference_kind="charge").values_list("reference_id", flat=True))
    assert refs == sorted(str(c.id) for c in charges)
    assert wallet.balance + sum((c.amount for c in charges), Decimal(0)) == start
    assert Charge.objects.filter(customer=customer).count() == len(charges)


def _warm(customer, products, amount):
    """Fund the wallet and charge each product once (accounts and Balance orders): every later charge is lean."""
    _fund(customer, amount)
    return [charge_create(customer=customer, product=product, amount=Decimal("1.00")) for product in products.values()]


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_one_wallet_charged_through_the_function_by_16_clients(active_customer, products, run_outbox):
    warm = _warm(active_customer, products, Decimal("3000.00"))
    run_outbox()
    successes, errors = _charge_clients(active_customer.pk, products, seed=11)
    assert len(successes) > 100
    assert len(successes) < THREADS * 30, "the funds never ran out: the funds check was not exercised"
    _assert_charges_exact(active_customer, warm + successes, errors, Decimal("3000.00"))


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_the_functions_locks_are_what_keep_it_exact(active_customer, products, run_outbox):
    """The same workload with the function's row locks stripped must break an invariant."""
    function = importlib.import_module("payments.migrations.0004_charge_create_function")
    stripped = function.FORWARD.replace("FOR NO KEY UPDATE OF cu", "").replace("FOR NO KEY UPDATE", "")
    assert function.FORWARD.count("FOR NO KEY UPDATE") == 2 and "FOR NO KEY UPDATE" not in stripped
    warm = _warm(active_customer, products, Decimal("3000.00"))
    run_outbox()
    with connection.cursor() as cursor:
        cursor.execute(stripped)
    try:
        successes, errors = _charge_clients(active_customer.pk, products, seed=11)
        _assert_charges_exact(active_customer, warm + successes, errors, Decimal("3000.00"))
    except (AssertionError, SystemExit):  # SystemExit: verify_ledger found a difference
        return
    finally:
        with connection.cursor() as cursor:
            cursor.execute(function.FORWARD)
    pytest.fail("without the function's locks the ledger stayed exact: the test would not catch a missing lock")
