"""Bidirectional control characters in customer text (a right-to-left override in an address reversed what the
PDF showed) are removed where the document is rendered; the stored data keeps them, right-to-left letters stay."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import pytest
from pypdf import PdfReader

from core.text import BIDI_CONTROLS
from invoicing import documents
from tests.factories import CustomerFactory, InvoiceFactory, NumberSeriesFactory

pytestmark = pytest.mark.django_db

RLO, PDF_, RLI, PDI, RLM = "\u202e", "\u202c", "\u2067", "\u2069", "\u200f"


def _pdf_text(pdf: bytes) -> str:
    return "".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture
def invoice(db: Any) -> Any:
    NumberSeriesFactory(default_invoices=True)
    customer = CustomerFactory(
        name=f"Acme{RLO}Trading",
        legal_name=f"Acme {RLO}Trading GmbH{PDF_}",
        address_line1=f"Hauptstraße 1{RLO} IBAN DE89370400440532013000",
        city=f"Berlin{RLM}",
        exempt=True,
    )
    return InvoiceFactory(
        customer=customer,
        memo=f"Pay to {RLI}DE02120300000000202051{PDI}",
        lines=[{"description": f"Consulting {RLO}shtnom 3", "unit_amount": Decimal("10.00")}],
        finalized=True,
    )


def test_the_pdf_prints_no_bidi_control_and_the_text_in_the_order_it_was_typed(invoice: Any) -> None:
    text = _pdf_text(documents.render_invoice_pdf(invoice=invoice))
    assert not set(text) & set(BIDI_CONTROLS), [hex(ord(c)) for c in set(text) & set(BIDI_CONTROLS)]
    flat = "".join(text.split())
    for typed in ("AcmeTradingGmbH", "Hauptstraße1IBANDE89370400440532013000", "Consultingshtnom3"):
        assert typed in flat, (typed, text)
    assert "PaytoDE02120300000000202051" in flat


def test_the_html_preview_has_none_either_and_the_stored_data_is_kept(invoice: Any) -> None:
    html = documents.render_invoice_html(invoice=invoice)
    assert not set(html) & set(BIDI_CONTROLS)
    assert RLO in invoice.customer_snapshot["legal_name"]  # what the customer typed is stored as typed


def test_right_to_left_letters_are_kept(db: Any) -> None:
    NumberSeriesFactory(default_invoices=True)
    customer = CustomerFactory(name="شركة", legal_name="שלום בע״מ", exempt=True)
    invoice = InvoiceFactory(customer=customer, lines=[{"unit_amount": Decimal("1.00")}], finalized=True)
    assert "שלום" in documents.render_invoice_html(invoice=invoice)
