"""Wallet API: the customer's money and its statement. Read-only: money moves through payments."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers.selectors import customer_get
from disbalance import openapi_examples as examples
from disbalance.auth import current_service
from disbalance.events import low_balance_threshold
from disbalance.fields import AmountField, SignedAmountField
from disbalance.money import ZERO
from disbalance.openapi import BODY, filter_parameters, page_of, problems
from disbalance.pagination import paginated_response, validated_filters
from overdrafts.selectors import debt_status, effective_overdraft_limit
from wallets import selectors, services
from wallets.exports import statement_csv, statement_csv_filename
from wallets.models import LedgerEntry, LedgerTransaction

if TYPE_CHECKING:
    from customers.models import Customer


class PayerBalanceSerializer(serializers.Serializer):
    payer = serializers.CharField(allow_null=True)
    balance = SignedAmountField()


class WalletSerializer(serializers.Serializer):
    currency = serializers.CharField()
    balance = SignedAmountField()
    held = AmountField(allow_zero=True)
    overdraft_limit = AmountField(allow_zero=True)
    available = SignedAmountField()
    debt = AmountField(allow_zero=True)
    debt_due_at = serializers.DateTimeField(
        allow_null=True, help_text="Due date of the customer's own (overdraft) debt; null without one")
    overdue = serializers.BooleanField(help_text="The customer's own debt is past `debt_due_at`")
    blocked = serializers.BooleanField()
    payer = serializers.CharField(allow_null=True)
    other_payers = PayerBalanceSerializer(many=True)


class WalletApi(APIView):
    @extend_schema(operation_id="wallet_get", examples=[examples.ok("after an agency change", examples.WALLET)],
                   responses={200: WalletSerializer, **problems("not_found")},
                   summary="Get the customer's wallet",
                   description="Money under the current payer (`payer`: the agency's external_id, or null when "
                   "the customer pays for itself): `available = balance + overdraft_limit - held`; `balance` is "
                   "negative while there is debt. Money left under earlier payers is in `other_payers`. A paid "
                   "top-up is credited a moment after the payment, when Balance notifies billing.")
    def get(self, request: Request, external_id: str) -> Response:
        customer = customer_get(service=current_service(request), external_id=external_id)
        summary = selectors.wallet_summary(customer, overdraft_limit=effective_overdraft_limit(customer=customer))
        debt = -summary.balance if summary.balance < 0 else ZERO
        own = debt_status(customer=customer)
        return Response(WalletSerializer({
            "currency": summary.currency, "balance": summary.balance, "held": summary.held,
            "overdraft_limit": summary.overdraft_limit, "available": summary.available, "debt": debt,
            "debt_due_at": own.due_at, "overdue": own.overdue, "blocked": customer.blocked, "payer": summary.payer,
            "other_payers": summary.other_payers,
        }).data)


class WalletAlertsSerializer(serializers.Serializer):
    """The customer's low-balance threshold to set."""

    low_balance = AmountField(allow_zero=True, allow_null=True, help_text=(
        "Announce `wallet.low_balance` when the balance falls below this; null: the service's default"))


class WalletAlertsStateSerializer(serializers.Serializer):
    """The customer's low-balance alert settings."""

    low_balance = AmountField(allow_zero=True, allow_null=True, help_text="The customer's own threshold")
    effective = AmountField(allow_zero=True, allow_null=True,
                            help_text="The threshold in force: the customer's, else the service's default; null: none")


ALERTS_EXAMPLE = {"low_balance": "500.00", "effective": "500.00"}


class WalletAlertsApi(APIView):
    def _state(self, customer: Customer) -> Response:
        return Response(WalletAlertsStateSerializer({
            "low_balance": customer.low_balance_threshold, "effective": low_balance_threshold(customer)}).data)

    @extend_schema(operation_id="wallet_alerts_get", examples=[examples.ok("own threshold", ALERTS_EXAMPLE)],
                   responses={200: WalletAlertsStateSerializer, **problems("not_found")},
                   summary="The customer's low-balance threshold",
                   description="`low_balance` is the customer's own threshold (null: none set), `effective` the one "
                   "in force (the customer's, else the service's default; null: no alert).")
    def get(self, request: Request, external_id: str) -> Response:
        return self._state(customer_get(service=current_service(request), external_id=external_id))

    @extend_schema(operation_id="wallet_alerts_set", request=WalletAlertsSerializer,
                   examples=[examples.ok("own threshold", ALERTS_EXAMPLE)],
                   responses={200: WalletAlertsStateSerializer, **problems("not_found", *BODY)},
                   summary="Set the low-balance threshold",
                   description="One `wallet.low_balance` event each time the balance (wallet + held, under a payer) "
                   "falls below the threshold; none while it stays below; re-armed when it rises to or above it. "
                   "`null` removes the customer's own threshold (the service's default applies).")
    def put(self, request: Request, external_id: str) -> Response:
        customer = customer_get(service=current_service(request), external_id=external_id)
        body = WalletAlertsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        customer = services.wallet_alerts_set(customer=customer, low_balance=body.validated_data["low_balance"])
        return self._state(customer)


