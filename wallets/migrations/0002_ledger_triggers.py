"""PostgreSQL guards of the ledger (no-ops on other databases, where the ORM guards alone apply).

1. Immutability: a row trigger refuses UPDATE and DELETE on ledger transactions and entries, also from raw SQL.
   (TRUNCATE, used by test flushes and by nothing else, is not a row operation and stays possible.)
2. Balance: a deferred constraint trigger checks at commit that every transaction that got entries has at
   least two and that they sum to zero, and that every new transaction got entries.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION wallets_ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'Correct the ledger with a new transaction (adjustment or transfer) instead.';
END
$$;

CREATE TRIGGER wallets_ledgertransaction_immutable
    BEFORE UPDATE OR DELETE ON wallets_ledgertransaction
    FOR EACH ROW EXECUTE FUNCTION wallets_ledger_refuse_change();

CREATE TRIGGER wallets_ledgerentry_immutable
    BEFORE UPDATE OR DELETE ON wallets_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION wallets_ledger_refuse_change();

CREATE OR REPLACE FUNCTION wallets_ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    txn_id bigint;
    total numeric;
    n integer;
BEGIN
    IF TG_TABLE_NAME = 'wallets_ledgerentry' THEN
        txn_id := NEW.transaction_id;
    ELSE
        txn_id := NEW.id;
    END IF;
    SELECT COALESCE(SUM(amount), 0), COUNT(*) INTO total, n FROM wallets_ledgerentry WHERE transaction_id = txn_id;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % is not balanced: % entries summing to %', txn_id, n, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER wallets_ledgerentry_balanced
    AFTER INSERT ON wallets_ledgerentry DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION wallets_ledger_check_balanced();

CREATE CONSTRAINT TRIGGER wallets_ledgertransaction_balanced
    AFTER INSERT ON wallets_ledgertransaction DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION wallets_ledger_check_balanced();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS wallets_ledgertransaction_balanced ON wallets_ledgertransaction;
DROP TRIGGER IF EXISTS wallets_ledgerentry_balanced ON wallets_ledgerentry;
DROP FUNCTION IF EXISTS wallets_ledger_check_balanced();
DROP TRIGGER IF EXISTS wallets_ledgerentry_immutable ON wallets_ledgerentry;
DROP TRIGGER IF EXISTS wallets_ledgertransaction_immutable ON wallets_ledgertransaction;
DROP FUNCTION IF EXISTS wallets_ledger_refuse_change();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("wallets", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
