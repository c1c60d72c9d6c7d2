"""The journal in the company currency: a EUR company invoicing in USD and JPY — every line converted at the stored
rate of its document's date, each entry balanced in both currencies (conversion rounding to its own account), the
exchange difference of a late payment booked exactly, and a missing rate named (no file written)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal as D

import pytest
from django.core.management import CommandError, call_command

from accounting.models import ExchangeRate
from reporting.exports import ExportError, accounting_export_write
from tests.factories import CustomerFactory, InvoiceFactory, record_payment

pytestmark = pytest.mark.django_db
MARCH_2, APRIL_15 = dt.date(2026, 3, 2), dt.date(2026, 4, 15)


@pytest.fixture
def rates(db):
    for day, currency, rate in (
        (MARCH_2, "USD", "1.08"),
        (MARCH_2, "JPY", "160.00"),
        (APRIL_15, "USD", "1.10"),
        (APRIL_15, "JPY", "165.00"),
    ):
        ExchangeRate.objects.create(date=day, currency=currency, rate=D(rate))


@pytest.fixture
def documents(series, vat_de, rates, settings):
    settings.ACCOUNTING_ACCOUNTS = {"fx_gain": "2660", "fx_loss": "2150", "rounding": "6970"}
    usd = InvoiceFactory(
        customer=CustomerFactory(name="Acme Inc", currency="USD"),
        lines=[{"description": "Plan", "unit_amount": D("100.00")}],
        finalized=MARCH_2,
    )
    jpy = InvoiceFactory(
        customer=CustomerFactory(name="Kabushiki KK", currency="JPY"),
        lines=[{"description": "Plan", "unit_amount": D("10000")}],
        finalized=MARCH_2,
    )
    assert (usd.total, jpy.total) == (D("119.00"), D("11900"))
    payment = record_payment(customer=usd.customer, amount="119.00", received_on=APRIL_15, currency="USD")
    return {"usd": usd, "jpy": jpy, "payment": payment}


def _journal(date_from: dt.date, date_to: dt.date) -> list[dict[str, str]]:
    out = io.StringIO()
    accounting_export_write(out=out, export_format="journal", date_from=date_from, date_to=date_to)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def _cells(rows):
    return [
        (r["document_number"], r["account"], r["debit"], r["credit"], r["currency"], r["base_debit"], r["base_credit"],
         r["base_currency"], r["rate"])
        for r in rows
    ]  # fmt: skip


def _balances(rows):
    document, base = defaultdict(D), defaultdict(D)
    for row in rows:
        document[row["document_number"]] += D(row["debit"] or 0) - D(row["credit"] or 0)
        base[row["document_number"]] += D(row["base_debit"] or 0) - D(row["base_credit"] or 0)
    return set(document.values()) | set(base.values())


def test_lines_are_converted_at_the_stored_rates_and_balance_in_both_currencies(documents):
    payment = f"PAY-{documents['payment'].pk}"
    rows = _journal(dt.date(2026, 3, 1), dt.date(2026, 4, 30))
    assert _cells(rows) == [
        # 119.00 / 1.08 = 110.185… → 110.19; 100 / 1.08 = 92.59; 19 / 1.08 = 17.59: a cent lost converting lines
        ("INV-2026-000001", "1200", "119.00", "", "USD", "110.19", "", "EUR", "1.08"),
        ("INV-2026-000001", "4000", "", "100.00", "USD", "", "92.59", "EUR", "1.08"),
        ("INV-2026-000001", "2200", "", "19.00", "USD", "", "17.59", "EUR", "1.08"),
        ("INV-2026-000001", "6970", "", "", "USD", "", "0.01", "EUR", ""),
        # 11,900 / 160 = 74.375 → 74.38; 10,000 / 160 = 62.50; 1,900 / 160 = 11.875 → 11.88
        ("INV-2026-000002", "1200", "11900", "", "JPY", "74.38", "", "EUR", "160"),
        ("INV-2026-000002", "4000", "", "10000", "JPY", "", "62.50", "EUR", "160"),
        ("INV-2026-000002", "2200", "", "1900", "JPY", "", "11.88", "EUR", "160"),
        # paid late at 1.10: the bank gets 119 / 1.10 = 108.18, the receivable leaves at its 110.19: a loss of 2.01
        (payment, "1000", "119.00", "", "USD", "108.18", "", "EUR", "1.1"),
        (payment, "1200", "", "119.00", "USD", "", "110.19", "EUR", "1.08"),
        (payment, "2150", "", "", "USD", "2.01", "", "EUR", ""),
    ]
    assert _balances(rows) == {D(0)}


def test_a_payment_of_an_invoice_from_an_earlier_period_converts_its_receivable_at_the_invoice_rate(documents):
    april = _journal(dt.date(2026, 4, 1), dt.date(2026, 4, 30))
    assert [(r["account"], r["base_debit"], r["base_credit"], r["rate"]) for r in april] == [
        ("1000", "108.18", "", "1.1"),
        ("1200", "", "110.19", "1.08"),
        ("2150", "2.01", "", ""),
    ]


def test_a_payment_at_a_better_rate_books_a_gain(series, vat_de, rates, settings):
    settings.ACCOUNTING_ACCOUNTS = {"fx_gain": "2660"}
    ExchangeRate.objects.create(date=dt.date(2026, 4, 20), currency="USD", rate=D("1.0000"))
    invoice = InvoiceFactory(
        customer=CustomerFactory(currency="USD"), lines=[{"unit_amount": D("100.00")}], finalized=MARCH_2
    )
    record_payment(customer=invoice.customer, amount="119.00", received_on=dt.date(2026, 4, 20), currency="USD")
    rows = [r for r in _journal(dt.date(2026, 4, 1), dt.date(2026, 4, 30)) if r["document_type"] == "payment"]
    assert [(r["account"], r["base_debit"], r["base_credit"]) for r in rows] == [
        ("1000", "119.00", ""),
        ("1200", "", "110.19"),
        ("2660", "", "8.81"),  # 119.00 − 110.19
    ]


def test_a_company_currency_document_is_its_own_base_amount(series, vat_de):
    InvoiceFactory(lines=[{"unit_amount": D("10.00")}], finalized=MARCH_2)  # EUR: no rate needed, none stored
    rows = _journal(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    assert [(r["debit"], r["credit"], r["base_debit"], r["base_credit"], r["rate"]) for r in rows] == [
        ("11.90", "", "11.90", "", "1"),
        ("", "10.00", "", "10.00", "1"),
        ("", "1.90", "", "1.90", "1"),
    ]


def test_a_missing_rate_names_currency_and_date_and_writes_no_file(documents, tmp_path):
    ExchangeRate.objects.filter(currency="JPY").delete()
    with pytest.raises(ExportError, match=r"INV-2026-000002: no exchange rate for JPY on 2026-03-02"):
        _journal(dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    target = tmp_path / "journal.csv"
    with pytest.raises(CommandError, match="JPY on 2026-03-02"):
        call_command(
            "export_accounting", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "journal",
            "--output", str(target),
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_currency_journal_reads_a_bounded_number_of_queries(
    series, vat_de, rates, django_assert_max_num_queries
):
    for _ in range(10):
        invoice = InvoiceFactory(
            customer=CustomerFactory(currency="USD"), lines=[{"unit_amount": D("10.00")}], finalized=MARCH_2
        )
        record_payment(customer=invoice.customer, amount="11.90", received_on=APRIL_15, currency="USD")
    # the period's rates once, and the March rates of the invoices the April payments settle once more
    with django_assert_max_num_queries(10):
        rows = _journal(dt.date(2026, 4, 1), dt.date(2026, 4, 30))
    assert len(rows) == 30 and _balances(rows) == {D(0)}
