from __future__ import annotations

import pytest

from billing_project.demo.customers import seed_customers
from invoicing.demo import DEMO_MEMO, STANDARD_VAT_RATES, seed_invoicing
from invoicing.models import Invoice, InvoiceStatus, NumberSeries, TaxRate, TaxTreatment

pytestmark = pytest.mark.django_db


def test_seed_invoicing_is_idempotent_and_finalizes_demo_invoices():
    seed_customers()
    created = seed_invoicing()
    assert created == 2 + len(STANDARD_VAT_RATES) + 7
    assert seed_invoicing() == 0
    assert set(NumberSeries.objects.values_list("code", flat=True)) == {"invoices", "credit-notes"}
    assert TaxRate.objects.get(country="FI").percentage == 25.5
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
