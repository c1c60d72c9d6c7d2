"""Invoice and credit-note PDFs: content, languages, Unicode font, pages, storage, staleness, safety."""

from __future__ import annotations

import builtins
import datetime as dt
import io
import os
import socket
from decimal import Decimal as D

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse
from pypdf import PdfReader

from core import formatting as fmt
from invoicing import documents
from invoicing.models import DocumentPdf, Invoice, InvoiceLine
from invoicing.services import credit_note_issue, invoice_apply_payment, invoice_finalize
from tests.factories.customers import CustomerFactory
from tests.factories.invoicing import InvoiceFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)
INTERNATIONAL_NAME = "Παπαδόπουλος & Ёлкин Łódź Sp. z o.o."


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def invoice(series, vat_de):
    customer = CustomerFactory(
        name="Ωμέγα",
        legal_name=INTERNATIONAL_NAME,
        address_line1="ul. Piotrkowska 1",
        city="Łódź",
        postal_code="90-001",
        cc_emails="ap@kunde.example",
    )
    return InvoiceFactory(
        customer=customer,
        finalized=ISSUE,
        memo="Paid by the £/¥ desk — çà ő ß, Michał",
        lines=[
            {
                "description": "Pro plan",
                "unit_amount": D("1234.50"),
                "period_start": dt.date(2026, 3, 1),
                "period_end": dt.date(2026, 4, 1),
            },
            {"description": "Extra seats", "quantity": D(3), "unit_amount": D("20.00"), "discount_amount": D("6.00")},
            {"description": "API calls", "quantity": D(1000), "unit_amount": D("0.0125")},
        ],
    )


def test_invoice_pdf_text_holds_number_dates_customer_lines_taxes_and_totals(invoice):
    text = _flat(_text(documents.render_invoice_pdf(invoice=invoice)))
    assert invoice.number in text
    assert "Mar 2, 2026" in text and "Mar 16, 2026" in text  # issue date, due date (14 days)
    assert INTERNATIONAL_NAME in text
    for description in ("Pro plan", "Extra seats", "API calls"):
        assert description in text
    assert "Mar 1, 2026 – Mar 31, 2026" in text  # the line's period, last day inclusive
    assert "Discount -€6.00" in text
    assert "€0.0125" in text
    assert "Subtotal €1,307.00 Discount -€6.00" in text
    assert "VAT 19 % on €1,301.00 €247.20" in text  # tax rounded per line: 234.56 + 10.26 + 2.38
    assert "Total €1,548.20" in text and "Amount due €1,548.20" in text
    assert f"/portal/invoices/{invoice.number}/" in text
    assert "DE89 3704 0044 0532 0130 00" in text
    assert "Page 1 of 1" in text


def test_pdf_embeds_a_unicode_font_and_prints_non_latin_letters(invoice):
    pdf = documents.render_invoice_pdf(invoice=invoice)
    reader = PdfReader(io.BytesIO(pdf))
    fonts = {
        str(font.get_object()["/BaseFont"]) for page in reader.pages for font in page["/Resources"]["/Font"].values()
    }
    # Embedded subsets (the "AAAAAA+" prefix) of the shipped DejaVu faces; ReportLab lists its initial
    # Helvetica in every page's resources, but text drawn in it could not hold ł or Cyrillic.
    assert {"/AAAAAA+DejaVuSans", "/AAAAAA+DejaVuSans-Bold"} <= {font.replace("AAAAAB", "AAAAAA") for font in fonts}
    text = _text(pdf)
    for letters in ("€", "£", "¥", "ł", "ő", "ç", "ß", "Παπαδόπουλος", "Ёлкин"):
        assert letters in text


def test_german_customer_gets_german_document_and_amounts(series, vat_de):
    invoice = InvoiceFactory(
        customer=CustomerFactory(language="de"), finalized=ISSUE, lines=[{"unit_amount": D("1234.50")}]
    )
    text = _flat(_text(documents.render_invoice_pdf(invoice=invoice)))
    assert "Rechnung" in text and "Rechnungsdatum 02.03.2026" in text and "Fällig am 16.03.2026" in text
    assert "Gesamtbetrag 1.469,06 €" in text
    assert "Seite 1 von 1" in text


