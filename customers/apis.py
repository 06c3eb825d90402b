"""Customers API: thin views over `customers.services` and `customers.selectors`."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from balance_gateway.models import RegistrationStatus
from customers import selectors, services
from customers.models import Customer
from disbalance import openapi_examples as examples
from disbalance.auth import current_service
from disbalance.fields import CharField, EmailField, ExternalIdField, RegexField
from disbalance.idempotency import idempotent
from disbalance.openapi import BODY, IDEMPOTENCY, IDEMPOTENCY_KEY_OPTIONAL, filter_parameters, page_of, problems
from disbalance.pagination import paginated_response, validated_filters

INN_RE = r"^(\d{10}|\d{12})$"


class LegalSerializer(serializers.Serializer):
    inn = RegexField(INN_RE, required=False, allow_blank=True,
                                 error_messages={"invalid": "INN is 10 or 12 digits."})
    kpp = RegexField(r"^\d{9}$", required=False, allow_blank=True,
                                 error_messages={"invalid": "KPP is 9 digits."})
    long_name = CharField(max_length=500, required=False, allow_blank=True,
                          help_text="The company's full legal name (Balance's longname).")
    legal_address = CharField(max_length=500, required=False, allow_blank=True)
    postal_address = CharField(max_length=500, required=False, allow_blank=True)
    postcode = RegexField(r"^\d{6}$", required=False, allow_blank=True,
                          error_messages={"invalid": "A postcode is 6 digits."})
    lname = CharField(max_length=100, required=False, allow_blank=True)
    fname = CharField(max_length=100, required=False, allow_blank=True)
    mname = CharField(max_length=100, required=False, allow_blank=True)


def validate_legal_for_kind(kind: str, legal: dict, *, adopting: bool = False) -> None:
    """The service's rule (`services.legal_details_missing`) as serializer errors, so that a caller that only
    validates (the importer's dry run) sees them too."""
    missing = services.legal_details_missing(kind=kind, legal=legal, adopting=adopting)
    if missing:
        raise serializers.ValidationError({"legal": missing})


class CustomerCreateSerializer(serializers.Serializer):
    external_id = ExternalIdField()
    kind = serializers.ChoiceField(choices=Customer.Kind.choices)
    name = CharField(max_length=255)
    email = EmailField(max_length=254, required=False, allow_blank=True)
    phone = CharField(max_length=64, required=False, allow_blank=True)
    legal = LegalSerializer(required=False)
    agency = ExternalIdField(required=False, allow_null=True)
    user_uids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False, max_length=100
    )

    def validate(self, attrs: dict) -> dict:
        # Adopting an existing Balance client (import) creates no person: not every field CreatePerson needs.
        validate_legal_for_kind(attrs["kind"], attrs.get("legal") or {}, adopting=bool(self.context.get("adopting")))
        return attrs


class CustomerUpdateSerializer(serializers.Serializer):
    name = CharField(max_length=255, required=False)
    email = EmailField(max_length=254, required=False, allow_blank=True)
    phone = CharField(max_length=64, required=False, allow_blank=True)
    legal = LegalSerializer(required=False)


class BalanceIdsSerializer(serializers.Serializer):
    """Balance's ids of the customer: read-only, for support; consumers never need them."""

    client_id = serializers.IntegerField(allow_null=True)
    person_id = serializers.IntegerField(allow_null=True)


class CustomerOutputSerializer(serializers.Serializer):
    external_id = serializers.CharField()
    kind = serializers.CharField()
    name = serializers.CharField()
    email = serializers.CharField()
    phone = serializers.CharField()
    legal = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=RegistrationStatus.choices)
    status_reason = serializers.CharField()
    agency = serializers.SerializerMethodField()
    blocked = serializers.BooleanField()
    user_uids = serializers.ListField(child=serializers.IntegerField())
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    balance = serializers.SerializerMethodField()

    @extend_schema_field(LegalSerializer)
    def get_legal(self, obj: Customer) -> dict:
        return {field: getattr(obj, field) for field in services.LEGAL_FIELDS}

    def get_agency(self, obj: Customer) -> str | None:
        return obj.agency.external_id if obj.agency_id else None  # type: ignore[union-attr]

    @extend_schema_field(BalanceIdsSerializer)
    def get_balance(self, obj: Customer) -> dict:
        return {"client_id": obj.balance_client_id, "person_id": obj.balance_person_id}


class CustomerFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=RegistrationStatus.choices)
    agency = filters.CharFilter(max_length=128, help_text="Agency external_id")
    q = filters.CharFilter(max_length=128, help_text="Search in external_id, name, e-mail; exact INN")

    class Meta:
        model = Customer
        fields = ["status", "agency", "q"]


