"""Celery task of accounting: thin, call one service (docs/STYLE.md)."""

from __future__ import annotations

from celery import shared_task

from accounting.rates import ecb_load


@shared_task(name="accounting.load_exchange_rates", acks_late=True, autoretry_for=(OSError,), max_retries=3)
def load_exchange_rates() -> int:
    """The daily job "Exchange rates": the ECB file of the day, stored (a repeat replaces the same rows)."""
    return ecb_load()
