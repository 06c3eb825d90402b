"""Agencies API: thin views over `agencies.services` and `agencies.selectors`."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agencies import selectors, services
from agencies.models import Agency
from balance_gateway.models import RegistrationStatus
from customers import selectors as customer_selectors
from customers.apis import INN_RE, BalanceIdsSerializer, CustomerOutputSerializer, validate_legal_for_kind
from disbalance import openapi_examples as examples
from disbalance.auth import current_service
from disbalance.fields import AmountField, CharField, EmailField, ExternalIdField, RegexField
from disbalance.idempotency import idempotent
from disbalance.openapi import (
    BODY,
    IDEMPOTENCY,
    IDEMPOTENCY_KEY_OPTIONAL,
    PAGE_PARAMETERS,
    filter_parameters,
    page_of,
    problems,
)
from disbalance.pagination import paginated_response, validated_filters


class AgencyLegalSerializer(serializers.Serializer):
    """An agency is a company: Balance's CreatePerson (`ur`) needs every one of these."""

    inn = RegexField(INN_RE, error_messages={"invalid": "INN is 10 or 12 digits."})
    kpp = RegexField(r"^\d{9}$", required=False, allow_blank=True, error_messages={"invalid": "KPP is 9 digits."})
    long_name = CharField(max_length=500, required=False, allow_blank=True,
                          help_text="The agency's full legal name (Balance's longname).")
    legal_address = CharField(max_length=500)
    postal_address = CharField(max_length=500, required=False, allow_blank=True)
    postcode = RegexField(r"^\d{6}$", required=False, allow_blank=True,
                          error_messages={"invalid": "A postcode is 6 digits."})


class AgencyCreateSerializer(serializers.Serializer):
    external_id = ExternalIdField()
    name = CharField(max_length=255)
    email = EmailField(max_length=254, required=False, allow_blank=True)
    phone = CharField(max_length=64, required=False, allow_blank=True)
    legal = AgencyLegalSerializer(help_text="An agency is a company: INN, KPP, full name, legal and postal address "
                                            "and postcode are required.")

    def validate(self, attrs: dict) -> dict:
        validate_legal_for_kind("company", attrs.get("legal") or {}, adopting=bool(self.context.get("adopting")))
        return attrs


class ContractSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="balance_contract_id")
    number = serializers.CharField()
    active = serializers.BooleanField()
    payment_type = serializers.CharField()
    credit_limit = AmountField(allow_zero=True)
    valid_from = serializers.DateField(allow_null=True)
    valid_to = serializers.DateField(allow_null=True)


class AgencyOutputSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField()
    phone = serializers.CharField()
    legal = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=RegistrationStatus.choices)
    status_reason = serializers.CharField()
    contracts = ContractSerializer(many=True, source="contracts.all")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    balance = serializers.SerializerMethodField()

    @extend_schema_field(AgencyLegalSerializer)
    def get_legal(self, obj: Agency) -> dict:
        return {field: getattr(obj, field) for field in services.LEGAL_FIELDS}

    @extend_schema_field(BalanceIdsSerializer)
    def get_balance(self, obj: Agency) -> dict:
        return {"client_id": obj.balance_client_id, "person_id": obj.balance_person_id}


class AgencyFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=RegistrationStatus.choices)
    q = filters.CharFilter(max_length=128)

    class Meta:
        model = Agency
        fields = ["status", "q"]


class AgencyListCreateApi(APIView):
    @extend_schema(operation_id="agencies_list", examples=[examples.ok("one page", examples.page([examples.AGENCY]))],
                   parameters=filter_parameters(AgencyFilter),
                   responses={200: page_of(AgencyOutputSerializer), **problems("not_found", missing=("cursor",))},
                   summary="List agencies",
                   description="The service's agencies with their contracts, newest first, filtered by `status` "
                   "or `q` (external_id, name or INN). Cursor pagination: follow `next` until it is null.")
    def get(self, request: Request) -> Response:
        qs = selectors.agency_list(service=current_service(request), **validated_filters(AgencyFilter, request))
        return paginated_response(request, qs, AgencyOutputSerializer, view=self)

    @extend_schema(
        operation_id="agencies_register", examples=[examples.ok("registered", examples.AGENCY, 201),
                                                     examples.ok("already registered, same data", examples.AGENCY)],
        request=AgencyCreateSerializer, parameters=[IDEMPOTENCY_KEY_OPTIONAL],
        responses={201: AgencyOutputSerializer, 200: AgencyOutputSerializer,
                   **problems("invalid_state", *IDEMPOTENCY, *BODY)},
        summary="Register an agency (idempotent by external_id)",
        description="201 for a new agency, 200 when the same external_id exists with the same data, 409 "
        "invalid_state when it exists with other data. Registration in Balance runs in the background, like a "
        "customer's; `contracts` are read from Balance.",
    )
    @idempotent(required=False)
    def post(self, request: Request) -> Response:
        serializer = AgencyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.agency_register(
            service=current_service(request), external_id=data["external_id"],
            data=services.AgencyData(name=data["name"], email=data.get("email", ""), phone=data.get("phone", ""),
                                     legal=data.get("legal")),
        )
        agency = selectors.agency_get(service=current_service(request), external_id=result.agency.external_id)
        return Response(AgencyOutputSerializer(agency).data,
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class AgencyDetailApi(APIView):
    @extend_schema(operation_id="agencies_get", examples=[examples.ok("with a contract", examples.AGENCY)],
                   responses={200: AgencyOutputSerializer, **problems("not_found", missing=("agency",))},
                   summary="Get an agency",
                   description="The agency by your own `external_id`, with its contracts read from Balance (a "
                   "customer can be switched only to an agency with an active contract).")
    def get(self, request: Request, external_id: str) -> Response:
        agency = selectors.agency_get(service=current_service(request), external_id=external_id)
        return Response(AgencyOutputSerializer(agency).data)


class AgencyCustomersApi(APIView):
    @extend_schema(operation_id="agencies_customers",
                   examples=[examples.ok("one page", examples.page([{**examples.CUSTOMER, "agency": "agency:1"}]))],
                   parameters=PAGE_PARAMETERS,
                   responses={200: page_of(CustomerOutputSerializer),
                              **problems("not_found", missing=("agency", "cursor"))},
                   summary="List an agency's customers",
                   description="The customers whose current payer is the agency, newest first. Cursor "
                   "pagination: follow `next` until it is null.")
    def get(self, request: Request, external_id: str) -> Response:
        agency = selectors.agency_get(service=current_service(request), external_id=external_id)
        qs = customer_selectors.customer_list(service=current_service(request), agency=agency.external_id)
        return paginated_response(request, qs, CustomerOutputSerializer, view=self)
