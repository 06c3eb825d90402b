"""Template filters of the console."""

from __future__ import annotations

from decimal import Decimal

from django import template

from disbalance.money import format_money

register = template.Library()


@register.filter
def money(value: Decimal | None, currency: str = "RUB") -> str:
    """`{{ amount|money }}`: `1 500,00 ₽` in Russian (the active language's grouping and separators)."""
    return "" if value is None else format_money(value, currency)
