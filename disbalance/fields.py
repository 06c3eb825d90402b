"""Serializer fields shared by every API: external ids and money amounts."""

from __future__ import annotations

import re
from decimal import Decimal

from django.core.validators import RegexValidator
from rest_framework import serializers

from disbalance.money import InvalidAmount, format_amount, parse_amount

EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9:_\-.@]{1,128}$"

# Characters XML 1.0 cannot carry (C0 controls other than tab, newline and carriage return; U+FFFE, U+FFFF).
# Strings reach Balance over XML-RPC: one of these would make every call for the object fail, so it is refused
# at the API with a 400 instead of becoming an endless Balance fault.
XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class StrictStringMixin:
    """Refuse numbers, booleans and objects where a string is expected (DRF would coerce `12` to `"12"`), and
    characters XML cannot carry (`XML_ILLEGAL`)."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]
        if XML_ILLEGAL.search(data):
            raise serializers.ValidationError("Control characters are not allowed (they cannot be sent to Balance).",
                                              code="invalid")
        return super().to_internal_value(data)  # type: ignore[misc]


class CharField(StrictStringMixin, serializers.CharField):
    pass


class EmailField(StrictStringMixin, serializers.EmailField):
    pass


class RegexField(StrictStringMixin, serializers.RegexField):
    pass


class ExternalIdField(CharField):
    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("max_length", 128)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.validators.append(
            RegexValidator(EXTERNAL_ID_PATTERN, "1 to 128 characters of letters, digits and :_-.@")
        )


class AmountField(serializers.Field):
    """A positive amount: a decimal string with at most 2 places, or an integer. Output: "1500.00".

    Its OpenAPI schema (`disbalance.schema.AmountFieldExtension`) differs by direction: a string with exactly 2
    places out; a string or an integer in."""

    default_error_messages = {"invalid": "{message}"}

    def __init__(self, *, allow_zero: bool = False, allow_negative: bool = False, **kwargs: object) -> None:
        self.allow_zero = allow_zero
        self.allow_negative = allow_negative
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def to_internal_value(self, data: object) -> Decimal:
        try:
            return parse_amount(data, allow_zero=self.allow_zero, allow_negative=self.allow_negative)
        except InvalidAmount as exc:
            self.fail("invalid", message=str(exc))
            raise  # pragma: no cover

    def to_representation(self, value: Decimal) -> str:
        return format_amount(value)


class SignedAmountField(AmountField):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(allow_zero=True, allow_negative=True, **kwargs)  # type: ignore[arg-type]
