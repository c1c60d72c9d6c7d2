import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from billing_project.demo.history import history_counts
from core.dates import billing_today
from customers.models import Customer
from invoicing.models import Invoice, InvoiceStatus
from payments.models import Payment
from reporting.dashboard import add_months, month_start
from reporting.reports import default_filters, mrr_movements_report

pytestmark = pytest.mark.django_db


def test_seed_demo_is_realistic_and_idempotent():
    call_command("seed_demo", stdout=None)
    customers = list(Customer.objects.all())
    assert len(customers) >= 50
    assert len({str(c.country) for c in customers}) >= 3
    assert len({c.currency for c in customers}) >= 3
    names = " ".join(c.name for c in customers)
    assert "ü" in names and "ł" in names  # accents
    assert any("\u0370" <= ch <= "\u03ff" for ch in names)  # Greek
    assert any("\u0400" <= ch <= "\u04ff" for ch in names)  # Cyrillic
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in names)  # Japanese
    snapshot = sorted(Customer.objects.values_list("external_id", "name", "updated_at"))
    invoices = Invoice.objects.count()
    payments = Payment.objects.count()
    call_command("seed_demo", stdout=None)
    assert sorted(Customer.objects.values_list("external_id", "name", "updated_at")) == snapshot
    assert (Invoice.objects.count(), Payment.objects.count()) == (invoices, payments)
    _assert_a_year_of_history()
    for username in ("admin", "clerk", "finance", "auditor"):
        user = authenticate(username=username, password=username)
        assert user is not None and user.is_staff


def _assert_a_year_of_history():
    """The earlier customers give the reports a past: invoices in twelve months, numbered in date order, most
    paid, and every kind of MRR movement."""
    counts = history_counts()
    assert counts["customers"] == 20
    assert counts["invoices"] > 120  # about 145: 20 customers, 3 to 13 months each
    today = billing_today()
    first = add_months(month_start(today), -11)
    issued = Invoice.objects.finalized().filter(issue_date__gte=first)
    assert len({(d.year, d.month) for d in issued.values_list("issue_date", flat=True)}) == 12
    for series in issued.values_list("number_series", flat=True).distinct():
        dates = list(
            Invoice.objects.filter(number_series=series).order_by("number").values_list("issue_date", flat=True)
        )
        assert dates == sorted(dates), "invoice numbers follow the issue dates"
    paid = Invoice.objects.filter(customer__external_id__startswith="DEMO-H", status=InvoiceStatus.PAID).count()
    assert paid > counts["invoices"] * 0.6
    rows = mrr_movements_report(filters=default_filters(today=today))
    for movement in ("new", "reactivation", "expansion", "contraction", "churn"):
        assert any(row[movement] > 0 for row in rows if row["currency"] == "EUR"), movement
