import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from billing_project.demo.camt053 import demo_statement
from billing_project.demo.history import history_counts
from billing_project.portal import DEMO_PORTAL_EMAIL
from core.dates import billing_today
from core.events import events_sweep
from core.models import DomainEvent, EventStatus
from customers.models import Customer, PortalUser
from invoicing import documents
from invoicing.models import CreditNote, Invoice, InvoiceStatus
from notifications.models import EmailKind, OutboundEmail
from payments.bank_import import bank_statement_import, parse_camt053
from payments.models import Payment, PaymentMethod
from reporting.dashboard import add_months, month_start
from reporting.reports import default_filters, mrr_movements_report
from tests.databases import rolled_back_on

SAMPLE_CAMT053 = Path(__file__).resolve().parents[2] / "docs" / "samples" / "camt053-demo.xml"

pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.xdist_group("demo")]


@pytest.fixture(scope="module")
def _seeded(seeded_demo: Any, demo_media: Path, django_db_blocker: Any) -> Iterator[None]:
    """The demo seeded once per test process (tests/conftest.py ``seeded_demo``: `seed_demo` with real commits on
    a freshly migrated database, as `make demo` runs it), for this module inside a transaction rolled back at its
    end (each test runs in a savepoint inside it), with a copy of its PDFs."""
    with (
        django_db_blocker.unblock(),
        override_settings(MEDIA_ROOT=str(demo_media)),
        rolled_back_on(seeded_demo.database),
    ):
        yield


@pytest.fixture
def demo(_seeded: None, demo_media: Path, settings: Any) -> None:
    settings.MEDIA_ROOT = str(demo_media)


def test_seed_demo_is_realistic_and_idempotent(demo):
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


def test_seed_demo_leaves_a_complete_demo(demo):
    """Seeded as `make demo` does it (the ``seeded_demo`` fixture): real commits, so the after-commit hooks (PDFs,
    e-mails, automatic charges) ran where they would, in the seed's own process."""
    _assert_every_issued_document_has_its_current_pdf()
    _assert_the_portal_customer_has_something_on_every_portal_page()
    _assert_reminders_only_for_open_invoices_whose_step_is_due()
    _assert_the_parent_account_is_billed_on_one_consolidated_invoice()
    _assert_the_demo_bank_statement_pays_open_demo_invoices()  # last: it pays invoices


def _assert_the_parent_account_is_billed_on_one_consolidated_invoice():
    parent = Customer.objects.get(external_id="GROUP-0001")
    assert parent.children.filter(billing_mode="consolidated").count() == 3
    invoice = Invoice.objects.filter(customer=parent).exclude(status=InvoiceStatus.DRAFT).get()
    assert invoice.child_periods.count() == 3
    assert {row["category"] for row in invoice.tax_summary} == {"S", "AA", "AE"}
    assert not Invoice.objects.filter(customer__parent=parent).exists()


def _assert_every_issued_document_has_its_current_pdf():
    """The seed renders the PDFs itself, so the server never starts with documents missing."""
    issued = Invoice.objects.finalized()
    assert issued.count() > 150
    assert issued.filter(pdf__isnull=True).count() == 0
    assert CreditNote.objects.exists()
    assert CreditNote.objects.filter(pdf__isnull=True).count() == 0
    assert documents.pdfs_needing_render_count(only_missing=True) == 0


def _assert_the_portal_customer_has_something_on_every_portal_page():
    customer = PortalUser.objects.select_related("customer").get(email=DEMO_PORTAL_EMAIL).customer
    invoices = Invoice.objects.filter(customer=customer)
    to_pay = invoices.filter(status=InvoiceStatus.OPEN, amount_due__gt=0)
    assert to_pay.exists(), "an open invoice to pay"
    assert all(invoice.subscription_id is None for invoice in to_pay), "not charged automatically, stays open"
    assert invoices.filter(status=InvoiceStatus.PAID).count() >= 2, "a paid history"
    assert Payment.objects.filter(customer=customer).count() >= 2
    assert PaymentMethod.objects.filter(customer=customer, gateway="sandbox", is_default=True).exists()
    assert CreditNote.objects.filter(customer=customer).exists()


def _assert_reminders_only_for_open_invoices_whose_step_is_due():
    """No burst: no reminder for an invoice paid (in the story) long ago, no final notices months late, no
    write-offs at seed time; each reminder is one of today's dunning steps for an open invoice."""
    today = billing_today()
    reminders = list(OutboundEmail.objects.filter(kind=EmailKind.REMINDER).select_related("invoice"))
    assert reminders
    assert len({email.invoice_id for email in reminders}) == len(reminders), "one reminder per invoice"
    for email in reminders:
        invoice = email.invoice
        assert invoice.status == InvoiceStatus.OPEN and invoice.amount_due > 0, invoice.number
        if invoice.due_date < today:  # overdue: the first reminder, within the first week
            assert email.template == "reminders/reminder", invoice.number
            assert (today - invoice.due_date).days < 7, invoice.number
        else:  # the friendly notice three days before the due date
            assert email.template == "reminders/friendly", invoice.number
            assert (invoice.due_date - today).days <= 3, invoice.number
    assert not Invoice.objects.filter(status=InvoiceStatus.UNCOLLECTIBLE).exists()
    # and the sweeps do not take the replayed year for invoice e-mails whose hand-off was lost: no domain event is
    # left pending (the long-ago ones were stored as processed without handlers)
    later = timezone.now() + dt.timedelta(minutes=30)
    assert not DomainEvent.objects.filter(status=EventStatus.PENDING).exists()
    assert events_sweep(now=later).processed == 0


def _assert_the_demo_bank_statement_pays_open_demo_invoices():
    data, invoices = demo_statement()
    assert len(invoices) >= 3
    assert all(invoice.status == InvoiceStatus.OPEN for invoice in invoices)
    report = bank_statement_import(data=data, format="camt053", filename="camt053-demo.xml")
    assert (report.new, report.matched, report.queued) == (len(invoices), len(invoices), 0)
    for invoice in invoices:
        invoice.refresh_from_db()
        assert invoice.status == InvoiceStatus.PAID, invoice.number
    portal_customer = PortalUser.objects.get(email=DEMO_PORTAL_EMAIL).customer
    assert Invoice.objects.filter(customer=portal_customer, status=InvoiceStatus.OPEN).exists()


@pytest.mark.django_db(databases=[])
def test_the_sample_statement_in_docs_is_a_camt053_the_import_reads():
    parsed = parse_camt053(SAMPLE_CAMT053.read_bytes())
    assert parsed.problems == [] and parsed.skipped == 0
    assert parsed.statement_id.startswith("CADENCE-DEMO-")
    assert len(parsed.transactions) >= 3
    assert all(tx.remittance.startswith("Invoice INV-") and tx.amount > 0 for tx in parsed.transactions)
