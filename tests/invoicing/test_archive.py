"""The archive: an issued document's PDF is rendered once, stored with its SHA-256 and never rewritten (GoBD,
§14b UStG); a later rendering is a new version beside it; ``verify_archive`` names every broken file."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from pypdf import PdfReader

from core.errors import InvalidInput
from invoicing import documents
from invoicing.models import DocumentPdf, DocumentPdfVersion, InvoiceStatus
from invoicing.services import credit_note_issue, invoice_apply_payment, invoice_void
from reporting.integrity import integrity_verify
from tests.factories.invoicing import InvoiceFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


def _stored(pdf: DocumentPdf) -> bytes:
    with default_storage.open(pdf.file.name, "rb") as handle:
        return handle.read()


def _text(content: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages).split())


@pytest.fixture
def issued(series, vat_de):
    return InvoiceFactory(finalized=ISSUE, lines=[{"description": "Consulting", "unit_amount": D("500.00")}])


def _unchanged(invoice, original, original_bytes):
    call_command("render_pdfs", stdout=io.StringIO())  # even "render everything" leaves the archive alone
    documents.invoice_pdf_store(invoice_id=invoice.pk)
    [pdf] = DocumentPdf.objects.filter(invoice=invoice)
    assert (pdf.pk, pdf.file.name, pdf.sha256, pdf.size) == (
        original.pk,
        original.file.name,
        original.sha256,
        original.size,
    )
    assert _stored(pdf) == original_bytes
    # what the customer and staff download is that very file; the status is shown beside it, never in it
    name, downloaded = documents.invoice_pdf_bytes(invoice_id=invoice.pk)
    assert downloaded == original_bytes and name == f"{invoice.number}.pdf"
    text = _text(downloaded).lower()
    assert "void" not in text and "is paid" not in text and "amount paid" not in text


def test_the_pdf_bytes_and_hash_stay_the_same_after_payment_credit_and_void(issued, admin_client):
    original = documents.invoice_pdf_store(invoice_id=issued.pk)
    original_bytes = _stored(original)
    assert hashlib.sha256(original_bytes).hexdigest() == original.sha256
    invoice_apply_payment(invoice=issued, amount=D("100.00"))
    credit_note_issue(invoice=issued, reason="Goodwill", amount=D("59.50"))
    invoice_apply_payment(invoice=issued, amount=D("435.50"))
    issued.refresh_from_db()
    assert issued.status == InvoiceStatus.PAID
    _unchanged(issued, original, original_bytes)

    voided = InvoiceFactory(finalized=ISSUE)
    original = documents.invoice_pdf_store(invoice_id=voided.pk)
    original_bytes = _stored(original)
    invoice_void(invoice=voided, reason="Issued to the wrong company")
    voided.refresh_from_db()
    assert voided.status == InvoiceStatus.VOID
    _unchanged(voided, original, original_bytes)
    page = admin_client.get(reverse("admin:invoicing_invoice_change", args=[voided.pk])).content.decode()
    assert "status now: <strong>Void</strong>" in page


def test_a_new_version_after_a_template_fix_keeps_the_original(issued, admin_client, settings, tmp_path):
    original = documents.invoice_pdf_store(invoice_id=issued.pk)
    original_bytes = _stored(original)
    # the fix: a template that prints a line the old one did not
    fixed = tmp_path / "templates" / "invoicing" / "pdf"
    fixed.mkdir(parents=True)
    source = (settings.BASE_DIR / "templates" / "invoicing" / "pdf" / "document.html").read_text()
    (fixed / "document.html").write_text(source.replace("<body>", "<body><p>Corrected layout 2026</p>", 1))
    settings.TEMPLATES = [
        {**settings.TEMPLATES[0], "DIRS": [tmp_path / "templates", *settings.TEMPLATES[0]["DIRS"]]},
        *settings.TEMPLATES[1:],
    ]

    admin = User.objects.get(username="admin")
    changelist = reverse("admin:invoicing_invoice_changelist")
    asked = admin_client.post(
        changelist, {"action": "render_new_pdf_version_selected", "_selected_action": [issued.pk]}
    )
    assert asked.status_code == 200 and "Reason (archived with the version)" in asked.content.decode()
    done = admin_client.post(
        changelist,
        {
            "action": "render_new_pdf_version_selected",
            "_selected_action": [issued.pk],
            "apply": "1",
            "reason": "Template fix: heading",
        },
        follow=True,
    )
    assert "Rendered a new PDF version of 1 invoice(s)" in done.content.decode()

    version = DocumentPdfVersion.objects.get(original=original)
    assert (version.version, version.reason, version.rendered_by) == (2, "Template fix: heading", admin)
    assert version.file.name != original.file.name and version.sha256 != original.sha256
    assert "Corrected layout 2026" in _text(_stored(version))  # type: ignore[arg-type]
    original.refresh_from_db()
    assert _stored(original) == original_bytes and hashlib.sha256(original_bytes).hexdigest() == original.sha256

    newest = admin_client.get(reverse("admin:invoicing_invoice_pdf", args=[issued.pk]))
    first = admin_client.get(reverse("admin:invoicing_invoice_pdf", args=[issued.pk]), {"version": 1})
    assert "Corrected layout 2026" in _text(newest.content)
    assert first.content == original_bytes
    page = admin_client.get(reverse("admin:invoicing_invoice_change", args=[issued.pk])).content.decode()
    assert "original" in page and "version 2" in page and "Template fix: heading" in page


def test_a_new_version_needs_a_reason(issued):
    with pytest.raises(InvalidInput) as refused:
        documents.document_pdf_render_version(invoice_id=issued.pk, reason="  ")
    assert refused.value.field == "reason"
    assert not DocumentPdfVersion.objects.exists()


def test_verify_archive_names_a_tampered_file_and_a_missing_one(issued, series, vat_de):
    intact = documents.invoice_pdf_store(invoice_id=InvoiceFactory(finalized=ISSUE).pk)
    tampered = documents.invoice_pdf_store(invoice_id=issued.pk)
    version = documents.document_pdf_render_version(invoice_id=issued.pk, reason="Template fix")
    out = io.StringIO()
    call_command("verify_archive", stdout=out)
    assert "3 file(s) checked, 0 broken" in out.getvalue()

    content = _stored(tampered).replace(b"500", b"50O", 1)
    default_storage.delete(tampered.file.name)
    default_storage.save(tampered.file.name, ContentFile(content))
    default_storage.delete(version.file.name)

    out = io.StringIO()
    with pytest.raises(CommandError) as failed:
        call_command("verify_archive", stdout=out)
    assert failed.value.returncode == 1
    report = out.getvalue()
    assert f"DocumentPdf {tampered.pk}: the archived file {tampered.file.name} changed" in report
    assert f"DocumentPdfVersion {version.pk}: the archived file {version.file.name} cannot be read" in report
    assert intact.file.name not in report and "3 file(s) checked, 2 broken" in report
    # the integrity check reads the same verification
    problems = integrity_verify(checks=["pdfs"]).problems or []
    assert {(p.model, p.id) for p in problems} == {("DocumentPdf", tampered.pk), ("DocumentPdfVersion", version.pk)}


def test_a_credit_notes_pdf_gets_a_new_version_from_its_page_and_auditors_cannot(issued, admin_client):
    from django.test import Client

    from billing_project.staff_groups import AUDITOR
    from tests.factories.customers import StaffUserFactory

    credit_note = credit_note_issue(invoice=issued, reason="Goodwill", amount=D("59.50"))
    original = documents.credit_note_pdf_store(credit_note_id=credit_note.pk)
    url = reverse("admin:invoicing_creditnote_pdf_new_version", args=[credit_note.pk])
    auditor = Client()
    auditor.force_login(StaffUserFactory(group=AUDITOR))
    assert auditor.post(url, {"reason": "Template fix"}).status_code == 403

    asked = admin_client.get(url)
    assert asked.status_code == 200 and credit_note.number in asked.content.decode()
    done = admin_client.post(url, {"reason": "Template fix: credit note title"}, follow=True)
    assert "Rendered version 2" in done.content.decode()
    version = DocumentPdfVersion.objects.get(original=original)
    assert version.reason == "Template fix: credit note title"
    page = admin_client.get(reverse("admin:invoicing_creditnote_change", args=[credit_note.pk])).content.decode()
    assert "original" in page and "version 2" in page
    first = admin_client.get(reverse("admin:invoicing_creditnote_pdf", args=[credit_note.pk]), {"version": 1})
    assert first.content == _stored(original)
