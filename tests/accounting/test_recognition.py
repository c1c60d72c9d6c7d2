"""Revenue recognition: an annual plan invoiced mid-year, recognised month by month to the cent (daily pro rata),
then reversed by a later credit note; usage recognised before its invoice is unbilled; every month reconciles."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal as D

import pytest
from django.core.management import call_command
from django.urls import reverse
from djmoney.money import Money

from accounting.recognition import recognition_report, schedule
from invoicing.billing_run import billing_run
from invoicing.models import Invoice
from invoicing.services import CreditNoteLineSpec, credit_note_issue
from reporting.exports import accounting_export_write
from subscriptions.models import Interval
from tests.factories import PriceFactory, SubscriptionFactory
from tests.factories.subscriptions import ProductFactory

pytestmark = pytest.mark.django_db
JUL_15 = dt.date(2026, 7, 15)

# 1,200 over [2026-07-15, 2027-07-15): 365 days; 17 days in July, then whole months, 14 days in July 2027.
EXPECTED = {
    dt.date(2026, 7, 1): D("55.89"),
    dt.date(2026, 8, 1): D("101.92"),
    dt.date(2026, 9, 1): D("98.63"),
    dt.date(2026, 10, 1): D("101.92"),
    dt.date(2026, 11, 1): D("98.63"),
    dt.date(2026, 12, 1): D("101.92"),
    dt.date(2027, 1, 1): D("101.92"),
    dt.date(2027, 2, 1): D("92.05"),
    dt.date(2027, 3, 1): D("101.92"),
    dt.date(2027, 4, 1): D("98.63"),
    dt.date(2027, 5, 1): D("101.92"),
    dt.date(2027, 6, 1): D("98.63"),
    dt.date(2027, 7, 1): D("46.02"),  # the last month takes the rounding: the parts add up to 1,200.00
}


@pytest.fixture(autouse=True)
def _setup(series, vat_de):
    pass


def test_a_schedule_is_daily_pro_rata_and_adds_up_to_the_line():
    plan = schedule(amount=D("1200.00"), currency="EUR", issue_date=JUL_15, start=JUL_15, end=dt.date(2027, 7, 15))
    assert plan == EXPECTED and sum(plan.values()) == D("1200.00")
    assert schedule(amount=D("49.00"), currency="EUR", issue_date=JUL_15, start=None, end=None) == {
        dt.date(2026, 7, 1): D("49.00")
    }


def _annual_invoice():
    product = ProductFactory(name="annual", statement_descriptor="Cadence Pro (annual)")
    price = PriceFactory(product=product, unit_amount=Money(D("1200.00"), "EUR"), interval=Interval.YEAR)
    SubscriptionFactory(price=price, start_date=JUL_15)
    billing_run(as_of=JUL_15)
    return Invoice.objects.get()


def _by_month(rows):
    return {row.month: row for row in rows}


def test_an_annual_plan_invoiced_mid_year_is_recognised_month_by_month_and_deferred_the_rest():
    invoice = _annual_invoice()
    assert invoice.subtotal == D("1200.00")
    rows = _by_month(recognition_report(date_from=JUL_15, date_to=dt.date(2027, 7, 31)))
    assert {month: row.recognised for month, row in rows.items()} == EXPECTED
    assert rows[dt.date(2026, 7, 1)].invoiced == D("1200.00")
    assert rows[dt.date(2026, 7, 1)].deferred == D("1144.11")  # 1,200 − 55.89
    assert rows[dt.date(2026, 12, 1)].deferred == D("641.09")  # 1,200 − Jul…Dec
    assert rows[dt.date(2027, 7, 1)].deferred == D("0.00")
    _reconciles(rows)


def test_a_later_credit_note_reverses_what_was_recognised_in_its_month_and_the_rest_after():
    invoice = _annual_invoice()
    line = invoice.lines.get()
    credit_note_issue(
        invoice=invoice,
        reason="cancelled",
        lines=[CreditNoteLineSpec(invoice_line_id=line.pk)],
        issue_date=dt.date(2026, 10, 10),
    )
    rows = _by_month(recognition_report(date_from=JUL_15, date_to=dt.date(2027, 7, 31)))
    october = rows[dt.date(2026, 10, 1)]
    # July to September (256.44) reversed in October, and October's own 101.92 undone
    assert october.invoiced == D("-1200.00") and october.recognised == D("-256.44")
    assert sum(row.recognised for row in rows.values()) == D("0.00")
    assert dt.date(2026, 11, 1) not in rows  # nothing left to recognise or defer
    assert october.deferred == D("0.00")
    _reconciles(rows)


def test_a_credit_by_amount_reverses_in_proportion():
    invoice = _annual_invoice()
    credit_note_issue(invoice=invoice, reason="goodwill", amount=D("119.00"), issue_date=dt.date(2027, 1, 20))
    rows = _by_month(recognition_report(date_from=JUL_15, date_to=dt.date(2027, 7, 31)))
    january = rows[dt.date(2027, 1, 1)]
    assert january.invoiced == D("-100.00")  # 119 gross = 100 net + 19 VAT
    assert sum(row.recognised for row in rows.values()) == D("1100.00")
    _reconciles(rows)


def _reconciles(rows):
    invoiced = recognised = D(0)
    for month in sorted(rows):
        row = rows[month]
        invoiced += row.invoiced
        recognised += row.recognised
        assert invoiced - recognised == row.deferred - row.unbilled, month


def test_the_command_prints_the_report_as_json():
    _annual_invoice()
    out = io.StringIO()
    call_command("revenue_recognition", "--from", "2026-07-01", "--to", "2026-08-31", "--json", stdout=out)
    rows = json.loads(out.getvalue())
    assert [(row["month"], row["recognised"], row["product"]) for row in rows] == [
        ("2026-07-01", "55.89", "Cadence Pro (annual)"),
        ("2026-08-01", "101.92", "Cadence Pro (annual)"),
    ]


# --- the recognition entries of the journal and the admin report --------------------------------------------


def _recognition_journal(date_from: dt.date, date_to: dt.date) -> list[dict[str, str]]:
    out = io.StringIO()
    accounting_export_write(out=out, export_format="recognition", date_from=date_from, date_to=date_to)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def test_the_journal_posts_recognition_monthly_per_product_account_and_reverses_with_the_credit_note(settings):
    settings.ACCOUNTING_ACCOUNTS = {"revenue_by_product": {"annual": "4110"}, "deferred_revenue": "0990"}
    invoice = _annual_invoice()
    credit_note_issue(
        invoice=invoice,
        reason="cancelled",
        lines=[CreditNoteLineSpec(invoice_line_id=invoice.lines.get().pk)],
        issue_date=dt.date(2026, 10, 10),
    )
    rows = _recognition_journal(dt.date(2026, 7, 1), dt.date(2026, 11, 30))
    cells = [(r["document_number"], r["date"], r["account"], r["description"], r["debit"], r["credit"]) for r in rows]
    assert cells == [
        # July: the 1,200.00 invoiced is deferred, July's 17 days recognised
        ("REC-2026-07-EUR", "2026-07-31", "4110", "Invoiced in the month, deferred", "1200.00", ""),
        ("REC-2026-07-EUR", "2026-07-31", "0990", "Invoiced in the month", "", "1200.00"),
        ("REC-2026-07-EUR", "2026-07-31", "0990", "Recognised in the month", "55.89", ""),
        ("REC-2026-07-EUR", "2026-07-31", "4110", "Recognised in the month", "", "55.89"),
        ("REC-2026-08-EUR", "2026-08-31", "0990", "Recognised in the month", "101.92", ""),
        ("REC-2026-08-EUR", "2026-08-31", "4110", "Recognised in the month", "", "101.92"),
        ("REC-2026-09-EUR", "2026-09-30", "0990", "Recognised in the month", "98.63", ""),
        ("REC-2026-09-EUR", "2026-09-30", "4110", "Recognised in the month", "", "98.63"),
        # October: the credit note takes the 1,200.00 back out of deferred revenue and reverses July–September
        ("REC-2026-10-EUR", "2026-10-31", "4110", "Invoiced in the month, deferred", "", "1200.00"),
        ("REC-2026-10-EUR", "2026-10-31", "0990", "Invoiced in the month", "1200.00", ""),
        ("REC-2026-10-EUR", "2026-10-31", "0990", "Recognised in the month", "", "256.44"),
        ("REC-2026-10-EUR", "2026-10-31", "4110", "Recognised in the month", "256.44", ""),
    ]
    deferred = sum((D(r["credit"] or 0) - D(r["debit"] or 0) for r in rows if r["account"] == "0990"), D(0))
    assert deferred == D("0.00")  # nothing left deferred once the whole year is credited
    assert {r["base_currency"] for r in rows} == {"EUR"}


def test_a_partial_last_month_is_not_posted():
    _annual_invoice()
    assert _recognition_journal(dt.date(2026, 7, 1), dt.date(2026, 7, 30)) == []


def test_the_admin_report_shows_the_months_and_downloads_them_as_csv(admin_client):
    _annual_invoice()
    url = reverse("admin:report", args=["recognition"])
    period = {"date_from": "2026-07-01", "date_to": "2026-08-31"}
    page = admin_client.get(url, period)
    assert page.status_code == 200
    assert [(row["month"], row["recognised"], row["deferred"]) for row in page.context["rows"]] == [
        ("2026-07", D("55.89"), D("1144.11")),
        ("2026-08", D("101.92"), D("1042.19")),
    ]
    download = admin_client.get(url, {**period, "format": "csv"})
    assert download.content.decode().splitlines()[1:] == [
        "2026-07,EUR,Cadence Pro (annual),1200.00,55.89,1144.11,0.00",
        "2026-08,EUR,Cadence Pro (annual),0.00,101.92,1042.19,0.00",
    ]


def test_the_report_page_reads_a_bounded_number_of_queries(admin_client, django_assert_max_num_queries):
    product = ProductFactory(name="monthly")
    for day in (1, 2, 3, 4, 5):
        price = PriceFactory(product=product, unit_amount=Money(D("30.00"), "EUR"), interval=Interval.MONTH)
        SubscriptionFactory(price=price, start_date=dt.date(2026, 7, day))
    billing_run(as_of=dt.date(2026, 7, 5))
    admin_client.get("/admin/")  # the session and the admin's own first queries
    with django_assert_max_num_queries(10):  # 8 today, whatever the number of lines
        page = admin_client.get(
            reverse("admin:report", args=["recognition"]), {"date_from": "2026-07-01", "date_to": "2026-09-30"}
        )
    assert [(row["month"], row["invoiced"]) for row in page.context["rows"]] == [
        ("2026-07", D("150.00")),
        ("2026-08", D("0.00")),
    ]
