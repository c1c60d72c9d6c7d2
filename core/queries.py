"""Query helpers that save round trips on pages that show many small figures."""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models import QuerySet


def counts(**querysets: QuerySet[Any]) -> dict[str, int]:
    """``COUNT(*)`` of each queryset, all in one query (``SELECT (SELECT COUNT(*) FROM (…)), …``). The
    querysets must use the same database. The SQL is Django's own compiled SQL with its parameters."""
    if not querysets:
        return {}
    aliases = {qs.db for qs in querysets.values()}
    if len(aliases) != 1:
        raise ValueError(f"counts() needs querysets of one database, got {sorted(aliases)}")
    alias = aliases.pop()
    parts: list[str] = []
    params: list[Any] = []
    for queryset in querysets.values():
        sql, query_params = queryset.order_by().values("pk").query.get_compiler(using=alias).as_sql()
        parts.append(f"(SELECT COUNT(*) FROM ({sql}) counted)")  # noqa: S608 (Django's compiled SQL; values are parameters)
        params.extend(query_params)
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        row = cursor.fetchone()
    return {name: int(value) for name, value in zip(querysets, row, strict=True)}
