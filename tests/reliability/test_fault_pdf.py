"""PDF rendering that fails (xhtml2pdf crashing, the storage refusing the write): the invoice is finalized all the
same, its PDF shows as "missing" in the admin, ``render_pdfs --missing`` renders it once the fault is gone, and the
invoice e-mail is never sent without its PDF — it waits (retried) and goes out, once, when the PDF can be made
(docs/decisions/delivery.md: attachments are read at send time; a document that cannot be rendered is retried).

The e-mail's send task is run here by hand, one execution per retry, as a worker would run it from the broker
(eager mode would run all retries at once)."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

import pytest
from django.core import mail
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.urls import reverse
from xhtml2pdf import pisa

from invoicing import documents, tasks
from invoicing.models import DocumentPdf, Invoice
from invoicing.services import invoice_finalize
from notifications import sending
from notifications import services as notification_services
from notifications.models import EmailStatus, OutboundEmail
from tests.factories.customers import CustomerFactory
from tests.factories.invoicing import InvoiceFactory, NumberSeriesFactory, TaxRateFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


@pytest.fixture
def draft(settings):
    settings.EMAIL_MAX_ATTEMPTS = 6
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    return InvoiceFactory(customer=CustomerFactory(email="ap@kunde.example"))


@pytest.fixture
def send_tasks(monkeypatch):
    """The send tasks handed to the broker, to be run one execution at a time."""
    enqueued: list[int] = []
    monkeypatch.setattr(notification_services, "_dispatch", enqueued.append)
    return enqueued


def _pdf_filter(admin_client, state: str) -> str:
    response = admin_client.get(reverse("admin:invoicing_invoice_changelist"), {"pdf": state})
    assert response.status_code == 200
    return response.content.decode()


def test_renderer_crash_finalizes_marks_the_pdf_missing_and_the_email_waits_for_it(
    draft, send_tasks, monkeypatch, admin_client, django_capture_on_commit_callbacks
):
    real_render = pisa.pisaDocument
    renders = {"crashed": 0}

    def crashing_renderer(*args, **kwargs):
        renders["crashed"] += 1
        raise ValueError("renderer crashed")

    monkeypatch.setattr(pisa, "pisaDocument", crashing_renderer)

    with django_capture_on_commit_callbacks(execute=True):
        invoice_finalize(invoice=draft, issue_date=ISSUE)

    invoice = Invoice.objects.get(pk=draft.pk)
    assert (invoice.status, invoice.number) == ("open", "INV-2026-000001")  # finalized all the same
    assert not DocumentPdf.objects.exists()  # e-mailed: its PDF comes with the e-mail, which waits in the queue
    assert invoice.number in _pdf_filter(admin_client, "missing")
    assert invoice.number not in _pdf_filter(admin_client, "current")
    [email_id] = send_tasks  # the invoice e-mail was queued and handed to the workers

    # the first try of the e-mail cannot attach the PDF: not sent, back in the queue for a retry
    outcome = sending.outbound_email_send(email_id=email_id)
    assert renders["crashed"] >= 1 and not DocumentPdf.objects.exists()
    assert (outcome.status, outcome.retry, outcome.attempts) == (EmailStatus.QUEUED, True, 1)
    assert "renderer crashed" in OutboundEmail.objects.get(pk=email_id).last_error
    assert mail.outbox == []
    # the periodic render cannot do it either while the renderer is broken — and says so
    assert tasks.render_missing_pdfs() == {"rendered": 0, "failed": 1}

    monkeypatch.setattr(pisa, "pisaDocument", real_render)  # the fault is gone
    call_command("render_pdfs", "--missing")
    pdf = DocumentPdf.objects.get(invoice=invoice)
    assert invoice.number in _pdf_filter(admin_client, "current")
    assert invoice.number not in _pdf_filter(admin_client, "missing")

    # the retry sends the e-mail with exactly the stored PDF, once
    outcome = sending.outbound_email_send(email_id=email_id)
    assert (outcome.status, outcome.retry, outcome.attempts) == (EmailStatus.SENT, False, 2)
    [message] = mail.outbox
    [(filename, content, mimetype)] = message.attachments
    assert (filename, mimetype) == (f"{invoice.number}.pdf", "application/pdf")
    assert hashlib.sha256(content).hexdigest() == pdf.sha256
    assert sending.outbound_email_send(email_id=email_id).skipped  # a late duplicate task sends nothing
    assert len(mail.outbox) == 1


def test_storage_refusing_the_write_finalizes_and_render_pdfs_missing_renders_it_later(
    draft, send_tasks, monkeypatch, admin_client, django_capture_on_commit_callbacks
):
    real_save = FileSystemStorage.save

    def disk_full(self, name, content, max_length=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "save", disk_full)

    with django_capture_on_commit_callbacks(execute=True):
        invoice_finalize(invoice=draft, issue_date=ISSUE)

    invoice = Invoice.objects.get(pk=draft.pk)
    assert invoice.status == "open" and invoice.number == "INV-2026-000001"
    assert not DocumentPdf.objects.exists()
    assert invoice.number in _pdf_filter(admin_client, "missing")
    [email_id] = send_tasks
    outcome = sending.outbound_email_send(email_id=email_id)
    assert outcome.retry and "No space left on device" in OutboundEmail.objects.get(pk=email_id).last_error
    assert mail.outbox == []
    failed = documents.pdfs_render(only_missing=True).failed
    assert failed == [f"invoice {invoice.pk}: [Errno 28] No space left on device"]

    monkeypatch.setattr(FileSystemStorage, "save", real_save)
    assert documents.pdfs_render(only_missing=True).rendered == 1
    assert invoice.number in _pdf_filter(admin_client, "current")
    assert documents.pdfs_render(only_missing=True).rendered == 0  # nothing left to do
    assert sending.outbound_email_send(email_id=email_id).status == EmailStatus.SENT
    [message] = mail.outbox
    assert [name for name, _content, _type in message.attachments] == [f"{invoice.number}.pdf"]
