"""Invoice and credit-note documents: HTML from a Django template, PDF through xhtml2pdf, stored with a hash.

Rendering is a pure function of in-memory objects (``render_invoice_pdf(invoice=…, lines=[…])``), so the
benchmark and the HTML preview need no database; storing (``invoice_pdf_store``) reads the invoice, renders and
records a ``DocumentPdf`` row. Slow paths are paid once per process, not per document: the TrueType fonts are
registered with ReportLab at first use (an ``@font-face`` rule would parse 1.4 MB of TTF on every render) and
Django's cached template loader keeps the parsed template.

Safety. Every customer-controlled string reaches the template as data and is auto-escaped. What the renderer
may read is limited twice: ``link_callback`` resolves only URLs under ``STATIC_URL`` / ``MEDIA_URL`` to files
inside the static and media roots (anything else resolves to nothing), and the xhtml2pdf
``ResourceAccessPolicy`` forbids network access altogether and confines local reads to the same roots — so a
``<img src="http://169.254.169.254/">`` or ``<img src="/etc/passwd">`` that somehow reached the HTML is neither
fetched nor read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.template.loader import get_template
from django.utils import timezone

from core import formatting as fmt
from core.text import without_bidi_controls
from invoicing.models import (
    CreditNote,
    CreditNoteLine,
    DocumentPdf,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    TaxTreatment,
)
from notifications.models import OutboundEmail
from notifications.sending import AttachmentNotReady

logger = logging.getLogger(__name__)

TEMPLATE = "invoicing/pdf/document.html"
FONT_FAMILY = "InvoiceSans"
FONT_FILES = {FONT_FAMILY: "DejaVuSans.ttf", f"{FONT_FAMILY}-Bold": "DejaVuSans-Bold.ttf"}
ZERO = Decimal(0)


class DocumentRenderError(AttachmentNotReady):
    """xhtml2pdf reported errors, or a document cannot be rendered in its state."""


# --- fonts and resources --------------------------------------------------------------------------------

_fonts_lock = threading.Lock()
_fonts_registered = False


def font_dir() -> Path:
    return Path(settings.INVOICE_PDF_FONT_DIR)


def register_fonts() -> None:
    """Register the shipped DejaVu fonts with ReportLab and make ``font-family: InvoiceSans`` known to every
    xhtml2pdf document. Once per process; thread-safe."""
    global _fonts_registered
    if _fonts_registered:
        return
    with _fonts_lock:
        if _fonts_registered:
            return
        from reportlab.lib.fonts import addMapping
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont
        from xhtml2pdf import default as xhtml2pdf_default

        for name, filename in FONT_FILES.items():
            pdfmetrics.registerFont(TTFont(name, str(font_dir() / filename)))
        bold = f"{FONT_FAMILY}-Bold"
        for is_bold, is_italic, face in ((0, 0, FONT_FAMILY), (1, 0, bold), (0, 1, FONT_FAMILY), (1, 1, bold)):
            addMapping(FONT_FAMILY, is_bold, is_italic, face)
        # xhtml2pdf copies this table into each document's font list: the family resolves without @font-face.
        xhtml2pdf_default.DEFAULT_FONT[FONT_FAMILY.lower()] = FONT_FAMILY
        xhtml2pdf_default.DEFAULT_FONT[bold.lower()] = bold
        _fonts_registered = True


def _allowed_roots() -> list[Path]:
    roots = [Path(settings.MEDIA_ROOT), Path(settings.STATIC_ROOT), *map(Path, settings.STATICFILES_DIRS)]
    return [root.resolve() for root in roots if str(root)]


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root) for root in roots)


def link_callback(uri: str, rel: str | None = None) -> str:
    """Map ``/static/…`` and ``/media/…`` URLs to files inside the static and media roots; everything else
    (other schemes, hosts, absolute paths, ``..`` escapes) maps to an empty string, which xhtml2pdf skips."""
    parts = urlsplit(uri)
    if parts.scheme or parts.netloc or parts.query:
        logger.warning("PDF resource refused: %.200s", uri)
        return ""
    path = unquote(parts.path)
    roots = _allowed_roots()
    candidate: Path | None = None
    if settings.MEDIA_URL and path.startswith(settings.MEDIA_URL):
        candidate = Path(settings.MEDIA_ROOT) / path.removeprefix(settings.MEDIA_URL)
    elif settings.STATIC_URL and path.startswith(settings.STATIC_URL):
        relative = path.removeprefix(settings.STATIC_URL)
        found = finders.find(relative) if ".." not in Path(relative).parts else None
        candidate = Path(found if isinstance(found, str) else Path(settings.STATIC_ROOT) / relative)
    if candidate is None or not candidate.is_file() or not _inside(candidate, roots):
        logger.warning("PDF resource refused: %.200s", uri)
        return ""
    return str(candidate.resolve())


def _resource_policy() -> Any:
    from xhtml2pdf.config.resources import ResourceAccessPolicy

    roots = _allowed_roots()
    return ResourceAccessPolicy(
        allow_remote=False,
        allowed_hosts=frozenset(),
        base_dir=font_dir().resolve(),
        extra_roots=tuple(roots),
    )


def html_to_pdf(html: str) -> bytes:
    """Convert trusted-template HTML to PDF bytes, with the fonts registered and the resource gates on."""
    from xhtml2pdf import pisa

    register_fonts()
    out = io.BytesIO()
    try:
        result = pisa.pisaDocument(
            html, dest=out, link_callback=link_callback, resource_policy=_resource_policy(), encoding="utf-8"
        )
    except Exception as exc:
        # A crash inside the renderer is a document problem like a reported error: the render task and the
        # e-mail that attaches the PDF retry it, instead of the e-mail failing for good at the first try.
        raise DocumentRenderError(f"xhtml2pdf failed: {type(exc).__name__}: {exc}") from exc
    if result.err:
        raise DocumentRenderError(f"xhtml2pdf reported {result.err} error(s)")
    return out.getvalue()


# --- context --------------------------------------------------------------------------------------------


def portal_invoice_url(number: str) -> str:
    """The customer's pay link. Not signed yet: the portal issue will replace it by a signed link."""
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}/portal/invoices/{quote(number, safe='')}/"


