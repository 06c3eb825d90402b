"""Per-customer event sequences under concurrent writers (PostgreSQL): gapless and unique, and a consumer applying
the events ends at the wallet. Money paths assign the sequence under the customer's lock; other writers (a
customer update) insert without it and retry a clash."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from customers.models import Customer
from customers.services import customer_update
from disbalance.models import WebhookEvent
from payments.services import charge_create
from tests.conftest import requires_postgres
from wallets.services import wallet_credit_topup

THREADS, OPERATIONS = 8, 15


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_sequences_stay_gapless_under_concurrent_writers(active_customer, products):
    with transaction.atomic():
        wallet_credit_topup(customer=active_customer, payer_agency=None, amount=Decimal("100000.00"))
    barrier, errors = threading.Barrier(THREADS), []

    def worker(n: int) -> None:
        try:
            barrier.wait()
            customer = Customer.objects.select_related("service").get(pk=active_customer.pk)
            for i in range(OPERATIONS):
                if n % 4 == 0 and i % 3 == 0:  # a writer that does not take the customer's lock
                    customer_update(customer=customer, changes={"name": f"Name {n}-{i}"})
                else:
                    charge_create(customer=customer, product=products["placement"], amount=Decimal("1.00"))
        except Exception as exc:
            errors.append(f"{n}: {type(exc).__name__}: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    sequences = list(WebhookEvent.objects.filter(customer_pk=active_customer.pk).order_by("sequence")
                     .values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))
    charges = WebhookEvent.objects.filter(customer_pk=active_customer.pk, type="charge.succeeded")
    assert charges.count() == THREADS * OPERATIONS - 2 * sum(1 for i in range(OPERATIONS) if i % 3 == 0)
    last = charges.order_by("-sequence").first()
    assert Decimal(last.data["balance"]) == Decimal("100000.00") - charges.count()
