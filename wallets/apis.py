"""Wallet API: the customer's money and its statement. Read-only: money moves through payments."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers.selectors import customer_get
from disbalance import openapi_examples as examples
from disbalance.auth import current_service
from disbalance.fields import AmountField, SignedAmountField
from disbalance.money import ZERO
from disbalance.openapi import filter_parameters, page_of, problems
from disbalance.pagination import paginated_response, validated_filters
from overdrafts.selectors import debt_status, effective_overdraft_limit
from wallets import selectors
from wallets.models import LedgerEntry, LedgerTransaction


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
