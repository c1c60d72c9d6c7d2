"""MRR movements report: exact figures on a small billed history (new, reactivation, expansion, contraction,
churn; annual and weekly prices normalised; prorations, drafts and void invoices left out)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from invoicing.services import invoice_void
from reporting.metrics import metrics_refresh
from reporting.reports import ReportFilters, mrr_movements_report
from tests.factories import (
    CustomerFactory,
    InvoiceFactory,
    NumberSeriesFactory,
    PriceFactory,
    ProductFactory,
    TaxRateFactory,
)

D = Decimal
pytestmark = pytest.mark.django_db


def _bill(customer, price, amount: str, start: dt.date, end: dt.date, *, kind="recurring", finalize=True, **extra):
    line = {
        "kind": kind,
        "description": f"{price.product.name} {start}",
        "unit_amount": D(amount),
        "amount": D(amount),  # catalog lines carry their computed amount
        "price": price,
        "period_start": start,
        "period_end": end,
        **extra,
    }
    return InvoiceFactory(customer=customer, lines=[line], finalized=start if finalize else None)


@pytest.fixture
def history(time_machine):
    """Snapshots: 2025-12-31, 2026-01-31, 02-28, 03-31, 04-30 and 05-20 (the as-of date).

    EUR  A monthly: 100 (Jan–Mar), 150 (Apr), nothing from May         → new, expansion +50, churn −150
         B yearly 1,200 from 2026-02-15                               → new 100 in Feb
         C monthly: 50 (Jan), nothing in Feb, 50 (Mar), 30 (Apr)      → new, churn, reactivation, contraction, churn
         D only a proration line, a draft and a void invoice          → never MRR
    USD  E weekly 10 for the week 03-28 … 04-04 → 10 × 52 / 12 = 43.33 on 03-31 → new in Mar, churn in Apr
    """
    time_machine.move_to(dt.datetime(2026, 5, 20, 10, 0, tzinfo=dt.UTC), tick=False)
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=D("19"))
    TaxRateFactory(country="US", percentage=D("0"))
    monthly = PriceFactory(product=ProductFactory(name="Team"), unit_amount=Money(D("100"), "EUR"))
    yearly = PriceFactory(product=ProductFactory(name="Annual"), unit_amount=Money(D("1200"), "EUR"), interval="year")
    weekly = PriceFactory(product=ProductFactory(name="Weekly"), unit_amount=Money(D("10"), "USD"), interval="week")
    a, b, c, d = (CustomerFactory(name=name) for name in "ABCD")
    e = CustomerFactory(name="E", currency="USD", country="US")
    month = [dt.date(2026, m, 1) for m in range(1, 7)]
    for start, end, amount in ((0, 1, "100"), (1, 2, "100"), (2, 3, "100"), (3, 4, "150")):
        _bill(a, monthly, amount, month[start], month[end])
    _bill(b, yearly, "1200", dt.date(2026, 2, 15), dt.date(2027, 2, 15))
    for start, end, amount in ((0, 1, "50"), (2, 3, "50"), (3, 4, "30")):
        _bill(c, monthly, amount, month[start], month[end])
    _bill(d, monthly, "77", dt.date(2026, 3, 10), month[3], kind="proration", proration=True)
    _bill(d, monthly, "500", month[2], month[3], finalize=False)
    invoice_void(invoice=_bill(d, monthly, "999", month[2], month[3]))
    _bill(e, weekly, "10", dt.date(2026, 3, 28), dt.date(2026, 4, 4))
    metrics_refresh(as_of=dt.date(2026, 5, 20))


def _filters(**extra) -> ReportFilters:
    return ReportFilters(
        date_from=dt.date(2026, 1, 1), date_to=dt.date(2026, 5, 31), as_of=dt.date(2026, 5, 20), **extra
    )


def _figures(row) -> tuple:
    return (
        row["month"],
        row["currency"],
        row["starting_mrr"],
        row["new"],
        row["reactivation"],
        row["expansion"],
        row["contraction"],
        row["churn"],
        row["ending_mrr"],
    )


@pytest.mark.usefixtures("history")
def test_movements_per_month_and_currency():
    rows = mrr_movements_report(filters=_filters())
    assert [_figures(row) for row in rows] == [
        # month, currency, start, new, reactivation, expansion, contraction, churn, end
        ("2026-01", "EUR", D("0.00"), D("150.00"), D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("150.00")),
        ("2026-02", "EUR", D("150.00"), D("100.00"), D("0.00"), D("0.00"), D("0.00"), D("50.00"), D("200.00")),
        ("2026-03", "EUR", D("200.00"), D("0.00"), D("50.00"), D("0.00"), D("0.00"), D("0.00"), D("250.00")),
        ("2026-03", "USD", D("0.00"), D("43.33"), D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("43.33")),
        ("2026-04", "EUR", D("250.00"), D("0.00"), D("0.00"), D("50.00"), D("20.00"), D("0.00"), D("280.00")),
        ("2026-04", "USD", D("43.33"), D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("43.33"), D("0.00")),
        ("2026-05", "EUR", D("280.00"), D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("180.00"), D("100.00")),
    ]
    counts = {
        (row["month"], row["currency"]): tuple(
            row[f"{name}_customers"] for name in ("new", "reactivation", "expansion", "contraction", "churn")
        )
        for row in rows
    }
    assert counts[("2026-01", "EUR")] == (2, 0, 0, 0, 0)
    assert counts[("2026-02", "EUR")] == (1, 0, 0, 0, 1)
    assert counts[("2026-03", "EUR")] == (0, 1, 0, 0, 0)
    assert counts[("2026-04", "EUR")] == (0, 0, 1, 1, 0)
    assert counts[("2026-05", "EUR")] == (0, 0, 0, 0, 2)
    for row in rows:
        moved = row["new"] + row["reactivation"] + row["expansion"] - row["contraction"] - row["churn"]
        assert row["starting_mrr"] + moved == row["ending_mrr"] == row["starting_mrr"] + row["net_movement"]


@pytest.mark.usefixtures("history")
def test_currency_filter_and_a_later_as_of_date():
    rows = mrr_movements_report(filters=_filters(currency="USD"))
    assert [(row["month"], row["new"], row["churn"]) for row in rows] == [
        ("2026-03", D("43.33"), D("0.00")),
        ("2026-04", D("0.00"), D("43.33")),
    ]
    # On 2026-05-01 the May snapshot is that day: A's April period (to 05-01, exclusive) has just ended.
    metrics_refresh(as_of=dt.date(2026, 5, 1))
    early = ReportFilters(date_from=dt.date(2026, 5, 1), date_to=dt.date(2026, 5, 31), as_of=dt.date(2026, 5, 1))
    assert [_figures(row) for row in mrr_movements_report(filters=early)] == [
        ("2026-05", "EUR", D("280.00"), D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("180.00"), D("100.00")),
    ]


@pytest.mark.usefixtures("history")
def test_report_page_and_csv(admin_client):
    query = {"date_from": "2026-04-01", "date_to": "2026-04-30", "as_of": "2026-05-20", "currency": "EUR"}
    page = admin_client.get("/admin/reports/mrr/", query)
    assert page.status_code == 200
    assert "MRR movements by month" in page.content.decode()
    download = admin_client.get("/admin/reports/mrr/", {**query, "format": "csv"})
    lines = download.content.decode().splitlines()
    assert lines[0].startswith("Month,Currency,Starting MRR,New,Reactivation,Expansion,Contraction,Churn,")
    # month, currency, start, new, reactivation, expansion, contraction, churn, net, end; customers at start, new,
    # reactivated, expanded, contracted, churned, at end; customer churn %, revenue churn %, NRR %, GRR %, ARPA
    assert lines[1] == (
        "2026-04,EUR,250.00,0.00,0.00,50.00,20.00,0.00,30.00,280.00,3,0,0,1,1,0,3,0.0,0.0,112.0,92.0,93.33"
    )
    assert len(lines) == 2


def test_mrr_is_after_discounts_and_without_tax(time_machine):
    """A 100.00 monthly fee with a 20.00 coupon discount and 19 % VAT is 80.00 of MRR (the line's net amount)."""
    time_machine.move_to(dt.datetime(2026, 5, 20, 10, 0, tzinfo=dt.UTC), tick=False)
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=D("19"))
    monthly = PriceFactory(product=ProductFactory(name="Team"), unit_amount=Money(D("100"), "EUR"))
    invoice = _bill(
        CustomerFactory(name="F"),
        monthly,
        "100",
        dt.date(2026, 5, 1),
        dt.date(2026, 6, 1),
        discount_amount=D("20.00"),
        discount_description="Coupon WELCOME20",
    )
    assert invoice.total == D("95.20")  # 80.00 + 19 % tax
    metrics_refresh(as_of=dt.date(2026, 5, 20))
    rows = mrr_movements_report(filters=_filters())
    assert [_figures(row) for row in rows] == [
        ("2026-05", "EUR", D("0.00"), D("80.00"), D("0.00"), D("0.00"), D("0.00"), D("0.00"), D("80.00")),
    ]
