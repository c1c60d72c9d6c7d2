"""E-invoices of invoices with tax per line (issue 21's scenarios): a 19 % + 7 % invoice with a coupon, exempt
lines, reverse charge, an intra-community supply, a JPY export and the mixed invoice's credit note — each written
in every format and valid (XSD, EN 16931, XRechnung), with the per-category breakdown as the invoice states it."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal as D
from pathlib import Path

import pytest
from djmoney.money import Money
from lxml import etree

from core.tax_categories import TaxCategory
from invoicing.billing_run import billing_run
from invoicing.einvoice import mapping, validation
from invoicing.einvoice.service import FORMATS
from invoicing.models import Invoice
from invoicing.services import (
    CreditNoteLineSpec,
    InvoiceLineSpec,
    credit_note_issue,
    invoice_create_draft,
    invoice_finalize,
)
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory, TaxRateFactory
from tests.factories.subscriptions import ProductFactory
from tests.invoicing.test_tax_per_line import EXEMPT_REASON, JAN_1, _mixed_subscription

pytestmark = pytest.mark.django_db
UBL_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
UBL_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
NS = {"cac": UBL_CAC, "cbc": UBL_CBC}


def _buyer(**fields):
    return CustomerFactory(buyer_reference="04011000-12345-34", einvoice_address="einkauf@buyer.example", **fields)


def _valid_everywhere(document, sample: str = "") -> bytes:
    for code, fmt in FORMATS.items():
        xml = fmt.xml(document)
        assert validation.validate(xml, xrechnung=fmt.xrechnung).errors == (), code
        if sample and (folder := os.environ.get("EINVOICE_SAMPLES")):
            (Path(folder) / f"einvoice-{sample}-{fmt.file_suffix}.xml").write_bytes(xml)
    return FORMATS["peppol"].xml(document)


def _breakdown(ubl: bytes) -> list[tuple[str, str, str, str]]:
    rows = etree.fromstring(ubl).iterfind("cac:TaxTotal/cac:TaxSubtotal", NS)
    return [
        (
            row.findtext("cac:TaxCategory/cbc:ID", namespaces=NS),
            row.findtext("cac:TaxCategory/cbc:Percent", namespaces=NS),
            row.findtext("cbc:TaxableAmount", namespaces=NS),
            row.findtext("cbc:TaxAmount", namespaces=NS),
        )
        for row in rows
    ]


def _document(invoice: Invoice):
    return mapping.invoice_document(invoice, list(invoice.lines.order_by("position", "pk")))


def test_19_and_7_percent_with_a_coupon(rates_de):
    customer = _buyer(name="Buchladen GmbH", country="DE", tax_id="DE136695976")
    _mixed_subscription(customer)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    assert invoice.total == D("134.08")
    ubl = _valid_everywhere(_document(invoice), sample="19-and-7-percent")
    # the reduced rate is category S at 7 % in EN 16931 (BR-CL-18 has no AA)
    assert _breakdown(ubl) == [("S", "19", "92.00", "17.48"), ("S", "7", "22.99", "1.61")]
    allowances = etree.fromstring(ubl).iterfind("cac:InvoiceLine/cac:AllowanceCharge/cbc:Amount", NS)
    assert sorted(node.text for node in allowances) == ["2.00", "8.00"]  # the coupon, split over the rates
    assert etree.fromstring(ubl).findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS) == "134.08"


def test_exempt_lines_carry_their_vatex_code_and_reason(rates_de):
    draft = invoice_create_draft(
        customer=_buyer(country="DE"),
        lines=[
            InvoiceLineSpec(description="Consulting", quantity=D(2), unit_amount=D("150.00")),
            InvoiceLineSpec(
                description="Workshop day",
                unit_amount=D("480.00"),
                tax_category=TaxCategory.EXEMPT,
                tax_exemption_reason_code="VATEX-EU-132-1I",
                tax_exemption_reason=EXEMPT_REASON,
            ),
        ],
    )
    invoice = invoice_finalize(invoice=draft, issue_date=JAN_1)
    ubl = _valid_everywhere(_document(invoice), sample="exempt-line")
    assert _breakdown(ubl) == [("S", "19", "300.00", "57.00"), ("E", "0", "480.00", "0.00")]
    exempt = etree.fromstring(ubl).find("cac:TaxTotal/cac:TaxSubtotal[2]/cac:TaxCategory", NS)
    assert exempt.findtext("cbc:TaxExemptionReasonCode", namespaces=NS) == "VATEX-EU-132-1I"
    assert exempt.findtext("cbc:TaxExemptionReason", namespaces=NS) == EXEMPT_REASON


def test_reverse_charge_for_an_eu_business(rates_de):
    customer = _buyer(name="Wiener Verlag GmbH", country="AT", tax_id="ATU13585627")
    TaxRateFactory(country="AT", percentage=D("20"))
    _mixed_subscription(customer, coupon_amount=None)
    billing_run(as_of=JAN_1)
    ubl = _valid_everywhere(_document(Invoice.objects.get(customer=customer)), sample="reverse-charge-lines")
    assert _breakdown(ubl) == [("AE", "0", "124.99", "0.00")]


def test_an_intra_community_supply_names_where_the_goods_went(rates_de):
    token = PriceFactory(
        per_unit=True,
        product=ProductFactory(name="Hardware token", tax_category=TaxCategory.INTRA_COMMUNITY),
        unit_amount=Money(D("49.00"), "EUR"),
    )
    customer = _buyer(name="Société Exemple SARL", country="FR", tax_id="FR40303265045")
    SubscriptionFactory(customer=customer, price=token, quantity=2)
    billing_run(as_of=JAN_1)
    ubl = _valid_everywhere(_document(Invoice.objects.get(customer=customer)), sample="intra-community")
    assert _breakdown(ubl) == [("K", "0", "98.00", "0.00")]
    assert (
        etree.fromstring(ubl).findtext(
            "cac:Delivery/cac:DeliveryLocation/cac:Address/cac:Country/cbc:IdentificationCode", namespaces=NS
        )
        == "FR"
    )


def test_a_jpy_export(series):
    kit = PriceFactory(
        product=ProductFactory(name="Sensor kit", tax_category=TaxCategory.EXPORT),
        unit_amount=Money(D("12000"), "JPY"),
    )
    customer = _buyer(name="Tanaka KK", country="JP", currency="JPY")
    SubscriptionFactory(customer=customer, price=kit)
    billing_run(as_of=JAN_1)
    ubl = _valid_everywhere(_document(Invoice.objects.get(customer=customer)), sample="jpy-goods-export")
    assert _breakdown(ubl) == [("G", "0", "12000", "0")]


def test_an_export_and_a_service_outside_the_scope_on_one_invoice_is_held_with_br_o_11(series):
    """EN 16931 allows no other category beside "not subject to VAT" (O) on one invoice: such an e-invoice
    customer's invoice is held, naming the rule, instead of being issued broken."""
    kit = PriceFactory(
        product=ProductFactory(name="Sensor kit", tax_category=TaxCategory.EXPORT),
        unit_amount=Money(D("12000"), "JPY"),
    )
    support = PriceFactory(product=ProductFactory(name="Support"), unit_amount=Money(D("3000"), "JPY"))
    customer = _buyer(name="Tanaka KK", country="JP", currency="JPY", einvoice_format="peppol")
    from subscriptions.services import ItemSpec

    SubscriptionFactory(
        customer=customer, items=[ItemSpec(price=kit, quantity=1), ItemSpec(price=support, quantity=1)], price=kit
    )
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    assert invoice.status == "draft" and "BR-O-11" in invoice.memo


def test_the_mixed_invoices_credit_note_mirrors_its_breakdown(rates_de):
    customer = _buyer(name="Buchladen GmbH", country="DE", tax_id="DE136695976")
    _mixed_subscription(customer)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    credit_note = credit_note_issue(
        invoice=invoice,
        reason="Returned",
        lines=[CreditNoteLineSpec(invoice_line_id=line.pk) for line in invoice.lines.all()],
        issue_date=dt.date(2026, 1, 10),
    )
    document = mapping.credit_note_document(credit_note, list(credit_note.lines.all()), invoice=invoice)
    ubl = _valid_everywhere(document, sample="credit-note-19-and-7")
    assert _breakdown(ubl) == [("S", "19", "92.00", "17.48"), ("S", "7", "22.99", "1.61")]
    assert (
        etree.fromstring(ubl).findtext("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", namespaces=NS)
        == invoice.number
    )
