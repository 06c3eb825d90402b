"""Overdraft API: the customer's overdraft limit, its debt and whether it is blocked. Read-only."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers.selectors import customer_get
from disbalance import openapi_examples as examples
from disbalance.auth import current_service
from disbalance.fields import AmountField
from disbalance.openapi import problems
from overdrafts import selectors


class OverdraftSerializer(serializers.Serializer):
    limit = AmountField(allow_zero=True, help_text="The effective limit charges and holds may use (0 while the "
                                                   "customer is served by an agency)")
    granted_by_balance = AmountField(allow_zero=True, help_text="The limit Balance granted (before overrides)")
    spent = AmountField(allow_zero=True, help_text="The customer's current own debt: max(0, -(balance)) under "
                                                   "itself as payer, from billing's ledger")
    due_at = serializers.DateTimeField(allow_null=True, help_text="When the debt must be repaid (null: no debt)")
    overdue = serializers.BooleanField(help_text="Debt left past `due_at`: charges and holds get 409")
    blocked = serializers.BooleanField()


class OverdraftApi(APIView):
    @extend_schema(operation_id="overdraft_get", examples=[examples.ok("no overdraft", examples.OVERDRAFT)],
                   responses={200: OverdraftSerializer, **problems("not_found")},
                   summary="Get the customer's overdraft",
                   description="The overdraft limit charges and holds may use, the limit Balance granted, the "
                   "customer's own debt, its due date, and whether spending is blocked (overdue debt).")
    def get(self, request: Request, external_id: str) -> Response:
        customer = customer_get(service=current_service(request), external_id=external_id)
        return Response(OverdraftSerializer(selectors.overdraft_status(customer=customer)).data)
