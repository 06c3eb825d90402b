"""Payments API: products, top-ups, charges, holds and refunds. Thin views over services and selectors."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from customers.selectors import customer_get
from disbalance import openapi_examples as examples
from disbalance.auth import current_service
from disbalance.exceptions import ValidationFailed
from disbalance.fields import AmountField, CharField
from disbalance.idempotency import idempotent
from disbalance.openapi import (
    BODY,
    IDEMPOTENCY,
    IDEMPOTENCY_KEY_REQUIRED,
    PAGE_PARAMETERS,
    filter_parameters,
    page_of,
    problems,
)
from disbalance.pagination import CreatedNewestFirstCursorPagination, paginated_response, validated_filters
from payments import selectors, services
from payments.exceptions import ProductNotFound
from payments.models import Charge, Hold, Product, TopUp

# What a charge or a hold can be refused with.
SPENDING_ERRORS = ("insufficient_funds", "not_found", "customer_blocked", "customer_not_active", *IDEMPOTENCY, *BODY)


def _payer(obj: TopUp | Charge | Hold) -> str | None:
    return obj.payer_agency.external_id if obj.payer_agency_id else None  # type: ignore[union-attr]


class MetadataField(serializers.DictField):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(child=CharField(max_length=500, allow_blank=True), **kwargs)  # type: ignore[arg-type]

    def to_internal_value(self, data: object) -> dict:
        value = super().to_internal_value(data)
        if len(value) > 50 or any(len(key) > 64 or not key for key in value):
            raise serializers.ValidationError("At most 50 keys of 1 to 64 characters.")
        return value


class ProductSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=Product.Kind.choices)


class ProductListApi(APIView):
    @extend_schema(operation_id="products_list", examples=[examples.ok("catalog", examples.PRODUCTS[0])],
                   responses={200: ProductSerializer(many=True), **problems()},
                   summary="List the service's products",
                   description="The catalog charges and holds name by `code` (kept by billing admins; not "
                   "paginated).")
    def get(self, request: Request) -> Response:
        products = selectors.product_list(service=current_service(request))
        return Response(ProductSerializer(products, many=True).data)


# --- top-ups --------------------------------------------------------------------------------------------------

class TopUpCreateSerializer(serializers.Serializer):
    amount = AmountField()
    return_url = serializers.URLField(max_length=2000, required=False, allow_blank=True)


class TopUpSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    customer = serializers.CharField(source="customer.external_id")
    amount = AmountField()
    status = serializers.ChoiceField(choices=TopUp.Status.choices)
    status_reason = serializers.CharField()
    payment_url = serializers.CharField(allow_null=True)
    payer = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    succeeded_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField()

    def get_payer(self, obj: TopUp) -> str | None:
        return _payer(obj)

    def to_representation(self, instance: TopUp) -> dict:
        data = super().to_representation(instance)
        data["payment_url"] = data["payment_url"] or None
        return data


class CustomerTopUpsApi(APIView):
    @extend_schema(operation_id="topups_list", examples=[examples.ok("one page", examples.page([examples.TOPUP]))],
                   parameters=PAGE_PARAMETERS,
                   responses={200: page_of(TopUpSerializer), **problems("not_found", missing=("customer", "cursor"))},
                   summary="List the customer's top-ups",
                   description="Newest first. Cursor pagination: follow `next` until it is null.")
    def get(self, request: Request, external_id: str) -> Response:
        customer = customer_get(service=current_service(request), external_id=external_id)
        return paginated_response(request, selectors.topup_list(customer=customer), TopUpSerializer, view=self,
                                  pagination_class=CreatedNewestFirstCursorPagination)

    @extend_schema(
        examples=[examples.ok("created", {**examples.TOPUP, "status": "pending", "payment_url": None}, 201)],
        operation_id="topups_create", request=TopUpCreateSerializer, parameters=[IDEMPOTENCY_KEY_REQUIRED],
        responses={201: TopUpSerializer, **problems("not_found", "customer_not_active", *IDEMPOTENCY, *BODY)},
        summary="Top up the wallet: a payment request in Balance",
        description="The payer is the customer's agency if it has one. `status` is `pending` until the request "
        "exists in Balance, then `awaiting_payment` with `payment_url` (poll `GET /topups/{id}`), then `succeeded` "
        "when Balance reports the money: the wallet is credited a moment after the payment, so poll the top-up "
        "(or the wallet) rather than reading the wallet once. Needs an `active` customer.",
    )
    @idempotent(required=True)
    def post(self, request: Request, external_id: str) -> Response:
        customer = customer_get(service=current_service(request), external_id=external_id)
        serializer = TopUpCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        topup = services.topup_create(customer=customer, amount=serializer.validated_data["amount"],
                                      return_url=serializer.validated_data.get("return_url", ""))
        return Response(TopUpSerializer(topup).data, status=status.HTTP_201_CREATED)


class TopUpDetailApi(APIView):
    @extend_schema(operation_id="topups_get", examples=[examples.ok("awaiting payment", examples.TOPUP)],
                   responses={200: TopUpSerializer, **problems("not_found", missing=("topup",))},
                   summary="Get a top-up",
                   description="Poll it after creating: `pending` → `awaiting_payment` (with `payment_url`) → "
                   "`succeeded` once the money is in the wallet (or `failed`, `expired`).")
    def get(self, request: Request, topup_id: str) -> Response:
        return Response(TopUpSerializer(selectors.topup_get(service=current_service(request), topup_id=topup_id)).data)


# --- charges --------------------------------------------------------------------------------------------------

class ChargeCreateSerializer(serializers.Serializer):
    product = CharField(max_length=64)
    amount = AmountField()
    description = CharField(max_length=500, required=False, allow_blank=True)
    metadata = MetadataField(required=False)


class RefundSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    amount = AmountField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class ChargeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    customer = serializers.CharField(source="customer.external_id")
    product = serializers.CharField(source="product.code")
    amount = AmountField()
    refunded = AmountField(source="refunded_amount", allow_zero=True)
    status = serializers.CharField()
    payer = serializers.SerializerMethodField()
    description = serializers.CharField()
    metadata = serializers.DictField(child=serializers.CharField())
    hold = serializers.UUIDField(source="hold_id", allow_null=True)
    created_at = serializers.DateTimeField()

    def get_payer(self, obj: Charge) -> str | None:
        return _payer(obj)


class ChargeFilter(filters.FilterSet):
    product = filters.CharFilter(field_name="product__code", max_length=64)
    since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Charge
        fields = ["product", "since"]


class CustomerChargesApi(APIView):
    @extend_schema(operation_id="charges_list", examples=[examples.ok("one page", examples.page([examples.CHARGE]))],
                   parameters=filter_parameters(ChargeFilter),
                   responses={200: page_of(ChargeSerializer), **problems("not_found", missing=("customer", "cursor"))},
                   summary="List the customer's charges",
                   description="Newest first, filtered by `product` code and `since`. Cursor pagination: follow "
                   "`next` until it is null.")
    def get(self, request: Request, external_id: str) -> Response:
        customer = customer_get(service=current_service(request), external_id=external_id)
        qs = selectors.charge_list(customer=customer, **validated_filters(ChargeFilter, request))
        return paginated_response(request, qs, ChargeSerializer, view=self,
                                  pagination_class=CreatedNewestFirstCursorPagination)

    @extend_schema(
        examples=[examples.ok("charged", examples.CHARGE, 201)],
        operation_id="charges_create", request=ChargeCreateSerializer, parameters=[IDEMPOTENCY_KEY_REQUIRED],
        responses={201: ChargeSerializer, **problems(*SPENDING_ERRORS)},
        summary="Charge for a placement or VAS now",
        description="Billed under the customer's current payer. `402 insufficient_funds` if `amount > available`, "
        "`409 customer_blocked` if overdue or blocked, `409 customer_not_active` before registration completes.",
    )
    @idempotent(required=True)
    def post(self, request: Request, external_id: str) -> Response:
        service = current_service(request)
        # The customer (404 first, as everywhere) and, in the same statement, the product the body names.
        body = request.data if isinstance(request.data, dict) else {}
        customer, product = selectors.charge_target_get(service=service, external_id=external_id,
                                                        product_code=body.get("product"))
        serializer = ChargeCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if product is None or product.code != data["product"]:
            product = _product_or_400(service, data["product"])
        charge = services.charge_create(customer=customer, product=product, amount=data["amount"],
                                        description=data.get("description", ""), metadata=data.get("metadata"))
        return Response(ChargeSerializer(charge).data, status=status.HTTP_201_CREATED)


def _product_or_400(service, code: str) -> Product:  # type: ignore[no-untyped-def]
    try:
        return selectors.product_get(service=service, code=code)
    except ProductNotFound as exc:
        raise ValidationFailed(str(exc), errors={"product": ["Unknown product; see GET /products."]}) from exc


class ChargeDetailApi(APIView):
    @extend_schema(operation_id="charges_get", examples=[examples.ok("charged", examples.CHARGE)],
                   responses={200: ChargeSerializer, **problems("not_found", missing=("charge",))},
                   summary="Get a charge",
                   description="The charge with what has been refunded of it so far.")
    def get(self, request: Request, charge_id: str) -> Response:
        return Response(ChargeSerializer(selectors.charge_get(service=current_service(request),
                                                              charge_id=charge_id)).data)


class RefundCreateSerializer(serializers.Serializer):
    amount = AmountField(required=False)
    reason = CharField(max_length=500)


class RefundSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    charge = serializers.UUIDField(source="charge_id")
    amount = AmountField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class ChargeRefundsApi(APIView):
    @extend_schema(
        operation_id="refunds_create", examples=[examples.ok("refunded in part", examples.REFUND, 201)],
        request=RefundCreateSerializer, parameters=[IDEMPOTENCY_KEY_REQUIRED],
        responses={201: RefundSerializer,
                   **problems("not_found", "invalid_state", *IDEMPOTENCY, *BODY, missing=("charge",))},
        summary="Refund all or part of a charge",
        description="`amount` defaults to what is left to refund; refunds never exceed what was charged (`409 "
        "invalid_state`). The money goes back to the payer the charge was made under.",
    )
    @idempotent(required=True)
    def post(self, request: Request, charge_id: str) -> Response:
        charge = selectors.charge_get(service=current_service(request), charge_id=charge_id)
        serializer = RefundCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        refund = services.refund_create(charge=charge, amount=serializer.validated_data.get("amount"),
                                        reason=serializer.validated_data["reason"])
        return Response(RefundSerializer(refund).data, status=status.HTTP_201_CREATED)


# --- holds ----------------------------------------------------------------------------------------------------

class HoldCreateSerializer(serializers.Serializer):
    product = CharField(max_length=64)
    amount = AmountField()
    expires_at = serializers.DateTimeField(required=False)
    description = CharField(max_length=500, required=False, allow_blank=True)
    metadata = MetadataField(required=False)


class HoldSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    customer = serializers.CharField(source="customer.external_id")
    product = serializers.CharField(source="product.code")
    status = serializers.ChoiceField(choices=Hold.Status.choices)
    amount = AmountField()
    captured = AmountField(source="captured_amount", allow_zero=True)
    payer = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField()
    description = serializers.CharField()
    metadata = serializers.DictField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    closed_at = serializers.DateTimeField(allow_null=True)

    def get_payer(self, obj: Hold) -> str | None:
        return _payer(obj)


class CustomerHoldsApi(APIView):
    @extend_schema(
        operation_id="holds_create", examples=[examples.ok("held", examples.HOLD, 201)],
        request=HoldCreateSerializer, parameters=[IDEMPOTENCY_KEY_REQUIRED],
        responses={201: HoldSerializer, **problems(*SPENDING_ERRORS)},
        summary="Reserve money (two-phase payment)",
        description="The money stops being `available` until the hold is captured or released. Default expiry "
        "7 days, at most 90; an expired hold is released automatically. Same refusals as a charge.",
    )
    @idempotent(required=True)
    def post(self, request: Request, external_id: str) -> Response:
        service = current_service(request)
        customer = customer_get(service=service, external_id=external_id)
        serializer = HoldCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        product = _product_or_400(service, data["product"])
        hold = services.hold_create(customer=customer, product=product, amount=data["amount"],
                                    expires_at=data.get("expires_at"), description=data.get("description", ""),
                                    metadata=data.get("metadata"))
        return Response(HoldSerializer(hold).data, status=status.HTTP_201_CREATED)


class HoldDetailApi(APIView):
    @extend_schema(operation_id="holds_get", examples=[examples.ok("held", examples.HOLD)],
                   responses={200: HoldSerializer, **problems("not_found", missing=("hold",))},
                   summary="Get a hold",
                   description="`held` until captured, released or expired; `captured` is the amount charged.")
    def get(self, request: Request, hold_id: str) -> Response:
        return Response(HoldSerializer(selectors.hold_get(service=current_service(request), hold_id=hold_id)).data)


class HoldCaptureSerializer(serializers.Serializer):
    amount = AmountField(required=False, help_text="At most the held amount; the rest is released. Default: all.")


class HoldCaptureApi(APIView):
    @extend_schema(
        examples=[examples.ok("captured in part", examples.HOLD_CAPTURED)],
        operation_id="holds_capture", request=HoldCaptureSerializer, parameters=[IDEMPOTENCY_KEY_REQUIRED],
        responses={200: HoldSerializer,
                   **problems("not_found", "invalid_state", *IDEMPOTENCY, *BODY, missing=("hold",))},
        summary="Capture a hold",
        description="Charges `amount` (default: all of it; at most the held amount) and releases the rest. At most "
        "once: capturing or releasing a closed hold, or losing a race with another capture or release, is `409 "
        "invalid_state`. Moves money, so `Idempotency-Key` is required: a retry with the same key replays the "
        "first answer instead of a 409.",
    )
    @idempotent(required=True)
    def post(self, request: Request, hold_id: str) -> Response:
        hold = selectors.hold_get(service=current_service(request), hold_id=hold_id)
        serializer = HoldCaptureSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        hold = services.hold_capture(hold=hold, amount=serializer.validated_data.get("amount"))
        return Response(HoldSerializer(hold).data)


class HoldReleaseApi(APIView):
    @extend_schema(
        operation_id="holds_release",
        examples=[examples.ok("released", examples.HOLD_RELEASED)],
        request=None, parameters=[IDEMPOTENCY_KEY_REQUIRED],
        responses={200: HoldSerializer, **problems("not_found", "invalid_state", *IDEMPOTENCY, missing=("hold",))},
        summary="Release a hold",
        description="Gives the held money back to `available`. At most once: releasing or capturing a closed hold, "
        "or losing a race, is `409 invalid_state`. Moves money, so `Idempotency-Key` is required: a retry with the "
        "same key replays the first answer instead of a 409.",
    )
    @idempotent(required=True)
    def post(self, request: Request, hold_id: str) -> Response:
        hold = selectors.hold_get(service=current_service(request), hold_id=hold_id)
        hold = services.hold_release(hold=hold)
        return Response(HoldSerializer(hold).data)


