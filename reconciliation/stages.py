"""The loading stages of a run: each loads a batch, lets every check registered for the stage compare it, then
records what the checks found (`recording.settle`).

- customers: a batch of customers with their orders, Balance's figures for those orders (GetOrdersInfo, batched),
  their ledger accounts (wallets and spend) and their Balance clients (GetClientByIdBatch);
- agencies: a batch of agencies with their Balance clients;
- operations: failed outbox operations and those pending or in progress for too long, in batches.

An open mismatch of a stage's kinds that a batch covered and no check found again is closed by the system.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db.models import Q

from agencies.models import Agency
from balance_gateway.client import ClientInfo, OrderInfo
from customers.models import Customer
from disbalance.models import ConsumerService, OutboxOperation
from disbalance.money import ZERO
from payments.models import BalanceOrder, Product
from reconciliation.findings import Checks, setting
from reconciliation.models import Mismatch
from reconciliation.reading import Run, clients_info, orders_info
from reconciliation.recording import settle
from reconciliation.registry import STAGE_AGENCIES, STAGE_CUSTOMERS, STAGE_OPERATIONS, checks_for
from wallets.models import Account


@dataclass
class CustomerBatch:
    customers: list[Customer]
    orders: list[BalanceOrder]
    infos: dict[tuple[int, int], OrderInfo]  # by (Balance ServiceID, order id)
    clients: dict[int, ClientInfo]  # by Balance ClientID
    spend: dict[str, tuple[int, Decimal]]  # spend account key -> (account id, balance)
    wallets: dict[tuple[int, int | None], Decimal]  # (customer, payer) -> wallet balance
    spend_by_payer: dict[tuple[int, int | None], Decimal]
    open_keys: set[str]
    by_id: dict[int, Customer] = field(default_factory=dict)
    children: dict[int, list[BalanceOrder]] = field(default_factory=dict)

    @property
    def parties(self) -> list[Customer]:
        return self.customers

    def info(self, order: BalanceOrder) -> OrderInfo | None:
        return self.infos.get((order.service.balance_service_id, order.pk))


@dataclass
class AgencyBatch:
    agencies: list[Agency]
    clients: dict[int, ClientInfo]
    open_keys: set[str]

    @property
    def parties(self) -> list[Agency]:
        return self.agencies


@dataclass
class OperationBatch:
    operations: list[OutboxOperation]


def _kinds(stage: str) -> list[str]:
    return [check.kind for check in checks_for(stage)]


def _attach_related(run: Run, orders: list[BalanceOrder]) -> None:
    """Set each order's service, product and payer agency from per-run caches (few rows, many orders): cheaper
    than joining them into every order row."""
    for model, field_name in ((ConsumerService, "service"), (Product, "product"), (Agency, "payer_agency")):
        cache = run.related.setdefault(field_name, {})
        missing = {getattr(o, f"{field_name}_id") for o in orders} - set(cache) - {None}
        if missing:
            cache.update(model.objects.in_bulk(missing))  # type: ignore[attr-defined]
        for order in orders:
            related_id = getattr(order, f"{field_name}_id")
            if related_id is not None:
                setattr(order, field_name, cache[related_id])


def reconcile_customers(run: Run, customers: list[Customer]) -> None:
    ids = [c.pk for c in customers]
    open_rows = {m.key: m for m in Mismatch.objects.filter(status=Mismatch.Status.OPEN, customer_id__in=ids,
                                                          kind__in=_kinds(STAGE_CUSTOMERS))}
    orders = list(BalanceOrder.objects.filter(customer_id__in=ids).order_by("id"))
    _attach_related(run, orders)
    infos = orders_info(run, orders)
    clients = clients_info(run, [c.balance_client_id for c in customers])
    accounts = list(Account.objects.filter(customer_id__in=ids, kind__in=[Account.Kind.SPEND, Account.Kind.WALLET])
                    .values_list("id", "key", "kind", "customer_id", "payer_agency_id", "balance"))
    spend = {key: (pk, balance) for pk, key, kind, _, _, balance in accounts if kind == Account.Kind.SPEND}
    wallets = {(cid, payer): balance for _, _, kind, cid, payer, balance in accounts if kind == Account.Kind.WALLET}
    spend_by_payer: dict[tuple[int, int | None], Decimal] = defaultdict(lambda: ZERO)
    for _, _, kind, cid, payer, balance in accounts:
        if kind == Account.Kind.SPEND:
            spend_by_payer[(cid, payer)] += balance
    run.report.customers += len(customers)
    run.report.orders += len(orders)
    children: dict[int, list[BalanceOrder]] = defaultdict(list)
    for order in orders:
        if order.parent_id:
            children[order.parent_id].append(order)
    batch = CustomerBatch(customers=customers, orders=orders, infos=infos, clients=clients, spend=spend,
                          wallets=wallets, spend_by_payer=spend_by_payer, open_keys=set(open_rows),
                          by_id={c.pk: c for c in customers}, children=children)
    checks = Checks()
    for check in checks_for(STAGE_CUSTOMERS):
        check.compare(run, batch, checks)
    settle(run, checks, open_rows, infos={order.pk: batch.info(order) for order in orders})


def reconcile_agencies(run: Run, agencies: list[Agency]) -> None:
    ids = [a.pk for a in agencies]
    open_rows = {m.key: m for m in Mismatch.objects.filter(status=Mismatch.Status.OPEN, agency_id__in=ids,
                                                          customer__isnull=True, kind__in=_kinds(STAGE_AGENCIES))}
    clients = clients_info(run, [a.balance_client_id for a in agencies])
    run.report.agencies += len(agencies)
    batch = AgencyBatch(agencies=agencies, clients=clients, open_keys=set(open_rows))
    checks = Checks()
    for check in checks_for(STAGE_AGENCIES):
        check.compare(run, batch, checks)
    settle(run, checks, open_rows)


def reconcile_operations(run: Run, *, customer: Customer | None, service: ConsumerService | None) -> None:
    Status = OutboxOperation.Status
    stale_after = timedelta(minutes=setting("RECONCILE_STALE_OPERATION_MINUTES", 60))
    stuck = Q(status__in=[Status.PENDING, Status.IN_PROGRESS], created_at__lt=run.now - stale_after)
    operations = OutboxOperation.objects.filter(Q(status=Status.FAILED) | stuck)
    open_rows_qs = Mismatch.objects.filter(status=Mismatch.Status.OPEN, kind__in=_kinds(STAGE_OPERATIONS))
    if customer is not None:
        operations = operations.filter(subject=f"customer:{customer.pk}")
        open_rows_qs = open_rows_qs.filter(customer=customer)
    elif service is not None:
        operations = operations.filter(service=service)
        open_rows_qs = open_rows_qs.filter(service=service)
    open_rows = {m.key: m for m in open_rows_qs}
    checks = Checks()
    for key in open_rows:
        checks.equal(key)  # every open one is evaluated: still stale (found below), or closed
    last_id = 0
    while True:
        chunk = list(operations.filter(id__gt=last_id).order_by("id")[:run.batch_size])
        if not chunk:
            break
        last_id = chunk[-1].pk
        run.report.operations += len(chunk)
        for check in checks_for(STAGE_OPERATIONS):
            check.compare(run, OperationBatch(operations=chunk), checks)
    settle(run, checks, open_rows)
