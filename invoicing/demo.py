"""Demo data for invoicing: the two default number series, standard VAT rates, and a few finalized one-off
invoices for demo customers. Idempotent: series by code, rates by (country, region), invoices by memo."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from core.dates import billing_today
from core.tax_categories import TaxCategory
from customers.models import Customer
from invoicing.models import BillingReason, Invoice, NumberSeries, TaxRate
from invoicing.numbering import number_series_default
from invoicing.services import InvoiceLineSpec, invoice_create_draft, invoice_finalize

# Standard rates (percent). Finland's 25.5 % applies since September 2024.
STANDARD_VAT_RATES: dict[str, str] = {
    "DE": "19",
    "AT": "20",
    "FR": "20",
    "NL": "21",
    "BE": "21",
    "IT": "22",
    "ES": "21",
    "GR": "24",
    "IE": "23",
    "DK": "25",
    "PL": "23",
    "SE": "25",
    "CZ": "21",
    "PT": "23",
    "HU": "27",
    "FI": "25.5",
    "BG": "20",
    "GB": "20",
    "CH": "8.1",
}

DEMO_MEMO = "Demo: one-off onboarding invoice"

# (customer external id, lines as (description, quantity, unit amount, discount))
_DEMO_INVOICES: list[tuple[str, list[tuple[str, str, str, str]]]] = [
    ("DEMO-0001", [("Onboarding workshop (half day)", "1", "650.00", "0"), ("Travel costs", "1", "84.50", "0")]),
    ("DEMO-0002", [("Equipment setup", "3", "3.335", "0"), ("Training session", "2", "120.00", "40.00")]),
    ("DEMO-0008", [("Consulting hours", "6.5", "95.00", "0")]),
    ("DEMO-0007", [("Member portal setup (non-profit rate)", "1", "200.00", "50.00")]),
    ("DEMO-0017", [("Data migration", "1", "2500.00", "0")]),
    # outside the EU, in their own scripts: the Bahraini trading house (Arabic, BHD) and the Seoul software house
    ("DEMO-0037", [("Arabic-language onboarding workshop", "1", "180.500", "0"), ("Travel costs", "1", "42.250", "0")]),
    ("DEMO-0038", [("Korean localisation review", "12", "85.00", "0")]),
]


# Reduced rates a clerk sees next to the standard ones (books and e-books in Germany, France, Austria).
REDUCED_VAT_RATES: dict[str, str] = {"DE": "7", "FR": "5.5", "AT": "10"}
MIXED_VAT_MEMO = "Demo: mixed VAT rates (19 % + 7 % + exempt)"
# (description, quantity, unit amount, tax category, exemption reason code, exemption reason)
_MIXED_VAT_LINES = [
    ("Onboarding workshop (half day)", "1", "650.00", TaxCategory.STANDARD, "", ""),
    ("Billing handbook (e-book)", "3", "24.99", TaxCategory.REDUCED, "", ""),
    (
        "Certified bookkeeping course (vocational training)",
        "1",
        "480.00",
        TaxCategory.EXEMPT,
        "VATEX-EU-132-1I",
        "Tax-free vocational training under §4 No. 21 UStG (Article 132(1)(i), Directive 2006/112/EC).",
    ),
]


def _tax_name(percentage: str) -> str:
    return f"VAT {percentage} %"


@transaction.atomic
def seed_invoicing() -> int:
    """Create what is missing; returns the number of records created."""
    return seed_tax_rates_and_series() + seed_one_off_invoices() + seed_mixed_vat_invoice()


def seed_tax_rates_and_series() -> int:
    created = 0
    for kind in (NumberSeries.Kind.INVOICE, NumberSeries.Kind.CREDIT_NOTE):
        before = NumberSeries.objects.filter(kind=kind).exists()
        number_series_default(kind=kind)
        created += 0 if before else 1
    existing_rates = set(TaxRate.objects.filter(active=True, region="").values_list("country", flat=True))
    new_rates = [
        TaxRate(name=_tax_name(pct), country=country, percentage=Decimal(pct), inclusive=False, active=True)
        for country, pct in STANDARD_VAT_RATES.items()
        if country not in existing_rates
    ]
    existing_reduced = set(
        TaxRate.objects.filter(active=True, region="", category=TaxCategory.REDUCED).values_list("country", flat=True)
    )
    new_rates += [
        TaxRate(
            name=_tax_name(pct),
            country=country,
            category=TaxCategory.REDUCED,
            percentage=Decimal(pct),
            inclusive=False,
            active=True,
        )
        for country, pct in REDUCED_VAT_RATES.items()
        if country not in existing_reduced
    ]
    TaxRate.objects.bulk_create(new_rates)
    created += len(new_rates)
    return created


def seed_mixed_vat_invoice() -> int:
    """One invoice of a German business customer with a 19 % line, a 7 % line and an exempt line: the
    per-rate summary and the exemption reason a clerk finds on the invoice page and its PDF."""
    if Invoice.objects.filter(memo=MIXED_VAT_MEMO).exists():
        return 0
    customer = (
        Customer.objects.filter(external_id__startswith="DEMO-", country="DE", tax_status="taxable", currency="EUR")
        .order_by("external_id")
        .first()
    )
    if customer is None:
        return 0
    draft = invoice_create_draft(
        customer=customer,
        billing_reason=BillingReason.ONE_OFF,
        memo=MIXED_VAT_MEMO,
        lines=[
            InvoiceLineSpec(
                description=description,
                quantity=Decimal(quantity),
                unit_amount=Decimal(unit_amount),
                tax_category=category,
                tax_exemption_reason_code=code,
                tax_exemption_reason=reason,
            )
            for description, quantity, unit_amount, category, code, reason in _MIXED_VAT_LINES
        ],
    )
    invoice_finalize(invoice=draft, issue_date=billing_today())
    return 1


def seed_one_off_invoices() -> int:
    created = 0
    customers = {c.external_id: c for c in Customer.objects.filter(external_id__in=[e for e, _ in _DEMO_INVOICES])}
    already = set(Invoice.objects.filter(memo=DEMO_MEMO).values_list("customer__external_id", flat=True))
    issue_date = billing_today()
    for external_id, lines in _DEMO_INVOICES:
        customer = customers.get(external_id)
        if customer is None or external_id in already:
            continue
        draft = invoice_create_draft(
            customer=customer,
            billing_reason=BillingReason.ONE_OFF,
            memo=DEMO_MEMO,
            lines=[
                InvoiceLineSpec(
                    description=description,
                    quantity=Decimal(quantity),
                    unit_amount=Decimal(unit_amount),
                    discount_amount=Decimal(discount),
                )
                for description, quantity, unit_amount, discount in lines
            ],
        )
        invoice_finalize(invoice=draft, issue_date=issue_date)
        created += 1
    return created
