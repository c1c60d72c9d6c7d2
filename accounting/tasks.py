"""Celery tasks of accounting: thin, call one service (docs/STYLE.md)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from accounting.ledger.models import LedgerConnection
from accounting.ledger.sync import ledger_sync
from accounting.rates import ecb_load
from core.asof import parse_date_option


@shared_task(name="accounting.load_exchange_rates", acks_late=True, autoretry_for=(OSError,), max_retries=3)
def load_exchange_rates() -> int:
    """The daily job "Exchange rates": the ECB file of the day, stored (a repeat replaces the same rows)."""
    return ecb_load()


@shared_task(name="accounting.sync_ledger", acks_late=True)
def sync_ledger(provider: str | None = None, since: str | None = None) -> list[str]:
    """The job "Ledger sync" (LEDGER_SYNC_ENABLED): push new documents to every active ledger connection. A run
    stopped by a rate limit (HTTP 429) or an unavailable provider continues in a task of its own after the
    provider's Retry-After (a countdown, never a sleep); a run given a provider is such a continuation, or a
    command's, and runs whatever the setting."""
    if provider is None and not settings.LEDGER_SYNC_ENABLED:
        return []
    connections = LedgerConnection.objects.filter(is_active=True).order_by("provider")
    if provider is not None:
        connections = connections.filter(provider=provider)
    summaries = []
    for connection in connections:
        outcome = ledger_sync(connection=connection, since=parse_date_option(since, option="since") if since else None)
        if outcome.retry_after:
            sync_ledger.apply_async(
                kwargs={"provider": connection.provider, "since": since}, countdown=outcome.retry_after
            )
        summaries.append(f"{connection.provider}: {outcome.summary}")
    return summaries
