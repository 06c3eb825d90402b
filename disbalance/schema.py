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


def finish_schema(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: describe path parameters and give every response a description."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter["name"] in PATH_PARAMETERS:
                    parameter.update(PATH_PARAMETERS[parameter["name"]])
            for status, response in operation.get("responses", {}).items():
                if not response.get("description"):
                    response["description"] = HTTPStatus(int(status)).phrase
    return result