def test_amounts_follow_language_and_currency_minor_units():
    assert fmt.money(D("1234.5"), "USD", "en") == "$1,234.50"
    assert fmt.money(D("1234.5"), "EUR", "de") == "1.234,50\xa0€"
    assert fmt.money(D("1234"), "JPY", "en") == "¥1,234"
    assert fmt.money(D("1.2345"), "BHD", "en") == "BHD1.235"  # three minor digits, half-up
    assert fmt.unit_price(D("31.000000"), "EUR", "en") == "€31.00"


def test_hundred_line_invoice_breaks_across_pages_with_repeated_header(series, vat_de):
    invoice = InvoiceFactory(
        finalized=ISSUE, lines=[{"description": f"Usage item {n:03d}", "unit_amount": D("1.00")} for n in range(100)]
    )
    reader = PdfReader(io.BytesIO(documents.render_invoice_pdf(invoice=invoice)))
    pages = len(reader.pages)
    assert pages >= 3
    second = _flat(reader.pages[1].extract_text())
    assert f"Page 2 of {pages}" in second
    assert "Description" in second and "Unit price" in second  # header repeated
    text = _text(documents.render_invoice_pdf(invoice=invoice))
    assert all(f"Usage item {n:03d}" in text for n in range(100))


def test_customer_markup_is_escaped_and_nothing_is_fetched_or_read(series, vat_de, monkeypatch):
    hostile = '<img src="http://169.254.169.254/"><img src="/etc/passwd">Evil & Co'
    invoice = InvoiceFactory(customer=CustomerFactory(name=hostile), finalized=ISSUE)
    connects, opened = [], []
    real_open, real_os_open = builtins.open, os.open

    def spy_connect(self, address):
        connects.append(address)
        raise ConnectionRefusedError("no network while rendering")

    def spy_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", spy_connect)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    html = documents.render_invoice_html(invoice=invoice)
    pdf = documents.render_invoice_pdf(invoice=invoice)
    monkeypatch.undo()

    assert "&lt;img src=&quot;http://169.254.169.254/&quot;&gt;" in html
    assert '<img src="http' not in html and '<img src="/etc' not in html
    assert "169.254.169.254" in _text(pdf)  # printed as text, not loaded as an image
    assert connects == []
    assert not any("passwd" in path for path in opened)


def test_raw_image_tags_reaching_the_renderer_are_refused(settings, monkeypatch, tmp_path):
    connects, opened = [], []
    real_open = builtins.open
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connects.append(address))
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: opened.append(str(file)) or real_open(file, *a, **k))
    pdf = documents.html_to_pdf(
        '<html><body><p>x</p><img src="http://169.254.169.254/latest/meta-data/"><img src="/etc/passwd">'
        '<img src="file:///etc/passwd"><img src="/static/../../../../etc/passwd"></body></html>'
    )
    monkeypatch.undo()
    assert pdf.startswith(b"%PDF")
    assert connects == []
    assert not any("passwd" in path for path in opened)


def test_link_callback_resolves_only_static_and_media_files(settings, tmp_path):
    font = documents.link_callback("/static/fonts/DejaVuSans.ttf", "")
    assert font.endswith("static/fonts/DejaVuSans.ttf")
    media = tmp_path / "media"
    (media / "logos").mkdir(parents=True)
    (media / "logos" / "logo.png").write_bytes(b"png")
    settings.MEDIA_ROOT = str(media)
    assert documents.link_callback("/media/logos/logo.png", "") == str((media / "logos" / "logo.png").resolve())
    for refused in (
        "http://169.254.169.254/",
        "https://example.com/logo.png",
        "/etc/passwd",
        "file:///etc/passwd",
        "/media/../../etc/passwd",
        "/static/../../etc/passwd",
        "//evil.example/x.png",
    ):
        assert documents.link_callback(refused, "") == "", refused


def test_render_task_stores_the_pdf_by_number_with_its_hash(invoice):
    from invoicing.tasks import render_invoice_pdf

    render_invoice_pdf.delay(invoice.pk)
    pdf = DocumentPdf.objects.get(invoice=invoice)
    assert pdf.file.name.startswith(f"invoices/2026/{invoice.number}-")
    with default_storage.open(pdf.file.name, "rb") as handle:
        content = handle.read()
    import hashlib

    assert hashlib.sha256(content).hexdigest() == pdf.sha256 and pdf.size == len(content)
    assert documents.invoice_pdf_state(invoice=invoice, pdf=pdf) == documents.PdfState.CURRENT


