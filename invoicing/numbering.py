"""Gapless document numbers: a counter row locked with SELECT … FOR UPDATE inside the caller's transaction,
plus a unique constraint on the numbers themselves (docs/decisions/numbering.md).

A rollback undoes the increment together with the document that used it, so no number is lost; concurrent
finalizations queue on the counter row. Allocate last in a transaction (after the slow work) to hold the
lock briefly, and allocate a whole chunk at once when issuing many documents.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection, transaction

from invoicing.models import NumberSeries, NumberSeriesCounter

DEFAULT_SERIES: dict[str, dict[str, object]] = {
    NumberSeries.Kind.INVOICE: {
        "code": "invoices",
        "name": "Invoices",
        "prefix": "INV-",
        "format": "{prefix}{year}-{number:06d}",
        "yearly_reset": True,
    },
    NumberSeries.Kind.CREDIT_NOTE: {
        "code": "credit-notes",
        "name": "Credit notes",
        "prefix": "CN-",
        "format": "{prefix}{year}-{number:06d}",
        "yearly_reset": True,
    },
    NumberSeries.Kind.QUOTE: {
        "code": "quotes",
        "name": "Quotes",
        "prefix": "QUO-",
        "format": "{prefix}{year}-{number:06d}",
        "yearly_reset": True,
    },
}


def number_series_default(*, kind: str) -> NumberSeries:
    """The default series of a kind, created on first use (also by the demo seed) so that a fresh database
    can finalize without setup."""
    series = NumberSeries.objects.filter(kind=kind, is_default=True).first()
    if series is not None:
        return series
    defaults = dict(DEFAULT_SERIES[kind])
    code = str(defaults.pop("code"))
    with transaction.atomic():
        series, _ = NumberSeries.objects.get_or_create(
            code=code, defaults={**defaults, "kind": kind, "is_default": True}
        )
    if not series.is_default and not NumberSeries.objects.filter(kind=kind, is_default=True).exists():
        NumberSeries.objects.filter(pk=series.pk).update(is_default=True)
        series.is_default = True
    return series


def number_series_allocate(*, series: NumberSeries, issue_date: dt.date, count: int = 1) -> list[str]:
    """Return ``count`` consecutive numbers of ``series`` for documents issued on ``issue_date``.

    Must run inside the caller's transaction (the one that saves the documents): the counter row stays locked
    until it commits, and a rollback gives the numbers back. One lock and one UPDATE for the whole batch.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("number_series_allocate must run inside the transaction that stores the numbers")
    year = issue_date.year if series.yearly_reset else 0
    last = _counter_advance(series_id=series.pk, year=year, count=count)
    if last is None:
        # First number of this series (or year): create the counter without a race — ON CONFLICT DO NOTHING
        # waits for a concurrent inserter — then take the numbers.
        NumberSeriesCounter.objects.bulk_create(
            [NumberSeriesCounter(series=series, year=year, last_number=0)], ignore_conflicts=True
        )
        last = _counter_advance(series_id=series.pk, year=year, count=count)
        assert last is not None
    first = last - count + 1
    return [series.format_number(year=issue_date.year, number=n) for n in range(first, last + 1)]


def _counter_advance(*, series_id: int, year: int, count: int) -> int | None:
    """One statement: the UPDATE takes the row lock (held until the caller's transaction ends, so concurrent
    issuers queue here) and RETURNING hands back the new last number — no separate SELECT … FOR UPDATE."""
    table = NumberSeriesCounter._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_number = last_number + %s WHERE series_id = %s AND year = %s "  # noqa: S608
            "RETURNING last_number",
            [count, series_id, year],
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def number_series_allocate_for_new_invoices(
    *, series: NumberSeries, issue_date: dt.date, numbers: int, invoice_ids: int
) -> tuple[list[str], list[int]]:
    """``numbers`` consecutive numbers and ``invoice_ids`` fresh invoice primary keys in ONE statement on
    PostgreSQL (the billing run's chunk path writes invoices with COPY and needs their ids before the lines).

    The data-modifying CTE runs exactly once, so the counter moves by ``numbers`` under its row lock exactly as
    in ``number_series_allocate``; ids come from the invoice table's sequence (gaps in ids are harmless).
    Elsewhere (the SQLite demo) the ids list is empty: ``bulk_create`` assigns them."""
    from invoicing.models import Invoice

    if connection.vendor != "postgresql" or invoice_ids == 0:
        allocated = number_series_allocate(series=series, issue_date=issue_date, count=numbers) if numbers else []
        return allocated, []
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("numbers must be allocated inside the transaction that stores them")
    ids_sql = "nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)"
    ids_params: list[Any] = [Invoice._meta.db_table, Invoice._meta.pk.column, invoice_ids]
    if numbers == 0:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {ids_sql}", ids_params)
            return [], [row[0] for row in cursor.fetchall()]
    year = issue_date.year if series.yearly_reset else 0
    table = NumberSeriesCounter._meta.db_table
    sql = (
        f"WITH counter AS (UPDATE {table} SET last_number = last_number + %s "  # noqa: S608
        f"WHERE series_id = %s AND year = %s RETURNING last_number) SELECT (SELECT last_number FROM counter), {ids_sql}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [numbers, series.pk, year, *ids_params])
        rows = cursor.fetchall()
    last = rows[0][0]
    if last is None:  # the first number of this series (or year): create the counter on the plain path
        return number_series_allocate(series=series, issue_date=issue_date, count=numbers), [row[1] for row in rows]
    first = last - numbers + 1
    return [series.format_number(year=issue_date.year, number=n) for n in range(first, last + 1)], [
        row[1] for row in rows
    ]
