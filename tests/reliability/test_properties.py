"""Property-based tests (issue 10) over the money, tax, proration and billing-calendar arithmetic: the rules of
docs/DESIGN.md "Billing rules", docs/decisions/money-and-rounding.md and docs/proration.md, checked on thousands of
generated cases instead of a handful of examples.

Deterministic in CI: every test uses ``PROPERTY`` (derandomized, no example database, no deadline), so the same
cases run every time and no ``.hypothesis`` folder is written. Pure functions only — no database.
"""

from __future__ import annotations

import calendar
import datetime as dt
import itertools
import os
import tempfile
from decimal import Decimal
from typing import Any

import pytest
from djmoney.money import Money
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from moneyed import Money as PlainMoney

from core.money import CurrencyMismatch, minor_units, quantum, round_amount, sum_money
from invoicing.taxes import compute_invoice_totals, distribute_amount, tax_of
from subscriptions.calendar import add_interval, boundary_after, boundary_on_or_before, period_containing
from subscriptions.models import Price, PricingModel, Product
from subscriptions.pricing import DiscountRule, allocate_discounts, prorate
from subscriptions.services import proration_line

# Hypothesis also caches the constants it finds in the source under ./.hypothesis; keep even that out of the
# checkout (a temporary folder per run) unless HYPOTHESIS_STORAGE_DIRECTORY says where.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(tempfile.mkdtemp(prefix="hypothesis-"))

PROPERTY = settings(
    deadline=None,
    database=None,
    derandomize=True,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow],
)

CURRENCIES = st.sampled_from(["EUR", "JPY", "BHD", "USD"])  # 2, 0, 3 and 2 minor digits
TAX_PERCENTAGES = st.sampled_from([Decimal(0), Decimal(7), Decimal(19), Decimal(20), Decimal("8.1"), Decimal("5.5")])
HALF = Decimal("0.5")


def amounts(max_value: str = "100000", places: int = 6, min_value: str = "0") -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=Decimal(min_value), max_value=Decimal(max_value), places=places, allow_nan=False, allow_infinity=False
    )


# --- rounding -------------------------------------------------------------------------------------------


@PROPERTY
@given(amount=amounts(min_value="-100000"), currency=CURRENCIES)
def test_round_amount_is_the_nearest_minor_unit_half_up_idempotent_and_symmetric(amount: Decimal, currency: str):
    rounded = round_amount(amount, currency)
    step = quantum(currency)
    assert rounded.as_tuple().exponent == -minor_units(currency)
    assert abs(rounded - amount) <= step * HALF  # the nearest minor unit
    assert round_amount(rounded, currency) == rounded  # idempotent
    assert round_amount(-amount, currency) == -rounded  # half away from zero, symmetric
    if abs(rounded - amount) == step * HALF:  # an exact half goes away from zero (ROUND_HALF_UP)
        assert abs(rounded) > abs(amount)


@PROPERTY
@given(a=amounts(min_value="-1000"), b=amounts(min_value="-1000"), currency=CURRENCIES)
def test_round_amount_is_monotonic(a: Decimal, b: Decimal, currency: str):
    low, high = sorted((a, b))
    assert round_amount(low, currency) <= round_amount(high, currency)


def test_pinned_rounding_examples_and_refusals():
    assert round_amount(3 * Decimal("3.335"), "EUR") == Decimal("10.01")
    assert round_amount(Decimal("123.5"), "JPY") == Decimal(124)
    assert round_amount(Decimal("1.2345"), "BHD") == Decimal("1.235")
    with pytest.raises(TypeError):
        round_amount(1.5, "EUR")  # type: ignore[arg-type]
    with pytest.raises(CurrencyMismatch):
        sum_money([PlainMoney("1.00", "EUR"), PlainMoney("1.00", "USD")], "EUR")


@PROPERTY
@given(values=st.lists(amounts(max_value="1000", places=2), max_size=20), currency=st.sampled_from(["EUR", "USD"]))
def test_sum_money_adds_exactly_in_one_currency(values: list[Decimal], currency: str):
    total = sum_money([PlainMoney(value, currency) for value in values], currency)
    assert total.amount == sum(values, Decimal(0)) and total.currency.code == currency


# --- lines, taxes and invoice totals --------------------------------------------------------------------


