"""Writes for payments, one module per use case: products, Balance orders (unified account), top-ups, money
reported by Balance (order state), charges, holds, refunds, and spend reported to Balance.

Locking: every write to a customer's money locks the customer first (`customers.locks.lock_customer`), then the
ledger accounts, then this app's own rows (order, hold, charge), inside one short transaction; figures are
re-read and validated under the lock. Balance is called only by outbox handlers and periodic jobs, never inside
a transaction.

Importing this package registers the outbox handlers (`orders.sync`, `topup.request`, `credit.draw`,
`payments.payer_transfer`), the `order` notification applier and the agency money hook
(`credit.credit_draw_enqueue`).
"""

from payments.services.charges import charge_create
from payments.services.credit import (
    CREDIT_DRAW,
    credit_draw_enqueue,
    credit_draw_in_balance,
    credit_draw_in_flight,
    credit_drawn,
    credit_needed,
)
from payments.services.holds import hold_capture, hold_create, hold_release, holds_expire
from payments.services.order_state import (
    OrderNotifications,
    OrderState,
    order_apply_balance_state,
    order_note_balance_state,
    orders_pull,
    wallet_money_from_info,
    wallet_money_from_notification,
)
from payments.services.orders import (
    ORDERS_SYNC,
    enqueue_orders_sync,
    enqueue_orders_sync_by_id,
    order_spec,
    orders_ensure,
    orders_resend,
    orders_sync_to_balance,
)
from payments.services.products import ProductCreateResult, product_create
from payments.services.refunds import refund_create
from payments.services.spend import (
    REPORT_REFUSED,
    completion_report_for,
    orders_rereport,
    orders_with_unreported_spend,
    spend_account_key,
    spend_report,
)
from payments.services.topups import TOPUP_REQUEST, topup_create, topup_request_in_balance, topups_expire
from payments.services.transfers import (
    PAYER_TRANSFER,
    money_in_flight,
    payer_transfer_check,
    payer_transfer_destination_ready,
    payer_transfer_run,
    payer_transfer_start,
)

__all__ = [
    "CREDIT_DRAW",
    "ORDERS_SYNC",
    "PAYER_TRANSFER",
    "REPORT_REFUSED",
    "TOPUP_REQUEST",
    "OrderNotifications",
    "OrderState",
    "ProductCreateResult",
    "charge_create",
    "completion_report_for",
    "credit_draw_enqueue",
    "credit_draw_in_balance",
    "credit_draw_in_flight",
    "credit_drawn",
    "credit_needed",
    "enqueue_orders_sync",
    "enqueue_orders_sync_by_id",
    "hold_capture",
    "hold_create",
    "hold_release",
    "holds_expire",
    "money_in_flight",
    "order_apply_balance_state",
    "order_note_balance_state",
    "order_spec",
    "orders_ensure",
    "orders_pull",
    "orders_rereport",
    "orders_resend",
    "orders_sync_to_balance",
    "orders_with_unreported_spend",
    "payer_transfer_check",
    "payer_transfer_destination_ready",
    "payer_transfer_run",
    "payer_transfer_start",
    "product_create",
    "refund_create",
    "spend_account_key",
    "spend_report",
    "topup_create",
    "topup_request_in_balance",
    "topups_expire",
    "wallet_money_from_info",
    "wallet_money_from_notification",
]
