"""The receivables ageing in the metrics snapshot (reporting.models.CustomerAgeing) equals the live aggregate over
the open invoices, per customer and per currency, on a known dataset: partial payments, a credit note, a written-off
invoice, a paid, a void and a draft one, three currencies with 2, 0 and 3 minor units, every bucket."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from invoicing.services import credit_note_issue, invoice_mark_paid, invoice_mark_uncollectible, invoice_void
from reporting import metrics
from reporting.dashboard import format_amount
from reporting.models import CustomerAgeing
from tests.factories import CustomerFactory, InvoiceFactory, record_payment
from tests.invoicing.conftest import series, vat_de  # noqa: F401 - the default number series, German VAT

D = Decimal
AS_OF = dt.date(2026, 5, 20)
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("series", "vat_de")]


def _line(amount: str) -> dict[str, Any]:
    return {"description": "Service", "unit_amount": D(amount)}


@pytest.fixture
def receivables() -> dict[str, Any]:
    """Issued 14 days before their due date (the customers' default terms); 19 % German VAT on every line."""
    with time_machine.travel(dt.datetime(2026, 5, 20, 9, tzinfo=dt.UTC), tick=False):
        alpha = CustomerFactory(name="Alpha GmbH")
        beta = CustomerFactory(name="beta KG")  # lower case: sorts after "Alpha" and "Gamma" by code point
        gamma = CustomerFactory(name="Gamma KK", currency="JPY")
        delta = CustomerFactory(name="Delta WLL", currency="BHD")
        invoices = {
            # 119.00 due 05-24: current
            "alpha_current": InvoiceFactory(customer=alpha, lines=[_line("100.00")], finalized=dt.date(2026, 5, 10)),
            # 119.00 − 50.00 paid = 69.00, due 04-15: 35 days past due
            "alpha_partly_paid": InvoiceFactory(customer=alpha, lines=[_line("100.00")], finalized=dt.date(2026, 4, 1)),
            # 119.00 − 23.80 credited = 95.20, due 01-16: 124 days
            "beta_credited": InvoiceFactory(customer=beta, lines=[_line("100.00")], finalized=dt.date(2026, 1, 2)),
            # 59.50 due 05-15: 5 days
            "beta_recent": InvoiceFactory(customer=beta, lines=[_line("50.00")], finalized=dt.date(2026, 5, 1)),
            # written off: not owed any more
            "beta_written_off": InvoiceFactory(customer=beta, lines=[_line("70.00")], finalized=dt.date(2026, 2, 1)),
            "beta_paid": InvoiceFactory(customer=beta, lines=[_line("300.00")], finalized=dt.date(2026, 3, 2)),
            "beta_void": InvoiceFactory(customer=beta, lines=[_line("900.00")], finalized=dt.date(2026, 3, 5)),
            "beta_draft": InvoiceFactory(customer=beta, lines=[_line("500.00")]),
            # ¥1,190 due 03-15: 66 days
            "gamma_yen": InvoiceFactory(customer=gamma, lines=[_line("1000")], finalized=dt.date(2026, 3, 1)),
            # BHD 12.049 (10.125 + 1.924 tax) − 2.000 paid, due 06-03: current; and due 02-19: 90 days
            "delta_current": InvoiceFactory(customer=delta, lines=[_line("10.125")], finalized=dt.date(2026, 5, 20)),
            "delta_90": InvoiceFactory(customer=delta, lines=[_line("10.125")], finalized=dt.date(2026, 2, 5)),
        }
        record_payment(
            customer=alpha, amount="50.00", invoice=invoices["alpha_partly_paid"], received_on=dt.date(2026, 5, 2)
        )
        record_payment(
            customer=delta, amount="2.000", invoice=invoices["delta_current"], received_on=dt.date(2026, 5, 20)
        )
        credit_note_issue(
            invoice=invoices["beta_credited"], reason="goodwill", amount=D("23.80"), issue_date=dt.date(2026, 2, 1)
        )
        invoice_mark_uncollectible(invoice=invoices["beta_written_off"], reason="insolvent")
        invoice_mark_paid(invoice=invoices["beta_paid"])
        invoice_void(invoice=invoices["beta_void"])
        metrics.metrics_refresh(as_of=AS_OF)
    for invoice in invoices.values():
        invoice.refresh_from_db()
    return invoices


def test_the_snapshot_equals_the_live_aggregate_per_customer_and_per_currency(receivables: dict[str, Any]) -> None:
    assert metrics.ageing_snapshot_for(AS_OF) is not None
    live = metrics.ageing_by_customer_live(as_of=AS_OF)
    assert metrics.ageing_by_customer(as_of=AS_OF) == live
    assert [(row["customer"], row["currency"]) for row in live] == [
        ("Alpha GmbH", "EUR"),
        ("Delta WLL", "BHD"),
        ("Gamma KK", "JPY"),
        ("beta KG", "EUR"),
    ]
    rows = {row["customer"]: row for row in live}
    assert rows["Alpha GmbH"] == {
        "customer_id": receivables["alpha_current"].customer_id,
        "customer": "Alpha GmbH",
        "currency": "EUR",
        "invoices": 2,
        "days_current": D("119.00"),
        "days_1-30": D("0.00"),
        "days_31-60": D("69.00"),  # partly paid
        "days_61-90": D("0.00"),
        "days_90+": D("0.00"),
        "total_due": D("188.00"),
    }
    # the credit note reduced what is owed; the written-off, paid, void and draft invoices are not owed
    assert (rows["beta KG"]["invoices"], rows["beta KG"]["days_1-30"], rows["beta KG"]["days_90+"]) == (
        2,
        D("59.50"),
        D("95.20"),
    )
    assert (rows["Gamma KK"]["days_61-90"], rows["Gamma KK"]["total_due"]) == (D("1190"), D("1190"))
    delta_due = receivables["delta_current"].amount_due
    assert delta_due == D("10.049")  # three minor units, partly paid
    assert (rows["Delta WLL"]["days_current"], rows["Delta WLL"]["days_61-90"]) == (
        delta_due,
        receivables["delta_90"].amount_due,
    )

    for currency in ("EUR", "JPY", "BHD", "USD"):
        assert metrics.ageing_by_customer(as_of=AS_OF, currency=currency) == metrics.ageing_by_customer_live(
            as_of=AS_OF, currency=currency
        )
    snapshot = metrics.receivables_ageing(as_of=AS_OF)
    assert snapshot == metrics.receivables_ageing_live(as_of=AS_OF)
    assert sorted(snapshot) == ["BHD", "EUR", "JPY"]
    assert snapshot["EUR"].overdue_count == 3 and snapshot["EUR"].overdue_amount == D("223.70")
    assert snapshot["EUR"].total == sum((row["total_due"] for row in live if row["currency"] == "EUR"), D(0))


def test_the_page_reads_its_first_rows_count_and_totals_from_the_snapshot(receivables: dict[str, Any]) -> None:
    live = metrics.ageing_by_customer_live(as_of=AS_OF)
    page = metrics.ageing_by_customer_page(as_of=AS_OF, limit=2)
    assert page.rows == live[:2] and page.count == len(live) == CustomerAgeing.objects.count()
    columns = ("invoices", "days_current", "days_1-30", "days_31-60", "days_61-90", "days_90+", "total_due")
    for currency in ("EUR", "JPY", "BHD"):
        mine = [row for row in live if row["currency"] == currency]
        assert page.totals[currency] == {key: sum(row[key] for row in mine) for key in columns}
    # another as-of date is aggregated live
    later = dt.date(2026, 6, 30)
    assert metrics.ageing_snapshot_for(later) is None
    assert metrics.ageing_by_customer_page(as_of=later, limit=200).rows == metrics.ageing_by_customer_live(as_of=later)


def test_the_snapshot_keeps_its_as_of_figures_until_the_next_refresh(receivables: dict[str, Any]) -> None:
    invoice = receivables["beta_recent"]
    with time_machine.travel(dt.datetime(2026, 5, 20, 11, tzinfo=dt.UTC), tick=False):
        invoice_mark_paid(invoice=invoice)
        before = metrics.ageing_by_customer(as_of=AS_OF)
        assert before != metrics.ageing_by_customer_live(as_of=AS_OF)  # the snapshot is as of its refresh
        assert next(row for row in before if row["customer"] == "beta KG")["days_1-30"] == D("59.50")
        metrics.metrics_refresh(as_of=AS_OF)
    after = metrics.ageing_by_customer(as_of=AS_OF)
    assert after == metrics.ageing_by_customer_live(as_of=AS_OF)
    assert next(row for row in after if row["customer"] == "beta KG")["days_1-30"] == D("0.00")


def test_the_report_page_and_its_csv_show_the_snapshot_with_its_as_of_time(
    receivables: dict[str, Any], admin_client: Any
) -> None:
    live = metrics.ageing_by_customer_live(as_of=AS_OF)
    with time_machine.travel(dt.datetime(2026, 5, 20, 12, tzinfo=dt.UTC), tick=False):
        page = admin_client.get("/admin/reports/ageing/")
        download = admin_client.get("/admin/reports/ageing/", {"format": "csv"})
        other = admin_client.get("/admin/reports/ageing/", {"as_of": "2026-06-30"})
    html = page.content.decode()
    assert page.context["filters"].as_of == AS_OF and "metrics as of 2026-05-20, refreshed 2026-05-20" in html
    assert page.context["rows"] == live and page.context["row_count"] == 4
    totals = {total["currency"]: total for total in page.context["totals"]}
    eur_due = sum((row["total_due"] for row in live if row["currency"] == "EUR"), D(0))
    assert eur_due == D("342.70") and totals["EUR"]["cells"][-1][0] == format_amount(eur_due, "EUR")
    reader = list(csv.DictReader(io.StringIO(download.content.decode())))
    assert [(row["Customer"], row["Currency"], D(row["Total due"])) for row in reader] == [
        (row["customer"], row["currency"], row["total_due"]) for row in live
    ]
    assert "computed live from the open invoices" in other.content.decode()
