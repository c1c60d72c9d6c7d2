"""Anchor arithmetic: clamping to the month's last day and coming back, from the anchor, never drifting."""

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from subscriptions.calendar import add_interval, boundary_after, boundary_on_or_before, format_day, period_containing

D = dt.date


def test_month_anchored_on_31st_clamps_and_comes_back_over_24_months_with_a_leap_year():
    boundaries = [add_interval(D(2027, 1, 31), "month", 1, n) for n in range(25)]
    assert boundaries == [
        D(2027, 1, 31), D(2027, 2, 28), D(2027, 3, 31), D(2027, 4, 30), D(2027, 5, 31), D(2027, 6, 30),
        D(2027, 7, 31), D(2027, 8, 31), D(2027, 9, 30), D(2027, 10, 31), D(2027, 11, 30), D(2027, 12, 31),
        D(2028, 1, 31), D(2028, 2, 29), D(2028, 3, 31), D(2028, 4, 30), D(2028, 5, 31), D(2028, 6, 30),
        D(2028, 7, 31), D(2028, 8, 31), D(2028, 9, 30), D(2028, 10, 31), D(2028, 11, 30), D(2028, 12, 31),
        D(2029, 1, 31),
    ]  # fmt: skip


def test_yearly_on_feb_29_is_feb_28_in_common_years_and_feb_29_in_leap_years():
    assert [add_interval(D(2024, 2, 29), "year", 1, n) for n in range(5)] == [
        D(2024, 2, 29), D(2025, 2, 28), D(2026, 2, 28), D(2027, 2, 28), D(2028, 2, 29),
    ]  # fmt: skip


def test_every_three_months_follows_the_anchor_not_the_previous_clamped_date():
    assert [add_interval(D(2025, 11, 30), "month", 3, n) for n in range(5)] == [
        D(2025, 11, 30), D(2026, 2, 28), D(2026, 5, 30), D(2026, 8, 30), D(2026, 11, 30),
    ]  # fmt: skip


def test_days_and_weeks():
    assert add_interval(D(2026, 2, 25), "day", 10, 1) == D(2026, 3, 7)
    assert add_interval(D(2026, 12, 28), "week", 2, 1) == D(2027, 1, 11)


def test_period_containing_a_day_of_a_clamped_month():
    anchor = D(2026, 1, 31)
    assert period_containing(anchor, "month", 1, D(2026, 3, 15)) == (D(2026, 2, 28), D(2026, 3, 31))
    assert boundary_after(anchor, "month", 1, D(2026, 2, 28)) == D(2026, 3, 31)
    assert boundary_on_or_before(anchor, "month", 1, D(2026, 2, 27)) == D(2026, 1, 31)
    # Before the anchor: a start earlier than the anchor sits in the period ending on the anchor.
    assert period_containing(D(2026, 4, 1), "month", 1, D(2026, 3, 10)) == (D(2026, 3, 1), D(2026, 4, 1))


def test_format_day_is_locale_independent():
    assert format_day(D(2026, 3, 14)) == "14 Mar 2026"


@given(
    anchor=st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 1, 1)),
    interval=st.sampled_from(["day", "week", "month", "year"]),
    count=st.integers(1, 12),
    n=st.integers(-50, 50),
)
def test_boundaries_are_ordered_and_found_again(anchor, interval, count, n):
    boundary = add_interval(anchor, interval, count, n)
    assert add_interval(anchor, interval, count, n + 1) > boundary
    assert boundary_on_or_before(anchor, interval, count, boundary) == boundary
    assert boundary_after(anchor, interval, count, boundary) == add_interval(anchor, interval, count, n + 1)
    if interval in ("month", "year"):
        assert boundary.day == min(
            anchor.day, (add_interval(boundary.replace(day=1), "month", 1, 1) - dt.timedelta(days=1)).day
        )
