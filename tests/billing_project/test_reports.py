"""Staff reports: exact rows and CSV on the dashboard's known dataset, CSV formula neutralisation, permission."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest

from core.csv_safe import safe_cell
from reporting.metrics import metrics_refresh
from tests.billing_project.test_dashboard import _staff, dataset  # noqa: F401 (the fixture, by name)

D = Decimal
RANGE = {"date_from": "2025-12-01", "date_to": "2026-04-30"}

pytestmark = pytest.mark.django_db


def _csv(response) -> list[list[str]]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.content.decode())))


def _rows(response) -> list[list[object]]:
    """The report's rows, as values in column order (the page shows them formatted)."""
    columns = response.context["report"].columns
    return [[row[column.key] for column in columns] for row in response.context["rows"]]


@pytest.fixture
def snapshot(dataset):  # noqa: F811 (the fixture, by name)
    """The dashboard's dataset with the metrics snapshot the revenue report reads, as of "today"."""
    metrics_refresh(as_of=dt.date(2026, 4, 15))
    return dataset


@pytest.mark.usefixtures("snapshot")
def test_revenue_report_by_month_product_and_currency(admin_client):
    response = admin_client.get("/admin/reports/revenue/", RANGE)
    assert response.status_code == 200
    assert _rows(response) == [
        ["2025-12", "EUR", "(no product)", 1, D("10.00")],
        ["2026-01", "USD", "(no product)", 1, D("80.00")],
        ["2026-02", "EUR", "(no product)", 1, D("50.00")],
        ["2026-03", "EUR", "(no product)", 1, D("300.00")],  # the void invoice is not revenue
        ["2026-03", "EUR", "Pro", 1, D("200.00")],
        ["2026-04", "EUR", "Basic", 1, D("100.00")],
    ]
    download = admin_client.get("/admin/reports/revenue/", {**RANGE, "currency": "USD", "format": "csv"})
    assert download["Content-Disposition"] == 'attachment; filename="revenue_2025-12-01_2026-04-30_USD.csv"'
    assert _csv(download) == [
        ["Month", "Currency", "Product", "Invoices", "Net revenue"],
        ["2026-01", "USD", "(no product)", "1", "80.00"],
    ]


@pytest.mark.usefixtures("snapshot")
def test_revenue_report_counts_whole_months(admin_client):
    response = admin_client.get("/admin/reports/revenue/", {"date_from": "2026-04-20", "date_to": "2026-04-20"})
    assert _rows(response) == [["2026-04", "EUR", "Basic", 1, D("100.00")]]


@pytest.mark.usefixtures("dataset")
def test_tax_report_subtracts_credit_notes_in_their_month(admin_client):
    response = admin_client.get("/admin/reports/tax/", {**RANGE, "format": "csv"})
    assert _csv(response) == [
        [
            "Month",
            "Currency",
            "VAT category",
            "Tax",
            "Rate %",
            "Invoiced taxable",
            "Invoiced tax",
            "Credited taxable",
            "Credited tax",
            "Taxable",
            "Tax",
        ],
        ["2025-12", "EUR", "S", "VAT 19 %", "19", "10.00", "1.90", "0.00", "0.00", "10.00", "1.90"],
        ["2026-01", "USD", "S", "VAT 19 %", "19", "80.00", "15.20", "0.00", "0.00", "80.00", "15.20"],
        ["2026-02", "EUR", "S", "VAT 19 %", "19", "50.00", "9.50", "0.00", "0.00", "50.00", "9.50"],
        ["2026-03", "EUR", "S", "VAT 19 %", "19", "500.00", "95.00", "0.00", "0.00", "500.00", "95.00"],
        # the credit note of 23.80 (issued 04-12 on a March invoice) = 20.00 + 3.80 tax
        ["2026-04", "EUR", "S", "VAT 19 %", "19", "100.00", "19.00", "20.00", "3.80", "80.00", "15.20"],
    ]


@pytest.mark.usefixtures("dataset")
def test_ageing_report_per_customer_neutralises_formulas_in_csv(admin_client):
    response = admin_client.get("/admin/reports/ageing/", {"as_of": "2026-04-15"})
    assert _rows(response) == [
        ["=SUM(A1)", "EUR", 1, D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("11.90"), D("11.90")],
        ["Alpha GmbH", "EUR", 1, D("119.00"), D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("119.00")],
        ["Beta AG", "EUR", 2, D("0.00"), D("214.20"), D("59.50"), D("0.00"), D("0.00"), D("273.70")],
        ["Delta Inc", "USD", 1, D("0.00"), D("0.00"), D("0.00"), D("95.20"), D("0.00"), D("95.20")],
    ]
    download = admin_client.get("/admin/reports/ageing/", {"as_of": "2026-04-15", "currency": "EUR", "format": "csv"})
    assert download["Content-Disposition"] == 'attachment; filename="ageing_2026-04-15_EUR.csv"'
    assert download.content.decode().splitlines() == [
        "Customer,Currency,Open invoices,Current,1–30 days,31–60 days,61–90 days,90+ days,Total due",
        "'=SUM(A1),EUR,1,0.00,0.00,0.00,0.00,11.90,11.90",
        "Alpha GmbH,EUR,1,119.00,0.00,0.00,0.00,0.00,119.00",
        "Beta AG,EUR,2,0.00,214.20,59.50,0.00,0.00,273.70",
    ]


