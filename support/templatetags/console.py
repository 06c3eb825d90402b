"""Template filters of the console."""

from __future__ import annotations

from decimal import Decimal

from django import template

from disbalance.money import format_money
from support.timeline import LEDGER_TYPES

register = template.Library()


@register.filter
def money(value: Decimal | None, currency: str = "RUB") -> str:
    """`{{ amount|money }}`: `1 500,00 ₽` in Russian (the active language's grouping and separators)."""
    return "" if value is None else format_money(value, currency)


@register.filter
def ledger_type(value: str) -> str:
    """`{{ line.type|ledger_type }}`: a ledger transaction's type in the active language (`charge` → «Списание»)."""
    return str(LEDGER_TYPES.get(value, value))