def test_finalize_renders_the_pdf_after_commit(series, vat_de, django_capture_on_commit_callbacks):
    draft = InvoiceFactory()
    with django_capture_on_commit_callbacks(execute=True):
        invoice_finalize(invoice=draft, issue_date=ISSUE)
    assert DocumentPdf.objects.filter(invoice=draft).exists()


def test_payment_leaves_the_archived_pdf_alone_and_render_pdfs_missing_renders_only_missing_ones(invoice, admin_client):
    original = documents.invoice_pdf_store(invoice_id=invoice.pk)
    other = InvoiceFactory(finalized=ISSUE)  # never rendered: missing
    invoice_apply_payment(invoice=invoice, amount=D("100.00"))
    invoice.refresh_from_db()
    pdf = DocumentPdf.objects.get(invoice=invoice)
    assert documents.invoice_pdf_state(invoice=invoice, pdf=pdf) == documents.PdfState.CURRENT
    assert (pdf.file.name, pdf.sha256) == (original.file.name, original.sha256)

    changelist = reverse("admin:invoicing_invoice_changelist")
    missing = admin_client.get(changelist, {"pdf": "missing"}).content.decode()
    assert other.number in missing and invoice.number not in missing

    out = io.StringIO()
    call_command("render_pdfs", "--missing", stdout=out)
    assert "1 rendered" in out.getvalue()
    pdf = DocumentPdf.objects.get(invoice=invoice)
    assert (pdf.file.name, pdf.sha256) == (original.file.name, original.sha256)
    with default_storage.open(pdf.file.name, "rb") as handle:
        assert "Amount paid" not in _flat(_text(handle.read()))  # as issued: the payment is not in the file
    archived = admin_client.get(changelist, {"pdf": "current"}).content.decode()
    assert invoice.number in archived and other.number in archived


def test_admin_pdf_download_and_html_preview(invoice, admin_client):
    response = admin_client.get(reverse("admin:invoicing_invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert invoice.number in _text(response.content)
    preview = admin_client.get(reverse("admin:invoicing_invoice_preview", args=[invoice.pk]))
    assert preview.status_code == 200 and INTERNATIONAL_NAME.replace("&", "&amp;") in preview.content.decode()
    page = admin_client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert "Download PDF" in page and "HTML preview" in page


def test_draft_preview_is_marked_and_not_stored(series, vat_de, admin_client):
    draft = InvoiceFactory()
    response = admin_client.get(reverse("admin:invoicing_invoice_pdf", args=[draft.pk]))
    assert response.status_code == 200
    assert "DRAFT" in _text(response.content)
    assert not DocumentPdf.objects.exists()


def test_credit_note_pdf(invoice, admin_client):
    credit_note = credit_note_issue(invoice=invoice, reason="Seat count corrected", amount=D("119.00"))
    response = admin_client.get(reverse("admin:invoicing_creditnote_pdf", args=[credit_note.pk]))
    text = _flat(_text(response.content))
    assert "Credit note" in text and credit_note.number in text and invoice.number in text
    assert "Seat count corrected" in text and "Total credited €119.00" in text
    assert DocumentPdf.objects.get(credit_note=credit_note).file.name.startswith("credit-notes/2026/")


def test_render_from_unsaved_objects_needs_no_queries(django_assert_num_queries, settings):
    invoice = Invoice(
        currency="EUR",
        status="open",
        number="INV-2026-000999",
        issue_date=ISSUE,
        due_date=ISSUE,
        total=D("10.00"),
        amount_due=D("10.00"),
        customer_snapshot={"name": "Offline", "language": "en", "postal_address": "Somewhere"},
        seller_snapshot={"legal_name": "Seller", "address": "Street 1", "iban": "DE89370400440532013000"},
    )
    lines = [InvoiceLine(description="Thing", quantity=D(1), unit_amount=D("10.00"), amount=D("10.00"))]
    with django_assert_num_queries(0):
        pdf = documents.render_invoice_pdf(invoice=invoice, lines=lines)
    assert "INV-2026-000999" in _text(pdf)