def logo_url(seller: dict[str, Any]) -> str:
    """The seller logo as a ``/static/…`` or ``/media/…`` URL (``SELLER_LOGO`` is a path relative to the static
    files, or a media URL); link_callback decides whether it may be read."""
    logo = str(seller.get("logo") or settings.SELLER.get("logo") or "").strip()
    if not logo:
        return ""
    if logo.startswith((settings.STATIC_URL, settings.MEDIA_URL)):
        return logo
    return settings.STATIC_URL + logo.lstrip("/")


def _snapshots(invoice: Invoice) -> tuple[dict[str, Any], dict[str, Any]]:
    customer, seller = invoice.customer_snapshot, invoice.seller_snapshot
    if customer and seller:
        return customer, seller
    # A draft has no snapshots yet: preview with what finalizing would freeze.
    from invoicing.services import customer_snapshot, seller_snapshot

    return customer or customer_snapshot(customer=invoice.customer), seller or seller_snapshot()


def _address_lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _tax_rows(summary: Sequence[dict[str, Any]], currency: str, lang: str) -> list[dict[str, str]]:
    rows = []
    for row in summary:
        tax = Decimal(row["tax_amount"])
        taxable = Decimal(row["taxable_amount"])
        # Rate names usually carry their percentage ("VAT 19 %"); add it only where they do not.
        name = row["name"] or fmt.label(lang, "tax")
        if not any(char.isdigit() for char in name):
            name = f"{name} {fmt.percentage(row['percentage'], lang)}"
        if row.get("inclusive"):
            name += f" ({fmt.label(lang, 'tax_included')})"
        rows.append(
            {
                "label": fmt.label(lang, "tax_on", name=name, taxable=fmt.money(taxable, currency, lang)),
                "amount": fmt.money(tax, currency, lang),
            }
        )
    return rows


