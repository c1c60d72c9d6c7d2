"""E-invoices issued by the product: each scenario billed for real, written in every format, validated with zero
errors (CII XSD, EN 16931 rules, XRechnung rules where claimed); a broken buyer is held with the rule named."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from decimal import Decimal as D
from pathlib import Path

import pytest
from djmoney.money import Money
from lxml import etree
from pypdf import PdfReader

from customers.models import TaxStatus
from invoicing import documents
from invoicing.billing_run import billing_run
from invoicing.einvoice import facturx, mapping, service, validation
from invoicing.einvoice.service import FORMATS, EInvoiceRejected
from invoicing.models import EInvoiceFile, Invoice, InvoiceStatus
from invoicing.services import (
    credit_note_issue,
    invoice_finalize,
)
from subscriptions.services import discount_create
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory
from tests.factories.customers import seller_profile_create
from tests.factories.subscriptions import CouponFactory, ProductFactory

pytestmark = pytest.mark.django_db
JAN_1 = dt.date(2026, 1, 1)
UBL = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"


@pytest.fixture(autouse=True)
def _setup(series, vat_de, vat_at):
    seller_profile_create(phone="+49 30 1234567")


def _public_buyer(**overrides):
    values = {
        "legal_name": "Stadtwerke Musterstadt AöR",
        "address_line1": "Rathausplatz 1",
        "postal_code": "12345",
        "city": "Musterstadt",
        "language": "de",
        "einvoice_format": "xrechnung_ubl",
        "buyer_reference": "04011000-12345-34",
        "purchase_order": "PO-2026-0042",
        "tax_id": "DE811907980",
    }
    return CustomerFactory(**{**values, **overrides})


def _sample(name: str, content: bytes) -> None:
    """``EINVOICE_SAMPLES=docs/samples pytest tests/invoicing/einvoice`` refreshes the samples in docs/."""
    if folder := os.environ.get("EINVOICE_SAMPLES"):
        (Path(folder) / name).write_bytes(content)


def _every_format_valid(invoice: Invoice, sample: str = "") -> dict[str, bytes]:
    lines = list(invoice.lines.order_by("position", "pk"))
    document = mapping.invoice_document(invoice, lines)
    written = {}
    for code, fmt in FORMATS.items():
        xml = fmt.xml(document)
        report = validation.validate(xml, xrechnung=fmt.xrechnung)
        assert report.errors == (), (code, report.errors)
        written[code] = xml
        if sample:
            _sample(f"einvoice-{sample}-{FORMATS[code].file_suffix}.xml", xml)
    return written


def _ubl_value(xml: bytes, path: str) -> list[str]:
    return [
        node.text
        for node in etree.fromstring(xml).iterfind(path, {"cbc": UBL, "cac": UBL.replace("Basic", "Aggregate")})
    ]


def test_a_subscription_invoice_with_a_coupon_is_valid_in_every_format_with_its_exact_amounts():
    product = ProductFactory(name="pro", statement_descriptor="Cadence Pro")
    price = PriceFactory(product=product, unit_amount=Money(D("100.00"), "EUR"))
    customer = _public_buyer()
    subscription = SubscriptionFactory(customer=customer, price=price, start_date=JAN_1)
    discount_create(
        coupon=CouponFactory(code="WILLKOMMEN10", name="Willkommensrabatt"), as_of=JAN_1, subscription=subscription
    )
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(subscription=subscription)
    assert invoice.status == InvoiceStatus.OPEN and invoice.total == D("107.10")  # 100 − 10 + 19 % of 90
    written = _every_format_valid(invoice, sample="coupon")
    ubl = written["xrechnung_ubl"]
    assert _ubl_value(ubl, "cac:LegalMonetaryTotal/cbc:LineExtensionAmount") == ["90.00"]
    assert _ubl_value(ubl, "cac:TaxTotal/cbc:TaxAmount") == ["17.10"]
    assert _ubl_value(ubl, "cac:LegalMonetaryTotal/cbc:PayableAmount") == ["107.10"]
    assert _ubl_value(ubl, "cac:InvoiceLine/cac:AllowanceCharge/cbc:Amount") == ["10.00"]
    assert _ubl_value(ubl, "cbc:BuyerReference") == ["04011000-12345-34"]
    assert _ubl_value(ubl, "cac:OrderReference/cbc:ID") == ["PO-2026-0042"]
    assert _ubl_value(ubl, "cac:InvoicePeriod/cbc:EndDate") == ["2026-01-31"]  # inclusive in EN 16931


def test_exempt_reverse_charge_and_a_jpy_export_are_valid_in_every_format():
    exempt = CustomerFactory(
        tax_status=TaxStatus.EXEMPT,
        legal_name="Verein e.V.",
        einvoice_format="peppol",
        buyer_reference="V-1",
    )
    reverse = CustomerFactory(
        country="AT",
        tax_id="ATU13585627",
        tax_status=TaxStatus.REVERSE_CHARGE,
        legal_name="Alpen Handel GmbH",
        einvoice_format="xrechnung_cii",
        buyer_reference="AT-REF-1",
    )
    tokyo = CustomerFactory(
        country="JP",
        currency="JPY",
        legal_name="山田商事株式会社",
        city="東京都千代田区",
        postal_code="100-0005",
        address_line1="丸の内1-1",
        einvoice_format="facturx",
        buyer_reference="JP-7",
    )
    SubscriptionFactory(customer=exempt, price=PriceFactory(unit_amount=Money(D("50.00"), "EUR")), start_date=JAN_1)
    SubscriptionFactory(customer=reverse, price=PriceFactory(unit_amount=Money(D("80.00"), "EUR")), start_date=JAN_1)
    SubscriptionFactory(customer=tokyo, price=PriceFactory(unit_amount=Money(D("3040"), "JPY")), start_date=JAN_1)
    billing_run(as_of=JAN_1)
    for customer, category, total in ((exempt, "E", D("50.00")), (reverse, "AE", D("80.00")), (tokyo, "O", D(3040))):
        invoice = Invoice.objects.get(customer=customer)
        assert (invoice.status, invoice.total) == (InvoiceStatus.OPEN, total), invoice.memo
        written = _every_format_valid(
            invoice, sample={"E": "exempt", "AE": "reverse-charge", "O": "jpy-export"}[category]
        )
        assert _ubl_value(written["peppol"], "cac:TaxTotal/cac:TaxSubtotal/cac:TaxCategory/cbc:ID") == [category]
    jpy = _every_format_valid(Invoice.objects.get(customer=tokyo))["peppol"]
    assert _ubl_value(jpy, "cac:LegalMonetaryTotal/cbc:PayableAmount") == ["3040"]  # JPY: no minor unit


def test_a_credit_note_references_its_invoice_and_is_valid_in_every_format():
    customer = _public_buyer()
    SubscriptionFactory(customer=customer, price=PriceFactory(unit_amount=Money(D("100.00"), "EUR")), start_date=JAN_1)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    credit_note = credit_note_issue(invoice=invoice, reason="Service outage", amount=D("59.50"))
    assert (credit_note.net_total, credit_note.tax_total) == (D("50.00"), D("9.50"))
    document = mapping.credit_note_document(credit_note, list(credit_note.lines.all()), invoice=invoice)
    for code, fmt in FORMATS.items():
        xml = fmt.xml(document)
        assert validation.validate(xml, xrechnung=fmt.xrechnung).errors == (), code
        _sample(f"einvoice-credit-note-{fmt.file_suffix}.xml", xml)
    ubl = FORMATS["peppol"].xml(document)
    assert etree.fromstring(ubl).tag.endswith("CreditNote")
    assert _ubl_value(ubl, "cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID") == [invoice.number]
    assert _ubl_value(ubl, "cac:LegalMonetaryTotal/cbc:PayableAmount") == [str(credit_note.total)]


def test_a_buyer_without_leitweg_id_is_held_as_a_draft_by_the_billing_run_with_the_rule_and_field_named():
    customer = _public_buyer(buyer_reference="")
    SubscriptionFactory(customer=customer, price=PriceFactory(unit_amount=Money(D("100.00"), "EUR")), start_date=JAN_1)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    assert invoice.status == InvoiceStatus.DRAFT and invoice.number == ""
    assert "XRechnung 3.0 (UBL) e-invoice fails validation" in invoice.memo
    assert "customer → buyer reference / Leitweg-ID" in invoice.memo
    # staff finalizing it get the same list and the draft stays a draft
    with pytest.raises(EInvoiceRejected) as refused:
        invoice_finalize(invoice=invoice, issue_date=JAN_1)
    assert "fix: customer → buyer reference / Leitweg-ID" in str(refused.value)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.DRAFT and invoice.number == ""
    # fixed, it is issued
    customer.buyer_reference = "04011000-12345-34"
    customer.save()
    invoice_finalize(invoice=invoice, issue_date=JAN_1)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.number


def test_a_rule_that_only_the_validator_knows_holds_the_invoice_with_its_rule_id():
    """Data present but wrong — an electronic address scheme that is no EAS code — is found by the EN 16931 code
    list rule, named by its id."""
    customer = _public_buyer(einvoice_format="peppol", einvoice_address_scheme="ZZZZ")
    SubscriptionFactory(customer=customer, price=PriceFactory(unit_amount=Money(D("100.00"), "EUR")), start_date=JAN_1)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    assert invoice.status == InvoiceStatus.DRAFT
    assert "BR-CL-25" in invoice.memo


def test_the_issued_einvoice_is_archived_once_with_its_hash_and_e_mailed_beside_the_pdf(
    django_capture_on_commit_callbacks,
):
    customer = _public_buyer()
    SubscriptionFactory(customer=customer, price=PriceFactory(unit_amount=Money(D("100.00"), "EUR")), start_date=JAN_1)
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    documents.invoice_pdf_store(invoice_id=invoice.pk)
    stored = EInvoiceFile.objects.get(invoice=invoice)
    filename, xml = service.einvoice_bytes(stored)
    assert filename == f"{invoice.number}-xrechnung-ubl.xml"
    assert hashlib.sha256(xml).hexdigest() == stored.sha256 and stored.format == "xrechnung_ubl"
    assert validation.validate(xml, xrechnung=True).valid
    # a second store (a retried task) returns the archived one; nothing is rewritten
    assert service.einvoice_store(invoice=invoice).pk == stored.pk
    from invoicing.documents import email_attachment
    from notifications.models import OutboundEmail

    email = OutboundEmail.objects.filter(invoice=invoice).first()
    if email is not None:
        attachments = email_attachment(email)
        assert [(a.filename, a.mimetype) for a in attachments][1] == (filename, "application/xml")


def test_a_facturx_customer_gets_a_pdf_a3_with_the_xml_embedded():
    customer = CustomerFactory(
        einvoice_format="facturx",
        legal_name="Acheteur SARL",
        country="FR",
        tax_id="FR40303265045",
        tax_status=TaxStatus.REVERSE_CHARGE,
        language="fr",
        address_line1="15 Rue de la République",
        postal_code="69002",
        city="Lyon",
    )
    SubscriptionFactory(customer=customer, price=PriceFactory(unit_amount=Money(D("120.00"), "EUR")), start_date=JAN_1)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    pdf = documents.invoice_pdf_store(invoice_id=invoice.pk)
    with pdf.file.open("rb") as handle:
        content = handle.read()
    _sample("einvoice-factur-x.pdf", content)
    xml = facturx.embedded_xml(content)  # the factur-x library's own reader and XSD check
    assert xml == service.einvoice_bytes(EInvoiceFile.objects.get(invoice=invoice))[1]
    assert validation.validate(xml, xrechnung=False).valid
    reader = PdfReader(io.BytesIO(content))
    root = reader.trailer["/Root"]
    assert root["/OutputIntents"][0].get_object()["/S"] == "/GTS_PDFA1"
    metadata = root["/Metadata"].get_object().get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in metadata or b'pdfaid:part="3"' in metadata
    for page in reader.pages:  # PDF/A: every font embedded
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = (font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font).get(
                "/FontDescriptor"
            )
            assert descriptor is not None, font.get("/BaseFont")
            descriptor = descriptor.get_object()
            assert any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3")), font.get("/BaseFont")
