"""ledger_post: validation, the in-transaction invariant check, and immutability (ORM and PostgreSQL triggers)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction

from customers.locks import lock_customer
from disbalance.exceptions import ValidationFailed
from disbalance.locking import TransactionRequired
from tests.factories import ConsumerServiceFactory, CustomerFactory
from wallets import services as wallet_services
from wallets.exceptions import (
    LedgerCorrupted,
    LedgerDuplicate,
    LedgerImbalanced,
    LedgerImmutable,
    LedgerInvalidPosting,
)
from wallets.models import Account, LedgerEntry, LedgerTransaction
from wallets.services import (
    clearing_account_get_or_create,
    ledger_post,
    spend_account_get_or_create,
    wallet_account_get_or_create,
    wallet_credit_topup,
)

D = Decimal
requires_postgres_triggers = pytest.mark.skipif(
    not settings.IS_POSTGRES, reason="needs PostgreSQL: the ledger triggers exist only there (set DATABASE_URL)"
)


def counts() -> tuple[int, int]:
    return LedgerTransaction.objects.count(), LedgerEntry.objects.count()


@pytest.fixture
def accounts(customer):
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=None)
    clearing = clearing_account_get_or_create(service=customer.service)
    return wallet, clearing


def post(customer, entries, **kwargs):
    with transaction.atomic():
        lock_customer(customer.pk)
        return wallet_services.ledger_post(service=customer.service, type=kwargs.pop("type", "topup"),
                                           entries=entries, customer=customer, **kwargs)


def test_balanced_posting_writes_entries_and_moves_cached_balances(customer, accounts):
    wallet, clearing = accounts
    txn = post(customer, [(wallet, D("100.00")), (clearing, D("-100.00"))], reference_kind="topup",
               reference_id="t1", description="first")
    txn2 = post(customer, [(wallet, D("25.50")), (clearing, D("-25.50"))])

    wallet.refresh_from_db()
    clearing.refresh_from_db()
    assert wallet.balance == D("125.50")
    assert clearing.balance == D("0.00"), "clearing is uncached: its column is not maintained"
    assert [(e.account.key, e.amount, e.balance_after) for e in txn.entries.select_related("account")] == [
        (wallet.key, D("100.00"), D("100.00")),
        (clearing.key, D("-100.00"), None),
    ]
    assert txn2.entries.get(account=wallet).balance_after == D("125.50")
    assert txn.public_id and txn.reference_kind == "topup" and txn.reference_id == "t1"
    assert wallet.key == f"wallet:c{customer.pk}:pself"
    assert clearing.key == f"clearing:s{customer.service_id}"


@pytest.mark.parametrize(
    ("amounts", "error"),
    [
        ([D("100.00"), D("-99.99")], LedgerImbalanced),
        ([D("100.00")], LedgerImbalanced),
        ([D("0.00"), D("0.00")], LedgerInvalidPosting),
        ([D("1.005"), D("-1.005")], LedgerInvalidPosting),
        ([100.0, -100.0], LedgerInvalidPosting),
        ([D("NaN"), D("NaN")], LedgerInvalidPosting),
    ],
)
def test_invalid_postings_write_nothing(customer, accounts, amounts, error):
    before = counts()
    with pytest.raises(error):
        post(customer, list(zip(accounts, amounts, strict=False)))
    assert counts() == before
    assert Account.objects.get(pk=accounts[0].pk).balance == 0


def test_same_account_twice_is_refused(customer, accounts):
    wallet, _ = accounts
    with pytest.raises(LedgerInvalidPosting, match="twice"):
        post(customer, [(wallet, D("1.00")), (wallet, D("-1.00"))])


def test_accounts_of_another_service_are_refused(customer, accounts):
    wallet, _ = accounts
    other_clearing = clearing_account_get_or_create(service=ConsumerServiceFactory(slug="realty"))
    with pytest.raises(LedgerInvalidPosting, match="another service"):
        post(customer, [(wallet, D("1.00")), (other_clearing, D("-1.00"))])
    assert counts() == (0, 0)


def test_mixed_currencies_are_refused(customer, accounts):
    wallet, clearing = accounts
    clearing.currency = "USD"  # as if the account were in another currency
    with pytest.raises(LedgerInvalidPosting, match="USD"):
        post(customer, [(wallet, D("1.00")), (clearing, D("-1.00"))])


def test_reason_is_required_for_adjustments_and_transfers(customer, accounts):
    wallet, clearing = accounts
    for tx_type in ("adjustment", "transfer"):
        with pytest.raises(ValidationFailed):
            post(customer, [(wallet, D("1.00")), (clearing, D("-1.00"))], type=tx_type, reason="  ")
    assert counts() == (0, 0)
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerTransaction.objects.create(service=customer.service, type="adjustment", reason="")


def test_same_type_and_reference_is_posted_once(customer, accounts):
    wallet, clearing = accounts
    post(customer, [(wallet, D("1.00")), (clearing, D("-1.00"))], reference_kind="topup", reference_id="abc")
    with pytest.raises(LedgerDuplicate):
        post(customer, [(wallet, D("1.00")), (clearing, D("-1.00"))], reference_kind="topup", reference_id="abc")
    # Another type with the same reference is another operation (e.g. the capture of a hold).
    post(customer, [(wallet, D("1.00")), (clearing, D("-1.00"))], type="adjustment", reason="test",
         reference_kind="topup", reference_id="abc")
    assert counts() == (2, 4)


@pytest.mark.django_db(transaction=True)
def test_posting_outside_a_transaction_is_refused():
    customer = CustomerFactory()
    wallet = wallet_account_get_or_create(customer=customer, payer_agency=None)
    clearing = clearing_account_get_or_create(service=customer.service)
    with pytest.raises(LedgerInvalidPosting, match="atomic"):
        ledger_post(service=customer.service, type="topup", entries=[(wallet, D("1.00")), (clearing, D("-1.00"))])
    with pytest.raises(TransactionRequired, match="atomic"):
        lock_customer(customer.pk)
    assert counts() == (0, 0)


def test_a_corrupted_cached_balance_blocks_posting_on_top_of_it(customer, accounts):
    wallet, clearing = accounts
    post(customer, [(wallet, D("100.00")), (clearing, D("-100.00"))])
    Account.objects.filter(pk=wallet.pk).update(balance=D("1000.00"))  # someone edits the cache
    before = counts()
    with pytest.raises(LedgerCorrupted, match=r"last entry says 100\.00"):
        wallet_credit_topup(customer=customer, payer_agency=None, amount=D("5.00"))
    assert counts() == before
    assert Account.objects.get(pk=wallet.pk).balance == D("1000.00")


def test_full_check_catches_a_cache_that_agrees_with_the_last_entry_but_not_the_sum(customer, accounts):
    wallet, clearing = accounts
    post(customer, [(wallet, D("100.00")), (clearing, D("-100.00"))])
    # A forged transaction inserted behind the services' back, whose balance_after keeps the chain looking right.
    forged = LedgerTransaction.objects.create(service=customer.service, type="adjustment", reason="forged")
    LedgerEntry.objects.create(transaction=forged, account=wallet, amount=D("1.00"), balance_after=D("100.00"))
    LedgerEntry.objects.create(transaction=forged, account=clearing, amount=D("-1.00"))
    with pytest.raises(LedgerCorrupted, match=r"entries sum to 102\.00"):
        post(customer, [(wallet, D("1.00")), (clearing, D("-1.00"))])
    assert Account.objects.get(pk=wallet.pk).balance == D("100.00")


def test_database_refuses_zero_entries_and_negative_spend(customer, accounts):
    wallet, clearing = accounts
    txn = post(customer, [(wallet, D("1.00")), (clearing, D("-1.00"))])
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(transaction=txn, account=clearing, amount=D("0.00"))
    spend = spend_account_get_or_create(customer=customer, payer_agency=None, product_code="vas:boost")
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=spend.pk).update(balance=D("-0.01"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.create(key="bad", service=customer.service, kind="clearing", currency="RUB", cached=True)


class TestImmutability:
    @pytest.fixture
    def txn(self, customer, accounts):
        wallet, clearing = accounts
        return post(customer, [(wallet, D("10.00")), (clearing, D("-10.00"))])

    def test_orm_save_and_delete_are_refused(self, txn):
        entry = txn.entries.first()
        txn.description = "edited"
        with pytest.raises(LedgerImmutable):
            txn.save()
        entry.amount = D("11.00")
        with pytest.raises(LedgerImmutable):
            entry.save()
        with pytest.raises(LedgerImmutable):
            entry.delete()
        with pytest.raises(LedgerImmutable):
            txn.delete()
        assert LedgerTransaction.objects.get(pk=txn.pk).description == ""
        assert LedgerEntry.objects.get(pk=entry.pk).amount == D("10.00")

    def test_queryset_update_and_delete_are_refused(self, txn):
        with pytest.raises(LedgerImmutable):
            LedgerEntry.objects.filter(transaction=txn).update(amount=D("1.00"))
        with pytest.raises(LedgerImmutable):
            LedgerEntry.objects.update(balance_after=None)
        with pytest.raises(LedgerImmutable):
            LedgerEntry.objects.filter(transaction=txn).delete()
        with pytest.raises(LedgerImmutable):
            LedgerTransaction.objects.all().delete()
        with pytest.raises(LedgerImmutable):
            LedgerTransaction.objects.filter(pk=txn.pk).update(description="x")
        entries = list(txn.entries.all())
        for entry in entries:
            entry.amount = -entry.amount
        with pytest.raises(LedgerImmutable), transaction.atomic():  # bulk_update runs in its own atomic block
            LedgerEntry.objects.bulk_update(entries, ["amount"])
        assert counts() == (1, 2)
        assert sorted(e.amount for e in txn.entries.all()) == [D("-10.00"), D("10.00")]

    def test_deleting_an_account_with_entries_is_refused(self, txn, accounts):
        from django.db.models import ProtectedError

        with pytest.raises(ProtectedError), transaction.atomic():
            accounts[0].delete()
        assert counts() == (1, 2)

    @requires_postgres_triggers
    @pytest.mark.postgres
    @pytest.mark.parametrize(
        "sql",
        [
            "UPDATE wallets_ledgerentry SET amount = amount * 2",
            "DELETE FROM wallets_ledgerentry",
            "UPDATE wallets_ledgertransaction SET description = 'edited'",
            "DELETE FROM wallets_ledgertransaction",
        ],
    )
    def test_postgres_trigger_refuses_raw_sql(self, txn, sql):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
        assert counts() == (1, 2)
        assert LedgerTransaction.objects.get().description == ""

    @requires_postgres_triggers
    @pytest.mark.postgres
    def test_postgres_refuses_an_unbalanced_transaction_at_commit(self, txn, customer):
        holds = Account.objects.create(key="h", service=customer.service, kind="holds", customer=customer,
                                       currency="RUB", cached=True)
        with pytest.raises(IntegrityError, match="not balanced"), transaction.atomic():
            with connection.cursor() as cursor:
                # Deferred constraint triggers fire at commit; the test's transaction never commits, so fire now.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            LedgerEntry.objects.create(transaction=txn, account=holds, amount=D("0.01"), balance_after=D("0.01"))
        with pytest.raises(IntegrityError, match="not balanced"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            LedgerTransaction.objects.create(service=txn.service, type="topup")


def test_accounts_of_another_customer_are_refused(customer, accounts, svc):
    wallet, clearing = accounts
    other_wallet = wallet_account_get_or_create(customer=CustomerFactory(service=svc), payer_agency=None)
    with pytest.raises(LedgerInvalidPosting, match="not the transaction customer's"):
        post(customer, [(wallet, D("1.00")), (other_wallet, D("-1.00"))])
    with pytest.raises(LedgerInvalidPosting, match="not the transaction customer's"), transaction.atomic():
        ledger_post(service=svc, type="topup", entries=[(wallet, D("1.00")), (clearing, D("-1.00"))])
    assert counts() == (0, 0)