def _base_context(*, customer: dict[str, Any], seller: dict[str, Any], currency: str, lang: str) -> dict[str, Any]:
    return {
        "lang": lang,
        "L": fmt.labels(lang),
        "font_family": FONT_FAMILY,
        "currency": currency,
        "seller": seller,
        "seller_address": _address_lines(seller.get("address", "")),
        "seller_logo": logo_url(seller),
        "customer": customer,
        "customer_name": customer.get("legal_name") or customer.get("name", ""),
        "customer_address": _address_lines(customer.get("postal_address", "")),
        "footer_line": " · ".join(
            part
            for part in (
                seller.get("legal_name", ""),
                ", ".join(_address_lines(seller.get("address", ""))),
                seller.get("tax_id", "") and f"{fmt.label(lang, 'seller_tax_id')} {seller.get('tax_id')}",
                seller.get("email", ""),
            )
            if part
        ),
    }


def invoice_context(*, invoice: Invoice, lines: Sequence[InvoiceLine] | None = None) -> dict[str, Any]:
    """Everything the document template prints, formatted for the customer's language (no queries when
    ``lines`` is given and the invoice is finalized)."""
    customer, seller = _snapshots(invoice)
    lang = fmt.document_language(customer.get("language"))
    currency = invoice.currency
    lines = list(invoice.lines.all()) if lines is None else list(lines)

    def money(value: Decimal) -> str:
        return fmt.money(value, currency, lang)

    line_rows = [
        {
            "position": index,
            "description": line.description,
            "period": fmt.period(line.period_start, line.period_end, lang),
            "quantity": fmt.quantity(line.quantity, lang),
            "unit_price": fmt.unit_price(line.unit_amount, currency, lang),
            "tax": fmt.percentage(line.tax_percentage, lang) if line.tax_name or line.tax_percentage else "",
            "amount": money(line.amount),
            "discount": money(-line.discount_amount) if line.discount_amount else "",
        }
        for index, line in enumerate(lines, start=1)
    ]
    number = invoice.number
    treatment = invoice.tax_treatment
    status = invoice.status
    context = _base_context(customer=customer, seller=seller, currency=currency, lang=lang)
    context.update(
        {
            "kind": "invoice",
            "title": fmt.label(lang, "invoice"),
            "is_draft": status == InvoiceStatus.DRAFT,
            "number": number,
            "meta": [
                (fmt.label(lang, "number"), number or "—"),
                (fmt.label(lang, "issue_date"), fmt.date(invoice.issue_date, lang)),
                (fmt.label(lang, "due_date"), fmt.date(invoice.due_date, lang)),
                (fmt.label(lang, "period"), fmt.period(invoice.period_start, invoice.period_end, lang)),
            ],
            "customer_tax_id": customer.get("tax_id", ""),
            "lines": line_rows,
            "totals": [
                row
                for row in (
                    (fmt.label(lang, "subtotal"), money(invoice.subtotal), False),
                    (fmt.label(lang, "discount"), money(-invoice.discount_total), False)
                    if invoice.discount_total
                    else None,
                    *[(row["label"], row["amount"], False) for row in _tax_rows(invoice.tax_summary, currency, lang)],
                    (fmt.label(lang, "total"), money(invoice.total), True),
                    (fmt.label(lang, "amount_paid"), money(-invoice.amount_paid), False)
                    if invoice.amount_paid
                    else None,
                    (fmt.label(lang, "amount_credited"), money(-invoice.amount_credited), False)
                    if invoice.amount_credited
                    else None,
                    (fmt.label(lang, "amount_due"), money(invoice.amount_due), True),
                )
                if row is not None
            ],
            "legal_heading": fmt.label(lang, treatment) if treatment != TaxTreatment.STANDARD else "",
            "legal_note": invoice.tax_note,
            "memo": invoice.memo,
            "document_footer": invoice.footer,
            "show_payment": status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.DRAFT)
            and invoice.amount_due > 0,
            "pay_by_transfer": fmt.label(
                lang,
                "pay_by_transfer",
                amount=money(invoice.amount_due),
                due_date=fmt.date(invoice.due_date, lang) or "—",
                number=number or "—",
            ),
            "iban": fmt.iban(seller.get("iban", "")),
            "pay_url": portal_invoice_url(number) if number else "",
            "status_note": fmt.label(lang, "paid_thanks")
            if status == InvoiceStatus.PAID
            else fmt.label(lang, "void")
            if status == InvoiceStatus.VOID
            else "",
        }
    )
    return context


