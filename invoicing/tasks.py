"""Celery tasks of invoicing's documents and delivery: thin — load by id, call one service (docs/STYLE.md)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from core.asof import parse_as_of
from invoicing import delivery, documents, dunning
from invoicing.models import CreditNote, Invoice

logger = logging.getLogger(__name__)

# A render that fails (storage, database) is retried with back-off; one that still fails shows as "missing" in
# the admin and is rendered again by `manage.py render_pdfs --missing`.
_RENDER_RETRY = {
    "autoretry_for": (Exception,),
    "dont_autoretry_for": (Invoice.DoesNotExist, CreditNote.DoesNotExist),
    "retry_backoff": 10,
    "retry_backoff_max": 600,
    "max_retries": settings.PDF_RENDER_MAX_RETRIES,
}


@shared_task(name="invoicing.render_invoice_pdf", **_RENDER_RETRY)
def render_invoice_pdf(invoice_id: int) -> str:
    return documents.invoice_pdf_store(invoice_id=invoice_id).sha256


@shared_task(name="invoicing.render_credit_note_pdf", **_RENDER_RETRY)
def render_credit_note_pdf(credit_note_id: int) -> str:
    return documents.credit_note_pdf_store(credit_note_id=credit_note_id).sha256


@shared_task(bind=True, name="invoicing.send_outbound_email", max_retries=None)
def send_outbound_email(self, email_id: int) -> str:  # type: ignore[no-untyped-def]
    """Send one OutboundEmail; the service decides whether a failure is retried (and caps the attempts)."""
    outcome = delivery.outbound_email_send(email_id=email_id)
    while outcome.retry and self.request.is_eager:
        # Eager mode (tests, scripts without a worker) has no queue to wait in: retry at once, still capped by
        # EMAIL_MAX_ATTEMPTS in the service.
        outcome = delivery.outbound_email_send(email_id=email_id)
    if outcome.retry:
        raise self.retry(countdown=delivery.retry_countdown(outcome.attempts))
    return outcome.status


# --- periodic jobs (schedules: billing_project/schedules.py) --------------------------------------------


@shared_task(name="invoicing.send_reminders", acks_late=True)
def send_reminders(as_of: str | None = None) -> dict[str, object]:
    """The daily dunning run. "Today" is the date in BILLING_TIMEZONE (not UTC, not the worker's zone), so a
    run shortly after midnight or on a daylight-saving day chases the right day; runs are idempotent."""
    result = dunning.send_reminders(as_of=parse_as_of(as_of, option="as_of"))
    summary = result.as_dict()
    summary.pop("steps")
    return summary


@shared_task(name="invoicing.render_missing_pdfs", acks_late=True)
def render_missing_pdfs() -> dict[str, int]:
    """Render the PDFs that are missing or stale (what `manage.py render_pdfs --missing` does)."""
    outcome = documents.pdfs_render(only_missing=True)
    return {"rendered": outcome.rendered, "failed": len(outcome.failed)}


@shared_task(name="invoicing.sweep_emails", acks_late=True)
def sweep_emails() -> dict[str, int]:
    """Queue invoice e-mails whose finalize hook never ran; send queued e-mails whose task was lost
    (what `manage.py sweep_emails` does)."""
    return delivery.emails_sweep().as_dict()
