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
from django.db.models import QuerySet
from django.template.loader import get_template
from django.utils import timezone

from core import formatting as fmt
from core.errors import InvalidInput, NotAllowed, NotFound
from core.text import without_bidi_controls
from customers.models import EU_VAT_COUNTRIES
from invoicing.einvoice import service as einvoice_service
from invoicing.einvoice.facturx import facturx_pdf
from invoicing.models import (
    CreditNote,
    CreditNoteLine,
    DocumentPdf,
    DocumentPdfVersion,
    EInvoiceFile,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    TaxTreatment,
)
from invoicing.selectors import ChildGroup, invoice_child_groups, invoice_ungrouped_lines
from invoicing.terms import payment_terms_text
from notifications.models import OutboundEmail
from notifications.sending import Attachment, AttachmentNotReady

logger = logging.getLogger(__name__)

TEMPLATE = "invoicing/pdf/document.html"
FONT_FAMILY = "InvoiceSans"
# Every script a customer's name or address may be written in, as a fallback list: xhtml2pdf takes each
# character from the first family that has it. DejaVu Sans: Latin, Greek, Cyrillic, Arabic and Hebrew (shaped
# and ordered right to left by xhtml2pdf's bidi and arabic-reshaper); Droid Sans Fallback: Chinese and Japanese
# (TrueType outlines: the CFF-based Noto CJK fonts fail in ReportLab; no bold face, so bold CJK prints regular);
# NanumSquare: Korean, regular and bold. ReportLab embeds only the glyphs a document uses (a subset per font), so
# a one-page CJK invoice stays small. Files and licences in static/fonts/ (INVOICE_PDF_FONT_DIR).
FONT_FACES: dict[str, tuple[str, str | None]] = {
    FONT_FAMILY: ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    "InvoiceCJK": ("DroidSansFallbackFull.ttf", None),
    "InvoiceKorean": ("NanumSquareR.ttf", "NanumSquareB.ttf"),
}
FONT_STACK = ", ".join(FONT_FACES)
ZERO = Decimal(0)


class DocumentRenderError(AttachmentNotReady):
    """xhtml2pdf reported errors, or a document cannot be rendered in its state."""


# --- fonts and resources --------------------------------------------------------------------------------

_fonts_lock = threading.Lock()
_fonts_registered = False


def font_dir() -> Path:
    return Path(settings.INVOICE_PDF_FONT_DIR)