def credit_note_context(
    *, credit_note: CreditNote, lines: Sequence[CreditNoteLine] | None = None, invoice_number: str | None = None
) -> dict[str, Any]:
    customer, seller = credit_note.customer_snapshot, credit_note.seller_snapshot
    lang = fmt.document_language(customer.get("language"))
    currency = credit_note.currency
    lines = list(credit_note.lines.all()) if lines is None else list(lines)
    invoice_number = invoice_number if invoice_number is not None else credit_note.invoice.number

    def money(value: Decimal) -> str:
        return fmt.money(value, currency, lang)

    context = _base_context(customer=customer, seller=seller, currency=currency, lang=lang)
    context.update(
        {
            "kind": "credit_note",
            "title": fmt.label(lang, "credit_note"),
            "is_draft": False,
            "number": credit_note.number,
            "meta": [
                (fmt.label(lang, "number"), credit_note.number),
                (fmt.label(lang, "issue_date"), fmt.date(credit_note.issue_date, lang)),
                (fmt.label(lang, "credited_invoice"), invoice_number),
                (fmt.label(lang, "reason"), credit_note.reason),
            ],
            "customer_tax_id": customer.get("tax_id", ""),
            "lines": [
                {
                    "position": index,
                    "description": line.description,
                    "period": "",
                    "quantity": fmt.quantity(line.quantity, lang) if line.quantity is not None else "",
                    "unit_price": "",
                    "tax": fmt.percentage(line.tax_percentage, lang) if line.tax_name else "",
                    "amount": money(line.net_amount),
                    "discount": "",
                }
                for index, line in enumerate(lines, start=1)
            ],
            "totals": [
                (fmt.label(lang, "net_total"), money(credit_note.net_total), False),
                *[(row["label"], row["amount"], False) for row in _tax_rows(credit_note.tax_summary, currency, lang)],
                (fmt.label(lang, "credit_total"), money(credit_note.total), True),
            ],
            "legal_heading": "",
            "legal_note": "",
            "memo": credit_note.memo,
            "document_footer": "",
            "show_payment": False,
            "status_note": " ".join(
                text
                for text in (
                    fmt.label(lang, "credit_applied", applied=money(credit_note.amount_applied), invoice=invoice_number)
                    if credit_note.amount_applied
                    else "",
                    fmt.label(lang, "credit_to_balance", amount=money(credit_note.amount_to_customer_credit))
                    if credit_note.amount_to_customer_credit
                    else "",
                )
                if text
            ),
        }
    )
    return context


def render_html(context: dict[str, Any], *, preview: bool = False) -> str:
    """The document (PDF and its HTML preview in the portal and admin). Bidi controls are removed from every text
    it prints (customer names, addresses, lines, memos): the stored data keeps them, the document never obeys them."""
    return get_template(TEMPLATE).render({**without_bidi_controls(context), "preview": preview})


def render_invoice_html(*, invoice: Invoice, lines: Sequence[InvoiceLine] | None = None) -> str:
    """The same document as the PDF, for a browser (admin preview)."""
    return render_html(invoice_context(invoice=invoice, lines=lines), preview=True)


def render_invoice_pdf(*, invoice: Invoice, lines: Sequence[InvoiceLine] | None = None) -> bytes:
    return html_to_pdf(render_html(invoice_context(invoice=invoice, lines=lines)))


def render_credit_note_html(*, credit_note: CreditNote, lines: Sequence[CreditNoteLine] | None = None) -> str:
    return render_html(credit_note_context(credit_note=credit_note, lines=lines), preview=True)


def render_credit_note_pdf(
    *, credit_note: CreditNote, lines: Sequence[CreditNoteLine] | None = None, invoice_number: str | None = None
) -> bytes:
    return html_to_pdf(
        render_html(credit_note_context(credit_note=credit_note, lines=lines, invoice_number=invoice_number))
    )