class ReferenceSerializer(serializers.Serializer):
    kind = serializers.CharField()
    id = serializers.CharField()


class StatementRowSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=LedgerTransaction.Type.choices)
    amount = SignedAmountField(help_text="Signed change of the balance (wallet + held) under `payer`")
    balance_after = SignedAmountField()
    held_change = SignedAmountField()
    held_after = AmountField(allow_zero=True)
    payer = serializers.CharField(allow_null=True)
    reference = ReferenceSerializer()
    created_at = serializers.DateTimeField()
    description = serializers.CharField()

    def to_representation(self, instance: LedgerEntry) -> dict:
        return super().to_representation(selectors.statement_row(instance))


class StatementFilter(filters.FilterSet):
    type = filters.ChoiceFilter(choices=LedgerTransaction.Type.choices)
    since = filters.IsoDateTimeFilter()
    until = filters.IsoDateTimeFilter()

    class Meta:
        model = LedgerEntry
        fields = ["type", "since", "until"]


class WalletTransactionsApi(APIView):
    @extend_schema(operation_id="wallet_transactions", examples=[examples.ok("one page", examples.page(
                       [examples.STATEMENT_ROW],
                       "http://127.0.0.1:8000/api/v1/customers/dealer:777/wallet/transactions?cursor=cD02&limit=1"))],
                   parameters=filter_parameters(StatementFilter),
                   responses={200: page_of(StatementRowSerializer),
                              **problems("not_found", missing=("customer", "cursor"))},
                   summary="The wallet statement",
                   description="One row per ledger transaction touching the customer, newest first, under any "
                   "payer: `amount` is the signed change, `balance_after` the payer's balance after it. Filter by "
                   "`type`, `since`, `until`; cursor pagination: follow `next` until it is null.")
    def get(self, request: Request, external_id: str) -> Response:
        customer = customer_get(service=current_service(request), external_id=external_id)
        qs = selectors.statement(customer, **validated_filters(StatementFilter, request))
        return paginated_response(request, qs, StatementRowSerializer, view=self)


# --- GET /customers/{id}/statement: the reconciliation statement (акт сверки), JSON or CSV -------------------


class StatementCsvRenderer(BaseRenderer):
    """`Accept: text/csv` or `?format=csv`: the statement as CSV (`wallets.exports`, the console's file too)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: object, accepted_media_type: str | None = None,
               renderer_context: dict | None = None) -> bytes:
        assert isinstance(data, selectors.ReconciliationStatement)
        return statement_csv(data).encode("utf-8")


class StatementQuerySerializer(serializers.Serializer):
    payer = serializers.CharField(required=False, allow_blank=True, max_length=64)

    def get_fields(self) -> dict:
        fields = super().get_fields()
        # `from` is a Python keyword: declared here rather than as class attributes.
        fields["from"] = serializers.DateField(required=False, input_formats=["iso-8601"])
        fields["to"] = serializers.DateField(required=False, input_formats=["iso-8601"])
        return fields


class StatementSpendSerializer(serializers.Serializer):
    """Money spent on one product in the period: its charges and captured holds (refunds are apart)."""

    product = serializers.CharField(help_text="The product's code (empty for spend without a product)")
    amount = SignedAmountField(help_text="Charged and captured in the period")


class StatementLineSerializer(serializers.Serializer):
    """One ledger transaction of the period under the statement's payer (holds and releases move 0.00)."""

    id = serializers.UUIDField(source="transaction_id", help_text="The ledger transaction (the wallet statement's id)")
    date = serializers.DateTimeField(help_text="When the transaction was posted")
    type = serializers.ChoiceField(choices=LedgerTransaction.Type.choices, help_text="The ledger transaction's type")
    product = serializers.CharField(help_text="The product of a charge, capture or refund; empty otherwise")
    amount = SignedAmountField(help_text="Signed change of the balance (wallet + held) under the payer")
    balance_after = SignedAmountField(help_text="The payer's balance after this line: the opening balance plus "
                                                "every line up to it")
    reference = serializers.SerializerMethodField(help_text="The business object: `{kind, id}` (e.g. a charge)")
    description = serializers.CharField(help_text="The transaction's description, or the reason of a correction")

    @extend_schema_field(ReferenceSerializer)
    def get_reference(self, line: selectors.ReconciliationLine) -> dict[str, str]:
        return {"kind": line.reference_kind, "id": line.reference_id}


