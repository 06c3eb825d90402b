"""The one amount type: exact decimals with two places, in the service's currency. Never floats.

`MoneyField` is the database column for every amount; `parse_amount` validates what consumers send;
`to_balance`/`from_balance` convert at the Balance boundary (decimal strings with two places).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from django.db import models
from django.utils import formats

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_AMOUNT = Decimal("1000000000000.00")
# A plain decimal: optional minus, digits, optional fraction. Exponents, NaN, "+", spaces inside are malformed.
_AMOUNT_RE = re.compile(r"^(?P<sign>-?)(?P<whole>\d+)(?:\.(?P<places>\d+))?$", re.ASCII)
_MAX_WHOLE_DIGITS = len(str(int(MAX_AMOUNT)))
_MALFORMED = "must be a decimal string like \"1500.00\" or an integer (no exponent, NaN or float)"


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
    """Accept a decimal string with at most two places or an integer; refuse floats, NaN, exponents, bools.

    Each refusal names the real problem, checked in this order: not a plain decimal, more than 2 places,
    negative, zero, above MAX_AMOUNT (so `10000000000000.00` is "must not exceed", not a format error).
    """
    if isinstance(value, bool) or value is None or not isinstance(value, int | str):
        raise InvalidAmount(_MALFORMED)
    text = str(value) if isinstance(value, int) else value.strip()
    match = _AMOUNT_RE.match(text)
    if match is None:
        raise InvalidAmount(_MALFORMED)
    sign, whole, places = match.group("sign"), match.group("whole"), match.group("places") or ""
    if len(places) > 2:
        raise InvalidAmount("must have at most 2 decimal places, like \"1500.00\"")
    if sign and not allow_negative and whole.strip("0") + places.strip("0"):
        raise InvalidAmount("must be positive")
    if len(whole.lstrip("0")) > _MAX_WHOLE_DIGITS:  # far too large: refuse before building a huge Decimal
        raise InvalidAmount(_too_large(negative=bool(sign)))
    amount = Decimal(f"{sign}{whole}.{places or '0'}").quantize(CENT)
    if amount == 0 and not allow_zero:
        raise InvalidAmount("must be greater than zero")
    if abs(amount) > MAX_AMOUNT:
        raise InvalidAmount(_too_large(negative=amount < 0))
    return amount.copy_abs() if amount == 0 else amount


def _too_large(*, negative: bool) -> str:
    return f"must not be below -{MAX_AMOUNT}" if negative else f"must not exceed {MAX_AMOUNT}"


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