def register_fonts() -> None:
    """Register the shipped fonts (``FONT_FACES``) with ReportLab and make their families known to every
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

        for family, (regular_file, bold_file) in FONT_FACES.items():
            pdfmetrics.registerFont(TTFont(family, str(font_dir() / regular_file)))
            bold = family
            if bold_file is not None:
                bold = f"{family}-Bold"
                pdfmetrics.registerFont(TTFont(bold, str(font_dir() / bold_file)))
            for is_bold, is_italic, face in ((0, 0, family), (1, 0, bold), (0, 1, family), (1, 1, bold)):
                addMapping(family, is_bold, is_italic, face)
            # xhtml2pdf copies this table into each document's font list: the family resolves without @font-face.
            xhtml2pdf_default.DEFAULT_FONT[family.lower()] = family
            xhtml2pdf_default.DEFAULT_FONT[bold.lower()] = bold
        # ReportLab's canvas and xhtml2pdf's blank fragments use the standard Helvetica, which is never embedded:
        # in this process "Helvetica" names the embedded face, so every font a PDF references is embedded (PDF/A,
        # Factur-X).
        regular, bold_file = FONT_FACES[FONT_FAMILY]
        pdfmetrics.registerFont(TTFont("Helvetica", str(font_dir() / regular)))
        pdfmetrics.registerFont(TTFont("Helvetica-Bold", str(font_dir() / (bold_file or regular))))
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
    """The seller logo of a snapshot (a file of the seller profile, stored under the media root) as a
    ``/media/…`` URL, or a ``/static/…`` URL as given; link_callback decides whether it may be read."""
    logo = str(seller.get("logo") or "").strip()
    if not logo:
        return ""
    if logo.startswith((settings.STATIC_URL, settings.MEDIA_URL)):
        return logo
    return settings.MEDIA_URL + logo.lstrip("/")


def _snapshots(invoice: Invoice) -> tuple[dict[str, Any], dict[str, Any]]:
    customer, seller = invoice.customer_snapshot, invoice.seller_snapshot
    if customer and seller:
        return customer, seller
    # A draft has no snapshots yet: preview with what finalizing would freeze.
    from invoicing.services import customer_snapshot, seller_snapshot

    return customer or customer_snapshot(customer=invoice.customer), seller or seller_snapshot()


def _address_lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def _customer_address_lines(customer: dict[str, Any], lang: str) -> list[str]:
    """The customer's postal address with the country named in the document's language ("Deutschland" on a German
    invoice, "Allemagne" on a French one): the snapshot keeps the parts and the country code; its
    ``postal_address`` text (country in the language active when it was taken) is used only without them."""
    if not customer.get("country"):
        return _address_lines(customer.get("postal_address", ""))
    city_line = " ".join(str(part) for part in (customer.get("postal_code"), customer.get("city")) if part)
    parts = (customer.get("address_line1"), customer.get("address_line2"), city_line, customer.get("region"))
    lines = [str(part).strip() for part in parts if part and str(part).strip()]
    return [*lines, fmt.country_name(str(customer["country"]), lang)]


_PLAIN_VAT_NAME = re.compile(r"^\s*(VAT|USt\.?|MwSt\.?)\s*[\d.,]+\s*%?\s*$", re.IGNORECASE)


_ZERO_CATEGORIES = frozenset({"E", "AE", "K", "G", "O"})
_TREATMENT_CATEGORY: dict[str, str] = {
    TaxTreatment.EXEMPT.value: "E",
    TaxTreatment.REVERSE_CHARGE.value: "AE",
    TaxTreatment.OUTSIDE_SCOPE.value: "O",
}
_CATEGORY_LABELS = {"E": "exempt", "AE": "reverse_charge", "K": "intra_community", "G": "export", "O": "outside_scope"}


def _row_category(row: dict[str, Any], treatment: str) -> str:
    """A summary row's VAT category; rows stored before categories existed take their document's treatment."""
    category = row.get("category")
    if category:
        return str(category)
    if treatment != TaxTreatment.STANDARD and not Decimal(row.get("percentage") or 0):
        return _TREATMENT_CATEGORY.get(treatment, "S")
    return "S"


def _tax_rows(
    summary: Sequence[dict[str, Any]], currency: str, lang: str, treatment: str = TaxTreatment.STANDARD
) -> list[dict[str, str]]:
    """One row per VAT category and rate (art. 226 (8)–(10): taxable amount and tax per rate). A 0 % row of a
    reverse-charge, exempt, intra-community, export or out-of-scope category reads "VAT 0 %" — with the
    category beside it when the document has more than one row; its reason is printed once, in the legal note."""
    rows = []
    for row in summary:
        tax = Decimal(row["tax_amount"])
        taxable = Decimal(row["taxable_amount"])
        category = _row_category(row, treatment)
        if category in _ZERO_CATEGORIES:
            name = f"{fmt.label(lang, 'vat')} {fmt.percentage(Decimal(0), lang)}"
            if len(summary) > 1:
                name += f" ({fmt.label(lang, _CATEGORY_LABELS[category])})"
        else:
            # In the document's language ("USt. 19 %"); a rate named otherwise than "VAT <n> %" in the admin
            # (a regional rate, a sales tax) keeps its name beside it.
            name = f"{fmt.label(lang, 'vat')} {fmt.percentage(row['percentage'], lang)}"
            if row["name"] and not _PLAIN_VAT_NAME.match(row["name"]):
                name += f" ({row['name']})"
        if row.get("inclusive"):
            name += f" ({fmt.label(lang, 'tax_included')})"
        rows.append(
            {
                "label": fmt.label(lang, "tax_on", name=name, taxable=fmt.money(taxable, currency, lang)),
                "amount": fmt.money(tax, currency, lang),
            }
        )
    return rows


tax_rows = _tax_rows  # the e-mail prints the same breakdown


def legal_note(*, treatment: str, customer: dict[str, Any], seller: dict[str, Any], lang: str) -> str:
    """The reason an invoice carries no VAT, with its legal reference, in the document's language — printed once
    (art. 226 (11)–(11a) of the VAT Directive, §14 (4) no. 8–9 UStG). The customer's VAT id is in the address."""
    return _category_note(_TREATMENT_CATEGORY.get(treatment, "S"), customer=customer, seller=seller, lang=lang)


def _category_note(category: str, *, customer: dict[str, Any], seller: dict[str, Any], lang: str) -> str:
    if category == "AE":
        seller_country = str(seller.get("country") or "").upper()
        customer_country = str(customer.get("country") or "").upper()
        eu = EU_VAT_COUNTRIES
        cross_border = seller_country in eu and customer_country in eu and seller_country != customer_country
        return fmt.label(lang, "legal_reverse_charge_eu" if cross_border else "legal_reverse_charge")
    if category == "E":
        return fmt.label(lang, "legal_exempt")
    if category == "K":
        return fmt.label(lang, "legal_intra_community")
    if category == "G":
        return fmt.label(lang, "legal_export")
    if category == "O":
        country = str(seller.get("country") or "")
        return fmt.label(lang, "legal_outside_scope", seller_country=fmt.country_name(country, lang) or country)
    return ""


