"""Limits from Balance: `NotifyClient2` (the `client` notification applier; Tid rule per customer), the
periodic `overdrafts_pull` (GetOverdraftParams) and `agency_credits_pull` (GetClientCreditLimits)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agencies.models import Agency, Contract
from balance_gateway.client import BalanceClient
from balance_gateway.exceptions import BalanceError
from balance_gateway.models import BalanceNotification, RegistrationStatus
from balance_gateway.notifications import ClientNotification, notification_applier
from customers.locks import lock_customer
from customers.models import Customer
from disbalance.events import event_emit
from disbalance.money import ZERO, format_amount
from overdrafts import selectors
from overdrafts.locks import _lock_overdraft, lock_agency_credit
from overdrafts.models import Overdraft
from overdrafts.services.auto_overdraft import (
    auto_overdraft_enqueue,
    auto_overdraft_enqueue_if_changed,
    auto_overdraft_wanted,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BalanceOverdraft:
    """An overdraft as Balance reports it (NotifyClient2 or GetOverdraftParams)."""

    limit: Decimal
    spent: Decimal
    min_payment_term: date | None
    banned: bool
    currency: str


def balance_overdraft_from_notification(notification: ClientNotification) -> BalanceOverdraft:
    """NotifyClient2, already parsed and checked by the gateway."""
    return BalanceOverdraft(limit=notification.overdraft_limit, spent=notification.overdraft_spent,
                            min_payment_term=notification.min_payment_term, banned=notification.overdraft_ban,
                            currency=notification.currency[:3])


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
    auto_overdraft_enqueue_if_changed(customer=customer, overdraft=overdraft)
    return "applied"


def _for_our_service(notification: ClientNotification, customer: Customer) -> bool:
    """A client may get one NotifyClient2 per (firm, service) with different limits: only the one sent to the
    customer's service's notification URL is the customer's limit. One that does not say (a URL without the
    ServiceID) is taken as the customer's own service's."""
    return notification.service_id is None or notification.service_id == customer.service.balance_service_id


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
    """NotifyClient2: a client's overdraft, keyed (and Tid-ordered) per client and service.

    A customer's client: applied per customer through `overdraft_apply_balance_params` (Tid rule). An agency's
    client is known (answered success) but never has an overdraft: stored, not applied (`received`); so is a
    limit for another service.
    """

    @staticmethod
    def exists(notification: ClientNotification) -> bool:
        client_id = notification.client_id
        return (Customer.objects.filter(balance_client_id=client_id).exists()
                or Agency.objects.filter(balance_client_id=client_id).exists())

    @staticmethod
    def apply(notification: ClientNotification) -> str:
        customers = [c for c in Customer.objects.filter(balance_client_id=notification.client_id)
                     .select_related("service").order_by("pk") if _for_our_service(notification, c)]
        if not customers:
            return BalanceNotification.Outcome.RECEIVED
        params = balance_overdraft_from_notification(notification)
        outcomes = [overdraft_apply_balance_params(customer_id=c.pk, params=params, tid=notification.tid)
                    for c in customers]
        return "applied" if "applied" in outcomes else "stale"


def overdrafts_pull(*, customers: list[Customer] | None = None, client: BalanceClient | None = None
                    ) -> dict[str, int]:
    """GetOverdraftParams for every direct active customer (or the given ones): the client's auto-overdraft
    settings (ClientLimit), which are not its overdraft limit. The limit comes only from NotifyClient2, so this
    never changes a stored limit; it counts who has auto-overdraft on, for support, and re-sends the settings
    (`overdraft.params`) of a customer whose ClientLimit in Balance differs from what billing wants (unless
    Balance refused it last time: support sees that refusal). One customer's failure does not stop the others."""
    client = client or BalanceClient()
    if customers is None:
        queryset = (Customer.objects.filter(agency__isnull=True, status=RegistrationStatus.ACTIVE,
                                            balance_client_id__isnull=False)
                    .select_related("service").order_by("pk"))
        customers_iter = queryset.iterator(chunk_size=settings.OVERDRAFT_PULL_BATCH)
    else:
        customers_iter = iter(customers)
    totals = {"customers": 0, "auto_overdraft": 0, "none": 0, "failed": 0, "skipped": 0, "resent": 0}
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
        totals["auto_overdraft" if found is not None and found.client_limit > 0 else "none"] += 1
        in_balance = found.client_limit if found is not None else ZERO
        with transaction.atomic():
            overdraft = Overdraft.objects.filter(customer_id=customer.pk).first()
            wanted = auto_overdraft_wanted(customer=customer, overdraft=overdraft)
            if overdraft is not None and in_balance != wanted and not overdraft.auto_error:
                # Balance's auto-overdraft differs from what billing wants (changed there, or never set): send it.
                auto_overdraft_enqueue(customer=customer, force=True)
                totals["resent"] += 1
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
