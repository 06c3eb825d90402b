"""Support's corrections of a customer's wallets: the ledger write and, in the same transaction, the debt and
blocks that follow the money (a repayment by correction unblocks now, not at the next periodic check)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from agencies.models import Agency
from customers.models import Customer
from overdrafts.services.spending import after_money_in, after_spend
from wallets.models import LedgerTransaction
from wallets.services import wallet_adjust, wallet_transfer


@transaction.atomic
def wallet_correct(*, customer: Customer, payer: Agency | None, amount: Decimal, reason: str,
                   by: AbstractBaseUser) -> LedgerTransaction:
    """A correction of the payer's wallet (`wallet_adjust`), then its debt and blocks."""
    transaction_ = wallet_adjust(customer=customer, payer_agency=payer, amount=amount, reason=reason, created_by=by)
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
