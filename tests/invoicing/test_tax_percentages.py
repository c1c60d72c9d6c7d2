"""Tax rates are stored and shown as plain digits: "20", never "2E+1" (docs/decisions/money-and-rounding.md)."""

from __future__ import annotations

import datetime as dt
import importlib
from decimal import Decimal as D

import pytest
from django.apps import apps

from invoicing.models import Invoice
from invoicing.services import credit_note_issue
from tests.factories import CustomerFactory, InvoiceFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


def test_a_20_percent_rate_is_written_as_20_in_the_tax_summaries(series, vat_at):
    invoice = InvoiceFactory(
        customer=CustomerFactory(country="AT"), lines=[{"unit_amount": D("100.00")}], finalized=ISSUE
    )
    assert [row["percentage"] for row in invoice.tax_summary] == ["20"]
    credit_note = credit_note_issue(invoice=invoice, reason="Goodwill", amount=D("12.00"))
    assert [row["percentage"] for row in credit_note.tax_summary] == ["20"]
    assert str(vat_at).endswith("20 %)")


def test_the_migration_rewrites_stored_exponents_and_leaves_the_rest(series, vat_de):
    exponent = InvoiceFactory(lines=[])
    plain = InvoiceFactory(lines=[])
    summary = [
        {"name": "VAT 20 %", "percentage": "2E+1", "inclusive": False, "taxable_amount": "10.00", "tax_amount": "2.00"}
    ]
    Invoice.objects.filter(pk=exponent.pk).update(tax_summary=summary)
    Invoice.objects.filter(pk=plain.pk).update(tax_summary=[{**summary[0], "percentage": "7.5"}])

    migration = importlib.import_module("invoicing.migrations.0012_normalise_tax_summary_percentages")
    migration.normalise(apps, None)

    exponent.refresh_from_db()
    plain.refresh_from_db()
    assert exponent.tax_summary == [{**summary[0], "percentage": "20"}]  # only the rate's text changed
    assert plain.tax_summary[0]["percentage"] == "7.5"
