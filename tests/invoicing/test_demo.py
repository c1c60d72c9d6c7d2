from __future__ import annotations

from decimal import Decimal

import pytest

from billing_project.demo.customers import seed_customers
from invoicing.demo import DEMO_MEMO, MIXED_VAT_MEMO, REDUCED_VAT_RATES, STANDARD_VAT_RATES, seed_invoicing
from invoicing.models import Invoice, InvoiceStatus, NumberSeries, TaxRate, TaxTreatment

pytestmark = pytest.mark.django_db


def test_seed_invoicing_is_idempotent_and_finalizes_demo_invoices():
    seed_customers()
    created = seed_invoicing()
    assert created == 2 + len(STANDARD_VAT_RATES) + len(REDUCED_VAT_RATES) + 7 + 1
    assert seed_invoicing() == 0
    assert set(NumberSeries.objects.values_list("code", flat=True)) == {"invoices", "credit-notes"}
    assert TaxRate.objects.get(country="FI").percentage == 25.5
    assert TaxRate.objects.get(country="DE", category="AA").percentage == 7
    invoices = Invoice.objects.filter(memo=DEMO_MEMO)
    assert invoices.count() == 7
    assert all(i.status == InvoiceStatus.OPEN and i.number.startswith("INV-") for i in invoices)
    treatments = set(invoices.values_list("tax_treatment", flat=True))
    assert {
        TaxTreatment.STANDARD,
        TaxTreatment.REVERSE_CHARGE,
        TaxTreatment.EXEMPT,
        TaxTreatment.OUTSIDE_SCOPE,
    } <= treatments
    mixed = Invoice.objects.get(memo=MIXED_VAT_MEMO)
    assert [
        (row["category"], row["percentage"], row["taxable_amount"], row["tax_amount"]) for row in mixed.tax_summary
    ] == [
        ("S", "19", "650.00", "123.50"),
        ("AA", "7", "74.97", "5.25"),
        ("E", "0", "480.00", "0.00"),
    ]
    assert mixed.total == Decimal("1333.72")
