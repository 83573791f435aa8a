"""Money: integer amounts in the currency's minor unit, as Stripe counts them.

Most currencies have two decimal places; Stripe's zero-decimal currencies (JPY, KRW, …) have
none and a few have three. ``format_money(1999, "usd")`` is "$19.99", ``format_money(1999,
"jpy")`` is "¥1,999". Templates use the ``money`` filter of ``shop_ui``.
"""

from __future__ import annotations

from decimal import Decimal

# https://docs.stripe.com/currencies#zero-decimal and #three-decimal
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩"}


class MoneyError(ValueError):
    pass


def decimals(currency: str) -> int:
    code = (currency or "").lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def format_money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "—"
    places = decimals(currency)
    sign = "-" if amount < 0 else ""
    value = Decimal(abs(int(amount))).scaleb(-places)
    number = f"{value:,.{places}f}"
    code = (currency or "").lower()
    symbol = SYMBOLS.get(code)
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{number} {code.upper()}"


def parse_amount(text: str, currency: str) -> int:
    """A typed amount ("12.50", "1,200") in minor units of ``currency``; MoneyError says why
    not."""
    cleaned = (text or "").strip().replace(",", "").replace(" ", "")
    places = decimals(currency)
    try:
        value = Decimal(cleaned)
    except ArithmeticError:
        raise MoneyError(f"{text!r} is not an amount; write it like 12.50.") from None
    if not value.is_finite() or value <= 0:
        raise MoneyError("The amount must be more than zero.")
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        unit = "whole units" if places == 0 else f"at most {places} decimal places"
        raise MoneyError(f"{currency.upper()} amounts take {unit}; {text!r} has more.")
    if minor > 10**15:
        raise MoneyError("That amount is too large.")
    return int(minor)
