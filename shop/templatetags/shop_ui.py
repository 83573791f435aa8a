"""Template helpers of the shop pages: ``{{ order.amount_total|money:order.currency }}``."""

from __future__ import annotations

from django import template

from shop.money import format_money

register = template.Library()


@register.filter
def money(amount, currency: str) -> str:
    """An amount in minor units shown with the currency's own decimal places."""
    return format_money(amount, currency)
