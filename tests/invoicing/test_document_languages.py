"""Invoices and credit notes in the customer's language (French and Spanish here; German in
test_invoice_content.py): the labels, the customer's country named in that language, dates and money written as
that locale writes them (docs/i18n.md)."""

from __future__ import annotations

import datetime as dt
import io
import os
import unicodedata
from decimal import Decimal as D

import pytest
from djmoney.money import Money
from pypdf import PdfReader

from invoicing import documents
from invoicing.billing_run import billing_run
from invoicing.models import Invoice
from invoicing.services import credit_note_issue
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory
from tests.factories.invoicing import TaxRateFactory

pytestmark = pytest.mark.django_db
JAN_1 = dt.date(2026, 1, 1)


def _text(content: bytes) -> str:
    # NFKC turns the no-break spaces of the locales' number formats ("1 234,50 €") into plain spaces.
    raw = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    return " ".join(unicodedata.normalize("NFKC", raw).split())


@pytest.fixture(autouse=True)
def _vat(series, vat_de):
    TaxRateFactory(country="BE", percentage=D("21"))


def _invoice(*, language: str, country: str, city: str, amount: str = "1234.50") -> Invoice:
    customer = CustomerFactory(
        name=f"Client {language}",
        language=language,
        country=country,
        address_line1="Rue de la Loi 16" if country == "BE" else "Unter den Linden 5",
        postal_code="1000" if country == "BE" else "10117",
        city=city,
    )
    price = PriceFactory(unit_amount=Money(D(amount), "EUR"))
    subscription = SubscriptionFactory(customer=customer, price=price, start_date=JAN_1)
    billing_run(as_of=JAN_1)
    return Invoice.objects.get(subscription=subscription)


def test_a_french_invoice_speaks_french_and_writes_money_and_dates_the_french_way():
    invoice = _invoice(language="fr", country="BE", city="Bruxelles")
    pdf = documents.render_invoice_pdf(invoice=invoice)
    if os.environ.get("SAVE_SAMPLE_PDF"):  # docs/samples/invoice-fr.png comes from this PDF (docs/i18n.md)
        with open(os.environ["SAVE_SAMPLE_PDF"], "wb") as sample:
            sample.write(pdf)
    text = _text(pdf)
    tax = invoice.tax_total
    for expected in (
        "Facture",
        f"Numéro {invoice.number}",
        "Date de facture 1 janv. 2026",
        "Période de prestation 1 janv. 2026 – 31 janv. 2026",
        "Date d’échéance 15 janv. 2026",
        "FACTURER À",  # the block label is set in capitals
        "Rue de la Loi 16",
        "1000 Bruxelles",
        "Belgique",  # not "Belgium"
        "Désignation",
        "Prix unitaire",
        "1 234,50 €",  # narrow no-break space as thousands separator, decimal comma, symbol after
        "Sous-total 1 234,50 €",
        "Total TTC",
        "Montant dû",
        "Conditions de paiement : payable sans escompte sous 14 jours, au plus tard le 15 janv. 2026.",
        "Merci de votre confiance.",  # the seller's footer in French
    ):
        assert expected in text, expected
    assert invoice.tax_total > 0 and f"{tax:.2f}".replace(".", ",") in text
    for english in ("Invoice", "Bill to", "Amount due", "Belgium", "Jan 1, 2026", "€1,234.50", "Thank you"):
        assert english not in text, english


def test_a_spanish_invoice_speaks_spanish_and_names_the_country_in_spanish():
    invoice = _invoice(language="es", country="DE", city="Berlin")
    text = _text(documents.render_invoice_pdf(invoice=invoice))
    for expected in (
        "Factura",
        f"Número {invoice.number}",
        "Fecha de emisión 1 ene 2026",
        "Periodo de prestación 1 ene 2026 – 31 ene 2026",
        "Fecha de vencimiento 15 ene 2026",
        "FACTURAR A",
        "Unter den Linden 5",
        "10117 Berlin",
        "Alemania",  # not "Germany"
        "Precio unitario",
        "Subtotal 1.234,50 €",
        "IVA 19 % sobre 1.234,50 € 234,56 €",
        "Total 1.469,06 €",
        "Importe pendiente 1.469,06 €",
        "Condiciones de pago: pagadero sin deducción en un plazo de 14 días, hasta el 15 ene 2026.",
    ):
        assert expected in text, expected
    for english in ("Invoice", "Bill to", "Germany", "Jan 1, 2026", "€1,469.06", "Deutschland"):
        assert english not in text, english


def test_a_spanish_credit_note_is_spanish_too():
    invoice = _invoice(language="es", country="DE", city="Berlin", amount="100.00")
    credit_note = credit_note_issue(invoice=invoice, reason="Error de facturación")
    text = _text(documents.render_credit_note_pdf(credit_note=credit_note))
    for expected in ("Factura rectificativa", "Factura rectificada", invoice.number, "Motivo Error de facturación"):
        assert expected in text, expected
    assert "Alemania" in text and "119,00 €" in text
