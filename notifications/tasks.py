"""Celery task of the outbox: thin — load by id, call one service (docs/STYLE.md). The task keeps the name it had
before the outbox left invoicing, so messages queued by an older release are still delivered."""

from __future__ import annotations

from celery import shared_task

from notifications.sending import outbound_email_send, retry_countdown
from notifications.sweep import outbox_sweep


@shared_task(bind=True, name="invoicing.send_outbound_email", max_retries=None)
def send_outbound_email(self, email_id: int) -> str:  # type: ignore[no-untyped-def]
    """Send one OutboundEmail; the service decides whether a failure is retried (and caps the attempts)."""
    outcome = outbound_email_send(email_id=email_id)
    while outcome.retry and self.request.is_eager:
        # Eager mode (tests, scripts without a worker) has no queue to wait in: retry at once, still capped by
        # EMAIL_MAX_ATTEMPTS in the service.
        outcome = outbound_email_send(email_id=email_id)
    if outcome.retry:
        raise self.retry(countdown=retry_countdown(outcome.attempts))
    return outcome.status


@shared_task(name="invoicing.sweep_emails", acks_late=True)
def sweep_emails() -> dict[str, int]:
    """Send queued e-mails whose task was lost; mark failed the ones a dead worker left sending (what
    `manage.py sweep_emails` does)."""
    return outbox_sweep().as_dict()
