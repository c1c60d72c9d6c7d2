"""Server-side SVG bar charts for the dashboard and the reports: no JavaScript, no external assets.

Each chart is an ``<svg role="img">`` with a ``<title>`` and, per bar, its label and amount as text, so a screen
reader (and a printout) gets the numbers, not only the shapes. Every text goes through ``format_html``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

LABEL_WIDTH = 90
BAR_AREA = 200
VALUE_WIDTH = 110
ROW_HEIGHT = 17
BAR_HEIGHT = 12


@dataclass(frozen=True)
class Bar:
    label: str
    amount: Decimal
    display: str  # the amount as printed next to the bar, e.g. "1,234.00 EUR"


def _bar_width(amount: Decimal, largest: Decimal) -> int:
    if largest <= 0 or amount <= 0:
        return 0
    width = (amount / largest * BAR_AREA).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return max(int(width), 1)


def bar_chart(*, title: str, bars: Sequence[Bar], label_width: int = LABEL_WIDTH) -> SafeString:
    """A horizontal bar chart: one row per bar (label · bar · amount), bars scaled to the largest amount."""
    largest = max((bar.amount for bar in bars), default=Decimal(0))
    height = ROW_HEIGHT * len(bars) + 4
    width = label_width + BAR_AREA + VALUE_WIDTH
    rows = format_html_join(
        "",
        '<g><text x="{}" y="{}" text-anchor="end" class="chart-label">{}</text>'
        '<rect x="{}" y="{}" width="{}" height="{}" class="chart-bar"><title>{}: {}</title></rect>'
        '<text x="{}" y="{}" class="chart-value">{}</text></g>',
        (
            (
                label_width - 6,
                index * ROW_HEIGHT + 13,
                bar.label,
                label_width,
                index * ROW_HEIGHT + 3,
                _bar_width(bar.amount, largest),
                BAR_HEIGHT,
                bar.label,
                bar.display,
                label_width + _bar_width(bar.amount, largest) + 6,
                index * ROW_HEIGHT + 13,
                bar.display,
            )
            for index, bar in enumerate(bars)
        ),
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="bar-chart" role="img" width="{}" height="{}" '
        'viewBox="0 0 {} {}"><title>{}</title>{}</svg>',
        width,
        height,
        width,
        height,
        title,
        rows,
    )