@pytest.mark.usefixtures("dataset")
def test_ageing_report_moves_with_the_as_of_date(admin_client):
    response = admin_client.get("/admin/reports/ageing/", {"as_of": "2026-05-20", "currency": "EUR"})
    # 2026-05-20: the April invoice is 26 days past due, the March one 47, February's 94
    assert _rows(response)[1:] == [
        ["Alpha GmbH", "EUR", 1, D("0.00"), D("119.00"), D("0.00"), D("0.00"), D("0.00"), D("119.00")],
        ["Beta AG", "EUR", 2, D("0.00"), D("0.00"), D("214.20"), D("0.00"), D("59.50"), D("273.70")],
    ]


@pytest.mark.usefixtures("dataset")
def test_invoices_report_issued_paid_overdue_per_month(admin_client):
    response = admin_client.get("/admin/reports/invoices/", {**RANGE, "as_of": "2026-04-15", "format": "csv"})
    assert _csv(response) == [
        [
            "Month",
            "Currency",
            "Issued",
            "Issued total",
            "Paid",
            "Paid total",
            "Overdue",
            "Overdue amount due",
        ],
        ["2025-12", "EUR", "1", "11.90", "0", "0.00", "1", "11.90"],
        ["2026-01", "USD", "1", "95.20", "0", "0.00", "1", "95.20"],
        ["2026-02", "EUR", "1", "59.50", "0", "0.00", "1", "59.50"],
        ["2026-03", "EUR", "2", "595.00", "0", "0.00", "0", "0.00"],
        ["2026-04", "EUR", "1", "119.00", "1", "357.00", "1", "214.20"],
    ]


@pytest.mark.usefixtures("dataset")
def test_reports_index_lists_every_report(admin_client):
    html = admin_client.get("/admin/reports/").content.decode()
    for slug in ("revenue", "tax", "ageing", "invoices", "mrr", "cohorts", "recognition"):
        assert f'href="/admin/reports/{slug}/"' in html


@pytest.mark.usefixtures("snapshot")
def test_invalid_filters_fall_back_to_the_last_twelve_months(admin_client):
    response = admin_client.get("/admin/reports/revenue/", {"date_from": "2026-05-01", "date_to": "2026-01-01"})
    assert response.status_code == 200
    assert response.context["form"].errors
    assert (str(response.context["filters"].date_from), str(response.context["filters"].date_to)) == (
        "2025-05-01",
        "2026-04-15",
    )
    assert len(response.context["table"]) == 6


def test_unknown_report_is_404(admin_client):
    assert admin_client.get("/admin/reports/nope/").status_code == 404


@pytest.mark.parametrize("url", ["/admin/reports/", "/admin/reports/tax/", "/admin/reports/tax/?format=csv"])
def test_staff_without_invoice_view_permission_get_403(client, url):
    client.force_login(_staff("view_customer"))
    assert client.get(url).status_code == 403


def test_staff_with_invoice_view_permission_may_read_reports(client):
    client.force_login(_staff("view_invoice"))
    assert client.get("/admin/reports/tax/").status_code == 200


def test_anonymous_users_are_sent_to_the_login(client):
    response = client.get("/admin/reports/tax/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+49 30 1234", "'+49 30 1234"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTAB", "'\tTAB"),
        ("\r=cmd", "'\r=cmd"),
        ("Alpha GmbH", "Alpha GmbH"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (D("-12.50"), "-12.50"),  # a number is data, not a formula
        (3, "3"),
    ],
)
def test_safe_cell_neutralises_formula_prefixes(value, cell):
    assert safe_cell(value) == cell


@pytest.mark.usefixtures("dataset")
def test_long_reports_show_their_first_rows_and_total_and_download_all(admin_client, monkeypatch):
    from reporting import reports

    monkeypatch.setattr(reports, "HTML_ROW_LIMIT", 2)
    response = admin_client.get("/admin/reports/ageing/", {"as_of": "2026-04-15", "currency": "EUR"})
    assert [row["cells"][0][0] for row in response.context["table"]] == ["=SUM(A1)", "Alpha GmbH"]
    assert "3 rows (the first 2 shown; totals, charts and downloads have all)" in response.content.decode()
    total_due = response.context["totals"][0]["cells"][-1][0]
    assert total_due == "€404.60"  # 11.90 + 119.00 + 273.70: every row, not only those shown
    download = admin_client.get("/admin/reports/ageing/", {"as_of": "2026-04-15", "currency": "EUR", "format": "csv"})
    assert len(download.content.decode().splitlines()) == 4
