"""Celery tasks of invoicing's documents and delivery: thin — load by id, call one service (docs/STYLE.md)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from invoicing import documents
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


# --- periodic jobs (schedules: billing_project/schedules.py) --------------------------------------------


@shared_task(name="invoicing.render_missing_pdfs", acks_late=True)
def render_missing_pdfs() -> dict[str, int]:
    """Render the PDFs that are missing (what `manage.py render_pdfs --missing` does)."""
    outcome = documents.pdfs_render(only_missing=True)
    return {"rendered": outcome.rendered, "failed": len(outcome.failed)}