# --- storage --------------------------------------------------------------------------------------------


class PdfState:
    MISSING = "missing"
    STALE = "stale"
    CURRENT = "current"


def invoice_pdf_state(*, invoice: Invoice, pdf: DocumentPdf | None) -> str:
    if pdf is None:
        return PdfState.MISSING
    return PdfState.CURRENT if pdf.source_updated_at == invoice.updated_at else PdfState.STALE


def document_pdf_path(*, folder: str, number: str, issue_date: dt.date | None, sha256: str) -> str:
    """``invoices/2026/INV-2026-000123-<hash>.pdf``: by number, and content-addressed so that a re-render never
    overwrites a file another process may be reading."""
    safe_number = re.sub(r"[^A-Za-z0-9._-]+", "_", number).strip("._") or "document"
    year = issue_date.year if issue_date else "undated"
    return f"{folder}/{year}/{safe_number}-{sha256[:16]}.pdf"


def _store(
    *,
    content: bytes,
    folder: str,
    number: str,
    issue_date: dt.date | None,
    invoice: Invoice | None = None,
    credit_note: CreditNote | None = None,
    source_updated_at: dt.datetime | None = None,
) -> DocumentPdf:
    sha256 = hashlib.sha256(content).hexdigest()
    name = document_pdf_path(folder=folder, number=number, issue_date=issue_date, sha256=sha256)
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(content))
    lookup: dict[str, Any] = {"invoice": invoice} if invoice is not None else {"credit_note": credit_note}
    values = {
        "file": name,
        "sha256": sha256,
        "size": len(content),
        "source_updated_at": source_updated_at,
        "rendered_at": timezone.now(),
    }
    for _attempt in range(2):  # a concurrent first render may insert between our read and our insert
        try:
            with transaction.atomic():
                existing = DocumentPdf.objects.select_for_update().filter(**lookup).first()
                if existing is None:
                    return DocumentPdf.objects.create(**lookup, **values)
                if (
                    existing.source_updated_at is not None
                    and source_updated_at is not None
                    and existing.source_updated_at > source_updated_at
                ):
                    return existing  # a render of a newer state won the race; keep it
                old_name = existing.file.name
                for field, value in values.items():
                    setattr(existing, field, value)
                existing.save()
                if old_name and old_name != name:
                    transaction.on_commit(partial(default_storage.delete, old_name))
                return existing
        except IntegrityError:
            continue
    raise DocumentRenderError(f"could not record the PDF {name}")


def _invoice_for_pdf(invoice_id: int) -> tuple[Invoice, list[InvoiceLine]]:
    invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
    return invoice, list(invoice.lines.all())


def invoice_pdf_store(*, invoice_id: int) -> DocumentPdf:
    """Render a finalized invoice as it is now and store it (the render task and ``render_pdfs`` call this)."""
    invoice, lines = _invoice_for_pdf(invoice_id)
    if invoice.is_draft:
        raise DocumentRenderError(f"invoice {invoice_id} is a draft: only finalized invoices are stored")
    content = render_invoice_pdf(invoice=invoice, lines=lines)
    return _store(
        content=content,
        folder="invoices",
        number=invoice.number,
        issue_date=invoice.issue_date,
        invoice=invoice,
        source_updated_at=invoice.updated_at,
    )


def credit_note_pdf_store(*, credit_note_id: int) -> DocumentPdf:
    credit_note = CreditNote.objects.select_related("invoice").get(pk=credit_note_id)
    content = render_credit_note_pdf(credit_note=credit_note, lines=list(credit_note.lines.all()))
    return _store(
        content=content,
        folder="credit-notes",
        number=credit_note.number,
        issue_date=credit_note.issue_date,
        credit_note=credit_note,
    )


