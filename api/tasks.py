"""Celery tasks of the api app: thin, call one service (docs/STYLE.md)."""

from __future__ import annotations

from celery import shared_task

from api.idempotency import idempotency_records_purge


@shared_task(name="api.purge_idempotency_keys", acks_late=True)
def purge_idempotency_keys() -> int:
    """The periodic job "API idempotency keys" (what ``manage.py purge_idempotency_keys`` does)."""
    return idempotency_records_purge()
