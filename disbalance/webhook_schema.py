"""Every webhook in the OpenAPI document (OpenAPI 3.1 `webhooks`), with an example each, so client generators
see the events as well as the API. Listed in SPECTACULAR_SETTINGS["WEBHOOKS"] as `WEBHOOKS`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, OpenApiWebhook, extend_schema
from rest_framework import serializers

from disbalance.fields import SignedAmountField
from disbalance.models import WebhookEvent

_HEADERS = (
    "Sent as `POST` to the service's webhook URL, at least once, retried with exponential backoff for days; "
    "de-duplicate by `id`, order by `sequence` per customer. Headers: `webhook-id` (= `id`), `webhook-timestamp`, "
    "`webhook-signature` (Standard Webhooks: verify with any standardwebhooks library and the secret in `whsec_` "
    "form) and `X-Disbalance-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, \"<t>.\" + body)>`. During a secret "
    "rotation both secrets sign. Answer 2xx when stored; `410` stops deliveries of the event. The same events are "
    "in `GET /api/v1/events`."
)


def _money(help_text: str) -> SignedAmountField:
    return SignedAmountField(help_text=help_text)


def _data_fields(kind: str) -> dict[str, serializers.Field]:
    common: dict[str, serializers.Field] = {
        "customer": serializers.CharField(help_text="The customer's external id"),
        "payer": serializers.CharField(allow_null=True, help_text="The paying agency's external id; null: itself"),
    }
    if kind == "money":
        return {**common, "amount": _money("The operation's amount"),
                "balance": _money("The payer's balance (wallet + held) right after the change"),
                "held": _money("The payer's held money right after the change"),
                "currency": serializers.CharField()}
    if kind == "low_balance":
        return {**common, "balance": _money("The balance that fell below"), "threshold": _money("The threshold"),
                "currency": serializers.CharField()}
    if kind == "limit":
        return {**common, "limit": _money("The effective overdraft limit now"),
                "previous_limit": _money("Before the change"),
                "cause": serializers.ChoiceField(choices=["balance", "support"])}
    if kind == "service":
        return {"url": serializers.CharField(help_text="The webhook URL that kept failing"),
                "failing_since": serializers.DateTimeField(help_text="The first failure since the last success"),
                "pending": serializers.IntegerField(help_text="Events waiting for the endpoint (see GET /events)")}
    return {"customer": serializers.CharField(help_text="The customer's external id")}


_KIND = {
    **{t: "money" for t in ("topup.succeeded", "money.received", "charge.succeeded", "refund.succeeded",
                            "hold.created", "hold.captured", "hold.released", "hold.expired", "wallet.adjusted",
                            "wallet.transferred")},
    "wallet.low_balance": "low_balance",
    "overdraft.limit_changed": "limit",
    "webhook.endpoint_disabled": "service",
}

_EXAMPLE_DATA: dict[str, dict[str, Any]] = {
    "topup.succeeded": {"topup": "0b5c8f1e-4b4a-4a43-9f0e-3f1c2a7d9e10", "amount": "1000.00", "balance": "1000.00"},
    "money.received": {"order": 12, "tid": 7, "amount": "200.00", "balance": "1200.00"},
    "charge.succeeded": {"charge": "5f0f6a2c-3c8e-4f55-8a57-4d4a9a7e0c11", "product": "placement",
                         "amount": "300.00", "balance": "900.00"},
    "refund.succeeded": {"refund": "9d9b2b51-0f1b-4a0f-a1c1-6e5b0d2f4a12", "charge": "5f0f6a2c-3c8e-4f55-8a57-"
                         "4d4a9a7e0c11", "reason": "bad photo", "product": "placement", "amount": "50.00",
                         "balance": "950.00"},
    "hold.created": {"hold": "2c6e1c55-8f7a-4a8e-b0f3-1d2e3f4a5b13", "product": "boost", "amount": "200.00",
                     "balance": "950.00", "held": "200.00"},
    "hold.captured": {"hold": "2c6e1c55-8f7a-4a8e-b0f3-1d2e3f4a5b13", "charge": "7a1b2c3d-4e5f-4a6b-8c7d-"
                      "9e0f1a2b3c14", "captured": "150.00", "released": "50.00", "amount": "150.00",
                      "balance": "800.00"},
    "hold.released": {"hold": "2c6e1c55-8f7a-4a8e-b0f3-1d2e3f4a5b13", "amount": "200.00", "balance": "950.00"},
    "hold.expired": {"hold": "2c6e1c55-8f7a-4a8e-b0f3-1d2e3f4a5b13", "amount": "200.00", "balance": "950.00"},
    "wallet.adjusted": {"reason": "credited twice", "amount": "-30.00", "balance": "920.00"},
    "wallet.transferred": {"reason": "moved by support", "to_payer": "agency:7", "to_balance": "70.00",
                           "amount": "70.00", "balance": "850.00"},
    "wallet.low_balance": {"balance": "450.00", "threshold": "500.00"},
    "overdraft.limit_changed": {"limit": "500.00", "previous_limit": "300.00", "cause": "support"},
    "webhook.endpoint_disabled": {"url": "https://consumer.example/hooks", "failing_since": "2026-11-28T08:00:00Z",
                                  "pending": 1234},
    "customer.registered": {"status": "active", "status_reason": ""},
    "customer.registration_failed": {"status": "failed", "status_reason": "Balance: INVALID_INN"},
    "customer.updated": {"changed": ["email", "name"]},
    "customer.blocked": {"blocked": True, "reasons": ["overdue"], "debt": "120.00", "reason": "overdue"},
    "customer.unblocked": {"blocked": False, "reasons": [], "debt": "0.00", "reason": "repaid"},
    "agency.changed": {"agency": "agency:7", "previous_agency": None, "since": "2026-12-01T10:00:00Z",
                       "reason": "contract signed"},
    "topup.failed": {"id": "0b5c8f1e-4b4a-4a43-9f0e-3f1c2a7d9e10", "amount": "1000.00", "status": "failed"},
    "topup.expired": {"id": "0b5c8f1e-4b4a-4a43-9f0e-3f1c2a7d9e10", "amount": "1000.00", "status": "expired"},
}


def _example(event_type: str) -> dict[str, Any]:
    kind = _KIND.get(event_type, "customer")
    data: dict[str, Any] = {} if kind == "service" else {"customer": "dealer:20101", "payer": None}
    if kind == "money":
        data.update(held="0.00", currency="RUB")
    if kind == "low_balance":
        data.update(currency="RUB")
    data.update(_EXAMPLE_DATA.get(event_type, {}))
    return {"id": "3f2b8c1a-6d4e-4f7a-9b2c-1e0d9c8b7a65", "type": event_type, "created_at": "2026-12-02T08:00:00Z",
            "sequence": None if kind == "service" else 42, "data": data}


def _webhook(event_type: str) -> OpenApiWebhook:
    name = "".join(part.capitalize() for part in event_type.replace(".", "_").split("_"))
    data = type(f"{name}WebhookDataSerializer", (serializers.Serializer,), {
        "__doc__": f"What a `{event_type}` event says.", "__module__": __name__,
        **_data_fields(_KIND.get(event_type, "customer")),
    })
    body = type(f"{name}WebhookSerializer", (serializers.Serializer,), {
        "__doc__": f"The `{event_type}` event as POSTed to the webhook URL (and listed by GET /events).",
        "__module__": __name__,
        "id": serializers.UUIDField(help_text="The event id (also `webhook-id`); the same in GET /events"),
        "type": serializers.ChoiceField(choices=[event_type], help_text="The event type"),
        "created_at": serializers.DateTimeField(help_text="When the change happened (UTC)"),
        "sequence": serializers.IntegerField(allow_null=True, help_text="Grows by one per customer; apply in order"),
        "data": data(help_text="The event's figures (see the component)"),
    })
    return OpenApiWebhook(name=event_type, decorator=extend_schema(
        summary=f"`{event_type}`", description=_HEADERS, request=body,
        responses={200: OpenApiResponse(description="Received (any 2xx)"),
                   410: OpenApiResponse(description="Gone: stop delivering this event")},
        examples=[OpenApiExample(event_type, value=_example(event_type))],
    ))


WEBHOOKS = [_webhook(event_type) for event_type in WebhookEvent.Type.values]
