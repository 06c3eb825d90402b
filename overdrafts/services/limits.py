"""Limits from Balance: `NotifyClient2` (the `client` notification applier; Tid rule per customer), the
periodic `overdrafts_pull` (GetOverdraftParams) and `agency_credits_pull` (GetClientCreditLimits)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agencies.models import Agency, Contract
from balance_gateway.client import BalanceClient
from balance_gateway.exceptions import BalanceError
from balance_gateway.models import BalanceNotification, RegistrationStatus
from balance_gateway.notifications import notification_applier
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.events import event_emit
from disbalance.money import MAX_AMOUNT, ZERO, format_amount, from_balance
from overdrafts import selectors
from overdrafts.locks import _lock_overdraft, lock_agency_credit
from overdrafts.models import Overdraft

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BalanceOverdraft:
    """An overdraft as Balance reports it (NotifyClient2 or GetOverdraftParams)."""

    limit: Decimal
    spent: Decimal
    min_payment_term: date | None
    banned: bool
    currency: str


def _day(value: Any) -> date | None:
    if value is None or value == "" or value is False:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not text or text.startswith("0000-00-00"):
        return None
    return date.fromisoformat(text[:10])


def _flag(value: Any) -> bool:
    text = str(value).strip().lower() if value is not None else ""
    if text in ("", "0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise ValueError(f"not a flag: {value!r:.30}")


def balance_overdraft_from_notification(payload: dict[str, Any]) -> BalanceOverdraft:
    """NotifyClient2's fields; raises ValueError on a value of the wrong shape (Balance then retries)."""
    try:
        limit = from_balance(payload.get("OverdraftLimit"))
        spent = from_balance(payload.get("OverdraftSpent"))
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"bad amount in NotifyClient2: {exc}") from exc
    if not limit.is_finite() or limit < 0 or limit > MAX_AMOUNT:
        raise ValueError(f"bad OverdraftLimit {payload.get('OverdraftLimit')!r:.30}")
    return BalanceOverdraft(limit=limit, spent=spent, min_payment_term=_day(payload.get("MinPaymentTerm")),
                            banned=_flag(payload.get("OverdraftBan")),
                            currency=str(payload.get("ClientCurrency") or "")[:3])


@transaction.atomic
def overdraft_apply_balance_params(*, customer_id: int, params: BalanceOverdraft | None,
                                   tid: int | None = None) -> str:
    """Store what Balance says about the customer's overdraft (`params` None: Balance has none).

    With a `tid` (a notification): applied only if greater than the last one applied (`stale` otherwise).
    Without (the pull): always applied, `last_tid` unchanged. Returns `applied`, `stale` or `unchanged`.
    Stored as sent even for a customer served by an agency: the selectors never use it while it has one.
    """
    customer = lock_customer(customer_id)
    overdraft = _lock_overdraft(customer.pk)
    limit_before = selectors.overdraft_limit(customer=customer)
    now = timezone.now()
    if overdraft is not None and tid is not None and tid <= overdraft.last_tid:
        return "stale"
    if overdraft is None:
        if params is None and tid is None:
            return "unchanged"  # no overdraft in Balance and nothing stored: keep it that way
        overdraft = Overdraft(customer=customer)
    wanted = {
        "in_balance": params is not None,
        "granted_limit": params.limit if params else ZERO,
        "balance_spent": params.spent if params else ZERO,
        "balance_min_payment_term": params.min_payment_term if params else None,
        "banned": params.banned if params else False,
        "currency": params.currency if params else overdraft.currency,
    }
    changed = overdraft._state.adding or any(getattr(overdraft, k) != v for k, v in wanted.items())
    if tid is not None and tid != overdraft.last_tid:
        changed = True
        overdraft.last_tid = tid
    if not changed:
        Overdraft.objects.filter(pk=overdraft.pk).update(balance_refreshed_at=now)
        return "unchanged"
    for field, value in wanted.items():
        setattr(overdraft, field, value)
    overdraft.balance_refreshed_at = overdraft.updated_at = now
    overdraft.save()
    overdraft_limit_announce(customer=customer, before=limit_before, cause="balance")
    return "applied"


def overdraft_limit_announce(*, customer: Customer, before: Decimal, cause: str, reason: str = "") -> None:
    """`overdraft.limit_changed` when the customer's effective limit differs from `before` (customer locked)."""
    after = selectors.overdraft_limit(customer=customer)
    if after == before:
        return
    event_emit(service=customer.service, type="overdraft.limit_changed", customer=customer, customer_locked=True,
               data={"customer": customer.external_id, "payer": None, "limit": format_amount(after),
                     "previous_limit": format_amount(before), "cause": cause, "reason": reason})