@st.composite
def lines(draw: Any, currency: str) -> dict[str, Any]:
    quantity = draw(st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4))
    unit_amount = draw(amounts(max_value="10000", places=4, min_value="-500"))
    amount = round_amount(quantity * unit_amount, currency)
    discount = draw(amounts(max_value=str(max(amount, Decimal(0))), places=minor_units(currency)))
    return {
        "quantity": quantity,
        "unit_amount": unit_amount,
        "discount_amount": discount if amount > 0 else Decimal(0),
        "tax_percentage": draw(TAX_PERCENTAGES),
        "tax_inclusive": draw(st.booleans()),
        "tax_name": "VAT",
        "amount": Decimal(0),
    }


class _Line:
    """A line as the tax arithmetic reads it: a standard-rated line unless the spec says otherwise."""

    def __init__(self, **values: Any):
        self.__dict__.update({"tax_category": "S", "tax_exemption_reason_code": "", "tax_exemption_reason": ""})
        self.__dict__.update(values)


@PROPERTY
@given(data=st.data(), currency=CURRENCIES)
def test_invoice_totals_are_sums_of_rounded_lines_and_each_line_balances(data: Any, currency: str):
    specs = data.draw(st.lists(lines(currency), min_size=1, max_size=8))
    totals = compute_invoice_totals([_Line(**spec) for spec in specs], currency)
    step = quantum(currency)
    for spec, line in zip(specs, totals.lines, strict=True):
        for value in (line.amount, line.discount_amount, line.net_amount, line.tax_amount, line.total_amount):
            assert value == round_amount(value, currency)  # every figure is in minor units
        assert line.amount == round_amount(spec["quantity"] * spec["unit_amount"], currency)
        assert line.total_amount == line.net_amount + line.tax_amount
        discounted = line.amount - line.discount_amount
        rate = spec["tax_percentage"]
        if spec["tax_inclusive"]:
            assert line.tax_amount == round_amount(discounted * rate / (100 + rate), currency)
            assert line.net_amount + line.tax_amount == discounted  # the gross price stays what it was
        else:
            assert line.tax_amount == round_amount(discounted * rate / 100, currency)
            assert line.net_amount == discounted
        assert abs(line.tax_amount) <= abs(discounted)
    assert totals.subtotal == sum((line.amount for line in totals.lines), Decimal(0))
    assert totals.discount_total == sum((line.discount_amount for line in totals.lines), Decimal(0))
    assert totals.tax_total == sum((line.tax_amount for line in totals.lines), Decimal(0))
    assert totals.total == sum((line.total_amount for line in totals.lines), Decimal(0))
    exclusive_tax = sum(
        (line.tax_amount for spec, line in zip(specs, totals.lines, strict=True) if not spec["tax_inclusive"]),
        Decimal(0),
    )
    assert totals.total == totals.subtotal - totals.discount_total + exclusive_tax
    assert sum((row.tax_amount for row in totals.tax_summary), Decimal(0)) == totals.tax_total
    assert sum((row.taxable_amount for row in totals.tax_summary), Decimal(0)) == sum(
        (line.net_amount for line in totals.lines), Decimal(0)
    )
    # Rounding per line moves the total by at most half a minor unit per rounded figure.
    exact = sum((spec["quantity"] * spec["unit_amount"] for spec in specs), Decimal(0))
    assert abs(totals.subtotal - exact) <= step * HALF * len(specs)


@PROPERTY
@given(gross=amounts(max_value="100000", places=2), rate=TAX_PERCENTAGES)
def test_inclusive_and_exclusive_tax_agree_to_the_cent(gross: Decimal, rate: Decimal):
    """Tax taken out of a gross price, added back to the net, gives the gross again within one cent."""
    tax = tax_of(amount=gross, percentage=rate, inclusive=True, currency="EUR")
    net = gross - tax
    assert Decimal(0) <= tax <= gross
    assert abs(net + tax_of(amount=net, percentage=rate, inclusive=False, currency="EUR") - gross) <= Decimal("0.01")


@PROPERTY
@given(
    total=amounts(max_value="100000", places=3),
    weights=st.lists(amounts(max_value="10000", places=3), min_size=1, max_size=10),
    currency=CURRENCIES,
)
def test_distributing_an_amount_over_lines_adds_up_exactly_and_never_goes_negative(
    total: Decimal, weights: list[Decimal], currency: str
):
    assume(sum(weights, Decimal(0)) > 0)
    parts = distribute_amount(total=total, weights=weights, currency=currency)
    assert sum(parts, Decimal(0)) == round_amount(total, currency)
    assert all(part >= 0 for part in parts), parts
    assert all(part == 0 for part, weight in zip(parts, weights, strict=True) if weight == 0)
    assert all(part == round_amount(part, currency) for part in parts)


