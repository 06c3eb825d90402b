"""`manage.py verify_ledger [--account KEY]`: check every ledger invariant; exit 0 when clean, 1 on any difference.

Checks, each aggregated in SQL (one pass per check, also on millions of entries):
  1. every transaction has at least two entries and they sum to zero;
  2. every cached account's balance equals the sum of its entries, and uncached accounts keep balance 0;
  3. every entry of a cached account has `balance_after` = the running sum of the account's entries in id order
     (a window function), and entries of uncached accounts have none;
  4. money is conserved: the entries of each service (and of all services) sum to zero;
  5. every entry's account belongs to its transaction's service.
Comparisons use a half-cent tolerance (0.005) so that SQLite (which sums NUMERIC as floats) reports no false positives.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from disbalance.money import ZERO, format_amount, from_balance
from wallets.models import Account

# Table names are the models' defaults (wallets_account, wallets_ledgerentry, wallets_ledgertransaction).
# `%(account)s = 0` means "all accounts"; otherwise only that account id.

SQL_COUNTS_ALL = """SELECT (SELECT COUNT(*) FROM wallets_ledgertransaction), (SELECT COUNT(*) FROM wallets_ledgerentry),
                           (SELECT COUNT(*) FROM wallets_account)"""
SQL_COUNTS_ACCOUNT = """SELECT COUNT(DISTINCT transaction_id), COUNT(*), 1 FROM wallets_ledgerentry
                        WHERE account_id = %(account)s"""

SQL_UNBALANCED = """
SELECT t.id, t.public_id, t.type, COALESCE(SUM(e.amount), 0), COUNT(e.id)
FROM wallets_ledgertransaction t LEFT JOIN wallets_ledgerentry e ON e.transaction_id = t.id
WHERE (%(account)s = 0 OR t.id IN (SELECT transaction_id FROM wallets_ledgerentry WHERE account_id = %(account)s))
GROUP BY t.id, t.public_id, t.type
HAVING COUNT(e.id) < 2 OR ABS(COALESCE(SUM(e.amount), 0)) >= 0.005
ORDER BY t.id"""

SQL_BALANCES = """
SELECT a.key, a.cached, a.balance, COALESCE(s.total, 0)
FROM wallets_account a
LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM wallets_ledgerentry GROUP BY account_id) s
       ON s.account_id = a.id
WHERE ((a.cached AND ABS(a.balance - COALESCE(s.total, 0)) >= 0.005) OR (NOT a.cached AND a.balance <> 0))
  AND (%(account)s = 0 OR a.id = %(account)s)
