"""`payments_charge_create`: the lean charge in one PostgreSQL round trip (issue 12). A no-op on other databases.

It writes exactly what `payments.services.charges.charge_create` writes through the ORM for a customer that pays
itself, has no overdraft and no limit override, whose accounts and Balance child order exist (the lean case): the
same locks in the same order (customer, then its wallet, spend and holds accounts in id order, FOR NO KEY UPDATE),
the ledger transaction (its unique reference is the duplicate check), the chain-checked cached balances, the two
entries with `balance_after`, the `charge.succeeded` event with the per-customer sequence (and `wallet.low_balance`
on a downward crossing of the threshold), and the charge row. Anything else returns `fallback` having written
nothing, and the caller runs the ORM path (in the same transaction if there is one: the customer lock it holds then
is taken again for free). Refusals raise their own SQLSTATE, which the caller maps to the same exceptions as the
ORM path: DBNA1 not active, DBBL1 blocked, DBIF1 insufficient funds, DBLC1 a cached balance off its chain.
"""

from django.db import migrations

FORWARD = r"""
CREATE OR REPLACE FUNCTION payments_charge_create(
    p_customer_id bigint, p_product_id bigint, p_product_code text, p_amount numeric, p_charge_id uuid,
    p_txn_public_id uuid, p_event_id uuid, p_low_event_id uuid, p_description text, p_txn_description text,
    p_metadata jsonb, p_wallet_key text, p_spend_key text, p_holds_key text, p_order_key text, p_request_id text,
    p_now timestamptz,
    OUT o_outcome text, OUT o_service_id bigint, OUT o_pending boolean, OUT o_low_balance boolean
) LANGUAGE plpgsql AS $$
DECLARE
    c record;
    a record;
    v_amount numeric(18, 2) := p_amount;
    v_wallet_id bigint;
    v_wallet_balance numeric(18, 2);
    v_spend_id bigint;
    v_spend_balance numeric(18, 2);
    v_held numeric(18, 2) := 0;
    v_wallet_after numeric(18, 2);
    v_spend_after numeric(18, 2);
    v_balance numeric(18, 2);
    v_threshold numeric(18, 2);
    v_txn_id bigint;
    v_moved integer;
    v_status text;
BEGIN
    o_outcome := 'fallback';
    o_pending := false;
    o_low_balance := false;
    -- 1. The customer's row lock, first (customers.locks.lock_customer), with its service.
    SELECT cu.id, cu.service_id, cu.external_id, cu.status, cu.blocked, cu.agency_id,
           COALESCE(cu.low_balance_threshold, sv.low_balance_default) AS threshold, sv.currency, sv.webhook_url
      INTO c
      FROM customers_customer cu JOIN disbalance_consumerservice sv ON sv.id = cu.service_id
     WHERE cu.id = p_customer_id
       FOR NO KEY UPDATE OF cu;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    o_service_id := c.service_id;
    -- The lean case only (read under the lock, so fresh): the customer pays itself, has no overdraft and no
    -- limit override (its limit is 0 and the overdraft hooks would change nothing), and the product's child
    -- order exists (nothing to create in Balance).
    IF c.agency_id IS NOT NULL
       OR EXISTS (SELECT 1 FROM overdrafts_overdraft WHERE customer_id = c.id)
       OR EXISTS (SELECT 1 FROM overdrafts_limitoverride WHERE customer_id = c.id AND ended_at IS NULL)
       OR NOT EXISTS (SELECT 1 FROM payments_balanceorder WHERE key = p_order_key) THEN
        RETURN;
    END IF;
    IF c.status <> 'active' THEN
        RAISE EXCEPTION USING ERRCODE = 'DBNA1', MESSAGE = c.external_id, DETAIL = c.status;
    END IF;
    IF c.blocked THEN
        RAISE EXCEPTION USING ERRCODE = 'DBBL1', MESSAGE = c.external_id;
    END IF;
    -- 2. The customer's accounts, in id order, in one statement (wallets.services.ledger.lock_accounts_by_key).
    FOR a IN SELECT id, key, balance, currency, cached FROM wallets_account
              WHERE key IN (p_wallet_key, p_spend_key, p_holds_key) ORDER BY id FOR NO KEY UPDATE LOOP
        IF a.key = p_holds_key THEN
            v_held := a.balance;
        ELSIF NOT a.cached OR a.currency <> c.currency THEN
            RETURN;  -- not an account the lean path knows: the ORM path says what is wrong with it
        ELSIF a.key = p_wallet_key THEN
            v_wallet_id := a.id;
            v_wallet_balance := a.balance;
        ELSE
            v_spend_id := a.id;
            v_spend_balance := a.balance;
        END IF;
    END LOOP;
    IF v_wallet_id IS NULL OR v_spend_id IS NULL THEN
        RETURN;  -- a first use creates the account: the ORM path
    END IF;
    IF v_amount > v_wallet_balance THEN
        RAISE EXCEPTION USING ERRCODE = 'DBIF1',
            MESSAGE = format('%s exceeds the available %s', v_amount, v_wallet_balance);
    END IF;
    -- 3. The ledger transaction: its unique reference is the duplicate check.
    INSERT INTO wallets_ledgertransaction (public_id, service_id, type, customer_id, payer_agency_id, reference_kind,
                                           reference_id, description, reason, created_by_id, created_at)
    VALUES (p_txn_public_id, c.service_id, 'charge', c.id, NULL, 'charge', p_charge_id::text, p_txn_description, '',
            NULL, p_now)
    RETURNING id INTO v_txn_id;
    -- 4. The cached balances, only where each still equals its last entry's balance_after (the chain check).
    v_wallet_after := v_wallet_balance - v_amount;
    v_spend_after := v_spend_balance + v_amount;
    UPDATE wallets_account acc
       SET balance = CASE WHEN acc.id = v_wallet_id THEN v_wallet_after ELSE v_spend_after END
     WHERE acc.id IN (v_wallet_id, v_spend_id)
       AND acc.balance = COALESCE((SELECT e.balance_after FROM wallets_ledgerentry e WHERE e.account_id = acc.id
                                    ORDER BY e.id DESC LIMIT 1), 0);
    GET DIAGNOSTICS v_moved = ROW_COUNT;
    IF v_moved <> 2 THEN
        RAISE EXCEPTION USING ERRCODE = 'DBLC1',
            MESSAGE = 'a cached balance differs from its last entry''s balance_after';
    END IF;
    -- 5. The entries, wallet then spend, with their balance_after.
    INSERT INTO wallets_ledgerentry (transaction_id, account_id, amount, balance_after)
    VALUES (v_txn_id, v_wallet_id, -v_amount, v_wallet_after), (v_txn_id, v_spend_id, v_amount, v_spend_after);
    -- 6. The event (disbalance.events.event_emit_money): the payer's balance is wallet + held.
    v_balance := v_wallet_after + v_held;
    o_pending := c.webhook_url <> '';
    v_status := CASE WHEN o_pending THEN 'pending' ELSE 'skipped' END;
    INSERT INTO disbalance_webhookevent (id, service_id, type, customer_pk, customer_external_id, sequence, data,
                                         dedup_key, request_id, created_at, status, attempts, next_attempt_at,
                                         last_status_code, last_error, delivered_at, note, operation_id)
    VALUES (p_event_id, c.service_id, 'charge.succeeded', c.id, c.external_id,
            (SELECT COALESCE(MAX(ev.sequence), 0) + 1 FROM disbalance_webhookevent ev WHERE ev.customer_pk = c.id),
            jsonb_build_object('customer', c.external_id, 'payer', NULL, 'amount', v_amount::text,
                               'balance', v_balance::text, 'held', v_held::text, 'currency', c.currency,
                               'charge', p_charge_id::text, 'product', p_product_code),
            '', p_request_id, p_now, v_status, 0, CASE WHEN o_pending THEN p_now END, NULL, '', NULL, '', NULL);
    v_threshold := c.threshold;
    IF v_threshold IS NOT NULL AND v_balance + v_amount >= v_threshold AND v_threshold > v_balance THEN
        o_low_balance := true;
        INSERT INTO disbalance_webhookevent (id, service_id, type, customer_pk, customer_external_id, sequence,
                                             data, dedup_key, request_id, created_at, status, attempts,
                                             next_attempt_at, last_status_code, last_error, delivered_at, note,
                                             operation_id)
        VALUES (p_low_event_id, c.service_id, 'wallet.low_balance', c.id, c.external_id,
                (SELECT COALESCE(MAX(ev.sequence), 0) + 1 FROM disbalance_webhookevent ev
                  WHERE ev.customer_pk = c.id),
                jsonb_build_object('customer', c.external_id, 'payer', NULL, 'balance', v_balance::text,
                                   'threshold', v_threshold::text, 'currency', c.currency,
                                   'cause', jsonb_build_object('type', 'charge.succeeded',
                                                               'event', p_event_id::text)),
                '', p_request_id, p_now, v_status, 0, CASE WHEN o_pending THEN p_now END, NULL, '', NULL, '', NULL);
    END IF;
    -- 7. The charge.
    INSERT INTO payments_charge (id, service_id, customer_id, payer_agency_id, product_id, amount, refunded_amount,
                                 status, description, metadata, hold_id, created_at)
    VALUES (p_charge_id, c.service_id, c.id, NULL, p_product_id, v_amount, 0, 'succeeded', p_description,
            p_metadata, NULL, p_now);
    o_outcome := 'charged';
END
$$;
"""

BACKWARD = """
DROP FUNCTION IF EXISTS payments_charge_create(bigint, bigint, text, numeric, uuid, uuid, uuid, uuid, text, text, jsonb,
                                               text, text, text, text, text, timestamptz);
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0003_order_adoption"),
        ("wallets", "0003_ledger_transaction_migration_type"),
        ("customers", "0004_low_balance_threshold"),
        ("overdrafts", "0002_support_groups"),
        ("disbalance", "0004_events_and_webhook_attempts"),
    ]

    operations = [migrations.RunPython(forward, backward)]
