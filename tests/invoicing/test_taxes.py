"""Tax resolution and invoice arithmetic: exact Decimals, per-line ROUND_HALF_UP, totals = sums of rounded lines."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from invoicing.models import InvoiceLine, InvoiceStatus, TaxRate, TaxTreatment
from invoicing.services import InvoiceError, InvoiceLineSpec, invoice_create_draft, invoice_finalize
from invoicing.taxes import (
    SellerCountryMissing,
    TaxRateMissing,
    TaxRateTable,
    compute_invoice_totals,
    compute_line_amounts,
    distribute_amount,
    resolve_tax,
    tax_rates_load,
)
from tests.factories.customers import CustomerFactory
from tests.factories.invoicing import TaxRateFactory


def line(quantity="1", unit="0", discount="0", pct="0", inclusive=False, name="VAT") -> InvoiceLine:
    return InvoiceLine(
        quantity=D(quantity),
        unit_amount=D(unit),
        discount_amount=D(discount),
        tax_percentage=D(pct),
        tax_inclusive=inclusive,
        tax_name=name,
    )


def rate(country="DE", pct="19", inclusive=False, region="") -> TaxRate:
    return TaxRate(name=f"VAT {pct} %", country=country, percentage=D(pct), inclusive=inclusive, region=region)


# --- arithmetic ---------------------------------------------------------------------------------------


def test_line_amount_rounds_half_up_then_exclusive_tax_on_the_rounded_amount():
    amounts = compute_line_amounts(
        quantity=D(3),
        unit_amount=D("3.335"),
        discount_amount=D(0),
        tax_percentage=D(19),
        tax_inclusive=False,
        currency="EUR",
    )
    assert amounts.amount == D("10.01")  # 10.005 → 10.01
    assert amounts.tax_amount == D("1.90")  # 1.9019 → 1.90
    assert amounts.total_amount == D("11.91")


def test_inclusive_tax_is_taken_out_of_the_gross():
    amounts = compute_line_amounts(
        quantity=D(1),
        unit_amount=D("119.00"),
        discount_amount=D(0),
        tax_percentage=D(19),
        tax_inclusive=True,
        currency="EUR",
    )
    assert (amounts.tax_amount, amounts.net_amount, amounts.total_amount) == (D("19.00"), D("100.00"), D("119.00"))


def test_jpy_has_no_minor_unit():
    amounts = compute_line_amounts(
        quantity=D(1),
        unit_amount=D(1234),
        discount_amount=D(0),
        tax_percentage=D(10),
        tax_inclusive=False,
        currency="JPY",
    )
    assert amounts.tax_amount == D(123)  # 123.4 → 123
    assert amounts.total_amount == D(1357)
    assert amounts.tax_amount.as_tuple().exponent == 0


def test_bhd_has_three_decimals():
    amounts = compute_line_amounts(
        quantity=D(1),
        unit_amount=D("1.2345"),
        discount_amount=D(0),
        tax_percentage=D(0),
        tax_inclusive=False,
        currency="BHD",
    )
    assert amounts.amount == D("1.235")
    assert str(amounts.amount) == "1.235"


def test_discount_applies_before_tax():
    amounts = compute_line_amounts(
        quantity=D(2),
        unit_amount=D("50.00"),
        discount_amount=D("10.00"),
        tax_percentage=D(19),
        tax_inclusive=False,
        currency="EUR",
    )
    assert amounts.net_amount == D("90.00")
    assert amounts.tax_amount == D("17.10")
    assert amounts.total_amount == D("107.10")


def test_discount_larger_than_the_line_or_float_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        compute_line_amounts(
            quantity=D(1),
            unit_amount=D(5),
            discount_amount=D(6),
            tax_percentage=D(0),
            tax_inclusive=False,
            currency="EUR",
        )
    with pytest.raises(TypeError):
        compute_line_amounts(
            quantity=D(1),
            unit_amount=5.0,
            discount_amount=D(0),
            tax_percentage=D(0),
            tax_inclusive=False,
            currency="EUR",
        )


def test_totals_are_sums_of_rounded_lines_with_a_summary_per_rate():
    lines = [
        line("3", "3.335", pct="19", name="VAT 19 %"),  # 10.01 + 1.90
        line("1", "0.005", pct="19", name="VAT 19 %"),  # 0.01 + 0.00
        line("1", "10.00", discount="1.00", pct="7", name="VAT 7 %"),  # 9.00 + 0.63
    ]
    totals = compute_invoice_totals(lines, "EUR")
    # Rounding the sum instead would give 19 % of 10.015 = 1.90, 3.335*3+0.005 = 10.01: the lines are the truth.
    assert totals.subtotal == D("20.02")
    assert totals.discount_total == D("1.00")
    assert totals.tax_total == D("2.53")
    assert totals.total == D("21.55")
    assert totals.total == sum((a.total_amount for a in totals.lines), D(0))
    assert [(r.name, r.taxable_amount, r.tax_amount) for r in totals.tax_summary] == [
        ("VAT 19 %", D("10.02"), D("1.90")),
        ("VAT 7 %", D("9.00"), D("0.63")),
    ]
    assert totals.tax_summary_json()[0] == {
        "category": "S",
        "exemption_reason_code": "",
        "exemption_reason": "",
        "name": "VAT 19 %",
        "percentage": "19",
        "inclusive": False,
        "taxable_amount": "10.02",
        "tax_amount": "1.90",
    }


def test_negative_proration_lines_reduce_the_total():
    totals = compute_invoice_totals([line("1", "-33.335", pct="19"), line("1", "50.00", pct="19")], "EUR")
    assert totals.lines[0].amount == D("-33.34")  # half-up away from zero
    assert totals.lines[0].tax_amount == D("-6.33")
    assert totals.total == D("19.83")


def test_distribute_amount_adds_up_exactly():
    parts = distribute_amount(total=D("10.00"), weights=[D(1), D(1), D(1)], currency="EUR")
    assert parts == [D("3.33"), D("3.33"), D("3.34")]
    assert distribute_amount(total=D(100), weights=[D(2), D(1)], currency="JPY") == [D(67), D(33)]


# --- resolution -----------------------------------------------------------------------------------------

RATES = TaxRateTable({"DE": [rate("DE", "19")], "AT": [rate("AT", "20")], "CH": [rate("CH", "8.1", inclusive=True)]})
RATES.seller_country = "DE"  # the seller's country comes with the rates (tax_rates_load reads the seller profile)


def test_exempt_customer_pays_no_tax():
    result = resolve_tax(customer=CustomerFactory.build(exempt=True), tax_rates_by_country=RATES)
    assert (result.treatment, result.percentage, result.rate) == (TaxTreatment.EXEMPT, D(0), None)


def test_domestic_customer_gets_the_country_rate():
    result = resolve_tax(customer=CustomerFactory.build(country="DE", tax_id="DE136695976"), tax_rates_by_country=RATES)
    assert (result.treatment, result.percentage, result.note) == (TaxTreatment.STANDARD, D(19), "")


def test_explicit_reverse_charge_has_the_legal_note():
    customer = CustomerFactory.build(reverse_charge=True)  # AT, ATU13585627
    result = resolve_tax(customer=customer, tax_rates_by_country=RATES)
    assert result.treatment == TaxTreatment.REVERSE_CHARGE and result.percentage == 0
    assert "Article 196" in result.note and "ATU13585627" in result.note


def test_reverse_charge_is_derived_for_eu_b2b_in_another_country():
    customer = CustomerFactory.build(country="AT", tax_id="ATU13585627", tax_status="taxable")
    assert resolve_tax(customer=customer, tax_rates_by_country=RATES).treatment == TaxTreatment.REVERSE_CHARGE


def test_eu_consumer_in_another_country_pays_their_country_rate():
    customer = CustomerFactory.build(country="AT", tax_id="")
    result = resolve_tax(customer=customer, tax_rates_by_country=RATES)
    assert (result.treatment, result.percentage) == (TaxTreatment.STANDARD, D(20))


def test_customer_outside_the_eu_without_a_rate_is_outside_scope():
    result = resolve_tax(customer=CustomerFactory.build(country="US", currency="USD"), tax_rates_by_country=RATES)
    assert result.treatment == TaxTreatment.OUTSIDE_SCOPE and result.percentage == 0
    assert "outside the EU" in result.note


def test_eu_customer_without_a_rate_is_a_configuration_error():
    with pytest.raises(TaxRateMissing, match="FR"):
        resolve_tax(customer=CustomerFactory.build(country="FR"), tax_rates_by_country=RATES)


def test_without_the_sellers_country_no_taxable_line_is_taxed():
    """An empty seller profile (a new installation) cannot tell a domestic sale from an EU cross-border one (reverse
    charge): a configuration error, never the customer's rate by default; exempt and out-of-scope lines need no
    seller country."""
    rates = TaxRateTable(RATES)
    rates.seller_country = ""
    for customer in (
        CustomerFactory.build(country="DE"),
        CustomerFactory.build(country="AT", tax_id="ATU13585627", tax_status="taxable"),
        CustomerFactory.build(country="US", currency="USD"),
    ):
        with pytest.raises(SellerCountryMissing, match="seller profile has no country"):
            resolve_tax(customer=customer, tax_rates_by_country=rates)
    assert resolve_tax(customer=CustomerFactory.build(exempt=True), tax_rates_by_country=rates).percentage == 0
    outside = resolve_tax(customer=CustomerFactory.build(), tax_rates_by_country=rates, category="O")
    assert outside.treatment == TaxTreatment.OUTSIDE_SCOPE
    assert issubclass(SellerCountryMissing, TaxRateMissing)  # every caller holds or refuses it like a missing rate


def test_regional_rate_wins_over_the_national_one():
    rates = {"CH": [rate("CH", "8.1"), rate("CH", "7.7", region="Zug")]}
    customer = CustomerFactory.build(country="CH", region="zug", currency="CHF")
    assert resolve_tax(customer=customer, tax_rates_by_country=rates, seller_country="DE").percentage == D("7.7")
    customer.region = "Bern"
    assert resolve_tax(customer=customer, tax_rates_by_country=rates, seller_country="DE").percentage == D("8.1")


@pytest.mark.django_db
def test_rates_for_a_thousand_customers_take_two_queries():
    TaxRateFactory(country="DE", percentage=D(19))
    TaxRateFactory(country="AT", percentage=D(20))
    TaxRateFactory(country="FR", percentage=D(20), active=False)
    customers = [CustomerFactory.build(country=("DE", "AT", "US")[i % 3]) for i in range(1000)]
    with CaptureQueriesContext(connection) as queries:
        rates = tax_rates_load(countries={str(c.country) for c in customers})
        results = [resolve_tax(customer=c, tax_rates_by_country=rates) for c in customers]
    assert len(queries) == 2  # the rates, and the seller's country (seller profile) they apply from
    assert {r.treatment for r in results} == {TaxTreatment.STANDARD, TaxTreatment.OUTSIDE_SCOPE}


# --- through the services -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_finalized_invoice_carries_rate_note_and_summary(series, vat_de):
    customer = CustomerFactory(reverse_charge=True)
    draft = invoice_create_draft(
        customer=customer, lines=[InvoiceLineSpec(description="Consulting", quantity=D(3), unit_amount=D("3.335"))]
    )
    invoice = invoice_finalize(invoice=draft)
    assert invoice.tax_treatment == TaxTreatment.REVERSE_CHARGE
    assert "reverse charge" in invoice.tax_note.lower()
    assert (invoice.total, invoice.tax_total) == (D("10.01"), D(0))
    assert invoice.tax_summary == [
        {
            "category": "AE",
            "exemption_reason_code": "",
            "exemption_reason": "",
            "name": "Reverse charge",
            "percentage": "0",
            "inclusive": False,
            "taxable_amount": "10.01",
            "tax_amount": "0.00",
        }
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("currency", "quantity", "unit", "pct", "inclusive", "expected"),
    [
        ("EUR", "3", "3.335", "19", False, {"subtotal": "30.03", "tax_total": "5.70", "total": "35.73"}),
        ("EUR", "1", "119.00", "19", True, {"subtotal": "357.00", "tax_total": "57.00", "total": "357.00"}),
        ("JPY", "1", "1234", "10", False, {"subtotal": "3702", "tax_total": "369", "total": "4071"}),
        ("BHD", "1", "1.2345", "10", False, {"subtotal": "3.705", "tax_total": "0.372", "total": "4.077"}),
    ],
)
def test_invoice_totals_per_currency(series, currency, quantity, unit, pct, inclusive, expected):
    TaxRateFactory(country="DE", percentage=D(pct), inclusive=inclusive)
    customer = CustomerFactory(currency=currency)
    draft = invoice_create_draft(
        customer=customer,
        lines=[InvoiceLineSpec(description=f"Item {i}", quantity=D(quantity), unit_amount=D(unit)) for i in range(3)],
    )
    invoice = invoice_finalize(invoice=draft)
    invoice.refresh_from_db()
    for name, value in expected.items():
        assert getattr(invoice, name) == D(value), name
    lines = list(invoice.lines.all())
    assert invoice.total == sum((ln.total_amount for ln in lines), D(0))
    assert invoice.tax_total == sum((ln.tax_amount for ln in lines), D(0))


@pytest.mark.django_db
def test_finalizing_for_an_eu_country_without_a_rate_is_refused_and_leaves_a_draft(series):
    draft = invoice_create_draft(
        customer=CustomerFactory(country="FR"), lines=[InvoiceLineSpec(description="x", unit_amount=D(10))]
    )
    with pytest.raises(InvoiceError, match="no active tax rate for FR"):
        invoice_finalize(invoice=draft)
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.DRAFT and draft.number == ""
