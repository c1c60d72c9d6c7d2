"""The invoice page's view-only fieldsets and inlines rendered in Python (core/admin_rendering.py) are the same
HTML as Django's templates render them: an invoice with lines, tax rows, a payment, a credit note, status events
with their actor and an e-mail — and a draft, whose editable form still goes through the templates."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal as D

import pytest
from django.test.html import parse_html
from django.urls import reverse

from core.templatetags import admin_rendering
from invoicing.delivery import invoice_email_resend
from invoicing.models import InvoiceStatus
from invoicing.services import credit_note_issue
from tests.factories.customers import StaffUserFactory
from tests.factories.invoicing import InvoiceFactory
from tests.factories.payments import record_payment

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


def _page(client, invoice):
    response = client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk]))
    assert response.status_code == 200
    # the CSRF token is masked anew for every response
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


def _through_templates(monkeypatch):
    """Django's templates for every fieldset and inline, as before the Python rendering."""
    monkeypatch.setattr(admin_rendering, "readonly_fieldset_html", lambda *args, **kwargs: None)
    monkeypatch.setattr(admin_rendering, "readonly_tabular_html", lambda *args, **kwargs: None)


def _counting(monkeypatch):
    """How many fieldsets and inlines the Python rendering wrote."""
    written = {"fieldsets": 0, "inlines": 0}
    for name, key in (("readonly_fieldset_html", "fieldsets"), ("readonly_tabular_html", "inlines")):
        original = getattr(admin_rendering, name)

        def counted(*args, _original=original, _key=key, **kwargs):
            html = _original(*args, **kwargs)
            written[_key] += html is not None
            return html

        monkeypatch.setattr(admin_rendering, name, counted)
    return written


def test_a_finalized_invoice_page_is_the_same_html_as_through_the_templates(client, series, vat_de, monkeypatch):
    invoice = InvoiceFactory(
        lines=[
            {"description": "Consulting <b>days</b>", "unit_amount": D("100.00"), "quantity": D("2.5")},
            {"description": "Travel", "unit_amount": D("50.00")},
        ],
        finalized=ISSUE,
    )
    clerk = StaffUserFactory(group="Billing admin")
    record_payment(customer=invoice.customer, amount="100.00", invoice=invoice)
    credit_note_issue(invoice=invoice, reason="goodwill", amount=D("11.90"), actor=clerk)
    invoice_email_resend(invoice=invoice)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.tax_summary
    client.force_login(clerk)

    written = _counting(monkeypatch)
    fast = _page(client, invoice)
    assert written == {"fieldsets": 5, "inlines": 5}  # every section of a finalized invoice, in Python
    monkeypatch.undo()
    _through_templates(monkeypatch)
    assert parse_html(fast) == parse_html(_page(client, invoice))
    # and what staff read is there: amounts as money, the escaped description, the tax row, the credit note
    for text in ("€357.00", "€100.00", "€11.90", "Consulting &lt;b&gt;days&lt;/b&gt;", "VAT 19 %", "goodwill"):
        assert text in fast


def test_a_draft_keeps_its_editable_form(client, series, vat_de, monkeypatch):
    draft = InvoiceFactory(lines=[{"description": "Consulting", "unit_amount": D("100.00")}])
    client.force_login(StaffUserFactory(group="Billing admin"))
    written = _counting(monkeypatch)
    fast = _page(client, draft)
    # the editable lines go through Django's template; the view-only credit notes and status history do not
    assert written["inlines"] == 2
    assert 'name="lines-0-description"' in fast and 'name="lines-TOTAL_FORMS"' in fast
    monkeypatch.undo()
    _through_templates(monkeypatch)
    assert parse_html(fast) == parse_html(_page(client, draft))
