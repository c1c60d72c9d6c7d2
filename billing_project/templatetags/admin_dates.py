"""``{% light_date_hierarchy cl %}``: the admin's date drill-down without its scans.

Django's ``date_hierarchy`` finds the years, months and days that hold rows with ``SELECT DISTINCT
date_trunc(…)`` over the whole (filtered) table — a full scan on a million invoices, on every list page. This
one asks for the table's first and last date only (``MIN``/``MAX``: two index probes, one query, cached for ten
minutes) and offers every year in between; inside a year every month, inside a month every day. A period
without rows shows an empty list, as any filter would. The filtering itself is Django's (range lookups on the
indexed date)."""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode
from django.core.cache import cache
from django.db.models import Max, Min, Model
from django.utils import formats
from django.utils.text import capfirst
from django.utils.translation import gettext as _

register = template.Library()


def light_date_hierarchy(cl: Any) -> dict[str, Any]:
    field_name = cl.date_hierarchy
    year_field, month_field, day_field = (f"{field_name}__{part}" for part in ("year", "month", "day"))
    year, month, day = (cl.params.get(name) for name in (year_field, month_field, day_field))

    def link(filters: dict[str, object]) -> str:
        return str(cl.get_query_string(filters, [f"{field_name}__"]))

    if year and month and day:
        chosen = dt.date(int(year), int(month), int(day))
        return {
            "show": True,
            "back": {
                "link": link({year_field: year, month_field: month}),
                "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }
    if year and month:
        first = dt.date(int(year), int(month), 1)
        days = calendar.monthrange(first.year, first.month)[1]
        return {
            "show": True,
            "back": {"link": link({year_field: year}), "title": str(year)},
            "choices": [
                {
                    "link": link({year_field: year, month_field: month, day_field: number}),
                    "title": capfirst(formats.date_format(first.replace(day=number), "MONTH_DAY_FORMAT")),
                }
                for number in range(1, days + 1)
            ],
        }
    if year:
        return {
            "show": True,
            "back": {"link": link({}), "title": _("All dates")},
            "choices": [
                {
                    "link": link({year_field: year, month_field: number}),
                    "title": capfirst(formats.date_format(dt.date(int(year), number, 1), "YEAR_MONTH_FORMAT")),
                }
                for number in range(1, 13)
            ],
        }
    span = _date_span(cl.model, field_name)
    if span is None:
        return {"show": False}
    return {
        "show": True,
        "back": None,
        "choices": [
            {"link": link({year_field: str(number)}), "title": str(number)}
            for number in range(span[0].year, span[1].year + 1)
        ],
    }


SPAN_CACHE_SECONDS = 600


def _date_span(model: type[Model], field_name: str) -> tuple[dt.date, dt.date] | None:
    """First and last date of the whole table, cached for ten minutes (no query on most list pages; every
    filter and search shows the same years, and a year without matching rows lists nothing)."""
    key = f"admin-date-span:{model._meta.label_lower}:{field_name}"
    span = cache.get(key)
    if span is None:
        found = model._default_manager.order_by().aggregate(first=Min(field_name), last=Max(field_name))
        if found["first"] is None:
            return None
        span = (found["first"], found["last"])
        cache.set(key, span, SPAN_CACHE_SECONDS)
    return span


@register.tag(name="light_date_hierarchy")
def light_date_hierarchy_tag(parser: template.base.Parser, token: template.base.Token) -> InclusionAdminNode:
    return InclusionAdminNode(
        parser, token, func=light_date_hierarchy, template_name="date_hierarchy.html", takes_context=False
    )