@PROPERTY
@given(
    data=st.data(),
    currency=CURRENCIES,
    percent_off=st.one_of(st.none(), st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100), places=2)),
)
def test_discounts_never_exceed_their_lines_nor_the_amount_off(data: Any, currency: str, percent_off: Any):
    places = minor_units(currency)
    line_amounts = data.draw(st.lists(amounts(max_value="5000", places=places), min_size=1, max_size=6))
    eligible = data.draw(st.lists(st.booleans(), min_size=len(line_amounts), max_size=len(line_amounts)))
    amount_off = None if percent_off is not None else data.draw(amounts(max_value="20000", places=places))
    rule = DiscountRule(discount_id=1, percent_off=percent_off, amount_off=amount_off, product_ids=frozenset())
    taken, applied = allocate_discounts(
        amounts=line_amounts, product_ids=[None] * len(line_amounts), eligible=eligible, rules=[rule], currency=currency
    )
    for amount, share, ok in zip(line_amounts, taken, eligible, strict=True):
        assert Decimal(0) <= share <= (amount if ok else Decimal(0))
        assert share == round_amount(share, currency)
    base = sum((a for a, ok in zip(line_amounts, eligible, strict=True) if ok), Decimal(0))
    if amount_off is not None:
        assert sum(taken, Decimal(0)) == min(round_amount(amount_off, currency), base)
    assert (applied == [1]) == (sum(taken, Decimal(0)) > 0)


# --- proration ------------------------------------------------------------------------------------------


def _price(unit_amount: Decimal, currency: str) -> Price:
    """An unsaved per-unit price: proration_line only reads it (no database)."""
    return Price(
        product=Product(name="Pro"), unit_amount=Money(unit_amount, currency), pricing_model=PricingModel.PER_UNIT
    )


@st.composite
def periods_and_days(draw: Any) -> tuple[dt.date, dt.date, dt.date]:
    anchor = draw(st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2030, 12, 31)))
    interval = draw(st.sampled_from(["month", "year", "week", "day"]))
    count = draw(st.integers(min_value=1, max_value=3 if interval != "day" else 30))
    start = add_interval(anchor, interval, count, draw(st.integers(min_value=0, max_value=24)))
    end = boundary_after(anchor, interval, count, start)
    change = start + dt.timedelta(days=draw(st.integers(min_value=0, max_value=(end - start).days - 1)))
    return start, end, change


@PROPERTY
@given(
    period=periods_and_days(),
    unit_amount=amounts(max_value="5000", places=4),
    quantity=st.integers(min_value=1, max_value=500),
    currency=CURRENCIES,
)
def test_splitting_a_period_prorates_the_parts_to_the_whole_within_rounding(
    period: tuple[dt.date, dt.date, dt.date], unit_amount: Decimal, quantity: int, currency: str
):
    start, end, change = period
    full = unit_amount * quantity
    period_days, before, after = (end - start).days, (change - start).days, (end - change).days
    assert before + after == period_days
    assert prorate(full, before, period_days) + prorate(full, after, period_days) == full  # exact, unrounded
    rounded_parts = round_amount(prorate(full, before, period_days), currency) + round_amount(
        prorate(full, after, period_days), currency
    )
    assert abs(rounded_parts - round_amount(full, currency)) <= quantum(currency)  # each part rounded once


@PROPERTY
@given(
    period=periods_and_days(),
    old_unit=amounts(max_value="1000", places=4),
    new_unit=amounts(max_value="1000", places=4),
    old_quantity=st.integers(min_value=1, max_value=50),
    new_quantity=st.integers(min_value=1, max_value=50),
    currency=CURRENCIES,
)
def test_plan_change_credit_plus_charge_is_the_prorated_difference_and_signs_hold(
    period: tuple[dt.date, dt.date, dt.date],
    old_unit: Decimal,
    new_unit: Decimal,
    old_quantity: int,
    new_quantity: int,
    currency: str,
):
    start, end, change = period
    old, new = _price(old_unit, currency), _price(new_unit, currency)
    common = {"change_date": change, "period_start": start, "period_end": end, "subscription_item_id": None}
    credit = proration_line(price=old, quantity=old_quantity, credit=True, **common)
    charge = proration_line(price=new, quantity=new_quantity, credit=False, **common)
    step = quantum(currency)
    fraction = Decimal((end - change).days) / Decimal((end - start).days)
    old_full, new_full = old_unit * old_quantity, new_unit * new_quantity
    assert Decimal(0) < fraction <= 1  # the change day counts as remaining
    assert credit.amount.amount <= 0 <= charge.amount.amount  # only the credit is negative
    assert credit.proration and charge.proration and credit.amount.currency.code == currency
    assert -credit.amount.amount <= round_amount(old_full, currency)  # never credit more than a full period
    assert charge.amount.amount <= round_amount(new_full, currency)
    exact_difference = (new_full - old_full) * fraction
    assert abs(credit.amount.amount + charge.amount.amount - exact_difference) <= step  # two roundings of ½
    # docs/proration.md: already paid + credit + new charge ≤ a full period of the larger of the two.
    paid = round_amount(old_full, currency)
    larger = max(round_amount(old_full, currency), round_amount(new_full, currency))
    assert paid + credit.amount.amount + charge.amount.amount <= larger


