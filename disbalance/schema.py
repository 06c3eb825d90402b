"""drf-spectacular extensions and hooks: the project's authentication class, the money fields, and the finishing
touches (path parameters and response descriptions) so every operation documents what it answers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension

from disbalance.fields import EXTERNAL_ID_PATTERN
from disbalance.money import MAX_AMOUNT


class ServiceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "disbalance.auth.ServiceTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {"type": "http", "scheme": "bearer", "description": "Service token: `Authorization: Bearer <token>`"}


class AmountFieldExtension(OpenApiSerializerFieldExtension):
    """Amounts: out, a decimal string with exactly 2 places; in, such a string (at most 2 places) or an integer."""

    target_class = "disbalance.fields.AmountField"
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):  # type: ignore[no-untyped-def]
        field = self.target
        sign = "-?" if field.allow_negative else ""
        lowest = "any" if field.allow_negative else ("0.00" if field.allow_zero else "0.01")
        if direction == "response":
            return {"type": "string", "pattern": rf"^{sign}\d+\.\d{{2}}$", "example": "1500.00",
                    "description": "Decimal string with exactly 2 places, in the service's currency"}
        return {
            "oneOf": [
                {"type": "string", "pattern": rf"^\s*{sign}\d{{1,13}}(\.\d{{1,2}})?\s*$", "example": "1500.00"},
                {"type": "integer", "maximum": int(MAX_AMOUNT), **({} if field.allow_negative else {"minimum": 0})},
            ],
            "description": f"A decimal string with at most 2 places, or an integer; from {lowest} to {MAX_AMOUNT}",
        }


# Path parameters, by name: what they are and which values name something.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "external_id": {
        "description": "Your own id of the customer or agency: 1 to 128 letters, digits and `:_-.@`",
        "schema": {"type": "string", "pattern": EXTERNAL_ID_PATTERN, "maxLength": 128, "example": "dealer:777"},
    },
    "topup_id": {"description": "The top-up's id (billing's UUID)", "schema": {"type": "string", "format": "uuid"}},
    "charge_id": {"description": "The charge's id (billing's UUID)", "schema": {"type": "string", "format": "uuid"}},
    "hold_id": {"description": "The hold's id (billing's UUID)", "schema": {"type": "string", "format": "uuid"}},
}


# Descriptions of fields by name, for every component whose field has no help_text of its own (one meaning per name
# across the API).
FIELD_DESCRIPTIONS: dict[str, str] = {
    "external_id": "Your own id of the customer or agency: 1 to 128 letters, digits and `:_-.@`",
    "id": "Billing's id (a UUID)",
    "kind": "What kind of object it is",
    "name": "Display name",
    "email": "Contact e-mail (may be empty)",
    "phone": "Contact phone (may be empty)",
    "inn": "Taxpayer number (INN): 10 digits for a company, 12 for a person",
    "kpp": "Tax registration reason code (KPP): 9 digits, companies only",
    "legal_address": "Legal address",
    "long_name": "Full legal name of the company (Balance's longname)",
    "postal_address": "Postal address of the company",
    "postcode": "Postcode of the postal address: 6 digits",
    "lname": "Last name (individuals)",
    "fname": "First name (individuals)",
    "mname": "Middle name (individuals, optional)",
    "status_reason": "Why the status is what it is (set for `failed`), empty otherwise",
    "agency": "The agency's external_id, or null for none",
    "payer": "Who pays: the agency's external_id, or null when the customer pays for itself",
    "blocked": "Spending (charges and holds) is refused: overdue debt or a support block",
    "user_uids": "Users (uids) linked to the customer's Balance client",
    "created_at": "When it was created (UTC)",
    "updated_at": "When it last changed (UTC)",
    "customer": "The customer's external_id",
    "product": "The product's code in the catalog (`GET /products`)",
    "code": "The product's code, used in charges and holds",
    "description": "Free text for the customer's statement",
    "metadata": "Your own string keys and values (at most 50 keys of 1 to 64 characters), returned as sent",
    "hold": "The hold this charge captured, or null for an immediate charge",
    "expires_at": "When it expires (UTC)",
    "closed_at": "When the hold was captured, released or expired; null while held",
    "succeeded_at": "When the money was credited; null until then",
    "payment_url": "Balance's payment page for the customer; null until the request exists in Balance",
    "return_url": "Where Balance's payment page sends the customer back to after paying",
    "reason": "Why (free text, kept in the history)",
    "since": "From when (UTC)",
    "until": "Until when (UTC); null for the current one",
    "changed_by": "Who made the change (`service:<slug>` for the API)",
    "charge": "The refunded charge's id",
    "currency": "The service's currency (ISO 4217)",
    "other_payers": "Money under earlier payers, kept apart from the current payer's",
    "contracts": "The agency's contracts for the service, read from Balance",
    "number": "The contract's number in Balance",
    "active": "The contract is active now",
    "payment_type": "`prepaid` or `postpaid`",
    "valid_from": "First day of the contract",
    "valid_to": "Last day of the contract; null for open-ended",
    "client_id": "Balance's client id (for support); null until registered",
    "person_id": "Balance's person (payer) id (for support); null until registered",
    "results": "The objects of this page",
    "legal": "Legal details, sent to Balance with the payer (person)",
    "balance": "Balance's ids of the client and person (read-only, for support; never needed by consumers)",
    "type": "The kind of ledger transaction",
    "reference": "What caused the transaction: the top-up, charge, hold or refund (`kind` and `id`)",
    # Component-specific meanings ("Component.field") win over the name alone.
    "CustomerOutput.status": "Registration in Balance: `registering` → `active`, or `failed` (retried by the system)",
    "AgencyOutput.status": "Registration in Balance: `registering` → `active`, or `failed` (retried by the system)",
    "TopUp.status": "`pending` (not yet in Balance) → `awaiting_payment` (pay at `payment_url`) → `succeeded`; "
                    "or `failed`, `expired`",
    "Hold.status": "`held` until `captured`, `released` or `expired` (each at most once)",
    "Charge.status": "`succeeded` (a charge is immediate; a refused charge is an error answer, never stored)",
    "Wallet.balance": "The current payer's balance; negative while there is debt",
    "PayerBalance.balance": "Money left under that payer",
    "StatementRow.payer": "The payer the transaction was made under: the agency's external_id, or null for the "
                          "customer itself",
}


# Descriptions of components (the serializers' docstrings win where they have one).
COMPONENT_DESCRIPTIONS: dict[str, str] = {
    "CustomerCreateRequest": "A customer to register. A company needs `legal.inn`, `legal.kpp`, `legal.long_name`, "
                             "`legal.legal_address`, `legal.postal_address` and `legal.postcode`; an individual "
                             "`legal.lname` and `legal.fname`.",
    "PatchedCustomerUpdateRequest": "The fields to change; `legal` is merged field by field.",
    "CustomerOutput": "A customer of the service, addressed by its `external_id`.",
    "Legal": "The customer's legal details.",
    "LegalRequest": "The customer's legal details.",
    "AgencyCreateRequest": "An agency to register: a company (INN and legal address required).",
    "AgencyOutput": "An agency of the service with its contracts read from Balance.",
    "AgencyLegal": "The agency's legal details.",
    "AgencyLegalRequest": "The agency's legal details.",
    "Contract": "An agency's contract for the service in Balance.",
    "AgencyChangeRequest": "The new payer: an agency's external_id (with an active contract), or null for none.",
    "AgencyChangeResult": "The payer now and since when.",
    "AgencyAssignment": "One period of one payer.",
    "Wallet": "The customer's money: `available = balance + overdraft_limit - held` for the current payer.",
    "PayerBalance": "Money under an earlier payer.",
    "StatementRow": "One ledger transaction touching the customer.",
    "Reference": "The operation a ledger transaction belongs to.",
    "TopUpCreateRequest": "The amount to top up by.",
    "TopUp": "A payment request in Balance for the customer's wallet.",
    "Product": "A product of the service's catalog.",
    "ChargeCreateRequest": "What to charge for, and how much.",
    "Charge": "Money spent now on a product.",
    "RefundCreateRequest": "How much of the charge to give back (default: all that is left) and why.",
    "Refund": "Money of a charge given back to the payer it was charged under.",
    "HoldCreateRequest": "Money to reserve for a product.",
    "Hold": "Reserved money, captured (in part or all) or released at most once.",
    "HoldCaptureRequest": "How much of the hold to charge (default: all); the rest is released.",
    "Overdraft": "The customer's overdraft and debt.",
}


def finish_schema(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: describe path parameters, fields without help_text, and give every response a
    description."""
    for component_name, component in result.get("components", {}).get("schemas", {}).items():
        if not component.get("description") and component_name in COMPONENT_DESCRIPTIONS:
            component["description"] = COMPONENT_DESCRIPTIONS[component_name]
        for name, prop in component.get("properties", {}).items():
            text = FIELD_DESCRIPTIONS.get(f"{component_name}.{name}") or FIELD_DESCRIPTIONS.get(name)
            if prop.get("description") or not text:
                continue
            if "$ref" in prop:  # OpenAPI 3.0 ignores siblings of $ref: wrap it
                component["properties"][name] = {"allOf": [prop], "description": text}
            else:
                prop["description"] = text
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"] in PATH_PARAMETERS:
                    parameter.update(PATH_PARAMETERS[parameter["name"]])
            for status, response in operation.get("responses", {}).items():
                if not response.get("description"):
                    response["description"] = HTTPStatus(int(status)).phrase
    return result
