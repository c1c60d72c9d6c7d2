"""Celery task of dunning: thin — parse, call one service (docs/STYLE.md). The task keeps the name it had before
dunning left invoicing, so the beat entries staff may have edited keep working."""

from __future__ import annotations

from celery import shared_task

from core.asof import parse_as_of
from dunning.services import send_reminders as dunning_run


@shared_task(name="invoicing.send_reminders", acks_late=True)
def send_reminders(as_of: str | None = None) -> dict[str, object]:
    """The daily dunning run. "Today" is the date in BILLING_TIMEZONE (not UTC, not the worker's zone), so a
    run shortly after midnight or on a daylight-saving day chases the right day; runs are idempotent."""
    result = dunning_run(as_of=parse_as_of(as_of, option="as_of"))
    summary = result.as_dict()
    summary.pop("steps")
    return summary
