"""The integrity check: clean on the demo data; each invariant broken once with raw SQL (past the immutability
guards, as a bad fix or a bad restore would) is named in the report with its row (reporting/integrity.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from invoicing.models import DocumentPdf, Invoice, InvoiceLine, InvoiceStatus, NumberSeriesCounter
from payments.models import CreditLedgerEntry, Payment, PaymentStatus
from reporting.integrity import integrity_verify
from reporting.models import IntegrityCheck
from subscriptions.models import LineKind
from tests.databases import rolled_back_on
from tests.factories import StaffUserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.xdist_group("demo")]


@pytest.fixture(scope="module")
def _seeded(seeded_demo: Any, demo_media: Path, django_db_blocker: Any) -> Iterator[None]:
    """The demo seeded once per test process (tests/conftest.py ``seeded_demo``), for this module inside a
    transaction rolled back at its end (each test runs in a savepoint inside it), with a copy of its PDFs."""
    from django.test import override_settings

    with (
        django_db_blocker.unblock(),
        override_settings(MEDIA_ROOT=str(demo_media)),
        rolled_back_on(seeded_demo.database),
    ):
        yield


@pytest.fixture
def demo(_seeded: None, demo_media: Path, settings: Any) -> None:
    settings.MEDIA_ROOT = str(demo_media)


def _sql(statement: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        assert cursor.rowcount == 1


def _problems(check: str) -> list[dict[str, Any]]:
    report = integrity_verify(checks=[check])
    return [vars(problem) for problem in report.problems or []]


def test_the_seeded_demo_is_clean_and_the_command_exits_zero(demo):
    report = integrity_verify()
    assert [problem.line() for problem in report.problems or []] == []
    assert all(report.checked[name] > 0 for name in ("numbering", "invoice_totals", "amount_due", "payments", "pdfs"))
    out = StringIO()
    call_command("verify_integrity", "--json", stdout=out)
    assert json.loads(out.getvalue())["ok"] is True
    check = IntegrityCheck.objects.latest("pk")  # the demo seed ran one too (its jobs page shows it)
    assert (check.ok, check.problem_count, check.triggered_by) == (True, 0, "command")


def test_a_gap_in_the_numbers_is_named_with_its_series_and_number(demo):
    counter = NumberSeriesCounter.objects.filter(last_number__gt=0).order_by("pk").first()
    _sql("UPDATE invoicing_numberseriescounter SET last_number = last_number + 1 WHERE id = %s", [counter.pk])
    problems = _problems("numbering")
    assert len(problems) == 1
    assert (problems[0]["model"], problems[0]["id"]) == ("NumberSeriesCounter", counter.pk)
    assert f"number {counter.last_number + 1} was handed out but no document has it" in problems[0]["problem"]


def test_an_invoice_total_that_is_not_the_sum_of_its_lines(demo):
    line = InvoiceLine.objects.filter(invoice__status=InvoiceStatus.PAID, invoice__currency="EUR").order_by("pk")[0]
    invoice = line.invoice
    # the line stays consistent with itself (net + tax = total); the invoice no longer adds up
    _sql(
        "UPDATE invoicing_invoiceline SET amount = amount + 1, net_amount = net_amount + 1, "
        "total_amount = total_amount + 1 WHERE id = %s",
        [line.pk],
    )
    problems = _problems("invoice_totals")
    assert {(p["model"], p["id"], p["problem"]) for p in problems} == {
        ("Invoice", invoice.pk, "subtotal is not the sum of its lines"),
        ("Invoice", invoice.pk, "total is not the sum of its lines"),
    }
    total = next(p for p in problems if p["problem"].startswith("total"))
    assert (total["expected"], total["found"]) == (
        f"{(invoice.total + 1).normalize():f} EUR",
        f"{invoice.total.normalize():f} EUR",
    )


def test_an_amount_paid_without_the_payment_behind_it(demo):
    invoice = Invoice.objects.filter(status=InvoiceStatus.OPEN, amount_due__gte=1).order_by("pk").first()
    _sql(
        "UPDATE invoicing_invoice SET amount_paid = amount_paid + 1, amount_due = amount_due - 1 WHERE id = %s",
        [invoice.pk],
    )
    problems = _problems("amount_due")
    assert [(p["model"], p["id"]) for p in problems] == [("Invoice", invoice.pk), ("Invoice", invoice.pk)]
    assert {p["problem"].split(" is ")[0] for p in problems} == {"amount paid", "amount due"}


def test_a_credit_entry_booked_to_another_customer(demo):
    entry = CreditLedgerEntry.objects.exclude(payment=None).order_by("pk").first()
    other = Payment.objects.exclude(customer_id=entry.customer_id).order_by("pk").first().customer_id
    _sql("UPDATE payments_creditledgerentry SET customer_id = %s WHERE id = %s", [other, entry.pk])
    problems = _problems("credit_ledger")
    assert [(p["model"], p["id"]) for p in problems] == [("CreditLedgerEntry", entry.pk)]
    assert problems[0]["found"] == f"customer {other}, {entry.currency}"


def test_a_payment_that_is_neither_allocated_nor_on_account(demo):
    payment = Payment.objects.filter(status=PaymentStatus.SUCCEEDED).order_by("pk").first()
    _sql("UPDATE payments_payment SET amount = amount + 5 WHERE id = %s", [payment.pk])
    problems = _problems("payments")
    assert [(p["model"], p["id"], p["problem"]) for p in problems] == [
        ("Payment", payment.pk, "the payment is not fully allocated to invoices or on account")
    ]
    assert problems[0]["expected"] == f"{(payment.amount + 5).normalize():f} {payment.currency}"


def test_an_archived_pdf_whose_file_changed(demo):
    pdf = DocumentPdf.objects.order_by("pk").first()
    path = Path(default_storage.path(pdf.file.name))
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"%tampered")
        problems = _problems("pdfs")
    finally:
        path.write_bytes(original)  # the module's files outlive the test's transaction
    assert [(p["model"], p["id"]) for p in problems] == [("DocumentPdf", pdf.pk)]
    assert problems[0]["expected"] == f"sha256 {pdf.sha256}"


def test_a_period_billed_twice(demo):
    lines = (
        InvoiceLine.objects.filter(kind=LineKind.RECURRING, proration=False, subscription_item__isnull=False)
        .exclude(invoice__status=InvoiceStatus.VOID)
        .order_by("subscription_item_id", "period_start")
    )
    first = next(line for line in lines if lines.filter(subscription_item=line.subscription_item).count() > 1)
    second = lines.filter(subscription_item=first.subscription_item, period_start__gt=first.period_start).first()
    _sql(
        "UPDATE invoicing_invoiceline SET period_start = %s, period_end = %s WHERE id = %s",
        [first.period_start, first.period_end, second.pk],
    )
    problems = _problems("periods")
    assert sorted(p["id"] for p in problems) == sorted([first.invoice_id, second.invoice_id])
    assert "is billed on 2 invoices" in problems[0]["problem"]


def test_the_command_names_each_broken_row_and_exits_non_zero_and_the_dashboard_shows_it(demo, client):
    payment = Payment.objects.filter(status=PaymentStatus.SUCCEEDED).order_by("pk").first()
    _sql("UPDATE payments_payment SET amount = amount + 5 WHERE id = %s", [payment.pk])
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("verify_integrity", stdout=out)
    assert raised.value.returncode == 1
    assert f"[payments] Payment {payment.pk}: the payment is not fully allocated" in out.getvalue()
    check = IntegrityCheck.objects.latest("pk")  # the demo seed ran one too (its jobs page shows it)
    assert (check.ok, check.problem_count) == (False, 1)
    assert check.problems[0]["id"] == payment.pk

    client.force_login(StaffUserFactory(group="Auditor (read-only)"))
    page = client.get(reverse("admin:index")).content.decode()
    assert "1 problem(s)" in page
    assert reverse("admin:reporting_integritycheck_change", args=[check.pk]) in page
    detail = client.get(reverse("admin:reporting_integritycheck_change", args=[check.pk])).content.decode()
    assert "the payment is not fully allocated" in detail


def test_the_nightly_task_stores_its_result(demo):
    from reporting.tasks import verify_integrity

    result = verify_integrity.delay().get()
    assert result["ok"] is True
    assert IntegrityCheck.objects.latest("pk").triggered_by == "schedule"
