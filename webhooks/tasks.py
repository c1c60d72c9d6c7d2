"""Celery tasks of the webhooks app: thin — call one service (docs/STYLE.md)."""

from __future__ import annotations

from celery import shared_task

from webhooks.services import deliveries_send, deliveries_send_due


@shared_task(name="webhooks.send_webhooks", acks_late=True)
def send_webhooks(delivery_ids: list[int]) -> dict[str, int]:
    """First attempts of the deliveries of one event (each claimed, so a task that runs twice sends once)."""
    return deliveries_send(delivery_ids).as_dict()


@shared_task(name="webhooks.send_due", acks_late=True)
def send_due() -> dict[str, int]:
    """Retries whose time has come, and first attempts whose task was lost (what `manage.py send_webhooks` does)."""
    return deliveries_send_due().as_dict()
