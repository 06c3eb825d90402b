"""Spending before paying, covered in Balance (issue 11, item 5), against the emulator over HTTP in whatever variant
the suite runs (`BALANCE_EMULATOR_OPTIONS`: both group reporting types, both notification protocols, ticket on):

- a direct customer's overdraft is backed by Balance's auto-overdraft (SetOverdraftParams), so the spend below
  zero is never unpaid completion, before or after the repayment;
- an agency's customers spend against credit invoices on the agency's postpaid contract, drawn by billing, which
  never counts that credit as wallet money.

Each ends with 0 `UnpaidQty` on every order in `Emulator.State`, the same figures on both sides and a clean
reconciliation run."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from balance_gateway.client import BalanceClient
from balance_gateway.models import BalanceCall
from customers.models import Customer
from disbalance.models import OutboxOperation
from disbalance.outbox import outbox_process
from overdrafts.models import AgencyCredit, Overdraft
from overdrafts.services import auto_overdraft_enqueue, overdraft_override_set
from payments.models import BalanceOrder, CreditDraw
from payments.services import spend_report, wallet_money_from_info
from reconciliation.models import Mismatch
from reconciliation.run import reconcile
from tests.overdrafts.conftest import agency_with_contract, charge, pay_topup, register, verify_ledger_clean
from wallets.models import Account

SERVICE_ID = 7
ZERO = Decimal("0.00")


def unpaid_by_order(emulator) -> dict[str, Decimal]:
    return {o["ServiceOrderID"]: Decimal(o["UnpaidQty"]) for o in emulator.state()["orders"]}


def assert_nothing_unpaid(emulator) -> None:
    unpaid = unpaid_by_order(emulator)
    assert unpaid and all(qty == 0 for qty in unpaid.values()), unpaid


def settle(run_outbox, balance_live) -> None:
    """Everything billing has to tell Balance, and everything Balance has to tell billing, delivered."""
    for _ in range(3):
        run_outbox()
        spend_report()
        assert balance_live.wait_notifications_idle(timeout=15)
    run_outbox()


def wallet_balance(customer: Customer, agency_id: int | None = None) -> Decimal:
    return Account.objects.get(customer=customer, payer_agency_id=agency_id, kind="wallet").balance


def balance_figures(wallet: BalanceOrder) -> tuple[Decimal, Decimal]:
    """(money on the wallet's group, completion money of its children) as Balance's GetOrdersInfo says."""
    children = list(BalanceOrder.objects.filter(parent=wallet))
    with BalanceClient() as client:
        infos = {int(i.service_order_id): i for i in
                 client.get_orders_info([(SERVICE_ID, wallet.pk), *[(SERVICE_ID, c.pk) for c in children]])}
    money = wallet_money_from_info(infos[wallet.pk], [infos[c.pk] for c in children])
    return money, sum((infos[c.pk].completion_amount for c in children), ZERO)


def billing_spend(wallet: BalanceOrder) -> Decimal:
    return sum((c.reported_qty for c in BalanceOrder.objects.filter(parent=wallet)), ZERO)


def assert_reconciliation_clean() -> None:
    report = reconcile(autofix=False)
    assert sum(report.found.values()) == 0, list(Mismatch.objects.filter(status="open").values_list("summary",
                                                                                                  flat=True))
    assert not Mismatch.objects.filter(status="open").exists()


@pytest.mark.django_db(transaction=True)
def test_overdraft_spend_is_covered_by_auto_overdraft_then_repaid(api, emulator, run_outbox, balance_live,
                                                                  active_customer):
    emulator.grant_overdraft(active_customer.balance_client_id, Decimal("5000.00"), 15)
    assert balance_live.wait_notifications_idle(timeout=10)
    run_outbox()
    overdraft = Overdraft.objects.get(customer=active_customer)
    assert (overdraft.granted_limit, overdraft.auto_limit, overdraft.auto_error) == (Decimal("5000.00"),
                                                                                    Decimal("5000.00"), "")
    [balance_overdraft] = next(c for c in emulator.state()["clients"]
                               if c["CLIENT_ID"] == active_customer.balance_client_id)["Overdrafts"]
    assert balance_overdraft["ClientLimit"] == "5000.00"

    # The customer spends 3,000.00 with an empty wallet: Balance covers the completion by auto-overdraft.
    assert charge(api, "3000.00").status_code == 201
    settle(run_outbox, balance_live)
    wallet = BalanceOrder.objects.get(customer=active_customer, kind="wallet")
    assert billing_spend(wallet) == Decimal("3000.00")
    assert balance_figures(wallet) == (ZERO, Decimal("3000.00"))
    assert_nothing_unpaid(emulator)
    assert sum(Decimal(o["OverdraftSum"]) for o in emulator.state()["orders"]) == Decimal("3000.00")
    assert wallet_balance(active_customer) == Decimal("-3000.00")
    assert_reconciliation_clean()

    # Repaid by a top-up paid in Balance: money covers the completion, nothing is left to the overdraft.
    pay_topup(api, emulator, run_outbox, balance_live, "3000.00")
    settle(run_outbox, balance_live)
    assert_nothing_unpaid(emulator)
    assert sum(Decimal(o["OverdraftSum"]) for o in emulator.state()["orders"]) == ZERO
    wallet.refresh_from_db()
    money, completion = balance_figures(wallet)
    assert (wallet_balance(active_customer), wallet.credited_qty, billing_spend(wallet)) == \
        (ZERO, Decimal("3000.00"), Decimal("3000.00"))
    assert (money, completion) == (wallet.credited_qty, billing_spend(wallet))
    assert_reconciliation_clean()
    verify_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_a_lowered_limit_keeps_the_debt_covered_and_a_refusal_is_shown(api, emulator, run_outbox, balance_live,
                                                                       active_customer, django_user_model):
    """Support lowering the limit refuses new spending but never uncovers the debt made; a raise above Balance's
    grant is allowed but Balance covers only the grant; a refusal by Balance is kept for support, not retried."""
    billing_admin = django_user_model.objects.create_superuser("billing-admin", password="pw")
    emulator.grant_overdraft(active_customer.balance_client_id, Decimal("5000.00"), 15)
    assert balance_live.wait_notifications_idle(timeout=10)
    assert charge(api, "3000.00").status_code == 201
    settle(run_outbox, balance_live)
    overdraft_override_set(customer=active_customer, limit=Decimal("1000.00"), reason="risk", by=billing_admin)
    settle(run_outbox, balance_live)
    assert Overdraft.objects.get(customer=active_customer).auto_limit == Decimal("3000.00")  # the debt, covered
    assert charge(api, "1.00").status_code == 402
    assert_nothing_unpaid(emulator)

    overdraft_override_set(customer=active_customer, limit=Decimal("8000.00"), reason="good client",
                           by=billing_admin, expires_at=timezone.now() + timedelta(days=5))
    settle(run_outbox, balance_live)
    assert Overdraft.objects.get(customer=active_customer).auto_limit == Decimal("5000.00")  # Balance's grant

    # Balance refuses (the customer has no overdraft limit there any more): kept for support, no endless retries.
    emulator.grant_overdraft(active_customer.balance_client_id, Decimal("0.00"), 15)
    assert balance_live.wait_notifications_idle(timeout=10)
    Overdraft.objects.filter(customer=active_customer).update(granted_limit=Decimal("4000.00"))
    with transaction.atomic():
        auto_overdraft_enqueue(customer=active_customer)
    run_outbox()
    overdraft = Overdraft.objects.get(customer=active_customer)
    assert "no overdraft limit" in overdraft.auto_error and overdraft.auto_refused_at is not None
    operation = OutboxOperation.objects.filter(kind="overdraft.params").order_by("-id").first()
    assert operation.status == "done" and "refused" in operation.result


@pytest.mark.django_db(transaction=True)
def test_agency_customers_spend_on_credit_invoices(api, emulator, run_outbox, balance_live, products, settings):
    settings.BALANCE_CREDIT_PAYSYS_ID = 1003  # sent with every credit invoice when set (not on the protocol page)
    agency = agency_with_contract(api, emulator, run_outbox, credit_limit="10000.00")
    a = register(api, run_outbox, "dealer:a", agency="agency:1")
    b = register(api, run_outbox, "dealer:b", agency="agency:1", inn="7707654321")

    assert charge(api, "6000.00", customer="/api/v1/customers/dealer:a").status_code == 201
    assert charge(api, "4000.00", customer="/api/v1/customers/dealer:b").status_code == 201
    refused = charge(api, "1.00", customer="/api/v1/customers/dealer:b")
    assert refused.status_code == 402 and refused.json()["code"] == "insufficient_funds"
    settle(run_outbox, balance_live)

    assert_nothing_unpaid(emulator)
    # The credit drawn in Balance is billing's credit used.
    with BalanceClient() as client:
        limits = client.get_client_credit_limits(client_id=agency.balance_client_id, product_id=503000)
    [limit] = limits.limits
    credit = AgencyCredit.objects.get(agency=agency)
    assert (limit.limit_total, limit.limit_spent) == (Decimal("10000.00"), Decimal("10000.00"))
    assert credit.used == limit.limit_spent
    draws = {d.order.customer_id: d for d in CreditDraw.objects.select_related("order")}
    assert {c: (d.amount, d.status) for c, d in draws.items()} == {
        a.pk: (Decimal("6000.00"), "invoiced"), b.pk: (Decimal("4000.00"), "invoiced")}
    assert all(d.request_id and d.invoice_id and d.contract_id == limit.contract_id for d in draws.values())
    invoices = BalanceCall.objects.filter(method="CreateInvoice", outcome="ok")
    assert sorted(call.arguments["paysys_id"] for call in invoices) == [1003, 1003]

    # Wallets equal on both sides; the credit on the orders is never counted as wallet money.
    for customer, spent in ((a, Decimal("6000.00")), (b, Decimal("4000.00"))):
        wallet = BalanceOrder.objects.get(customer=customer, kind="wallet", payer_agency=agency)
        assert wallet_balance(customer, agency.pk) == -spent
        assert wallet.credited_qty == ZERO  # no wallet money from the credit
        assert balance_figures(wallet) == (spent, spent)  # Balance: the credit is money on the order
        assert billing_spend(wallet) == spent
    assert_reconciliation_clean()
    verify_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_a_lost_credit_invoice_answer_is_looked_up_not_drawn_twice(api, emulator, run_outbox, balance_live,
                                                                   products, settings):
    settings.OUTBOX_INLINE_RETRIES = 0  # see the state between the lost answer and the next try
    agency = agency_with_contract(api, emulator, run_outbox, credit_limit="10000.00")
    customer = register(api, run_outbox, "dealer:a", agency="agency:1")
    emulator.set_faults({"Balance2.CreateInvoice": {"lost_response_rate": 1.0}})
    assert charge(api, "2500.00", customer="/api/v1/customers/dealer:a").status_code == 201
    for kind in ("orders.sync", "credit.draw"):  # one attempt each, in order (the draw waited for the order)
        for operation in OutboxOperation.objects.filter(kind=kind, status="pending"):
            outbox_process(operation_id=operation.pk, ignore_schedule=True)
    draw = CreditDraw.objects.get()
    assert draw.status == "invoicing"  # sent, answer lost: the order's money waits
    emulator.set_faults({})
    settle(run_outbox, balance_live)
    draw.refresh_from_db()
    assert (draw.status, draw.amount, draw.invoice_id) == ("invoiced", Decimal("2500.00"), None)
    assert "found by LIMIT_SPENT" in draw.error
    assert CreditDraw.objects.count() == 1
    with BalanceClient() as client:
        [limit] = client.get_client_credit_limits(client_id=agency.balance_client_id, product_id=503000).limits
    assert limit.limit_spent == Decimal("2500.00")  # one invoice, not two
    assert_nothing_unpaid(emulator)
    wallet = BalanceOrder.objects.get(customer=customer, kind="wallet")
    assert wallet.credited_qty == ZERO
    assert_reconciliation_clean()


@pytest.mark.django_db(transaction=True)
def test_money_paid_in_after_credit_is_wallet_money_and_the_credit_is_not(api, emulator, run_outbox, balance_live,
                                                                          products):
    """A top-up paid for a customer whose wallet order already carries drawn credit: only the paid money is
    credited; the customer's next spend uses the credit already on its order before drawing more."""
    agency = agency_with_contract(api, emulator, run_outbox, credit_limit="10000.00")
    customer = register(api, run_outbox, "dealer:a", agency="agency:1")
    path = "/api/v1/customers/dealer:a"
    assert charge(api, "3000.00", customer=path).status_code == 201
    settle(run_outbox, balance_live)
    pay_topup(api, emulator, run_outbox, balance_live, "1000.00", customer=path)
    settle(run_outbox, balance_live)
    wallet = BalanceOrder.objects.get(customer=customer, kind="wallet", payer_agency=agency)
    assert (wallet.credited_qty, wallet_balance(customer, agency.pk)) == (Decimal("1000.00"), Decimal("-2000.00"))
    assert balance_figures(wallet) == (Decimal("4000.00"), Decimal("3000.00"))  # 3,000 credit + 1,000 paid
    assert charge(api, "1500.00", customer=path).status_code == 201  # -3,500: 500 more than drawn
    settle(run_outbox, balance_live)
    assert sorted(d.amount for d in CreditDraw.objects.all()) == [Decimal("500.00"), Decimal("3000.00")]
    assert_nothing_unpaid(emulator)
    assert_reconciliation_clean()
    verify_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_a_draw_balance_refuses_is_shown_to_support_not_retried(api, emulator, run_outbox, balance_live, products):
    """The known limit (docs/balance-conformance.md): money paid in for a customer after credit was drawn frees
    billing's shared room but not the contract's LIMIT_SPENT. When Balance then refuses a draw, the draw is
    `refused` with Balance's message and reconciliation shows the unpaid completion; nothing is retried blindly."""
    agency = agency_with_contract(api, emulator, run_outbox, credit_limit="10000.00")
    register(api, run_outbox, "dealer:a", agency="agency:1")
    b = register(api, run_outbox, "dealer:b", agency="agency:1", inn="7707654321")
    assert charge(api, "6000.00", customer="/api/v1/customers/dealer:a").status_code == 201
    settle(run_outbox, balance_live)
    pay_topup(api, emulator, run_outbox, balance_live, "6000.00", customer="/api/v1/customers/dealer:a")
    assert charge(api, "5000.00", customer="/api/v1/customers/dealer:b").status_code == 201  # billing's room: 10,000
    settle(run_outbox, balance_live)
    refused = CreditDraw.objects.get(order__customer=b)
    assert refused.status == "refused" and "CREDIT_LIMIT_EXCEEDED" in refused.error
    attempts = OutboxOperation.objects.filter(kind="credit.draw").count()
    settle(run_outbox, balance_live)
    assert OutboxOperation.objects.filter(kind="credit.draw").count() == attempts  # no endless retries
    reconcile(autofix=False)
    unpaid = Mismatch.objects.get(kind="unpaid_completion", status="open")
    assert unpaid.customer_id == b.pk and ["unpaid completion", "0.00", "5000.00"] in unpaid.details["rows"]
    assert AgencyCredit.objects.get(agency=agency).used == Decimal("5000.00")


@pytest.mark.django_db
def test_a_notification_sent_before_a_credit_invoice_never_takes_money_back():
    """Reordered delivery: Balance's figures from before a credit invoice arrive after the draw is counted. Their
    money lacks the credit, which is not money taken away. Every notification of the order waits (Balance is told
    "not found" and re-sends) until a pull read after the invoice; then the pull guard holds back older figures
    until the invoice's own notification comes."""
    from balance_gateway.notifications import UnknownObject
    from payments.services import OrderState, order_apply_balance_state
    from tests.factories import AgencyFactory, CustomerFactory

    agency = AgencyFactory()
    customer = CustomerFactory(service=agency.service, agency=agency)
    order = BalanceOrder.objects.create(key=f"wallet:c{customer.pk}:p{agency.pk}", service=customer.service,
                                        customer=customer, payer_agency=agency, kind="wallet", sync_status="synced")
    assert order_apply_balance_state(order_id=order.pk, state=OrderState(
        consume_money=Decimal("100.00"), completion_qty=ZERO, tid=10)) == "applied"
    CreditDraw.objects.create(order=order, agency=agency, contract_id=1, amount=Decimal("500.00"), status="invoiced")
    before_invoice = OrderState(consume_money=Decimal("100.00"), completion_qty=ZERO, tid=11)
    own = OrderState(consume_money=Decimal("600.00"), completion_qty=ZERO, tid=12)  # the invoice's own
    for state in (before_invoice, own):
        with pytest.raises(UnknownObject):  # not read since the draw: re-sent later
            order_apply_balance_state(order_id=order.pk, state=state)
    assert order_apply_balance_state(order_id=order.pk, state=OrderState(  # the pull right after the invoice
        consume_money=Decimal("600.00"), completion_qty=ZERO, tid=None, read_at=timezone.now())) == "applied"
    order.refresh_from_db()
    assert (order.credited_qty, order.last_tid, order.pulled_money) == (Decimal("100.00"), 10, Decimal("100.00"))
    with pytest.raises(UnknownObject):  # re-sent, still older than what the pull read: waits for the invoice's
        order_apply_balance_state(order_id=order.pk, state=before_invoice)
    assert order_apply_balance_state(order_id=order.pk, state=own) == "applied"
    assert order_apply_balance_state(order_id=order.pk, state=before_invoice) == "stale"  # re-sent again: older
    order.refresh_from_db()
    assert (order.credited_qty, wallet_balance(customer, agency.pk)) == (Decimal("100.00"), Decimal("100.00"))
    # A later lowering is Balance taking money off: mirrored as before.
    assert order_apply_balance_state(order_id=order.pk, state=OrderState(
        consume_money=Decimal("550.00"), completion_qty=ZERO, tid=13)) == "applied"
    assert wallet_balance(customer, agency.pk) == Decimal("50.00")


@pytest.mark.django_db
def test_a_notification_sent_before_a_credit_invoice_pays_no_wrong_top_up():
    """make soak seed 303, enqueue variant: a NotifyOrder2 sent before a credit invoice of 127.02 and delivered after
    it showed a paid top-up of 1,674.83; taking the credit off, billing credited 1,547.81, marked an unpaid 1,040.30
    top-up succeeded and the rest as money without a top-up, and left the paid one waiting. Now the notification
    waits for the pull read after the invoice, which pays the right top-up whole."""
    from balance_gateway.notifications import UnknownObject
    from payments.models import TopUp
    from payments.services import OrderState, order_apply_balance_state
    from tests.factories import AgencyFactory, CustomerFactory

    agency = AgencyFactory()
    customer = CustomerFactory(service=agency.service, agency=agency)
    order = BalanceOrder.objects.create(key=f"wallet:c{customer.pk}:p{agency.pk}", service=customer.service,
                                        customer=customer, payer_agency=agency, kind="wallet", sync_status="synced")
    unpaid, paid = (TopUp.objects.create(service=customer.service, customer=customer, payer_agency=agency,
                                         order=order, amount=Decimal(amount), status="awaiting_payment",
                                         expires_at=timezone.now() + timedelta(days=1))
                    for amount in ("1040.30", "1674.83"))
    CreditDraw.objects.create(order=order, agency=agency, contract_id=1, amount=Decimal("127.02"), status="invoiced")
    with pytest.raises(UnknownObject):  # sent before the invoice: the paid top-up without the credit
        order_apply_balance_state(order_id=order.pk, state=OrderState(
            consume_money=Decimal("1674.83"), completion_qty=ZERO, tid=7))
    assert order_apply_balance_state(order_id=order.pk, state=OrderState(  # read after the invoice
        consume_money=Decimal("1801.85"), completion_qty=ZERO, tid=None, read_at=timezone.now())) == "applied"
    unpaid.refresh_from_db()
    paid.refresh_from_db()
    assert (unpaid.status, paid.status) == ("awaiting_payment", "succeeded")
    assert wallet_balance(customer, agency.pk) == Decimal("1674.83")
    assert order_apply_balance_state(order_id=order.pk, state=OrderState(  # re-sent: now it adds nothing
        consume_money=Decimal("1801.85"), completion_qty=ZERO, tid=8)) == "applied"
    assert wallet_balance(customer, agency.pk) == Decimal("1674.83")


@pytest.mark.django_db
def test_a_pull_read_before_a_credit_invoice_is_not_credited_after_it():
    """GetOrdersInfo read before a credit invoice, applied after the draw is counted (make soak seed 303, enqueue
    variant): its money lacks the credit, so taking the credit off credited part of a paid top-up as money without
    one, and the rest later. Not applied; the next pull, read after the invoice, pays the top-up whole."""
    from payments.models import TopUp
    from payments.services import OrderState, order_apply_balance_state
    from tests.factories import AgencyFactory, CustomerFactory

    agency = AgencyFactory()
    customer = CustomerFactory(service=agency.service, agency=agency)
    order = BalanceOrder.objects.create(key=f"wallet:c{customer.pk}:p{agency.pk}", service=customer.service,
                                        customer=customer, payer_agency=agency, kind="wallet", sync_status="synced")
    CreditDraw.objects.create(order=order, agency=agency, contract_id=1, amount=Decimal("200.00"), status="invoiced")
    topup = TopUp.objects.create(service=customer.service, customer=customer, payer_agency=agency, order=order,
                                 amount=Decimal("1000.00"), status="awaiting_payment",
                                 expires_at=timezone.now() + timedelta(days=1))
    read_at = timezone.now()
    CreditDraw.objects.create(order=order, agency=agency, contract_id=1, amount=Decimal("150.00"), status="invoiced")
    assert order_apply_balance_state(order_id=order.pk, state=OrderState(  # 1000 paid + the first draw only
        consume_money=Decimal("1200.00"), completion_qty=ZERO, tid=None, read_at=read_at)) == "stale"
    topup.refresh_from_db()
    order.refresh_from_db()
    assert topup.status == "awaiting_payment" and order.credited_qty == ZERO
    assert order_apply_balance_state(order_id=order.pk, state=OrderState(  # read after the second invoice
        consume_money=Decimal("1350.00"), completion_qty=ZERO, tid=None, read_at=timezone.now())) == "applied"
    topup.refresh_from_db()
    assert topup.status == "succeeded" and wallet_balance(customer, agency.pk) == Decimal("1000.00")