def legal_notes(
    *, summary: Sequence[dict[str, Any]], treatment: str, customer: dict[str, Any], seller: dict[str, Any], lang: str
) -> str:
    """The legal note of every zero category of the document, each printed once: an exempt category prints the
    exemption reason its lines carry (the product's, e.g. "Exempt under §4 Nr. 14 UStG"), else the general one."""
    notes: list[str] = []
    for row in summary:
        category = _row_category(row, treatment)
        if category not in _ZERO_CATEGORIES:
            continue
        reason = str(row.get("exemption_reason") or "") if category == "E" else ""
        if reason == "Exempt from VAT.":  # the customer's exemption: the general note says it with its law
            reason = ""
        note = reason or _category_note(category, customer=customer, seller=seller, lang=lang)
        if note and note not in notes:
            notes.append(note)
    if not summary:
        notes.append(legal_note(treatment=treatment, customer=customer, seller=seller, lang=lang))
    return " ".join(note for note in notes if note)


def _seller_lines(seller: dict[str, Any], lang: str) -> list[str]:
    """The seller's identity under its name: address, VAT id and tax number, contact."""
    lines = _address_lines(seller.get("address", ""))
    if seller.get("tax_id"):
        lines.append(f"{fmt.label(lang, 'seller_tax_id')} {seller['tax_id']}")
    if seller.get("tax_number"):
        lines.append(f"{fmt.label(lang, 'seller_tax_number')} {seller['tax_number']}")
    lines.extend(str(seller[key]) for key in ("email", "phone", "website") if seller.get(key))
    return lines


def _footer_lines(seller: dict[str, Any], lang: str) -> list[str]:
    """The page footer (§35a GmbHG, §14 UStG), three lines: who and where the seller is; its register and
    managing directors; its tax ids and bank account."""
    register = " ".join(part for part in (seller.get("register_court", ""), seller.get("register_number", "")) if part)
    groups = [
        [seller.get("legal_name", ""), ", ".join(_address_lines(seller.get("address", ""))), seller.get("email", "")],
        [
            f"{fmt.label(lang, 'register')}: {register}" if register else "",
            f"{fmt.label(lang, 'managing_directors')}: {seller['managing_directors']}"
            if seller.get("managing_directors")
            else "",
        ],
        [
            f"{fmt.label(lang, 'seller_tax_id')} {seller['tax_id']}" if seller.get("tax_id") else "",
            f"{fmt.label(lang, 'seller_tax_number')} {seller['tax_number']}" if seller.get("tax_number") else "",
            f"{fmt.label(lang, 'iban')} {fmt.iban(seller.get('iban', ''))}" if seller.get("iban") else "",
            f"{fmt.label(lang, 'bic')} {seller['bic']}" if seller.get("bic") else "",
        ],
    ]
    return [line for line in (" · ".join(part for part in group if part) for group in groups) if line]


def _seller_footer_text(seller: dict[str, Any], lang: str) -> str:
    footers = seller.get("invoice_footer") or {}
    return str(footers.get(lang) or footers.get(fmt.DEFAULT_LANGUAGE) or "") if isinstance(footers, dict) else ""


def _base_context(*, customer: dict[str, Any], seller: dict[str, Any], currency: str, lang: str) -> dict[str, Any]:
    footer_lines = _footer_lines(seller, lang)
    return {
        "lang": lang,
        "L": fmt.labels(lang),
        "font_family": FONT_STACK,
        "currency": currency,
        "seller": seller,
        "seller_address": _address_lines(seller.get("address", "")),
        "seller_lines": _seller_lines(seller, lang),
        "seller_logo": logo_url(seller),
        "customer": customer,
        "customer_name": customer.get("legal_name") or customer.get("name", ""),
        "customer_address": _customer_address_lines(customer, lang),
        "customer_tax_id": customer.get("tax_id", ""),
        "footer_lines": footer_lines,
        "footer_line": " · ".join(footer_lines),
        "seller_footer": _seller_footer_text(seller, lang),
        "iban": fmt.iban(seller.get("iban", "")),
    }


def service_period(invoice: Invoice, lines: Sequence[InvoiceLine]) -> tuple[dt.date | None, dt.date | None]:
    """The period the invoice bills (§14 (4) no. 6 UStG): the invoice's own period, else the span of its lines'
    periods; ``(None, None)`` when nothing on it has a period (then the service date is the issue date)."""
    if invoice.period_start and invoice.period_end:
        return invoice.period_start, invoice.period_end
    dated = [line for line in lines if line.period_start and line.period_end]
    if not dated:
        return None, None
    return min(line.period_start for line in dated), max(line.period_end for line in dated)  # type: ignore[type-var]


