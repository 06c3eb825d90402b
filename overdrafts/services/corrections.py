"""Support's corrections of a customer's wallets: the ledger write and, in the same transaction, the debt and
blocks that follow the money (a repayment by correction unblocks now, not at the next periodic check)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from agencies.models import Agency
from customers.models import Customer
from disbalance.exceptions import ValidationFailed
from overdrafts.services.spending import after_money_in, after_spend
from wallets.models import LedgerTransaction
from wallets.services import wallet_adjust, wallet_transfer

# What an adjustment does to Balance: nothing, ever (it is a ledger transaction). Support says which of two cases it
# is, and the transaction's description carries it wherever the transaction is listed.
LEDGER_ONLY = "ledger_only"  # a correction of billing's own books (e.g. money credited twice in billing)
MIRRORS_BALANCE = "mirrors_balance"  # brings the ledger in line with a change already made in Balance
BALANCE_EFFECTS = {
    LEDGER_ONLY: "Balance not changed: a correction of billing's ledger only",
    MIRRORS_BALANCE: "Balance not changed: mirrors a change already made in Balance",
}


@transaction.atomic
def wallet_correct(*, customer: Customer, payer: Agency | None, amount: Decimal, reason: str,
                   by: AbstractBaseUser, balance_effect: str) -> LedgerTransaction:
    """A correction of the payer's wallet (`wallet_adjust`), then its debt and blocks. Balance is not changed.

    `balance_effect` says why that is right: `mirrors_balance` (Balance already shows the change, billing missed
    it) or `ledger_only`. An upward ledger-only correction is refused: money that is only in billing's ledger,
    once spent, is completion Balance has no money for (unpaid completion); it has to be put in Balance (a payment
    link, an overdraft) instead. Taking money off in the ledger only is allowed: Balance keeps it on the order and
    billing just will not let it be spent.
    """
    if balance_effect not in BALANCE_EFFECTS:
        raise ValidationFailed("balance_effect must be ledger_only or mirrors_balance",
                               errors={"balance_effect": ["Choose what the adjustment does to Balance."]})
    if amount > 0 and balance_effect == LEDGER_ONLY:
        raise ValidationFailed(
            "An upward adjustment in billing's ledger only is refused: Balance is not changed, so spending that "
            "money would be unpaid completion in Balance. Put the money in Balance (a payment link or an overdraft), "
            "or, if Balance already has it and billing missed it, say that the adjustment mirrors Balance.",
            errors={"balance_effect": ["Upward adjustments must mirror money Balance already has."]})
    transaction_ = wallet_adjust(customer=customer, payer_agency=payer, amount=amount, reason=reason, created_by=by,
                                 description=BALANCE_EFFECTS[balance_effect])
    hook = after_money_in if amount > 0 else after_spend
    hook(customer=customer, payer=payer)
    return transaction_


@transaction.atomic
def wallet_move_between_payers(*, customer: Customer, from_payer: Agency | None, to_payer: Agency | None,
                               amount: Decimal, reason: str, by: AbstractBaseUser | None,
                               reference_kind: str = "", reference_id: str = "",
                               funds_checked: bool = False) -> LedgerTransaction:
    """Free money from one payer's wallet of the customer to another's (`wallet_transfer`), then both sides'
    debt and blocks. The ledger half of a move made in Balance (`payments.services.transfers`)."""
    transaction_ = wallet_transfer(customer=customer, from_payer=from_payer, to_payer=to_payer, amount=amount,
                                   reason=reason, created_by=by, reference_kind=reference_kind,
                                   reference_id=reference_id, funds_checked=funds_checked)
    after_spend(customer=customer, payer=from_payer)
    after_money_in(customer=customer, payer=to_payer)
    return transaction_