# --- billing periods and anchors ------------------------------------------------------------------------

INTERVALS = st.sampled_from(
    [("month", 1), ("month", 3), ("month", 6), ("year", 1), ("week", 1), ("week", 2), ("day", 7)]
)


@PROPERTY
@given(
    anchor=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2060, 12, 31)),
    cycle=INTERVALS,
    first=st.integers(min_value=-30, max_value=30),
    periods=st.integers(min_value=1, max_value=40),
)
def test_periods_are_contiguous_strictly_increasing_and_cover_every_day_once(
    anchor: dt.date, cycle: tuple[str, int], first: int, periods: int
):
    interval, count = cycle
    boundaries = [add_interval(anchor, interval, count, n) for n in range(first, first + periods + 1)]
    assert all(a < b for a, b in itertools.pairwise(boundaries))
    for start, end in itertools.pairwise(boundaries):
        assert period_containing(anchor, interval, count, start) == (start, end)
        assert period_containing(anchor, interval, count, end - dt.timedelta(days=1)) == (start, end)
        assert boundary_on_or_before(anchor, interval, count, end - dt.timedelta(days=1)) == start
        assert boundary_after(anchor, interval, count, start) == end
    # [start, end) periods: the days they cover add up to the whole range, no gap, no overlap.
    total_days = sum((b - a).days for a, b in itertools.pairwise(boundaries))
    assert total_days == (boundaries[-1] - boundaries[0]).days


@PROPERTY
@given(
    anchor=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2060, 12, 31)),
    count=st.sampled_from([1, 2, 3, 12]),
    n=st.integers(min_value=-60, max_value=60),
)
def test_month_anchors_clamp_to_month_end_and_come_back_without_drift(anchor: dt.date, count: int, n: int):
    boundary = add_interval(anchor, "month", count, n)
    last_day = calendar.monthrange(boundary.year, boundary.month)[1]
    assert boundary.day == min(anchor.day, last_day)  # clamped only where the month is shorter
    months = (boundary.year - anchor.year) * 12 + boundary.month - anchor.month
    assert months == count * n
    # The next boundary in a month long enough is the anchor's day again (computed from the anchor, not from
    # the clamped date: no drift to the 28th).
    for later in range(n + 1, n + 13):
        following = add_interval(anchor, "month", count, later)
        if calendar.monthrange(following.year, following.month)[1] >= anchor.day:
            assert following.day == anchor.day
            break


@PROPERTY
@given(year=st.integers(min_value=1904, max_value=2096), n=st.integers(min_value=-8, max_value=8))
def test_yearly_anchor_on_feb_29_is_feb_28_in_common_years_and_feb_29_in_leap_years(year: int, n: int):
    anchor = dt.date(year - year % 4, 2, 29) if calendar.isleap(year - year % 4) else dt.date(2024, 2, 29)
    boundary = add_interval(anchor, "year", 1, n)
    assert boundary.month == 2
    assert boundary.day == (29 if calendar.isleap(boundary.year) else 28)
    assert boundary.year == anchor.year + n


@PROPERTY
@given(
    anchor=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2060, 12, 31)),
    cycle=INTERVALS,
    day=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2070, 12, 31)),
)
def test_every_day_lies_in_exactly_one_period(anchor: dt.date, cycle: tuple[str, int], day: dt.date):
    interval, count = cycle
    start, end = period_containing(anchor, interval, count, day)
    assert start <= day < end
    assert period_containing(anchor, interval, count, end) == (end, boundary_after(anchor, interval, count, end))
    assert boundary_after(anchor, interval, count, start - dt.timedelta(days=1)) == start  # the one before ends here
