"""Writes for overdrafts and agency credit, one module per use case (`spending`, `debt`, `limits`, `support`).

Hooks called by payments inside the money transaction, with the customer row already locked:
- `spend_limit(customer=, payer=)`: how far below zero this spend may take the payer's wallet. Refuses at once
  (`409 customer_blocked`) a customer whose own debt is past due, even before the periodic check blocked it.
  Direct customer: its effective overdraft limit (`selectors.overdraft_limit`). Under an agency: the room left
  on the agency's postpaid credit, with the agency's `AgencyCredit` row locked (`lock_agency_credit`) until the
  transaction ends, so that all the agency's customers spend against the shared limit one at a time.
- `after_spend(customer=, payer=)` / `after_money_in(customer=, payer=)`: after any money movement. Both
  re-derive the state from the ledger (a capture, for instance, is both), so they are the same function:
  for the customer itself as payer, the debt clock and the overdue block (repayment unblocks at once); for an
  agency, the credit `used` figure.

Locking: customer (payments) -> AgencyCredit -> Overdraft / Block rows. No transaction locks two customers,
and the credit pull locks an AgencyCredit alone, so the order never inverts. Under the credit lock, what the
agency's *other* customers use is re-read from the ledger: every spend that lowers a wallet under the agency
holds that lock until it commits, so the figure read cannot grow behind our back (money coming in only lowers
it). Only a Balance-side correction (`wallet_adjust` downwards) lowers a wallet without it.

Blocks (`Block` rows, kinds kept apart): `overdue` is set when the due date has passed with debt left (by the
periodic `overdrafts_check`, and by every money movement of the customer) and lifted by repayment; `manual` is
set and lifted by support only. `customer.blocked` mirrors "has an open block"; each flip emits the
`customer.blocked` / `customer.unblocked` webhook in the same transaction.

Covered in Balance (issue 11): billing's "spend below zero" must never reach Balance as unpaid completion.
- A direct customer's overdraft is backed by Balance's **auto-overdraft** (`auto_overdraft`: SetOverdraftParams
  with ClientLimit = min(granted, max(billing's effective limit, the debt made)), outbox `overdraft.params`), sent
  whenever that figure may change. Chosen over overdraft invoices: an overdraft invoice puts money on the wallet
  order, which billing would then have to tell apart from a top-up (NotifyOrder2 carries totals, not their
  source) and which must be drawn ahead of each spend; auto-overdraft covers completion without moving money.
  A support override above Balance's grant is allowed (with `raise_limit`) but not covered by Balance: the console
  warns that spend beyond the grant is unpaid completion there until paid.
- An agency's customers spend against **credit invoices** on the agency's postpaid contract: after every money
  movement under an agency, the hooks registered with `on_agency_money_movement` run (payments registers the
  credit draw: CreateRequest2 + CreateInvoice Credit=1 for the wallet order, `payments.services.credit`).

Limits from Balance: `NotifyClient2` (the `client` notification applier; Tid rule per customer) and the
periodic `overdrafts_pull` (GetOverdraftParams; NOT_FOUND = no overdraft; no Tid, so it overwrites without
moving `last_tid`). Credit limits: `agency_credits_pull` (GetClientCreditLimits).
"""

from overdrafts.locks import lock_agency_credit
from overdrafts.services.auto_overdraft import (
    OVERDRAFT_PARAMS,
    auto_overdraft_enqueue,
    auto_overdraft_enqueue_if_changed,
    auto_overdraft_sync,
    auto_overdraft_wanted,
)
from overdrafts.services.corrections import (
    BALANCE_EFFECTS,
    LEDGER_ONLY,
    MIRRORS_BALANCE,
    wallet_correct,
    wallet_move_between_payers,
)
from overdrafts.services.debt import DebtRefresh, overdrafts_check, payment_term
from overdrafts.services.limits import (
    BalanceOverdraft,
    ClientNotifications,
    agency_credits_pull,
    balance_overdraft_from_notification,
    overdraft_apply_balance_params,
    overdrafts_pull,
)
from overdrafts.services.spending import after_money_in, after_spend, on_agency_money_movement, spend_limit
from overdrafts.services.support import (
    OverrideCheck,
    customer_block,
    customer_unblock,
    overdraft_override_end,
    overdraft_override_set,
    overdraft_override_validate,
    overrides_expire,
)

__all__ = [
    "BALANCE_EFFECTS",
    "LEDGER_ONLY",
    "MIRRORS_BALANCE",
    "OVERDRAFT_PARAMS",
    "BalanceOverdraft",
    "ClientNotifications",
    "DebtRefresh",
    "OverrideCheck",
    "after_money_in",
    "after_spend",
    "agency_credits_pull",
    "auto_overdraft_enqueue",
    "auto_overdraft_enqueue_if_changed",
    "auto_overdraft_sync",
    "auto_overdraft_wanted",
    "balance_overdraft_from_notification",
    "customer_block",
    "customer_unblock",
    "lock_agency_credit",
    "on_agency_money_movement",
    "overdraft_apply_balance_params",
    "overdraft_override_end",
    "overdraft_override_set",
    "overdraft_override_validate",
    "overdrafts_check",
    "overdrafts_pull",
    "overrides_expire",
    "payment_term",
    "spend_limit",
    "wallet_correct",
    "wallet_move_between_payers",
]