@notification_applier("client")
class ClientNotifications:
    """NotifyClient2: a client's overdraft; object_key is the Balance ClientID.

    A customer's client: applied per customer through `overdraft_apply_balance_params` (Tid rule). An agency's
    client is known (answered success) but never has an overdraft: stored, not applied (`received`).
    """

    @staticmethod
    def _client_id(object_key: str) -> int | None:
        return int(object_key) if object_key.isdigit() and len(object_key) <= 18 else None

    @staticmethod
    def exists(object_key: str) -> bool:
        client_id = ClientNotifications._client_id(object_key)
        if client_id is None:
            return False
        return (Customer.objects.filter(balance_client_id=client_id).exists()
                or Agency.objects.filter(balance_client_id=client_id).exists())

    @staticmethod
    def apply(object_key: str, tid: int, payload: dict[str, Any]) -> str:
        client_id = ClientNotifications._client_id(object_key)
        customer_ids = list(Customer.objects.filter(balance_client_id=client_id).order_by("pk")
                            .values_list("pk", flat=True))
        if not customer_ids:
            return BalanceNotification.Outcome.RECEIVED
        params = balance_overdraft_from_notification(payload)
        outcomes = [overdraft_apply_balance_params(customer_id=pk, params=params, tid=tid) for pk in customer_ids]
        return "applied" if "applied" in outcomes else "stale"


def overdrafts_pull(*, customers: list[Customer] | None = None, client: BalanceClient | None = None
                    ) -> dict[str, int]:
    """GetOverdraftParams for every direct active customer (or the given ones), in batches; NOT_FOUND = none.

    A safety net for lost notifications. One customer's failure does not stop the others.
    """
    client = client or BalanceClient()
    if customers is None:
        queryset = (Customer.objects.filter(agency__isnull=True, status=RegistrationStatus.ACTIVE,
                                            balance_client_id__isnull=False)
                    .select_related("service").order_by("pk"))
        customers_iter = queryset.iterator(chunk_size=settings.OVERDRAFT_PULL_BATCH)
    else:
        customers_iter = iter(customers)
    totals = {"customers": 0, "applied": 0, "unchanged": 0, "failed": 0, "skipped": 0}
    for customer in customers_iter:
        totals["customers"] += 1
        if customer.agency_id is not None or customer.balance_client_id is None:
            totals["skipped"] += 1
            continue
        try:
            found = client.get_overdraft_params(service_id=customer.service.balance_service_id,
                                                client_id=customer.balance_client_id)
        except BalanceError as exc:
            totals["failed"] += 1
            logger.warning("overdraft pull failed", extra={"customer": customer.pk, "error": str(exc)})
            continue
        params = None
        if found is not None:
            # GetOverdraftParams has no ban flag: Balance bans while a debt is past its MinPaymentTerm.
            term = found.min_payment_term
            params = BalanceOverdraft(
                limit=max(ZERO, found.overdraft_limit), spent=found.overdraft_spent, min_payment_term=term,
                banned=found.overdraft_spent > 0 and term is not None and term < timezone.localdate(),
                currency=found.currency,
            )
        outcome = overdraft_apply_balance_params(customer_id=customer.pk, params=params)
        totals["applied" if outcome == "applied" else "unchanged"] += 1
    return totals


def agency_credits_pull(*, agencies: list[Agency] | None = None, client: BalanceClient | None = None
                        ) -> dict[str, int]:
    """GetClientCreditLimits for agencies with an active postpaid contract: Balance's LIMIT_TOTAL / LIMIT_SPENT of
    the contract the credit comes from, kept on `AgencyCredit` (the total is the credit limit from then on)."""
    client = client or BalanceClient()
    if agencies is None:
        agencies = list(Agency.objects.filter(
            balance_client_id__isnull=False, contracts__active=True,
            contracts__payment_type=Contract.PaymentType.POSTPAID,
        ).distinct().select_related("service").order_by("pk"))
    totals = {"agencies": 0, "refreshed": 0, "failed": 0, "skipped": 0}
    for agency in agencies:
        totals["agencies"] += 1
        contract = selectors.postpaid_contract(agency=agency)
        if contract is None or agency.balance_client_id is None:
            totals["skipped"] += 1
            continue
        try:
            limits = client.get_client_credit_limits(client_id=agency.balance_client_id,
                                                     product_id=settings.BALANCE_WALLET_PRODUCT_ID)
        except BalanceError as exc:
            totals["failed"] += 1
            logger.warning("credit limits pull failed", extra={"agency": agency.pk, "error": str(exc)})
            continue
        found = next((lim for lim in limits.limits if lim.contract_id == contract.balance_contract_id), None)
        if found is None:
            totals["skipped"] += 1
            continue
        with transaction.atomic():
            credit = lock_agency_credit(agency)
            credit.balance_limit_total, credit.balance_limit_spent = max(ZERO, found.limit_total), found.limit_spent
            credit.balance_contract_id, credit.balance_refreshed_at = found.contract_id, timezone.now()
            credit.contract_id = contract.balance_contract_id
            credit.credit_limit = selectors.agency_credit_limit(contract=contract, credit=credit)
            credit.used = selectors.agency_credit_used(agency=agency)
            credit.updated_at = timezone.now()
            credit.save()
        totals["refreshed"] += 1
    return totals
