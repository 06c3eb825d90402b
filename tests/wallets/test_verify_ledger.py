"""manage.py verify_ledger: exit 0 on a clean ledger, 1 with a report of every difference."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from wallets.models import Account
from wallets.services import (
    wallet_capture,
    wallet_charge,
    wallet_credit_topup,
    wallet_hold,
    wallet_refund,
    wallet_transfer,
)

D = Decimal


def verify(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("verify_ledger", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code), out.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def busy_ledger(customer, agency):
    wallet_credit_topup(customer=customer, payer_agency=None, amount=D("1000.00"))
    wallet_credit_topup(customer=customer, payer_agency=agency, amount=D("300.00"))
    wallet_charge(customer=customer, payer_agency=None, product_code="vas:boost", amount=D("300.00"))
    wallet_hold(customer=customer, payer_agency=None, amount=D("200.00"))
    wallet_capture(customer=customer, payer_agency=None, product_code="vas:boost", hold_amount=D("200.00"),
                   captured=D("150.00"))
    wallet_refund(customer=customer, payer_agency=None, product_code="vas:boost", amount=D("50.00"))
    wallet_transfer(customer=customer, from_payer=agency, to_payer=None, amount=D("100.00"), reason="test",
                    created_by=None)
    return customer


def disable_pg_immutability():
    """On PostgreSQL the immutability trigger also stops the test from corrupting entries: switch it off for this
    (never committed) test transaction."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # run the pending deferred checks first
            cursor.execute("ALTER TABLE wallets_ledgerentry DISABLE TRIGGER wallets_ledgerentry_immutable")


def test_empty_ledger_is_clean(db):
    code, out = verify()
    assert code == 0
    assert "checked 0 transactions, 0 entries, 0 accounts" in out
    assert "ledger OK" in out


def test_clean_ledger_exits_0(busy_ledger):
    code, out = verify()
    assert code == 0, out
    assert "checked 7 transactions, 15 entries, 5 accounts" in out
    assert "ledger OK" in out


def test_a_corrupted_cached_balance_exits_1_with_the_difference(busy_ledger):
    key = f"wallet:c{busy_ledger.pk}:pself"
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wallets_account SET balance = balance + 0.01 WHERE key = %s", [key])
    code, out = verify()
    assert code == 1
    assert f"account {key}: cached 700.01, computed 700.00" in out
    assert "account balances: 1 difference(s)" in out
    assert "LEDGER NOT OK: 1 difference(s)" in out
    # One account at a time: this one fails, another passes.
    assert verify("--account", key)[0] == 1
    assert verify("--account", f"spend:c{busy_ledger.pk}:pself:vas:boost")[0] == 0


def test_uncached_balances_cannot_be_maintained(busy_ledger):
    # verify_ledger reports a non-zero uncached balance too, but the database already refuses to store one.
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(kind="clearing").update(balance=D("-1300.00"))


def test_tampered_entries_are_reported_as_imbalance_broken_chain_and_lost_money(busy_ledger):
    disable_pg_immutability()
    wallet = Account.objects.get(key=f"wallet:c{busy_ledger.pk}:pself")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE wallets_ledgerentry SET amount = amount - 1 WHERE id = "
            "(SELECT MIN(id) FROM wallets_ledgerentry WHERE account_id = %s)", [wallet.pk]
        )
    code, out = verify()
    assert code == 1
    assert "unbalanced transactions: 1 difference(s)" in out
    assert "2 entries summing to -1.00" in out
    assert f"account {wallet.key}: cached 700.00, computed 699.00" in out
    assert "balance_after chains: 6 difference(s)" in out  # every entry of the wallet after the tampered one
    assert "entries sum to -1.00, not 0" in out


def test_unknown_account_is_an_error(db):
    with pytest.raises(CommandError, match="no account"):
        call_command("verify_ledger", "--account", "wallet:c0:pself", stdout=StringIO())
