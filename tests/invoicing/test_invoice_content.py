"""What an issued invoice says (EU VAT Directive art. 226, German §14 UStG) and that every script a customer
writes their name in comes out of the PDF again (text extraction: the fonts embed the glyphs with their Unicode)."""

from __future__ import annotations

import datetime as dt
import io
import unicodedata
from decimal import Decimal as D

import pytest
from djmoney.money import Money
from pypdf import PdfReader

from core import formatting as fmt
from customers.models import TaxStatus
from invoicing import documents
from invoicing.billing_run import billing_run
from invoicing.models import Invoice
from subscriptions.services import ItemSpec, discount_create, usage_record_create
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory
from tests.factories.subscriptions import CouponFactory, ProductFactory

pytestmark = pytest.mark.django_db
JAN_1 = dt.date(2026, 1, 1)
FEB_1 = dt.date(2026, 2, 1)


def _text(content: bytes) -> str:
    # Arabic comes out in its presentation forms (the shaped glyphs); NFKC maps them back to the letters.
    raw = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)
    return " ".join(unicodedata.normalize("NFKC", raw).split())


@pytest.fixture(autouse=True)
def _vat(series, vat_de, vat_at):
    pass


def test_an_all_metered_subscriptions_invoice_shows_the_usage_period_not_the_next_one():
    calls = PriceFactory(unit_amount=Money(D("0.0125"), "EUR"), metered=True)
    subscription = SubscriptionFactory(items=[ItemSpec(price=calls, quantity=1)], start_date=JAN_1)
    billing_run(as_of=JAN_1)  # nothing to bill in advance
    item = subscription.items.get()
    usage_record_create(
        subscription_item=item, quantity=D(4000), timestamp=dt.datetime(2026, 1, 15, tzinfo=dt.UTC), idempotency_key="u"
    )
    billing_run(as_of=FEB_1)
    invoice = Invoice.objects.get(subscription=subscription)
    assert (invoice.period_start, invoice.period_end) == (JAN_1, FEB_1)  # January's usage, billed on Feb 1
    text = _text(documents.render_invoice_pdf(invoice=invoice))
    january = fmt.period(JAN_1, FEB_1, "en")
    assert f"Service period {january}" in text
    assert fmt.period(FEB_1, dt.date(2026, 3, 1), "en") not in text


def test_the_german_invoice_carries_every_mandatory_field():
    """§14 (4) UStG: full name and address of both parties, the seller's tax number or VAT id, issue date,
    unique number, quantity and kind of the service, service period, net amount per rate, rate and tax amount,
    plus the GmbH's register court and number and managing directors (§35a GmbHG), payment terms and bank."""
    product = ProductFactory(name="pro-tier-internal", statement_descriptor="Cadence Pro Abonnement")
    price = PriceFactory(product=product, nickname="PRO-M-2026-EUR-legacy", unit_amount=Money(D("100.00"), "EUR"))
    customer = CustomerFactory(
        name="Müller",
        legal_name="Bäckerei Müller & Söhne GmbH",
        address_line1="Königsallee 12",
        postal_code="40212",
        city="Düsseldorf",
        language="de",
        tax_id="DE811907980",
    )
    subscription = SubscriptionFactory(customer=customer, price=price, start_date=JAN_1)
    coupon = CouponFactory(code="WILLKOMMEN10", name="Willkommensrabatt")
    discount_create(coupon=coupon, as_of=JAN_1, subscription=subscription)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(subscription=subscription)
    text = _text(documents.render_invoice_pdf(invoice=invoice))

    for expected in (
        "Rechnung",
        f"Nummer {invoice.number}",
        "Rechnungsdatum 01.01.2026",
        "Leistungszeitraum 01.01.2026 – 31.01.2026",
        "Fällig am 15.01.2026",
        # the seller: name, address, VAT id and tax number, register, managing directors, bank
        "Cadence Demo GmbH",
        "Friedrichstraße 123",
        "10117 Berlin",
        "USt-IdNr. DE136695976",
        "Steuernummer 27/123/45678",
        "Registergericht: Amtsgericht Berlin-Charlottenburg HRB 654321",
        "Geschäftsführung: Dr. Erika Mustermann, Jonas Weber",
        "IBAN DE89 3704 0044 0532 0130 00",
        "BIC COBADEFFXXX",
        # the customer, with its VAT id
        "Bäckerei Müller & Söhne GmbH",
        "Königsallee 12",
        "40212 Düsseldorf",
        "USt-IdNr. Kunde: DE811907980",
        # the public product name, never the internal nickname; the coupon by name and terms
        "Cadence Pro Abonnement",
        "Willkommensrabatt (10 % off, once): -10,00 €",
        # net per rate, rate, tax, total
        "Zwischensumme 100,00 €",
        "USt. 19 % auf 90,00 € 17,10 €",
        "Gesamtbetrag 107,10 €",
        "Zahlungsbedingungen: zahlbar ohne Abzug innerhalb von 14 Tagen, bis 15.01.2026.",
        "Vielen Dank für Ihren Auftrag.",
    ):
        assert expected in text, expected
    assert "PRO-M-2026-EUR-legacy" not in text and "pro-tier-internal" not in text


def test_a_reverse_charge_invoice_states_the_reason_once_with_its_legal_reference():
    customer = CustomerFactory(
        country="AT", tax_id="ATU13585627", tax_status=TaxStatus.REVERSE_CHARGE, legal_name="Alpen Handel GmbH"
    )
    SubscriptionFactory(customer=customer, price=PriceFactory(unit_amount=Money(D("80.00"), "EUR")), start_date=JAN_1)
    billing_run(as_of=JAN_1)
    text = _text(documents.render_invoice_pdf(invoice=Invoice.objects.get(customer=customer)))
    assert text.count("Reverse charge") == 1
    assert "Reverse charge: the recipient is liable for the VAT (Article 196, Council Directive 2006/112/EC" in text
    assert "Customer VAT ID: ATU13585627" in text and "VAT ID DE136695976" in text  # both parties' VAT ids
    assert "VAT 0 % on €80.00 €0.00" in text


@pytest.mark.parametrize(
    ("name", "city"),
    [
        ("山田商事株式会社", "東京都千代田区"),  # Japanese
        ("北京云帆科技有限公司", "北京市朝阳区"),  # Chinese (simplified)
        ("주식회사 한빛소프트", "서울특별시 강남구"),  # Korean
        ("شركة الأفق للتجارة", "دبي"),  # Arabic, right to left
        ("חברת אור בע״מ", "תל אביב"),  # Hebrew, right to left
        ("Ελληνική Εταιρεία Α.Ε.", "Αθήνα"),  # Greek
        ("ООО «Берёзка»", "Москва"),  # Cyrillic
    ],
)
def test_every_script_of_a_customer_name_comes_out_of_the_pdf(name, city):
    customer = CustomerFactory(name=name, city=city, country="US", currency="EUR")
    SubscriptionFactory(customer=customer, start_date=JAN_1)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    content = documents.render_invoice_pdf(invoice=invoice)
    text = _text(content)
    assert unicodedata.normalize("NFKC", name) in text
    assert unicodedata.normalize("NFKC", city) in text
    assert "Friedrichstraße" in text  # and the German umlauts of the seller's address
    assert len(content) < 150_000  # only the glyphs used are embedded (a subset of each font)
