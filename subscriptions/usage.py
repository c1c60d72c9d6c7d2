"""The one place usage becomes a billed quantity: ``usage_totals`` aggregates usage events in SQL, per span of
usage dates, with the item's billable metric (sum, count, max, unique count of a property, latest; optional
property filters). The billing run, the upcoming-invoice preview, the late-usage adjustments and the "current
usage" screens all read it (docs/decisions/usage-events.md).

A span is the events of one item whose usage date is in ``[usage_from, usage_to)`` and whose billing date is in
``[billed_from, billed_to)``. The billing date is when the event became billable: its usage date, or for a late
event (its period was invoiced already) the first open date after it. So the usage window ``[S, E)`` of an
invoice is the span ``usage [S, E), billed [S, E)``; what an earlier invoice billed for a period ``P`` is
``usage P, billed before S``; and the late events the window picked up are reported by the same query
(``late_from``/``late_to``: events billed in ``[S, E)`` with a usage date before ``S``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection

from subscriptions.models import Aggregation, BillableMetric


@dataclass(frozen=True)
class UsageSpan:
    item_id: int
    usage_from: dt.date
    usage_to: dt.date  # exclusive
    billed_from: dt.date
    billed_to: dt.date  # exclusive


@dataclass(frozen=True)
class UsageTotal:
    quantity: Decimal  # the metric's aggregate of the span's events
    events: int  # how many events the span holds (after the metric's filters)
    late_from: dt.date | None = None  # earliest usage date of late events billed in the span's billing range
    late_to: dt.date | None = None  # latest such usage date


def _property(alias: str, params: list[Any], name: str) -> str:
    """SQL text of an event property (``properties ->> name``), for PostgreSQL and the SQLite demo."""
    if connection.vendor == "postgresql":
        params.append(name)
        return f"({alias}.properties ->> %s)"
    params.append(f'$."{name}"')
    return f"CAST(json_extract({alias}.properties, %s) AS TEXT)"


def _filters(alias: str, params: list[Any], metric: BillableMetric | None) -> str:
    sql = ""
    for name, values in sorted((metric.filters if metric is not None else {}).items()):
        column = _property(alias, params, name)
        params.extend(str(value) for value in values)
        sql += f" AND {column} IN ({', '.join(['%s'] * len(values))})"
    return sql


def _aggregate(metric: BillableMetric | None, params: list[Any]) -> str:
    on_time = "e.usage_date >= w.uf"
    aggregation = metric.aggregation if metric is not None else Aggregation.SUM
    if aggregation == Aggregation.SUM:
        return f"SUM(CASE WHEN {on_time} THEN e.value END)"
    if aggregation == Aggregation.MAX:
        return f"MAX(CASE WHEN {on_time} THEN e.value END)"
    if aggregation == Aggregation.COUNT:
        return f"COUNT(CASE WHEN {on_time} THEN 1 END)"
    assert metric is not None
    if aggregation == Aggregation.UNIQUE_COUNT:
        return f"COUNT(DISTINCT CASE WHEN {on_time} THEN {_property('e', params, metric.field_name)} END)"
    # latest: the value of the span's last event by timestamp (ties: the last stored)
    subquery_filters = _filters("l", params, metric)
    return (
        # Only placeholders and fixed SQL are joined here; property names and values are parameters.
        "(SELECT l.value FROM subscriptions_usageevent l WHERE l.subscription_item_id = w.item_id"  # noqa: S608
        " AND l.billing_date >= w.bf AND l.billing_date < w.bt AND l.usage_date >= w.uf AND l.usage_date < w.ut"
        f"{subquery_filters} ORDER BY l.timestamp DESC, l.id DESC LIMIT 1)"
    )


def usage_totals(
    *, spans: Sequence[UsageSpan], metrics: Mapping[int, BillableMetric | None]
) -> dict[UsageSpan, UsageTotal]:
    """The aggregate of each span whose billing range holds events, in ONE query whatever the number of spans
    (``metrics`` maps each span's item to its price's metric; None aggregates the sum of the values). A span
    without any event is missing from the answer."""
    spans = list(dict.fromkeys(spans))
    if not spans:
        return {}
    params: list[Any] = []
    groups: dict[int | None, list[int]] = {}
    for key, span in enumerate(spans):
        metric = metrics[span.item_id]
        groups.setdefault(metric.pk if metric is not None else None, []).append(key)
    # PostgreSQL: the spans as six arrays (``unnest``), a handful of parameters whatever their number — a VALUES
    # row of six placeholders per span costs the driver more than the query for tens of thousands of spans.
    arrays = connection.vendor == "postgresql"
    if arrays:
        windows = "SELECT * FROM unnest(%s::int[], %s::bigint[], %s::date[], %s::date[], %s::date[], %s::date[])"
        params.extend(
            _array(column)
            for column in (
                range(len(spans)),
                (span.item_id for span in spans),
                (span.usage_from for span in spans),
                (span.usage_to for span in spans),
                (span.billed_from for span in spans),
                (span.billed_to for span in spans),
            )
        )
    else:
        windows = "VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(spans))
        for key, span in enumerate(spans):
            params.extend([key, span.item_id, span.usage_from, span.usage_to, span.billed_from, span.billed_to])
    by_pk = {metric.pk: metric for metric in metrics.values() if metric is not None}
    selects = []
    for metric_pk, keys in groups.items():
        metric = by_pk.get(metric_pk) if metric_pk is not None else None
        aggregate = _aggregate(metric, params)
        filters = _filters("e", params, metric)
        if len(groups) == 1:
            in_group = ""
        elif arrays:
            in_group = " WHERE w.k = ANY(%s::int[])"
            params.append(_array(keys))
        else:
            in_group = f" WHERE w.k IN ({', '.join(['%s'] * len(keys))})"
            params.extend(keys)
        selects.append(
            f"SELECT w.k, {aggregate}, COUNT(CASE WHEN e.usage_date >= w.uf THEN 1 END),"  # noqa: S608
            " MIN(CASE WHEN e.usage_date < w.uf THEN e.usage_date END),"
            " MAX(CASE WHEN e.usage_date < w.uf THEN e.usage_date END)"
            " FROM w JOIN subscriptions_usageevent e ON e.subscription_item_id = w.item_id"
            " AND e.billing_date >= w.bf AND e.billing_date < w.bt AND e.usage_date < w.ut"
            f"{filters}{in_group}"
            " GROUP BY w.k, w.item_id, w.uf, w.ut, w.bf, w.bt"
        )
    sql = f"WITH w(k, item_id, uf, ut, bf, bt) AS ({windows}) " + " UNION ALL ".join(selects)
    totals: dict[UsageSpan, UsageTotal] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for key, quantity, events, late_from, late_to in cursor.fetchall():
            totals[spans[key]] = UsageTotal(
                quantity=_as_decimal(quantity),
                events=int(events),
                late_from=_as_date(late_from),
                late_to=_as_date(late_to),
            )
    return totals


def _array(values: Iterable[int | dt.date]) -> str:
    """A PostgreSQL array literal of integers or dates (``{1,2}``, ``{2026-01-01}``), cast in the query: the
    driver passes one string instead of adapting each element."""
    return "{" + ",".join(map(str, values)) + "}"


def _as_decimal(value: Decimal | float | int | None) -> Decimal:
    if value is None:
        return Decimal(0)
    if isinstance(value, float):  # SQLite (the demo) sums numeric columns as floating point
        return Decimal(repr(value)).quantize(Decimal("0.000001"))
    return Decimal(value)


def _as_date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(value)  # SQLite returns the text it stores
