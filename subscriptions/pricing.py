"""Pure billing arithmetic on loaded values: price models, proration fractions, discount allocation.

No database access here: ``charges.py`` loads rows once per chunk and calls these for every subscription.
Amounts are unrounded ``Decimal`` until a line is made; each line is rounded on its own (ROUND_HALF_UP to the
currency's minor unit, ``core.money.round_amount``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from core.money import quantum, round_amount

ZERO = Decimal(0)
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Tier:
    up_to: int | None  # inclusive; None = and above
    unit_amount: Decimal
    flat_amount: Decimal


@dataclass(frozen=True)
class PricedPart:
    """One line's worth of a price applied to a quantity: ``amount`` is unrounded."""

    label: str  # appended to the line description ("" when the price needs no detail)
    quantity: Decimal
    unit_amount: Decimal
    amount: Decimal


def _fmt_qty(value: Decimal | int) -> str:
    normalized = Decimal(value).normalize()
    return f"{normalized:,f}"


def sorted_tiers(tiers: Sequence[Tier]) -> list[Tier]:
    return sorted(tiers, key=lambda t: (t.up_to is None, t.up_to or 0))


def price_parts(
    *,
    pricing_model: str,
    unit_amount: Decimal,
    quantity: Decimal,
    tiers: Sequence[Tier] = (),
    package_size: int | None = None,
) -> list[PricedPart]:
    """The parts a price charges for ``quantity`` (docs/DESIGN.md "Tiered prices").

    flat: the fee, whatever the quantity · per_unit: quantity × unit · graduated: each tier prices its own units
    (plus its flat amount once reached) · volume: the tier the total falls in prices every unit (plus its flat
    amount) · package: per started block of ``package_size`` units. A zero quantity charges nothing except flat.
    """
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    if pricing_model == "flat":
        return [PricedPart("", Decimal(1), unit_amount, unit_amount)]
    if pricing_model == "per_unit":
        return [PricedPart("", quantity, unit_amount, quantity * unit_amount)] if quantity else []
    if pricing_model == "package":
        if not package_size or package_size < 1:
            raise ValueError("a package price needs a package size of at least 1")
        packages = (quantity / package_size).to_integral_value(rounding=ROUND_CEILING)
        if not packages:
            return []
        label = f"{_fmt_qty(quantity)} units in {_fmt_qty(packages)} package(s) of {package_size}"
        return [PricedPart(label, packages, unit_amount, packages * unit_amount)]
    if pricing_model not in ("graduated", "volume"):
        raise ValueError(f"unknown pricing model '{pricing_model}'")
    ordered = sorted_tiers(tiers)
    if not ordered or ordered[-1].up_to is not None:
        raise ValueError("a tiered price needs tiers, the last one open-ended")
    if not quantity:
        return []
    parts: list[PricedPart] = []
    if pricing_model == "volume":
        for number, tier in enumerate(ordered, start=1):
            if tier.up_to is None or quantity <= tier.up_to:
                parts.append(PricedPart(f"tier {number}", quantity, tier.unit_amount, quantity * tier.unit_amount))
                if tier.flat_amount:
                    parts.append(PricedPart(f"tier {number} flat fee", Decimal(1), tier.flat_amount, tier.flat_amount))
                return parts
    lower = Decimal(0)
    for number, tier in enumerate(ordered, start=1):
        upper = Decimal(tier.up_to) if tier.up_to is not None else quantity
        units = min(quantity, upper) - lower
        if units <= 0:
            break
        first_unit = _fmt_qty(lower + 1)
        range_label = f"{first_unit}–{_fmt_qty(upper)}" if tier.up_to is not None else f"{first_unit} and above"
        parts.append(PricedPart(f"tier {number} ({range_label})", units, tier.unit_amount, units * tier.unit_amount))
        if tier.flat_amount:
            parts.append(PricedPart(f"tier {number} flat fee", Decimal(1), tier.flat_amount, tier.flat_amount))
        lower = upper
    return parts


def full_amount(parts: Sequence[PricedPart]) -> Decimal:
    return sum((part.amount for part in parts), ZERO)


def prorate(amount: Decimal, remaining_days: int, period_days: int) -> Decimal:
    """amount × remaining / period, unrounded (round the line, not this)."""
    if period_days <= 0 or not 0 <= remaining_days <= period_days:
        raise ValueError("remaining days must lie within the period")
    return amount * remaining_days / period_days


@dataclass(frozen=True)
class DiscountRule:
    discount_id: int
    percent_off: Decimal | None
    amount_off: Decimal | None  # in the subscription's currency
    product_ids: frozenset[int]  # empty = every product


def allocate_discounts(
    *,
    amounts: Sequence[Decimal],
    product_ids: Sequence[int | None],
    eligible: Sequence[bool],
    rules: Sequence[DiscountRule],
    currency: str,
) -> tuple[list[Decimal], list[int]]:
    """The discount of every line, and the ids of the rules that reduced something.

    The rule for several discounts: they apply one after another in the given order (discount start, then id),
    each to what the previous ones left, and never below zero. A percentage takes ``round(left × p / 100)`` of
    each line it covers; an amount takes ``min(amount, what is left on the lines it covers)`` and spreads it over
    those lines in proportion to what is left on each (largest remainder in minor units, ties to the earlier
    line). Only eligible lines (recurring and usage lines, positive, of a product the coupon covers) are reduced.
    """
    step = quantum(currency)
    left = [Decimal(a) if ok and a > 0 else ZERO for a, ok in zip(amounts, eligible, strict=True)]
    taken = [ZERO] * len(amounts)
    applied: list[int] = []
    for rule in rules:
        covered = [
            index
            for index, amount in enumerate(left)
            if amount > 0 and (not rule.product_ids or product_ids[index] in rule.product_ids)
        ]
        if not covered:
            continue
        shares: dict[int, Decimal] = {}
        if rule.percent_off is not None:
            for index in covered:
                shares[index] = min(left[index], round_amount(left[index] * rule.percent_off / HUNDRED, currency))
        elif rule.amount_off is not None:
            base = sum((left[index] for index in covered), ZERO)
            total = min(round_amount(rule.amount_off, currency), base)
            raw = {index: total * left[index] / base for index in covered}
            floors = {index: value.quantize(step, rounding=ROUND_FLOOR) for index, value in raw.items()}
            leftover = int((total - sum(floors.values(), ZERO)) / step)
            by_remainder = sorted(covered, key=lambda index: (-(raw[index] - floors[index]), index))
            for index in by_remainder[:leftover]:
                floors[index] += step
            shares = floors
        if any(shares.values()):
            applied.append(rule.discount_id)
        for index, share in shares.items():
            left[index] -= share
            taken[index] += share
    return taken, applied