class CustomerListCreateApi(APIView):
    @extend_schema(
        operation_id="customers_list", examples=[examples.ok("one page", examples.page([examples.CUSTOMER]))],
        parameters=filter_parameters(CustomerFilter),
        responses={200: page_of(CustomerOutputSerializer), **problems("not_found", missing=("cursor",))},
        summary="List customers",
        description="The service's customers, newest first, filtered by `status`, `agency` or `q`. Cursor "
        "pagination: follow `next` until it is null.",
    )
    def get(self, request: Request) -> Response:
        params = validated_filters(CustomerFilter, request)
        qs = selectors.customer_list(service=current_service(request), **params)
        return paginated_response(request, qs, CustomerOutputSerializer, view=self)

    @extend_schema(
        operation_id="customers_register",
        examples=[examples.ok("registered", examples.CUSTOMER, 201),
                  examples.ok("already registered, same data", examples.CUSTOMER)],
        request=CustomerCreateSerializer,
        parameters=[IDEMPOTENCY_KEY_OPTIONAL],
        responses={201: CustomerOutputSerializer, 200: CustomerOutputSerializer,
                   **problems("invalid_state", *IDEMPOTENCY, *BODY)},
        summary="Register a customer (idempotent by external_id)",
        description="201 for a new customer, 200 when the same external_id exists with the same data, "
        "409 invalid_state when it exists with other data. Registration in Balance runs in the background: "
        "`status` goes `registering` to `active` (or `failed` with `status_reason`): poll "
        "`GET /customers/{external_id}`. A company needs `legal.inn`, `legal.kpp`, `legal.long_name`, "
        "`legal.legal_address`, `legal.postal_address` and `legal.postcode`, an individual "
        "`legal.lname` and `legal.fname`; `agency` must be a registered agency's external_id.",
    )
    @idempotent(required=False)
    def post(self, request: Request) -> Response:
        serializer = CustomerCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.customer_register(
            service=current_service(request),
            external_id=data["external_id"],
            data=services.CustomerData(
                kind=data["kind"], name=data["name"], email=data.get("email", ""), phone=data.get("phone", ""),
                legal=data.get("legal"), agency_external_id=data.get("agency"),
                user_uids=tuple(data.get("user_uids", ())),
            ),
        )
        customer = selectors.customer_get(service=current_service(request), external_id=result.customer.external_id)
        return Response(CustomerOutputSerializer(customer).data,
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class CustomerDetailApi(APIView):
    @extend_schema(operation_id="customers_get", examples=[examples.ok("active", examples.CUSTOMER)],
                   responses={200: CustomerOutputSerializer, **problems("not_found")},
                   summary="Get a customer",
                   description="The customer by your own `external_id`, with its registration `status` (poll it "
                   "after registering) and its current `agency` (payer).")
    def get(self, request: Request, external_id: str) -> Response:
        customer = selectors.customer_get(service=current_service(request), external_id=external_id)
        return Response(CustomerOutputSerializer(customer).data)

    @extend_schema(
        operation_id="customers_update",
        examples=[examples.ok("updated", {**examples.CUSTOMER, "phone": "+7 495 000-00-00"})],
        request=CustomerUpdateSerializer,
        responses={200: CustomerOutputSerializer, **problems("not_found", *BODY)},
        summary="Change name, contacts or legal details",
        description="Only the fields sent change (`legal` is merged field by field); billing syncs them to "
        "Balance in the background. `kind`, `external_id` and the agency cannot change here (the agency: "
        "`PUT /customers/{external_id}/agency`).",
    )
    def patch(self, request: Request, external_id: str) -> Response:
        customer = selectors.customer_get(service=current_service(request), external_id=external_id)
        serializer = CustomerUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.customer_update(customer=customer, changes=dict(serializer.validated_data))
        customer = selectors.customer_get(service=current_service(request), external_id=external_id)
        return Response(CustomerOutputSerializer(customer).data)


class AgencyChangeSerializer(serializers.Serializer):
    agency = ExternalIdField(allow_null=True, help_text="The new agency's external_id, or null for no agency")
    reason = CharField(max_length=500, required=False, allow_blank=True)


class AgencyChangeResultSerializer(serializers.Serializer):
    agency = serializers.CharField(allow_null=True)
    since = serializers.DateTimeField()


class AgencyAssignmentSerializer(serializers.Serializer):
    agency = serializers.CharField(source="agency.external_id", allow_null=True, default=None)
    since = serializers.DateTimeField()
    until = serializers.DateTimeField(allow_null=True)
    changed_by = serializers.CharField()
    reason = serializers.CharField()


class CustomerAgencyApi(APIView):
    @extend_schema(
        operation_id="customers_change_agency", examples=[examples.ok("switched", examples.AGENCY_CHANGE)],
        request=AgencyChangeSerializer, parameters=[IDEMPOTENCY_KEY_OPTIONAL],
        responses={200: AgencyChangeResultSerializer, **problems("not_found", "invalid_state", *IDEMPOTENCY, *BODY)},
        summary="Switch the customer's payer now (an agency, or null for none)",
        description="Effective immediately: every charge after this call is billed under the new payer; open holds "
        "stay with the payer they were made under; the old payer's money is shown apart in the wallet's "
        "`other_payers`. `409 invalid_state` if the agency has no active contract for the service.",
    )
    @idempotent(required=False)
    def put(self, request: Request, external_id: str) -> Response:
        service = current_service(request)
        customer = selectors.customer_get(service=service, external_id=external_id)
        serializer = AgencyChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        agency = services.agency_for(service, serializer.validated_data["agency"])
        result = services.agency_change(customer=customer, agency=agency,
                                        reason=serializer.validated_data.get("reason", ""),
                                        changed_by=f"service:{service.slug}")
        return Response(AgencyChangeResultSerializer(
            {"agency": result.agency.external_id if result.agency else None, "since": result.since}).data)


class CustomerAgencyHistoryApi(APIView):
    @extend_schema(operation_id="customers_agency_history",
                   examples=[examples.ok("the current payer", examples.AGENCY_HISTORY[0])],
                   responses={200: AgencyAssignmentSerializer(many=True),
                                                                       **problems("not_found")},
                   summary="Who paid for the customer when",
                   description="Every payer assignment, newest first (not paginated): `agency` null means the "
                   "customer paid for itself; `until` is null for the current one.")
    def get(self, request: Request, external_id: str) -> Response:
        customer = selectors.customer_get(service=current_service(request), external_id=external_id)
        return Response(AgencyAssignmentSerializer(selectors.customer_agency_history(customer), many=True).data)