def invoice_pdf_bytes(*, invoice_id: int) -> tuple[str, bytes]:
    """``(file name, PDF)`` of an invoice: the stored PDF when current, else rendered now (and stored, unless a
    draft, which is rendered on the fly and never stored)."""
    invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
    if invoice.is_draft:
        return f"draft-invoice-{invoice.pk}.pdf", render_invoice_pdf(invoice=invoice)
    pdf = DocumentPdf.objects.filter(invoice=invoice).first()
    if invoice_pdf_state(invoice=invoice, pdf=pdf) != PdfState.CURRENT or not _readable(pdf):
        pdf = invoice_pdf_store(invoice_id=invoice.pk)
    assert pdf is not None
    with default_storage.open(pdf.file.name, "rb") as handle:
        return f"{invoice.number}.pdf", handle.read()


def credit_note_pdf_bytes(*, credit_note_id: int) -> tuple[str, bytes]:
    credit_note = CreditNote.objects.get(pk=credit_note_id)
    pdf = DocumentPdf.objects.filter(credit_note=credit_note).first()
    if pdf is None or not _readable(pdf):
        pdf = credit_note_pdf_store(credit_note_id=credit_note.pk)
    with default_storage.open(pdf.file.name, "rb") as handle:
        return f"{credit_note.number}.pdf", handle.read()


def email_attachment(email: OutboundEmail) -> tuple[str, bytes] | None:
    """The outbox's attachment provider (registered in InvoicingConfig.ready): the PDF of the invoice or credit
    note a message is about, as it is at send time."""
    if email.invoice_id is not None:
        return invoice_pdf_bytes(invoice_id=email.invoice_id)
    if email.credit_note_id is not None:
        return credit_note_pdf_bytes(credit_note_id=email.credit_note_id)
    return None


def _readable(pdf: DocumentPdf | None) -> bool:
    return pdf is not None and bool(pdf.file.name) and default_storage.exists(pdf.file.name)


# --- selection for bulk rendering -----------------------------------------------------------------------


def invoices_needing_pdf(*, only_missing_or_stale: bool) -> QuerySet[Invoice]:
    """Finalized invoices, all of them or those whose stored PDF is missing or older than the invoice."""
    invoices = Invoice.objects.finalized()
    if only_missing_or_stale:
        invoices = invoices.filter(Q(pdf__isnull=True) | ~Q(pdf__source_updated_at=F("updated_at")))
    return invoices.order_by("pk")


def credit_notes_needing_pdf(*, only_missing: bool) -> QuerySet[CreditNote]:
    credit_notes = CreditNote.objects.all()
    if only_missing:
        credit_notes = credit_notes.filter(pdf__isnull=True)
    return credit_notes.order_by("pk")


@dataclass
class RenderOutcome:
    rendered: int = 0
    failed: list[str] = field(default_factory=list)


def pdfs_render(*, only_missing: bool, on_progress: Callable[[int], object] | None = None) -> RenderOutcome:
    """Render (and store) the PDFs of every invoice and credit note — or only those missing or stale. One
    broken document never stops the others: it is reported, stays "missing" and is tried again next time.
    The command ``render_pdfs`` and the periodic task ``invoicing.render_missing_pdfs`` both call this."""
    invoice_ids = list(invoices_needing_pdf(only_missing_or_stale=only_missing).values_list("pk", flat=True))
    credit_note_ids = list(credit_notes_needing_pdf(only_missing=only_missing).values_list("pk", flat=True))
    jobs: list[tuple[Callable[..., object], str, int]] = [
        (invoice_pdf_store, "invoice_id", pk) for pk in invoice_ids
    ] + [(credit_note_pdf_store, "credit_note_id", pk) for pk in credit_note_ids]
    outcome = RenderOutcome()
    for store, argument, pk in jobs:
        try:
            store(**{argument: pk})
            outcome.rendered += 1
        except Exception as exc:
            logger.exception("rendering the PDF of %s %s failed", argument, pk)
            outcome.failed.append(f"{argument.removesuffix('_id').replace('_', ' ')} {pk}: {exc}")
        if on_progress is not None:
            on_progress(1)
    return outcome


def pdfs_needing_render_count(*, only_missing: bool) -> int:
    return (
        invoices_needing_pdf(only_missing_or_stale=only_missing).count()
        + credit_notes_needing_pdf(only_missing=only_missing).count()
    )
