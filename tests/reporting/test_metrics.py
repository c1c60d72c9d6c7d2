"""One truth for every figure: on a known billed history the dashboard, the reports and their CSV/XLSX downloads
show the same MRR, churn, revenue and ageing (all read reporting.metrics), and every month's MRR movements
reconcile from start to end."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from openpyxl import load_workbook

from reporting import metrics
from reporting.dashboard import format_amount
from reporting.models import MetricsRefresh, MrrMonth
from tests.billing_project.test_mrr_movements import history  # noqa: F401 (the fixture, by name)

D = Decimal
AS_OF = dt.date(2026, 5, 20)
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("history")]


def _csv(response) -> list[dict[str, str]]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def _panel(admin_client, currency: str) -> dict:
    response = admin_client.get("/admin/", {"currency": currency})
    assert response.status_code == 200
    return next(panel for panel in response.context["dashboard"]["panels"] if panel["currency"] == currency)


def _figure(panel: dict, label: str):
    return next(figure for figure in panel["figures"] if figure.label == label)


def test_dashboard_report_and_csv_agree_on_mrr_churn_revenue_and_ageing(admin_client):
    panel = _panel(admin_client, "EUR")
    query = {"date_from": "2026-01-01", "date_to": "2026-05-31", "as_of": AS_OF.isoformat(), "currency": "EUR"}
    report = {row["month"]: row for row in admin_client.get("/admin/reports/mrr/", query).context["rows"]}
    download = {row["Month"]: row for row in _csv(admin_client.get("/admin/reports/mrr/", {**query, "format": "csv"}))}

    # MRR on the as-of date: A's April period ended on 05-01; B pays 1,200 a year; C's last period was April
    may = report["2026-05"]
    assert may["ending_mrr"] == D("100.00") == D(download["2026-05"]["Ending MRR"])
    assert _figure(panel, "MRR").value == format_amount(may["ending_mrr"], "EUR") == "€100.00"
    assert "ARR €1,200.00" in _figure(panel, "MRR").note
    assert "last month €280.00" in _figure(panel, "MRR").note
    # churn, one definition: customers whose MRR went to zero in the month (A and C, 180.00 of 280.00)
    assert (may["churn_customers"], may["churn"]) == (2, D("180.00"))
    assert (download["2026-05"]["Churned customers"], download["2026-05"]["Churn"]) == ("2", "180.00")
    assert _figure(panel, "Churned customers this month").value == "2"
    assert "customer churn 66.7 %" in _figure(panel, "Churned customers this month").note
    assert may["customer_churn_rate"] == D("66.7") == D(download["2026-05"]["Customer churn %"])
    assert may["revenue_churn_rate"] == D("64.3") and _figure(panel, "Revenue churn this month").value == "64.3 %"
    assert (may["nrr"], may["grr"], may["arpa"]) == (D("35.7"), D("35.7"), D("100.00"))
    assert _figure(panel, "NRR · GRR this month").value == "35.7 % · 35.7 %"
    assert _figure(panel, "Paying customers").value == "1"
    assert "ARPA €100.00" in _figure(panel, "Paying customers").note

    # the dashboard's MRR chart is the report's ending MRR of each month
    mrr_chart = str(panel["mrr_chart"])
    for month, row in report.items():
        label = dt.date.fromisoformat(f"{month}-01").strftime("%b %Y")
        assert f"{label}: {format_amount(row['ending_mrr'], 'EUR')}</title>" in mrr_chart

    # revenue: the dashboard's chart, the revenue report and its CSV, per month
    revenue_rows = admin_client.get("/admin/reports/revenue/", query).context["rows"]
    revenue_csv = _csv(admin_client.get("/admin/reports/revenue/", {**query, "format": "csv"}))
    by_month: dict[str, Decimal] = {}
    for row in revenue_rows:
        by_month[row["month"]] = by_month.get(row["month"], D(0)) + row["net_revenue"]
    assert by_month == {
        "2026-01": D("150.00"),  # A 100 + C 50
        "2026-02": D("1300.00"),  # A 100 + B's year 1,200
        "2026-03": D("227.00"),  # A 100 + C 50 + D's proration 77 (the draft and the void invoice are not revenue)
        "2026-04": D("180.00"),  # A 150 + C 30
    }
    assert sum((D(row["Net revenue"]) for row in revenue_csv), D(0)) == sum(by_month.values())
    revenue_chart = str(panel["revenue_chart"])
    for month, amount in by_month.items():
        label = dt.date.fromisoformat(f"{month}-01").strftime("%b %Y")
        assert f"{label}: {format_amount(amount, 'EUR')}</title>" in revenue_chart

    # ageing (live): the dashboard's overdue figure and chart, the ageing report and its CSV
    ageing_query = {"as_of": AS_OF.isoformat(), "currency": "EUR"}
    ageing_rows = admin_client.get("/admin/reports/ageing/", ageing_query).context["rows"]
    ageing_csv = _csv(admin_client.get("/admin/reports/ageing/", {**ageing_query, "format": "csv"}))
    buckets = ("days_1-30", "days_31-60", "days_61-90", "days_90+")
    overdue = sum((row[bucket] for row in ageing_rows for bucket in buckets), D(0))
    headers = ("1–30 days", "31–60 days", "61–90 days", "90+ days")
    assert overdue == sum((D(row[header]) for row in ageing_csv for header in headers), D(0))
    assert overdue > 0
    overdue_count = metrics.receivables_ageing(as_of=AS_OF)["EUR"].overdue_count
    assert _figure(panel, "Overdue invoices").value == f"{overdue_count} · {format_amount(overdue, 'EUR')}"


def test_every_month_reconciles_from_start_to_end():
    rows = list(MrrMonth.objects.order_by("currency", "month"))
    assert len(rows) == 7
    ending: dict[str, Decimal] = {}
    for row in rows:
        moved = row.new + row.reactivation + row.expansion - row.contraction - row.churn
        assert row.starting_mrr + moved == row.ending_mrr, (row.month, row.currency)
        assert row.starting_mrr == ending.get(row.currency, D(0)), (row.month, row.currency)  # = last month's end
        customers = row.new_customers + row.reactivation_customers - row.churn_customers
        assert row.starting_customers + customers == row.ending_customers
        ending[row.currency] = row.ending_mrr


def test_cohort_retention_table(admin_client):
    table = {row.cohort: row for row in metrics.cohort_table(as_of=AS_OF)}
    # January: A and C (C paused in February, back in March); February: B (yearly); March: E (one week, USD)
    assert table[dt.date(2026, 1, 1)].retained[:6] == [2, 1, 2, 2, 0, None]
    assert table[dt.date(2026, 2, 1)].retained[:5] == [1, 1, 1, 1, None]
    assert table[dt.date(2026, 3, 1)].retained[:4] == [1, 0, 0, None]
    assert table[dt.date(2026, 1, 1)].share(1) == D("50.0")
    page = admin_client.get("/admin/reports/cohorts/", {"as_of": AS_OF.isoformat()})
    assert page.status_code == 200
    assert [cell for cell, _number, _note in page.context["table"][0]["cells"][:7]] == [
        "2026-01",
        "2",
        "100 %",
        "50 %",
        "100 %",
        "100 %",
        "0 %",
    ]
    download = _csv(admin_client.get("/admin/reports/cohorts/", {"as_of": AS_OF.isoformat(), "format": "csv"}))
    assert [download[0][key] for key in ("Cohort", "Customers", "Month 0", "Month 1", "Month 4", "Month 5")] == [
        "2026-01",
        "2",
        "2",
        "1",
        "0",
        "",
    ]


def test_report_page_has_totals_previous_period_charts_and_drill_down_links(admin_client):
    query = {"date_from": "2026-03-01", "date_to": "2026-04-30", "as_of": AS_OF.isoformat(), "currency": "EUR"}
    page = admin_client.get("/admin/reports/revenue/", query)
    html = page.content.decode()
    assert "Total EUR" in html
    # March + April = 407.00; the two months before (January, February) = 1,450.00
    total = page.context["totals"][0]
    net = next(cell for cell in total["cells"] if cell[0] == "€407.00")
    assert net[1] == "previous €1,450.00"
    assert "previous period 2026-01-01 – 2026-02-28" in html
    assert "<svg" in html and "Net revenue by month, EUR" in html
    assert "€227.00" in html  # amounts as money, not "227.000"
    april = next(row for row in page.context["table"] if row["cells"][0][0] == "2026-04")
    assert admin_client.get(april["link"]).context["cl"].result_count == 2  # A's and C's April invoices
    mrr_page = admin_client.get("/admin/reports/mrr/", query).content.decode()
    assert "metrics as of 2026-05-20" in mrr_page


def test_xlsx_download_has_the_csv_rows_as_numbers(admin_client):
    query = {"date_from": "2026-01-01", "date_to": "2026-05-31", "as_of": AS_OF.isoformat(), "currency": "EUR"}
    response = admin_client.get("/admin/reports/mrr/", {**query, "format": "xlsx"})
    assert response["Content-Disposition"] == 'attachment; filename="mrr_2026-01-01_2026-05-31_EUR.xlsx"'
    sheet = load_workbook(io.BytesIO(response.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("Month", "Currency", "Starting MRR")
    may = next(row for row in rows if row[0] == "2026-05")
    ending = rows[0].index("Ending MRR")
    assert D(str(may[ending])) == D("100.00")
    assert sheet.cell(row=rows.index(may) + 1, column=ending + 1).number_format == "#,##0.00"
    assert len(rows) == 1 + len(_csv(admin_client.get("/admin/reports/mrr/", {**query, "format": "csv"})))


def test_dashboard_shows_only_currencies_with_activity_and_switches_between_them(admin_client, settings):
    response = admin_client.get("/admin/")
    dashboard = response.context["dashboard"]
    assert dashboard["currencies"] == ["EUR", "USD"]  # of the configured currencies, only those with activity
    assert response.context["dashboard_currency"] == "EUR"
    html = response.content.decode()
    assert 'id="currency-EUR"' in html and 'id="currency-USD"' not in html
    assert 'href="?currency=USD"' in html
    usd = admin_client.get("/admin/", {"currency": "USD"})
    assert usd.context["dashboard_currency"] == "USD"
    assert 'id="currency-USD"' in usd.content.decode()
    assert "metrics refreshed" in html


def test_refresh_command_replaces_the_snapshot():
    assert MetricsRefresh.objects.count() == 1
    MrrMonth.objects.filter(month=dt.date(2026, 5, 1)).update(ending_mrr=D("1"))
    out = io.StringIO()
    call_command("refresh_metrics", "--as-of", "2026-05-20", stdout=out)
    assert "Metrics as of 2026-05-20 rebuilt" in out.getvalue()
    assert MrrMonth.objects.get(month=dt.date(2026, 5, 1), currency="EUR").ending_mrr == D("100.00")
    assert MetricsRefresh.objects.count() == 2
