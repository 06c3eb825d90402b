"""Wallet API: the customer's money and its statement. Read-only: money moves through payments."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers.models import Customer
from customers.selectors import customer_get
from disbalance.auth import current_service
from disbalance.events import low_balance_threshold
from disbalance.fields import AmountField, SignedAmountField
from disbalance.money import ZERO
from disbalance.openapi import filter_parameters, problems
from disbalance.pagination import paginated_response, validated_filters
from overdrafts.selectors import debt_status, effective_overdraft_limit
from wallets import selectors, services
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
    @extend_schema(operation_id="wallet_get", responses={200: WalletSerializer, **problems(404)},
                   summary="The customer's wallet under its current payer, and money under other payers")
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
    low_balance = AmountField(allow_zero=True, allow_null=True, help_text=(
        "Announce `wallet.low_balance` when the balance falls below this; null: the service's default"))


class WalletAlertsStateSerializer(serializers.Serializer):
    low_balance = AmountField(allow_zero=True, allow_null=True, help_text="The customer's own threshold")
    effective = AmountField(allow_zero=True, allow_null=True,
                            help_text="The threshold in force: the customer's, else the service's default; null: none")


class WalletAlertsApi(APIView):
    def _state(self, customer: Customer) -> Response:
        return Response(WalletAlertsStateSerializer({
            "low_balance": customer.low_balance_threshold, "effective": low_balance_threshold(customer)}).data)

    @extend_schema(operation_id="wallet_alerts_get", responses={200: WalletAlertsStateSerializer, **problems(404)},
                   summary="The customer's low-balance threshold")
    def get(self, request: Request, external_id: str) -> Response:
        return self._state(customer_get(service=current_service(request), external_id=external_id))

    @extend_schema(operation_id="wallet_alerts_set", request=WalletAlertsSerializer,
                   responses={200: WalletAlertsStateSerializer, **problems(404)},
                   summary="Set the low-balance threshold: one `wallet.low_balance` per downward crossing")
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
    @extend_schema(operation_id="wallet_transactions", parameters=filter_parameters(StatementFilter),
                   responses={200: StatementRowSerializer(many=True), **problems(404)},
                   summary="The statement: one row per ledger transaction touching the customer, newest first")
    def get(self, request: Request, external_id: str) -> Response:
        customer = customer_get(service=current_service(request), external_id=external_id)
        qs = selectors.statement(customer, **validated_filters(StatementFilter, request))
        return paginated_response(request, qs, StatementRowSerializer, view=self)