def _service_meta(start: dt.date | None, end: dt.date | None, issue_date: dt.date | None, lang: str) -> tuple[str, str]:
    if start is not None and end is not None:
        return fmt.label(lang, "period"), fmt.period(start, end, lang)
    return fmt.label(lang, "service_date"), fmt.date(issue_date, lang)


def invoice_context(*, invoice: Invoice, lines: Sequence[InvoiceLine] | None = None) -> dict[str, Any]:
    """Everything the document template prints, formatted for the customer's language (no queries when
    ``lines`` is given and the invoice is finalized). The content follows art. 226 of the VAT Directive and §14
    (4) UStG. The status (paid, void) is not part of the document: ``status_note`` is for the portal's live view
    only, and the PDF template never prints it."""
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
            "discount_description": getattr(line, "discount_description", "") if line.discount_amount else "",
        }
        for index, line in enumerate(lines, start=1)
    ]
    number = invoice.number
    treatment = invoice.tax_treatment
    status = invoice.status
    child_groups = invoice_child_groups(invoice=invoice, lines=lines)
    line_groups = _line_groups(child_groups, lines, line_rows, money=money, lang=lang)
    period_start, period_end = service_period(invoice, lines)
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
                _service_meta(period_start, period_end, invoice.issue_date, lang),
                (fmt.label(lang, "due_date"), fmt.date(invoice.due_date, lang)),
            ],
            "lines": line_rows,
            "line_groups": line_groups,
            "totals": [
                row
                for row in (
                    (fmt.label(lang, "subtotal"), money(invoice.subtotal), False),
                    (fmt.label(lang, "discount"), money(-invoice.discount_total), False)
                    if invoice.discount_total
                    else None,
                    *[
                        (row["label"], row["amount"], False)
                        for row in _tax_rows(invoice.tax_summary, currency, lang, treatment)
                    ],
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
            "legal_heading": "",
            "legal_note": _child_legal_notes(child_groups, lines, customer=customer, seller=seller, lang=lang)
            if child_groups
            else legal_notes(
                summary=invoice.tax_summary, treatment=treatment, customer=customer, seller=seller, lang=lang
            ),
            "memo": invoice.memo,
            "document_footer": invoice.footer,
            "payment_terms": payment_terms_text(invoice, lang),
            "show_payment": invoice.amount_due > 0 and status != InvoiceStatus.VOID,
            "pay_by_transfer": fmt.label(
                lang,
                "pay_by_transfer",
                amount=money(invoice.amount_due),
                due_date=fmt.date(invoice.due_date, lang) or "—",
                number=number or "—",
            ),
            "pay_url": portal_invoice_url(number) if number else "",
            "status_note": fmt.label(lang, "paid_thanks")
            if status == InvoiceStatus.PAID
            else fmt.label(lang, "void")
            if status == InvoiceStatus.VOID
            else "",
        }
    )
    return context


def _child_legal_notes(
    groups: Sequence[ChildGroup],
    lines: Sequence[InvoiceLine],
    *,
    customer: dict[str, Any],
    seller: dict[str, Any],
    lang: str,
) -> str:
    """An invoice to a parent: each child's zero-rate notes as for the child (its country and VAT id decide, e.g.
    the EU reverse charge of a French child), named after it; lines outside the groups as for the parent."""
    notes = []
    for group in groups:
        summary = [
            {"category": line.tax_category, "exemption_reason": line.tax_exemption_reason} for line in group.lines
        ]
        account = {**customer, "country": group.country, "tax_id": group.tax_id}
        note = legal_notes(summary=summary, treatment="", customer=account, seller=seller, lang=lang)
        if note:
            notes.append(f"{group.name}: {note}")
    rest = invoice_ungrouped_lines(lines=lines, groups=groups)
    if rest:
        summary = [{"category": line.tax_category, "exemption_reason": line.tax_exemption_reason} for line in rest]
        notes.append(legal_notes(summary=summary, treatment="", customer=customer, seller=seller, lang=lang))
    return " ".join(note for note in notes if note)


