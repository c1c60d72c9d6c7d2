"""Celery tasks of the domain events: thin — call the dispatcher (docs/STYLE.md)."""

from __future__ import annotations

from celery import shared_task

from core import events


@shared_task(name="core.process_event_batch", acks_late=True)
def process_event_batch(event_ids: list[int]) -> int:
    """Dispatch the events of one billing-run chunk after it committed. A redelivered task repeats nothing: a
    handler that has run is recorded, and a claimed or processed event is left alone."""
    return events.events_process(event_ids)


@shared_task(name="core.process_events", acks_late=True)
def process_events(limit: int = 500) -> dict[str, int]:
    """The periodic sweep (what ``manage.py process_events`` does): events whose handlers did not all run."""
    return events.events_sweep(limit=limit).as_dict()