ORDER BY a.id"""

SQL_CHAINS = """
SELECT a.key, c.id, c.balance_after, c.running
FROM (SELECT e.id, e.account_id, e.balance_after,
             SUM(e.amount) OVER (PARTITION BY e.account_id ORDER BY e.id
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
      FROM wallets_ledgerentry e JOIN wallets_account a ON a.id = e.account_id
      WHERE a.cached AND (%(account)s = 0 OR a.id = %(account)s)) c
JOIN wallets_account a ON a.id = c.account_id
WHERE c.balance_after IS NULL OR ABS(c.balance_after - c.running) >= 0.005
ORDER BY c.id"""

SQL_UNCACHED_BALANCE_AFTER = """
SELECT a.key, e.id, e.balance_after FROM wallets_ledgerentry e JOIN wallets_account a ON a.id = e.account_id
WHERE NOT a.cached AND e.balance_after IS NOT NULL AND (%(account)s = 0 OR a.id = %(account)s)
ORDER BY e.id"""

SQL_CONSERVATION = """
SELECT CAST(a.service_id AS VARCHAR(20)), SUM(e.amount)
FROM wallets_ledgerentry e JOIN wallets_account a ON a.id = e.account_id
GROUP BY a.service_id HAVING ABS(SUM(e.amount)) >= 0.005
UNION ALL
SELECT 'all', s.total FROM (SELECT COALESCE(SUM(amount), 0) AS total FROM wallets_ledgerentry) s
WHERE ABS(s.total) >= 0.005"""

SQL_CROSS_SERVICE = """
SELECT e.id, a.key, t.public_id
FROM wallets_ledgerentry e JOIN wallets_account a ON a.id = e.account_id
JOIN wallets_ledgertransaction t ON t.id = e.transaction_id
WHERE a.service_id <> t.service_id
ORDER BY e.id"""


def _money(value: Any) -> Decimal:
    return from_balance(value) if value is not None else ZERO


def _amount(value: Any) -> str:
    return "missing" if value is None else format_amount(_money(value))


class Command(BaseCommand):
    help = "Verify the ledger: balanced transactions, cached balances, balance_after chains, money conserved."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", metavar="KEY", help="Check only this account (e.g. wallet:c12:pself)")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        account_id = 0
        if options.get("account"):
            account = Account.objects.filter(key=options["account"]).first()
            if account is None:
                raise CommandError(f"no account with key {options['account']!r}")
            account_id = account.pk
        params = {"account": account_id}
        problems = 0

        with connection.cursor() as cursor:
            cursor.execute(SQL_COUNTS_ACCOUNT if account_id else SQL_COUNTS_ALL, params if account_id else None)
            transactions, entries, accounts = cursor.fetchone()
            self.stdout.write(f"checked {transactions} transactions, {entries} entries, {accounts} accounts")

            # 1. Balanced transactions with at least two entries.
            cursor.execute(SQL_UNBALANCED, params)
            problems += self._section("unbalanced transactions", cursor.fetchall(), lambda r: (
                f"transaction {uuid.UUID(str(r[1]))} ({r[2]}, #{r[0]}): {r[4]} entries summing to {_amount(r[3])}"
            ))

            # 2. Cached balances equal the sums; uncached balances stay 0.
            cursor.execute(SQL_BALANCES, params)
            problems += self._section("account balances", cursor.fetchall(), lambda r: (
                f"account {r[0]}: cached {_amount(r[2])}, computed {_amount(r[3])}"
                + ("" if r[1] else " (uncached: the balance column must stay 0)")
            ))

            # 3. balance_after chains (running sum per cached account, in id order).
            cursor.execute(SQL_CHAINS, params)
            problems += self._section("balance_after chains", cursor.fetchall(), lambda r: (
                f"account {r[0]}: entry #{r[1]} balance_after {_amount(r[2])}, running sum {_amount(r[3])}"
            ))
            cursor.execute(SQL_UNCACHED_BALANCE_AFTER, params)
            problems += self._section("balance_after on uncached accounts", cursor.fetchall(), lambda r: (
                f"account {r[0]}: entry #{r[1]} has balance_after {_amount(r[2])}, expected none"
            ))

            if not account_id:
                # 4. Conservation, per service and overall.
                cursor.execute(SQL_CONSERVATION)
                problems += self._section("money conservation", cursor.fetchall(), lambda r: (
                    f"service {r[0]}: entries sum to {_amount(r[1])}, not 0"
                ))
                # 5. Entries stay within their transaction's service.
                cursor.execute(SQL_CROSS_SERVICE)
                problems += self._section("cross-service entries", cursor.fetchall(), lambda r: (
                    f"entry #{r[0]} on account {r[1]}: another service than its transaction {uuid.UUID(str(r[2]))}"
                ))

        elapsed = time.monotonic() - started
        if problems:
            self.stdout.write(f"LEDGER NOT OK: {problems} difference(s) ({elapsed:.2f}s)")
            raise SystemExit(1)
        self.stdout.write(f"ledger OK ({elapsed:.2f}s)")

    def _section(self, title: str, rows: list[tuple], describe: Any) -> int:
        if not rows:
            self.stdout.write(f"  {title}: ok")
            return 0
        self.stdout.write(f"  {title}: {len(rows)} difference(s)")
        for row in rows:
            self.stdout.write(f"    {describe(row)}")
        return len(rows)
