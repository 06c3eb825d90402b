"""The one amount type: exact decimals with two places, in the service's currency. Never floats.

`MoneyField` is the database column for every amount; `parse_amount` validates what consumers send;
`to_balance`/`from_balance` convert at the Balance boundary (decimal strings with two places).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import models
from django.utils import formats

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_AMOUNT = Decimal("1000000000000.00")
_AMOUNT_RE = re.compile(r"^-?\d{1,13}(\.\d{1,2})?$")


class MoneyField(models.DecimalField):
    """DecimalField(max_digits=18, decimal_places=2): every amount in the database."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("max_digits", 18)
        kwargs.setdefault("decimal_places", 2)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def deconstruct(self):  # type: ignore[no-untyped-def]
        name, path, args, kwargs = super().deconstruct()
        return name, path, args, kwargs


class InvalidAmount(ValueError):
    pass


def parse_amount(value: object, *, allow_zero: bool = False, allow_negative: bool = False) -> Decimal:
    """Accept a decimal string with at most two places or an integer; refuse floats, NaN, exponents, bools."""
    if isinstance(value, bool) or value is None:
        raise InvalidAmount("must be a decimal string like \"1500.00\" or an integer")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise InvalidAmount("must be a decimal string like \"1500.00\" or an integer")
    if not _AMOUNT_RE.match(text):
        raise InvalidAmount("must be a decimal with at most 2 places, like \"1500.00\"")
    try:
        amount = Decimal(text).quantize(CENT)
    except InvalidOperation as exc:  # pragma: no cover - the regex already refuses these
        raise InvalidAmount("is not a number") from exc
    if amount < 0 and not allow_negative:
        raise InvalidAmount("must be positive")
    if amount == 0 and not allow_zero:
        raise InvalidAmount("must be greater than zero")
    if abs(amount) > MAX_AMOUNT:
        raise InvalidAmount(f"must not exceed {MAX_AMOUNT}")
    return amount


def quantize(value: Decimal | int | str) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def to_balance(amount: Decimal) -> str:
    """Amounts go to Balance as decimal strings with two places."""
    return f"{quantize(amount):.2f}"


def from_balance(value: object) -> Decimal:
    """Balance sends strings, sometimes numbers; both become exact two-place decimals."""
    if value is None or value == "":
        return ZERO
    if isinstance(value, float):
        # XML-RPC <double>: go through repr to keep the printed digits, never binary noise.
        value = repr(value)
    return quantize(Decimal(str(value)))


def format_amount(amount: Decimal) -> str:
    return f"{quantize(amount):.2f}"


CURRENCY_SIGNS = {"RUB": "₽", "USD": "$", "EUR": "€"}


def format_money(amount: Decimal, currency: str = "RUB") -> str:
    """An amount for people, in the active language: `1 500,00 ₽` in Russian, `1,500.00 ₽` in English.

    Grouping and separators come from the active locale's formats; the sign follows the number. Machine-readable
    output (the API, CSV files) uses `format_amount`.
    """
    number = formats.number_format(quantize(amount), 2, use_l10n=True, force_grouping=True)
    return f"{number}\N{NO-BREAK SPACE}{CURRENCY_SIGNS.get(currency, currency)}"