class ReconciliationStatementSerializer(serializers.Serializer):
    """The reconciliation statement (акт сверки) of one payer for a period of days:
    `closing_balance = opening_balance + money_in - sum(spend) + refunds + corrections`."""

    payer = serializers.CharField(source="payer_label", help_text="The agency's external id, or `self`")
    currency = serializers.CharField(help_text="The service's currency")
    opening_balance = SignedAmountField(help_text="The payer's balance (wallet + held) at the start of `from`")
    money_in = SignedAmountField(help_text="Top-ups and money Balance reported, in the period")
    spend = serializers.SerializerMethodField(help_text="Charges and captures per product, in the period")
    refunds = SignedAmountField(help_text="Refunds of charges, in the period")
    corrections = SignedAmountField(help_text="Support's adjustments and transfers between payers (signed)")
    closing_balance = SignedAmountField(help_text="The payer's balance at the end of `to`")
    lines = StatementLineSerializer(many=True, help_text="Every ledger transaction of the period, oldest first")

    def get_fields(self) -> dict:
        fields = super().get_fields()
        fields["from"] = serializers.DateField(source="date_from", help_text="The first day (UTC)")
        fields["to"] = serializers.DateField(source="date_to", help_text="The last day, included (UTC)")
        return fields

    @extend_schema_field(StatementSpendSerializer(many=True))
    def get_spend(self, statement: selectors.ReconciliationStatement) -> list[dict]:
        return StatementSpendSerializer(
            [{"product": product, "amount": amount} for product, amount in statement.spend.items()], many=True
        ).data


class CustomerStatementApi(APIView):
    renderer_classes = [JSONRenderer, StatementCsvRenderer]

    @extend_schema(
        operation_id="customer_statement",
        examples=[examples.ok("a month under the customer itself", examples.RECONCILIATION_STATEMENT)],
        summary="The reconciliation statement (акт сверки) of one payer for a period of days, as JSON or CSV",
        description="Opening balance, money in, spend by product, refunds, corrections and the closing balance; "
                    "each line is a ledger transaction. `Accept: text/csv` or `?format=csv` answers the same as "
                    "CSV (one row per figure and line, told apart by `section`). Days are in UTC, both included.",
        parameters=[
            OpenApiParameter("payer", str, OpenApiParameter.QUERY, required=False,
                             description="An agency's external id, `self` (the customer pays itself), or empty "
                                         "for the current payer"),
            OpenApiParameter("from", OpenApiTypes.DATE, OpenApiParameter.QUERY, required=False,
                             description="First day (default: the first day of the month of `to`)"),
            OpenApiParameter("to", OpenApiTypes.DATE, OpenApiParameter.QUERY, required=False,
                             description="Last day, included (default: today)"),
            OpenApiParameter("format", str, OpenApiParameter.QUERY, required=False, enum=["json", "csv"]),
        ],
        responses={200: OpenApiResponse(ReconciliationStatementSerializer,
                                        description="JSON; `text/csv` with `Accept: text/csv` or `?format=csv`"),
                   **problems("not_found", missing=("customer", "agency"))},
    )
    def get(self, request: Request, external_id: str) -> Response:
        customer = customer_get(service=current_service(request), external_id=external_id)
        query = StatementQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        date_to: date = query.validated_data.get("to") or timezone.localdate()
        date_from: date = query.validated_data.get("from") or date_to.replace(day=1)
        statement = selectors.reconciliation_statement(
            customer=customer, payer=selectors.statement_payer(customer, query.validated_data.get("payer")),
            date_from=date_from, date_to=date_to,
        )
        if isinstance(request.accepted_renderer, StatementCsvRenderer):
            return Response(statement, headers={
                "Content-Disposition": f'attachment; filename="{statement_csv_filename(statement)}"'})
        return Response(ReconciliationStatementSerializer(statement).data)

    def handle_exception(self, exc: Exception) -> Response:
        # Errors are problem+json even when CSV was asked for.
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return super().handle_exception(exc)
