"""Bulk inserts through PostgreSQL's COPY, for the billing run's hot path.

``bulk_create`` spends most of a 1,000-invoice chunk preparing values one by one and quoting them into the
statement; COPY streams rows with psycopg's C dumpers instead. Values are taken as the model instances hold
them (Decimal, date, str, bool, dict for JSON), so callers round and validate before, as everywhere else.
Other databases (the SQLite demo) fall back to ``bulk_create``. Each COPY is recorded in Django's query log
so query-count tests stay honest. COPY bypasses Django's execute wrappers, through which django-pghistory hands
the audit actor to PostgreSQL, so the actor is set for the transaction first (``audit_context_apply``): the audit
triggers fire on COPY like on any insert.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.db import connection, models
from django.utils import timezone
from psycopg.types.json import Jsonb

from core.audit import audit_context_apply


def _columns(model: type[models.Model], *, with_pk: bool) -> list[models.Field[Any, Any]]:
    return [field for field in model._meta.concrete_fields if with_pk or not field.primary_key]


def _log(sql: str, started: float) -> None:
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})


def allocate_ids(model: type[models.Model], count: int) -> list[int]:
    """Take ``count`` primary keys from the model's sequence in one statement (gaps are fine for ids)."""
    if count == 0:
        return []
    table = model._meta.db_table
    pk_column = model._meta.pk.column
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)", [table, pk_column, count]
        )
        return [row[0] for row in cursor.fetchall()]


def copy_insert(model: type[models.Model], objs: Sequence[models.Model], *, assign_ids: bool = False) -> None:
    """Insert ``objs`` (unsaved instances) with COPY; ``assign_ids`` gives each a primary key first."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs)  # type: ignore[arg-type]
        return
    if assign_ids:
        for obj, pk in zip(objs, allocate_ids(model, len(objs)), strict=True):
            obj.pk = pk
    with_pk = assign_ids or objs[0].pk is not None
    fields = _columns(model, with_pk=with_pk)
    now = timezone.now()
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for obj in objs:
                if getattr(obj, field.attname) is None or getattr(field, "auto_now", False):
                    setattr(obj, field.attname, now)
    json_fields = {field.attname for field in fields if isinstance(field, models.JSONField)}
    attnames = [field.attname for field in fields]
    column_list = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({column_list}) FROM STDIN"
    started = time.monotonic()
    with connection.cursor() as cursor:
        audit_context_apply(cursor)
        raw = cursor.cursor
        with raw.copy(sql) as copy:
            for obj in objs:
                copy.write_row(
                    [Jsonb(getattr(obj, name)) if name in json_fields else getattr(obj, name) for name in attnames]
                )
    _log(sql, started)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def copy_rows(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """COPY plain tuples into ``fields`` (attnames) of ``model``: for rows nobody needs as instances."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create([model(**dict(zip(fields, row, strict=True))) for row in rows])
        return
    column_of = {field.attname: field.column for field in model._meta.concrete_fields}
    columns = ", ".join(connection.ops.quote_name(column_of[name]) for name in fields)
    sql = f"COPY {connection.ops.quote_name(model._meta.db_table)} ({columns}) FROM STDIN"
    started = time.monotonic()
    with connection.cursor() as cursor:
        audit_context_apply(cursor)
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)
    _log(sql, started)