def _line_groups(
    groups: Sequence[ChildGroup],
    lines: Sequence[InvoiceLine],
    line_rows: list[dict[str, Any]],
    *,
    money: Callable[[Decimal], str],
    lang: str,
) -> list[dict[str, Any]]:
    """An invoice to a parent: its line rows per child account, each under the child's name (country, VAT id)
    with the child's total (net and tax); lines outside every child's group follow without a heading
    (docs/decisions/parent-accounts.md). Empty for any other invoice."""
    if not groups:
        return []
    row_of = {id(line): row for line, row in zip(lines, line_rows, strict=True)}
    out = []
    for group in groups:
        details = ", ".join(
            part
            for part in (group.country, f"{fmt.label(lang, 'customer_tax_id')}: {group.tax_id}" if group.tax_id else "")
            if part
        )
        out.append(
            {
                "heading": f"{group.name} ({details})" if details else group.name,
                "lines": [row_of[id(line)] for line in group.lines],
                "total_label": fmt.label(lang, "account_total", name=group.name),
                "total": money(group.total),
                "net_tax": fmt.label(lang, "account_net_tax", net=money(group.net), tax=money(group.tax)),
            }
        )
    rest = invoice_ungrouped_lines(lines=lines, groups=groups)
    if rest:
        out.append({"heading": "", "lines": [row_of[id(line)] for line in rest], "total_label": "", "total": ""})
    return out


