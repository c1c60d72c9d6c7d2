"""One rounding rule for every amount in the product (docs/DESIGN.md, docs/decisions/money-and-rounding.md).

Each line amount is rounded to the currency's minor unit with ROUND_HALF_UP; totals are sums of rounded lines.
Amounts are ``Decimal``; a ``float`` is refused, never silently converted.
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_UP, Decimal

from moneyed import Money, get_currency

from core.errors import InvalidInput


class CurrencyMismatch(InvalidInput, ValueError):
    """Amounts in different currencies were combined; we never convert implicitly."""


@functools.lru_cache(maxsize=64)
def minor_units(currency: str) -> int:
    """ISO 4217 minor units: EUR 2, JPY 0, BHD 3 (py-moneyed's ``sub_unit`` is 100, 1, 1000)."""
    return len(str(get_currency(currency.upper()).sub_unit)) - 1


@functools.lru_cache(maxsize=64)
def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


# The largest amount any single figure may have (a price, a line, a payment, an imported transaction): far above
# a real invoice, and a thousand such lines still fit the 18-digit, 3-decimal amount columns (10^15), so an
# absurd input is a validation error with this message instead of a database error.
MAX_AMOUNT = Decimal("999999999999.999")


def amount_limit_problem(amount: Decimal | int, currency: str = "") -> str | None:
    """Why ``amount`` is not a usable money amount (not finite, or beyond ``MAX_AMOUNT``), else ``None``."""
    if isinstance(amount, float):
        raise TypeError("money amounts must be Decimal, not float")
    value = Decimal(amount)
    if not value.is_finite():
        return f"{value} is not an amount"
    if abs(value) > MAX_AMOUNT:
        what = f"{value:,f} {currency}".strip()
        return f"{what} is too large (the limit is {MAX_AMOUNT:,})"
    return None


def round_amount(amount: Decimal | int, currency: str) -> Decimal:
    if isinstance(amount, float):
        raise TypeError("money amounts must be Decimal, not float")
    return Decimal(amount).quantize(quantum(currency), rounding=ROUND_HALF_UP)


def round_money(amount: Money) -> Money:
    return Money(round_amount(amount.amount, amount.currency.code), amount.currency.code)


def sum_money(amounts: list[Money], currency: str) -> Money:
    """Sum Money values that must all be in ``currency``; an empty list is zero in that currency."""
    total = Decimal(0)
    for money in amounts:
        if money.currency.code != currency:
            raise CurrencyMismatch(f"cannot add {money.currency.code} to {currency}")
        total += money.amount
    return Money(total, currency)
