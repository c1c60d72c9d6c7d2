"""The one lock order of the product: row locks are always taken customer → subscription → invoice → payment,
and within one kind by primary key (``order_by("pk").select_for_update()``). Two services that lock the same rows
in the same order can only wait for each other, never in a cycle (a deadlock).

``LockOrder`` is the one place that spells the order. Services take their locks through it, one kind after the
other; taking a kind that comes before one already locked raises ``LockOrderViolation`` at once (a programming
error, caught by any test that runs the path) instead of deadlocking under load one day. Callers must be inside
``transaction.atomic``. Models are named by label, so this module imports no app.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Model, QuerySet

LOCK_ORDER: tuple[str, ...] = (
    "customers.Customer",
    "subscriptions.Subscription",
    "invoicing.Invoice",
    "payments.Payment",
)


class LockOrderViolation(RuntimeError):
    pass


class LockOrder:
    """Locks taken in one transaction, in the product's order."""

    def __init__(self) -> None:
        self._rank = -1

    def lock(self, queryset: QuerySet[Any], pks: Iterable[int | None], *, of_self: bool = False) -> list[Any]:
        """Lock the rows of ``queryset`` with these primary keys, by pk, and return them as read under the lock."""
        label = queryset.model._meta.label
        if label not in LOCK_ORDER:
            raise LockOrderViolation(f"{label} has no place in the lock order {LOCK_ORDER}")
        rank = LOCK_ORDER.index(label)
        if rank < self._rank:
            raise LockOrderViolation(f"{label} locked after {LOCK_ORDER[self._rank]}: the order is {LOCK_ORDER}")
        self._rank = rank
        keys = sorted({pk for pk in pks if pk is not None})
        if not keys:
            return []
        locking = queryset.filter(pk__in=keys).order_by("pk")
        return list(locking.select_for_update(of=("self",)) if of_self else locking.select_for_update())


def lock_one(queryset: QuerySet[Any], pk: int | None) -> Model | None:
    """One row of one kind (the common case of a service that locks a single row): ``None`` if it is gone."""
    rows = LockOrder().lock(queryset, [pk])
    return rows[0] if rows else None
