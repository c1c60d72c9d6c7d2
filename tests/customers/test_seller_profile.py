"""The seller profile: one row, edited in the admin with checked identifiers, copied into each document at issue,
and the sender of customer e-mails."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from billing_project.staff_groups import AUDITOR, BILLING_CLERK
from customers.models import SellerProfile
from invoicing import documents
from invoicing.delivery import invoice_email_resend
from tests.factories.customers import SELLER, StaffUserFactory
from tests.factories.invoicing import InvoiceFactory, NumberSeriesFactory, TaxRateFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def series():
    return NumberSeriesFactory(default_invoices=True)


@pytest.fixture
def vat_de():
    return TaxRateFactory(country="DE")


def _form(**changes: str) -> dict[str, str]:
    values = {key: value for key, value in SELLER.items() if key != "invoice_footer"}
    return {**values, "footer_en": "Thanks!", "footer_de": "Danke!", **changes}


def test_there_is_one_profile_to_edit_never_to_add_or_delete(admin_client):
    response = admin_client.get(reverse("admin:customers_sellerprofile_changelist"))
    assert response.status_code == 200 and "/customers/sellerprofile/1/change/" in response.content.decode()
    assert admin_client.get(reverse("admin:customers_sellerprofile_add")).status_code == 403
    assert admin_client.get(reverse("admin:customers_sellerprofile_delete", args=[1])).status_code == 403


def test_iban_bic_and_vat_id_are_checked_by_their_check_digits(admin_client):
    url = reverse("admin:customers_sellerprofile_change", args=[1])
    response = admin_client.post(url, _form(iban="DE89370400440532013001", bic="COBAD", vat_id="DE136695977"))
    form = response.context["adminform"].form
    assert "not a valid IBAN" in form.errors["iban"][0]
    assert "not a valid BIC" in form.errors["bic"][0]
    assert "not a valid EU VAT number" in form.errors["vat_id"][0]
    assert SellerProfile.objects.get().iban == SELLER["iban"]

    response = admin_client.post(url, _form(iban="DE07 2005 0550 0012 3456 78", bic="HASPDEHHXXX", vat_id="814527394"))
    assert response.status_code == 302
    profile = SellerProfile.objects.get()
    assert (profile.iban, profile.bic, profile.vat_id) == ("DE07200505500012345678", "HASPDEHHXXX", "DE814527394")
    assert profile.invoice_footer == {"en": "Thanks!", "de": "Danke!"}


def test_clerks_and_auditors_only_read_the_profile():
    for group in (BILLING_CLERK, AUDITOR):
        client = Client()
        client.force_login(StaffUserFactory(group=group))
        url = reverse("admin:customers_sellerprofile_change", args=[1])
        page = client.get(url)
        assert page.status_code == 200 and "Cadence Demo GmbH" in page.content.decode()
        client.post(url, _form(legal_name="Hijacked GmbH"))
        assert SellerProfile.objects.get().legal_name == "Cadence Demo GmbH"


def test_an_issued_invoice_keeps_the_seller_it_was_issued_with(series, vat_de):
    invoice = InvoiceFactory(finalized=dt.date(2026, 3, 2))
    SellerProfile.objects.filter(pk=1).update(legal_name="Renamed GmbH", vat_id="DE814527394")
    invoice.refresh_from_db()
    assert invoice.seller_snapshot["legal_name"] == "Cadence Demo GmbH"
    assert invoice.seller_snapshot["register_number"] == "HRB 654321"
    text = documents.render_invoice_html(invoice=invoice)
    assert "Cadence Demo GmbH" in text and "Renamed GmbH" not in text and "DE814527394" not in text
    later = InvoiceFactory(finalized=dt.date(2026, 3, 3))
    assert later.seller_snapshot["legal_name"] == "Renamed GmbH"


def test_customer_emails_are_sent_as_the_profiles_sender(series, vat_de, django_capture_on_commit_callbacks):
    invoice = InvoiceFactory(finalized=dt.date(2026, 3, 2))
    profile = SellerProfile.objects.get()
    profile.email_sender = "Cadence Billing <rechnung@cadence.example>"
    profile.save()
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        email = invoice_email_resend(invoice=invoice)
    assert email.from_email == "Cadence Billing <rechnung@cadence.example>"
    [message] = mail.outbox
    assert message.from_email == "Cadence Billing <rechnung@cadence.example>"
