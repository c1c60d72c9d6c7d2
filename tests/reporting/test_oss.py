"""The EU OSS return (issue 25, "Tax"): a German seller's sales to French consumers, in euros, by member state
and rate, with the location evidence counted. Exact amounts."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.urls import reverse

from accounting.models import RateSource
from accounting.rates import Rate, rates_store
from core.errors import InvalidInput
from core.tax_categories import TaxCategory
from customers.models import Customer, SellerProfile, VatStatus
from invoicing.models import Invoice
from invoicing.services import (
    CreditNoteLineSpec,
    InvoiceLineSpec,
    credit_note_issue,
    invoice_create_draft,
    invoice_finalize,
)
from reporting.oss import evidence_ok, oss_return, quarter_range
from tests.factories import CustomerFactory, TaxRateFactory
from tests.factories.invoicing import NumberSeriesFactory

pytestmark = pytest.mark.django_db

Q1 = (dt.date(2026, 1, 1), dt.date(2026, 3, 31))


@pytest.fixture
def rates(db):
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=D("19"), name="MwSt 19 %")
    TaxRateFactory(country="FR", percentage=D("20"), name="TVA 20 %")
    TaxRateFactory(country="FR", percentage=D("5.5"), name="TVA 5,5 %", category=TaxCategory.REDUCED)
    # 1 EUR = 1.25 USD on the quarter's last day: the OSS conversion date (art. 369h)
    rates_store([Rate(dt.date(2026, 3, 31), "USD", D("1.25"))], source=RateSource.MANUAL)


def _issue(customer: Customer, lines: list[tuple[str, str, str]], day: dt.date, currency: str = "EUR") -> Invoice:
    draft = invoice_create_draft(
        customer=customer,
        currency=currency,
        lines=[
            InvoiceLineSpec(description=text, unit_amount=D(amount), tax_category=category)
            for text, amount, category in lines
        ],
    )
    return invoice_finalize(invoice=draft, issue_date=day)


def _consumer(name: str, **kwargs) -> Customer:
    return CustomerFactory(name=name, country="FR", tax_id="", currency=kwargs.pop("currency", "EUR"), **kwargs)


def test_a_german_sellers_b2c_sales_in_france(rates):
    marie = _consumer("Marie Dupont", ip_country="FR", bank_country="FR")
    jean = _consumer("Jean Martin", currency="USD")  # only the address says France
    business = CustomerFactory(name="Client SA", country="FR", tax_id="FR40303265045")
    berlin = CustomerFactory(name="Berliner Kunde", country="DE", tax_id="")
    plan_and_ebook = [("Cloud plan", "100.00", TaxCategory.STANDARD), ("Handbook (e-book)", "10.00", "AA")]
    first = _issue(marie, plan_and_ebook, dt.date(2026, 2, 10))
    _issue(jean, [("Cloud plan", "50.00", TaxCategory.STANDARD)], dt.date(2026, 3, 5), currency="USD")
    _issue(business, [("Cloud plan", "100.00", TaxCategory.STANDARD)], dt.date(2026, 2, 11))  # reverse charge
    _issue(berlin, [("Cloud plan", "100.00", TaxCategory.STANDARD)], dt.date(2026, 2, 12))  # domestic
    _issue(marie, plan_and_ebook, dt.date(2026, 4, 1))  # next quarter
    ebook = first.lines.get(description="Handbook (e-book)")
    credit_note_issue(
        invoice=first, reason="E-book returned", lines=[CreditNoteLineSpec(ebook.pk)], issue_date=dt.date(2026, 3, 1)
    )
    assert [(line.tax_category, line.tax_amount) for line in first.lines.order_by("position")] == [
        ("S", D("20.00")),
        ("AA", D("0.55")),
    ]

    rows = oss_return(date_from=Q1[0], date_to=Q1[1])

    assert [
        (
            r.member_state,
            r.tax_category,
            r.tax_percentage,
            r.invoices,
            r.invoiced_taxable,
            r.invoiced_tax,
            r.credited_taxable,
            r.credited_tax,
            r.taxable,
            r.tax,
            r.evidence_missing,
        )
        for r in rows
    ] == [
        # 100.00 EUR + 50.00 USD / 1.25 = 140.00 EUR at 20 %: 20.00 + 10.00 / 1.25 = 28.00; Jean's lacks evidence
        ("FR", "S", D("20"), 2, D("140.00"), D("28.00"), D("0"), D("0"), D("140.00"), D("28.00"), 1),
        # the e-book at 5.5 %, credited in full in the same quarter
        ("FR", "AA", D("5.5"), 1, D("10.00"), D("0.55"), D("10.00"), D("0.55"), D("0.00"), D("0.00"), 0),
    ]


def test_a_vies_invalid_number_makes_the_business_a_consumer(rates):
    customer = CustomerFactory(name="Pseudo SARL", country="FR", tax_id="FR40303265045")
    Customer.objects.filter(pk=customer.pk).update(vat_status=VatStatus.INVALID)
    customer.refresh_from_db()
    invoice = _issue(customer, [("Cloud plan", "100.00", TaxCategory.STANDARD)], dt.date(2026, 2, 11))
    assert (invoice.tax_total, invoice.customer_snapshot["vat_status"]) == (D("20.00"), "invalid")
    [row] = oss_return(date_from=Q1[0], date_to=Q1[1])
    assert (row.member_state, row.taxable, row.tax) == ("FR", D("100.00"), D("20.00"))


def test_evidence_needs_two_agreeing_pieces_and_no_contradiction():
    assert evidence_ok({"country": "FR", "ip_country": "FR"})
    assert evidence_ok({"country": "FR", "bank_country": "FR", "ip_country": ""})
    assert not evidence_ok({"country": "FR"})
    assert not evidence_ok({"country": "FR", "ip_country": "FR", "bank_country": "BE"})  # a contradiction


def test_quarters_and_a_seller_outside_the_eu():
    assert quarter_range("2026-q4") == (dt.date(2026, 10, 1), dt.date(2026, 12, 31))
    assert quarter_range("2026-Q1") == Q1
    with pytest.raises(InvalidInput, match="not a quarter like 2026-Q3"):
        quarter_range("2026-Q5")
    SellerProfile.objects.update(country="CH", vat_id="")
    with pytest.raises(InvalidInput, match="CH is not an EU member state"):
        oss_return(date_from=Q1[0], date_to=Q1[1])


def test_command_and_report_page_show_the_same_figures(rates, admin_client, capsys):
    marie = _consumer("Marie Dupont", ip_country="FR", bank_country="FR")
    _issue(marie, [("Cloud plan", "100.00", TaxCategory.STANDARD)], dt.date(2026, 2, 10))
    call_command("oss_return", "--quarter", "2026-Q1", "--json")
    payload = json.loads(capsys.readouterr().out)
    assert payload["rows"] == [
        {
            "member_state": "FR",
            "currency": "EUR",
            "tax_category": "S",
            "tax_percentage": "20",
            "invoices": "1",
            "invoiced_taxable": "100.00",
            "invoiced_tax": "20.00",
            "credited_taxable": "0",
            "credited_tax": "0",
            "taxable": "100.00",
            "tax": "20.00",
            "evidence_missing": "0",
        }
    ]
    url = reverse("admin:report", args=["oss"])
    page = admin_client.get(url, {"date_from": "2026-01-01", "date_to": "2026-03-31"}).content.decode()
    assert "EU OSS return" in page and "€20.00" in page
    csv_text = admin_client.get(url, {"date_from": "2026-01-01", "date_to": "2026-03-31", "format": "csv"})
    assert b"FR,EUR,S,20,1,100.00,20.00,0,0,100.00,20.00,0" in csv_text.content
