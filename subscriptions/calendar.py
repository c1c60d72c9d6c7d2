"""Billing-cycle arithmetic (docs/DESIGN.md, "Billing rules").

Every boundary is computed from the anchor — ``anchor + n × (count × interval)`` — never from the previous
boundary, so a month-anchored cycle on the 31st clamps to the last day of shorter months and comes back to the
31st (Jan 31, Feb 28/29, Mar 31, Apr 30) instead of drifting to the 28th. Yearly on Feb 29 gives Feb 28 in common
years and Feb 29 again in leap years. ``n`` may be negative (boundaries before the anchor).
"""

from __future__ import annotations

import calendar
import datetime as dt

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def add_months(anchor: dt.date, months: int) -> dt.date:
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month = divmod(index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(anchor.day, last_day))


def add_interval(anchor: dt.date, interval: str, count: int, n: int) -> dt.date:
    """The n-th boundary of a cycle anchored on ``anchor`` (n=0 is the anchor itself)."""
    if count < 1:
        raise ValueError("interval count must be at least 1")
    if interval == "day":
        return anchor + dt.timedelta(days=count * n)
    if interval == "week":
        return anchor + dt.timedelta(weeks=count * n)
    if interval == "month":
        return add_months(anchor, count * n)
    if interval == "year":
        return add_months(anchor, 12 * count * n)
    raise ValueError(f"unknown interval '{interval}'")


def _index_at_or_before(anchor: dt.date, interval: str, count: int, day: dt.date) -> int:
    """The largest n whose boundary is on or before ``day``."""
    if interval in ("day", "week"):
        step = count * (7 if interval == "week" else 1)
        return (day - anchor).days // step
    months_per_step = count * (12 if interval == "year" else 1)
    months = (day.year - anchor.year) * 12 + (day.month - anchor.month)
    n = months // months_per_step
    # Clamping can put the estimate one step off either way; settle it exactly.
    while add_interval(anchor, interval, count, n) > day:
        n -= 1
    while add_interval(anchor, interval, count, n + 1) <= day:
        n += 1
    return n


def boundary_on_or_before(anchor: dt.date, interval: str, count: int, day: dt.date) -> dt.date:
    return add_interval(anchor, interval, count, _index_at_or_before(anchor, interval, count, day))


def boundary_after(anchor: dt.date, interval: str, count: int, day: dt.date) -> dt.date:
    """The first boundary strictly after ``day``: the end of the period that contains ``day``."""
    return add_interval(anchor, interval, count, _index_at_or_before(anchor, interval, count, day) + 1)


def period_containing(anchor: dt.date, interval: str, count: int, day: dt.date) -> tuple[dt.date, dt.date]:
    n = _index_at_or_before(anchor, interval, count, day)
    return add_interval(anchor, interval, count, n), add_interval(anchor, interval, count, n + 1)


def format_day(day: dt.date) -> str:
    """'14 Mar 2026' — fixed English month abbreviations, whatever the process locale."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"