def credit_note_context(
    *, credit_note: CreditNote, lines: Sequence[CreditNoteLine] | None = None, invoice_number: str | None = None
) -> dict[str, Any]:
    customer, seller = credit_note.customer_snapshot, credit_note.seller_snapshot
    lang = fmt.document_language(customer.get("language"))
    currency = credit_note.currency
    lines = list(credit_note.lines.all()) if lines is None else list(lines)
    invoice = credit_note.invoice if invoice_number is None else None
    invoice_number = invoice_number if invoice_number is not None else credit_note.invoice.number
    period_start, period_end = (invoice.period_start, invoice.period_end) if invoice is not None else (None, None)

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
                (fmt.label(lang, "credited_invoice_date"), fmt.date(invoice.issue_date, lang) if invoice else ""),
                (fmt.label(lang, "period"), fmt.period(period_start, period_end, lang)),
                (fmt.label(lang, "reason"), credit_note.reason),
            ],
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
                    "discount_description": "",
                }
                for index, line in enumerate(lines, start=1)
            ],
            "totals": [
                (fmt.label(lang, "net_total"), money(credit_note.net_total), False),
                *[
                    (row["label"], row["amount"], False)
                    for row in _tax_rows(
                        credit_note.tax_summary,
                        currency,
                        lang,
                        invoice.tax_treatment if invoice is not None else TaxTreatment.STANDARD,
                    )
                ],
                (fmt.label(lang, "credit_total"), money(credit_note.total), True),
            ],
            "legal_heading": "",
            "legal_note": legal_notes(
                summary=credit_note.tax_summary,
                treatment=invoice.tax_treatment,
                customer=customer,
                seller=seller,
                lang=lang,
            )
            if invoice is not None
            else "",
            "memo": credit_note.memo,
            "document_footer": "",
            "payment_terms": "",
            "show_payment": False,
            "status_note": "",
            # what the credit note did when it was issued: part of the document, not a later status
            "credit_effect": " ".join(
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


def quote_context(*, quote: Any) -> dict[str, Any]:
    """A sent quote as a document (invoicing/quotes.py): its frozen offer — the first invoice's lines, taxes and
    total — with its validity, the start and the renewal. The customer and seller as they are now (a quote is
    not a tax document and keeps no snapshot)."""
    from invoicing.services import customer_snapshot, seller_snapshot

    customer, seller = customer_snapshot(customer=quote.customer), seller_snapshot()
    lang = fmt.document_language(customer.get("language"))
    currency = quote.currency
    offer = quote.offer or {}
    first = offer.get("first") or {}

    def money(value: Any) -> str:
        return fmt.money(Decimal(str(value)), currency, lang)

    def day(value: str | None) -> str:
        return fmt.date(dt.date.fromisoformat(value), lang) if value else ""

    start = (
        fmt.label(lang, "starts_on_acceptance") if offer.get("starts_on_acceptance") else day(offer.get("start_date"))
    )
    notes = []
    renewal = offer.get("renewal")
    if renewal:
        notes.append(fmt.label(lang, "renewal", amount=money(renewal["total"]), date=day(renewal["date"])))
    if quote.number:
        from invoicing.quotes import quote_portal_url

        notes.append(fmt.label(lang, "quote_note", url=quote_portal_url(quote)))
    context = _base_context(customer=customer, seller=seller, currency=currency, lang=lang)
    context.update(
        {
            "kind": "quote",
            "title": fmt.label(lang, "quote"),
            "is_draft": False,
            "number": quote.number,
            "meta": [
                (fmt.label(lang, "number"), quote.number),
                (fmt.label(lang, "quote_date"), fmt.date(quote.quote_date, lang) if quote.quote_date else ""),
                (fmt.label(lang, "valid_until"), fmt.date(quote.valid_until, lang)),
                (fmt.label(lang, "starts"), start),
                (
                    fmt.label(lang, "period"),
                    fmt.period(
                        dt.date.fromisoformat(first["period_start"]) if first.get("period_start") else None,
                        dt.date.fromisoformat(first["period_end"]) if first.get("period_end") else None,
                        lang,
                    ),
                ),
            ],
            "lines": [
                {
                    "position": index,
                    "description": line["description"],
                    "period": "",
                    "quantity": fmt.quantity(Decimal(line["quantity"]), lang),
                    "unit_price": money(line["unit_amount"]),
                    "tax": fmt.percentage(Decimal(line["tax_percentage"]), lang) if line["tax_name"] else "",
                    "amount": money(line["amount"]),
                    "discount": money(-Decimal(line["discount"])) if Decimal(line["discount"]) else "",
                    "discount_description": line.get("discount_description", ""),
                }
                for index, line in enumerate(first.get("lines", []), start=1)
            ],
            "totals": [
                (
                    fmt.label(lang, "net_total"),
                    money(Decimal(first.get("subtotal", "0")) - Decimal(first.get("discount_total", "0"))),
                    False,
                ),
                *[
                    (row["label"], row["amount"], False)
                    for row in _tax_rows(first.get("tax_summary") or [], currency, lang)
                ],
                (fmt.label(lang, "first_invoice"), money(first.get("total", "0")), True),
            ],
            "legal_heading": "",
            "legal_note": "",
            "memo": quote.memo,
            "document_footer": "",
            "payment_terms": "",
            "show_payment": False,
            "status_note": "",
            "credit_effect": "",
            "document_notes": notes,
        }
    )
    return context


def render_quote_pdf(*, quote: Any) -> bytes:
    return html_to_pdf(render_html(quote_context(quote=quote)))


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


# --- storage: the archive -------------------------------------------------------------------------------


class PdfState:
    """An issued document's archived PDF: missing (not rendered yet, or its render failed: ``render_pdfs
    --missing`` catches up) or archived. There is no "stale": a payment, credit or void never re-renders it."""

    MISSING = "missing"
    CURRENT = "current"


def invoice_pdf_state(*, invoice: Invoice, pdf: DocumentPdf | None) -> str:
    return PdfState.MISSING if pdf is None else PdfState.CURRENT


def document_pdf_path(*, folder: str, number: str, issue_date: dt.date | None, sha256: str, version: int = 1) -> str:
    """``invoices/2026/INV-2026-000123-<hash>.pdf`` (``…-v2-<hash>.pdf`` for a new version): by number, and
    content-addressed, so no file is ever overwritten."""
    safe_number = re.sub(r"[^A-Za-z0-9._-]+", "_", number).strip("._") or "document"
    year = issue_date.year if issue_date else "undated"
    suffix = f"-v{version}" if version > 1 else ""
    return f"{folder}/{year}/{safe_number}{suffix}-{sha256[:16]}.pdf"


def _save_file(name: str, content: bytes) -> str:
    if default_storage.exists(name):
        return name  # the same bytes (the name holds their hash), written by a concurrent render
    return default_storage.save(name, ContentFile(content))


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
    """Archive the original, once. A document that has one keeps it: a second render (a retried task, two
    workers) returns the stored original and leaves its file alone."""
    lookup: dict[str, Any] = {"invoice": invoice} if invoice is not None else {"credit_note": credit_note}
    existing = DocumentPdf.objects.filter(**lookup).first()
    if existing is not None:
        return existing
    sha256 = hashlib.sha256(content).hexdigest()
    name = _save_file(document_pdf_path(folder=folder, number=number, issue_date=issue_date, sha256=sha256), content)
    try:
        with transaction.atomic():
            return DocumentPdf.objects.create(
                **lookup,
                file=name,
                sha256=sha256,
                size=len(content),
                source_updated_at=source_updated_at,
                rendered_at=timezone.now(),
            )
    except IntegrityError:
        # A concurrent first render archived its original first: that one is the original. Ours is removed
        # after commit unless it is the very same file.
        winner = DocumentPdf.objects.get(**lookup)
        if winner.file.name != name:
            transaction.on_commit(partial(default_storage.delete, name))
        return winner


def _invoice_for_pdf(invoice_id: int) -> tuple[Invoice, list[InvoiceLine]]:
    invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
    return invoice, list(invoice.lines.all())


def _with_einvoice(pdf: bytes, stored: EInvoiceFile | None, customer: dict[str, Any], seller: dict[str, Any]) -> bytes:
    """A Factur-X customer's PDF carries its archived e-invoice XML (PDF/A-3); other PDFs are left as they are —
    their e-invoice travels beside them."""
    if stored is None or not einvoice_service.FORMATS[stored.format].embedded_in_pdf:
        return pdf
    filename, xml = einvoice_service.einvoice_bytes(stored)
    lang = fmt.document_language(customer.get("language"))
    return facturx_pdf(
        pdf=pdf,
        xml=xml,
        title=filename.removesuffix(".xml"),
        author=seller.get("legal_name", ""),
        subject=fmt.label(lang, "invoice"),
        lang=lang,
    )


def invoice_pdf_store(*, invoice_id: int) -> DocumentPdf:
    """Render a finalized invoice and archive it, unless it is archived already (the render task and
    ``render_pdfs`` call this; the original is never replaced)."""
    existing = DocumentPdf.objects.filter(invoice_id=invoice_id).first()
    if existing is not None:
        return existing
    invoice, lines = _invoice_for_pdf(invoice_id)
    if invoice.is_draft:
        raise DocumentRenderError(f"invoice {invoice_id} is a draft: only finalized invoices are stored")
    content = render_invoice_pdf(invoice=invoice, lines=lines)
    content = _with_einvoice(
        content, einvoice_service.einvoice_store(invoice=invoice), invoice.customer_snapshot, invoice.seller_snapshot
    )
    return _store(
        content=content,
        folder="invoices",
        number=invoice.number,
        issue_date=invoice.issue_date,
        invoice=invoice,
        source_updated_at=invoice.updated_at,
    )


def _credit_note_pdf_with_einvoice(credit_note: CreditNote) -> bytes:
    content = render_credit_note_pdf(credit_note=credit_note, lines=list(credit_note.lines.all()))
    return _with_einvoice(
        content,
        einvoice_service.einvoice_store(credit_note=credit_note),
        credit_note.customer_snapshot or credit_note.invoice.customer_snapshot,
        credit_note.seller_snapshot or credit_note.invoice.seller_snapshot,
    )


def credit_note_pdf_store(*, credit_note_id: int) -> DocumentPdf:
    existing = DocumentPdf.objects.filter(credit_note_id=credit_note_id).first()
    if existing is not None:
        return existing
    credit_note = CreditNote.objects.select_related("invoice").get(pk=credit_note_id)
    content = _credit_note_pdf_with_einvoice(credit_note)
    return _store(
        content=content,
        folder="credit-notes",
        number=credit_note.number,
        issue_date=credit_note.issue_date,
        credit_note=credit_note,
    )


@dataclass(frozen=True)
class ArchivedFile:
    """One archived rendering of a document: the original (version 1) or a later version."""

    version: int
    name: str
    sha256: str
    size: int
    rendered_at: dt.datetime
    reason: str = ""
    rendered_by: str = ""


def document_versions(pdf: DocumentPdf | None) -> list[ArchivedFile]:
    """The original and every later version of an archived document, oldest first (the last is current)."""
    if pdf is None:
        return []
    files = [ArchivedFile(1, pdf.file.name, pdf.sha256, pdf.size, pdf.rendered_at)]
    for version in pdf.versions.select_related("rendered_by").order_by("version"):
        files.append(
            ArchivedFile(
                version.version,
                version.file.name,
                version.sha256,
                version.size,
                version.rendered_at,
                version.reason,
                version.rendered_by.get_username() if version.rendered_by else "",
            )
        )
    return files


def _read_archived(pdf: DocumentPdf, *, version: int | None, number: str) -> tuple[str, bytes]:
    files = document_versions(pdf)
    chosen = files[-1] if version is None else next((f for f in files if f.version == version), None)
    if chosen is None:
        raise NotFound(f"{number} has no version {version}", field="version")
    try:
        with default_storage.open(chosen.name, "rb") as handle:
            content = handle.read()
    except OSError as exc:
        # Never rendered again in its place: an archived original that cannot be read is a case for the
        # backup (``manage.py verify_archive`` names it), not for a silent new rendering.
        raise DocumentRenderError(f"the archived PDF {chosen.name} of {number} cannot be read: {exc}") from exc
    suffix = f"-v{chosen.version}" if chosen.version > 1 else ""
    return f"{number}{suffix}.pdf", content


def invoice_pdf_bytes(*, invoice_id: int, version: int | None = None) -> tuple[str, bytes]:
    """``(file name, PDF)`` of an invoice: its archived PDF — the newest version, or ``version`` (1 is the
    original). Rendered and archived now if it has none yet; a draft is rendered on the fly and never stored."""
    invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
    if invoice.is_draft:
        return f"draft-invoice-{invoice.pk}.pdf", render_invoice_pdf(invoice=invoice)
    pdf = DocumentPdf.objects.filter(invoice=invoice).first() or invoice_pdf_store(invoice_id=invoice.pk)
    return _read_archived(pdf, version=version, number=invoice.number)


def credit_note_pdf_bytes(*, credit_note_id: int, version: int | None = None) -> tuple[str, bytes]:
    credit_note = CreditNote.objects.get(pk=credit_note_id)
    pdf = DocumentPdf.objects.filter(credit_note=credit_note).first() or credit_note_pdf_store(
        credit_note_id=credit_note.pk
    )
    return _read_archived(pdf, version=version, number=credit_note.number)


def email_attachment(email: OutboundEmail) -> list[Attachment]:
    """The outbox's attachment provider (registered in InvoicingConfig.ready): the archived PDF of the invoice or
    credit note a message is about (its newest version), and its e-invoice XML when the customer takes an XML
    format (a Factur-X PDF carries its XML inside)."""
    if email.invoice_id is not None:
        pdf = invoice_pdf_bytes(invoice_id=email.invoice_id)
        stored = EInvoiceFile.objects.filter(invoice_id=email.invoice_id).first()
    elif email.credit_note_id is not None:
        pdf = credit_note_pdf_bytes(credit_note_id=email.credit_note_id)
        stored = EInvoiceFile.objects.filter(credit_note_id=email.credit_note_id).first()
    else:
        return []
    attachments = [Attachment(*pdf)]
    if stored is not None and not einvoice_service.FORMATS[stored.format].embedded_in_pdf:
        attachments.append(Attachment(*einvoice_service.einvoice_bytes(stored), mimetype="application/xml"))
    return attachments


def document_pdf_render_version(
    *, invoice_id: int | None = None, credit_note_id: int | None = None, reason: str, actor: Any = None
) -> DocumentPdfVersion:
    """Render an archived document again with today's template — after a template fix — and archive it as its
    next version, with the reason, the time and who. The original and earlier versions stay untouched."""
    reason = " ".join((reason or "").split())
    if not reason:
        raise InvalidInput("Say why the document is rendered again (the reason is archived with it).", field="reason")
    if (invoice_id is None) == (credit_note_id is None):
        raise InvalidInput("Name one invoice or one credit note.")
    if invoice_id is not None:
        invoice, lines = _invoice_for_pdf(invoice_id)
        if invoice.is_draft:
            raise NotAllowed(f"invoice {invoice_id} is a draft: drafts have no archived PDF")
        original = invoice_pdf_store(invoice_id=invoice_id)
        content = render_invoice_pdf(invoice=invoice, lines=lines)
        # a Factur-X PDF's new version embeds the same archived XML as the original
        content = _with_einvoice(
            content,
            einvoice_service.einvoice_store(invoice=invoice),
            invoice.customer_snapshot,
            invoice.seller_snapshot,
        )
        folder, number, issue_date = "invoices", invoice.number, invoice.issue_date
    else:
        assert credit_note_id is not None
        credit_note = CreditNote.objects.select_related("invoice").get(pk=credit_note_id)
        original = credit_note_pdf_store(credit_note_id=credit_note.pk)
        content = _credit_note_pdf_with_einvoice(credit_note)
        folder, number, issue_date = "credit-notes", credit_note.number, credit_note.issue_date
    sha256 = hashlib.sha256(content).hexdigest()
    with transaction.atomic():
        locked = DocumentPdf.objects.select_for_update().get(pk=original.pk)
        last = locked.versions.order_by("-version").values_list("version", flat=True).first() or 1
        name = _save_file(
            document_pdf_path(folder=folder, number=number, issue_date=issue_date, sha256=sha256, version=last + 1),
            content,
        )
        user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
        return DocumentPdfVersion.objects.create(
            original=locked,
            version=last + 1,
            file=name,
            sha256=sha256,
            size=len(content),
            reason=reason[:500],
            rendered_at=timezone.now(),
            rendered_by=user,
        )


# --- selection for bulk rendering -----------------------------------------------------------------------


def invoices_needing_pdf(*, only_missing: bool) -> QuerySet[Invoice]:
    """Finalized invoices without an archived PDF (all finalized invoices when ``only_missing`` is
    false: rendering one that has its PDF is a no-op, the archive is never rewritten)."""
    invoices = Invoice.objects.finalized()
    if only_missing:
        invoices = invoices.filter(pdf__isnull=True)
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
    """Render and archive the PDFs of every invoice and credit note without one (an archived PDF is never rendered
    again: ``only_missing`` only saves reading them). One broken document never stops the others: it is
    reported, stays "missing" and is tried again next time.
    The command ``render_pdfs`` and the periodic task ``invoicing.render_missing_pdfs`` both call this."""
    invoice_ids = list(invoices_needing_pdf(only_missing=only_missing).values_list("pk", flat=True))
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
        invoices_needing_pdf(only_missing=only_missing).count()
        + credit_notes_needing_pdf(only_missing=only_missing).count()
    )
