"""Where staff, customers and the accountant get an e-invoice: the invoice page's button, the portal's link, the
period's zip; and the draft a clerk cannot finalize names what to fix."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.urls import reverse
from djmoney.money import Money

from invoicing.billing_run import billing_run
from invoicing.einvoice import validation
from invoicing.models import EInvoiceFile, Invoice, InvoiceStatus
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory
from tests.factories.customers import StaffUserFactory, seller_profile_create
from tests.factories.portal import PortalUserFactory
from tests.portal.conftest import signed_in_client

pytestmark = pytest.mark.django_db
JAN_1 = dt.date(2026, 1, 1)


@pytest.fixture(autouse=True)
def _setup(series, vat_de):
    seller_profile_create(phone="+49 30 1234567")


def _issued(**customer):
    buyer = CustomerFactory(
        legal_name="Stadtwerke Musterstadt AöR",
        einvoice_format="xrechnung_cii",
        buyer_reference="04011000-12345-34",
        **customer,
    )
    SubscriptionFactory(customer=buyer, price=PriceFactory(unit_amount=Money(D("100.00"), "EUR")), start_date=JAN_1)
    billing_run(as_of=JAN_1)
    return Invoice.objects.get(customer=buyer)


def test_staff_download_the_einvoice_from_the_invoice_page(client):
    invoice = _issued()
    client.force_login(StaffUserFactory(group="Billing clerk"))
    page = client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert "Download e-invoice (XRechnung 3.0 (CII))" in page
    response = client.get(reverse("admin:invoicing_invoice_einvoice", args=[invoice.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/xml"
    assert f'filename="{invoice.number}-xrechnung-cii.xml"' in response["Content-Disposition"]
    assert validation.validate(response.content, xrechnung=True).valid
    assert EInvoiceFile.objects.get(invoice=invoice).size == len(response.content)


def test_the_customer_downloads_it_in_the_portal_and_another_customer_cannot():
    invoice = _issued()
    own = signed_in_client(PortalUserFactory(customer=invoice.customer))
    page = own.get(reverse("portal:invoice_detail", args=[invoice.number])).content.decode()
    assert "E-invoice (XRechnung 3.0 (CII))" in page
    response = own.get(reverse("portal:invoice_einvoice", args=[invoice.number]))
    assert response.status_code == 200 and b"CrossIndustryInvoice" in response.content
    stranger = signed_in_client(PortalUserFactory(customer=CustomerFactory()))
    assert stranger.get(reverse("portal:invoice_einvoice", args=[invoice.number])).status_code == 404


def test_a_clerk_finalizing_a_held_draft_is_told_the_field_to_fix(client):
    invoice = _issued(address_line1="")
    assert invoice.status == InvoiceStatus.DRAFT and "customer → billing address" in invoice.memo
    client.force_login(StaffUserFactory(group="Billing clerk"))
    response = client.post(reverse("admin:invoicing_invoice_finalize", args=[invoice.pk]), follow=True)
    assert "customer → billing address" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.DRAFT and invoice.number == ""


def test_the_periods_einvoices_come_as_one_zip_with_a_manifest(tmp_path):
    invoice = _issued()
    output = tmp_path / "einvoices.zip"
    call_command(
        "export_einvoices", "--from", "2026-01-01", "--to", "2026-01-31", "--output", str(output), stdout=io.StringIO()
    )
    with zipfile.ZipFile(output) as archive:
        names = archive.namelist()
        manifest = archive.read("manifest.csv").decode()
        xml = archive.read(f"invoices/{invoice.number}-xrechnung-cii.xml")
    assert names == [f"invoices/{invoice.number}-xrechnung-cii.xml", "manifest.csv"]
    stored = EInvoiceFile.objects.get(invoice=invoice)
    assert f"{invoice.number};2026-01-01;xrechnung_cii;{stored.sha256}" in manifest
    assert validation.validate(xml, xrechnung=True).valid
