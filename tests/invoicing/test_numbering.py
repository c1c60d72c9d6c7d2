"""Gapless, unique numbers: a locked counter row, also under concurrent finalization and rollbacks."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from invoicing.models import Invoice, InvoiceStatus, NumberSeries
from invoicing.numbering import number_series_allocate, number_series_default
from invoicing.services import invoice_finalize
from tests.factories.invoicing import InvoiceFactory, NumberSeriesFactory, TaxRateFactory

ISSUE = dt.date(2026, 3, 2)


@pytest.mark.django_db
def test_allocating_a_thousand_numbers_takes_one_locking_statement_and_they_are_consecutive():
    series = NumberSeriesFactory(prefix="INV-")
    number_series_allocate(series=series, issue_date=ISSUE, count=5)
    with CaptureQueriesContext(connection) as queries:
        numbers = number_series_allocate(series=series, issue_date=ISSUE, count=1000)
    assert numbers[0] == "INV-2026-000006" and numbers[-1] == "INV-2026-001005"
    assert numbers == [f"INV-2026-{n:06d}" for n in range(6, 1006)]
    # one UPDATE … RETURNING: it locks the counter row until commit and reads the new value
    assert len(queries) == 1
    assert queries.captured_queries[0]["sql"].startswith("UPDATE") and "RETURNING" in queries[0]["sql"]


@pytest.mark.django_db
def test_yearly_reset_restarts_at_one_and_a_continuous_series_does_not():
    yearly = NumberSeriesFactory(prefix="Y-", yearly_reset=True)
    continuous = NumberSeriesFactory(prefix="C-", yearly_reset=False, format="{prefix}{number:05d}")
    assert number_series_allocate(series=yearly, issue_date=dt.date(2026, 12, 31), count=2) == [
        "Y-2026-000001",
        "Y-2026-000002",
    ]
    assert number_series_allocate(series=yearly, issue_date=dt.date(2027, 1, 1)) == ["Y-2027-000001"]
    assert number_series_allocate(series=yearly, issue_date=dt.date(2026, 12, 31)) == ["Y-2026-000003"]
    number_series_allocate(series=continuous, issue_date=dt.date(2026, 12, 31), count=2)
    assert number_series_allocate(series=continuous, issue_date=dt.date(2027, 1, 1)) == ["C-00003"]


@pytest.mark.django_db
def test_series_format_is_validated():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="number"):
        NumberSeries(code="x", name="x", kind="invoice", format="{prefix}{year}", yearly_reset=True).clean()
    with pytest.raises(ValidationError, match="year"):
        NumberSeries(code="x", name="x", kind="invoice", format="{prefix}{number}", yearly_reset=True).clean()
    with pytest.raises(ValidationError, match="valid"):
        NumberSeries(code="x", name="x", kind="invoice", format="{prefix}{nope}", yearly_reset=False).clean()


@pytest.mark.django_db
def test_default_series_are_created_on_first_use():
    assert not NumberSeries.objects.exists()
    invoices = number_series_default(kind=NumberSeries.Kind.INVOICE)
    credit_notes = number_series_default(kind=NumberSeries.Kind.CREDIT_NOTE)
    assert (invoices.prefix, invoices.is_default) == ("INV-", True)
    assert (credit_notes.prefix, credit_notes.kind) == ("CN-", "credit_note")
    assert number_series_default(kind=NumberSeries.Kind.INVOICE) == invoices


@pytest.mark.django_db
def test_the_database_refuses_a_duplicate_invoice_number(series, vat_de):
    first = InvoiceFactory(finalized=ISSUE)
    second = InvoiceFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=second.pk).update(
            status=InvoiceStatus.OPEN,
            number=first.number,
            number_series=first.number_series,
            issue_date=ISSUE,
            due_date=ISSUE,
        )


@pytest.mark.django_db
def test_a_rolled_back_finalization_gives_its_number_back(series, vat_de):
    a, b = InvoiceFactory(), InvoiceFactory()
    with pytest.raises(RuntimeError), transaction.atomic():
        assert invoice_finalize(invoice=a, issue_date=ISSUE).number == "INV-2026-000001"
        raise RuntimeError("something after the number failed")
    assert invoice_finalize(invoice=b, issue_date=ISSUE).number == "INV-2026-000001"
    assert invoice_finalize(invoice=a, issue_date=ISSUE).number == "INV-2026-000002"


def _run_in_threads(targets):
    errors: list[BaseException] = []

    def wrap(target):
        def run():
            try:
                target()
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_finalization_from_four_connections_is_gapless_and_unique():
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE")
    drafts = [InvoiceFactory() for _ in range(48)]
    ids = [d.pk for d in drafts]
    start = threading.Barrier(4)

    def worker(my_ids):
        def run():
            start.wait()
            for invoice_id in my_ids:
                invoice_finalize(invoice=Invoice.objects.get(pk=invoice_id), issue_date=ISSUE)

        return run

    # Interleaved slices so that the four workers compete for the counter the whole time.
    _run_in_threads([worker(ids[i::4]) for i in range(4)])
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 49)]
    assert Invoice.objects.filter(status=InvoiceStatus.OPEN).count() == 48


@pytest.mark.django_db(transaction=True)
def test_a_waiting_finalization_takes_the_number_of_a_concurrent_one_that_rolled_back():
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE")
    a, b = InvoiceFactory(), InvoiceFactory()
    a_has_number = threading.Event()
    seen: dict[str, str] = {}

    def rolls_back():
        with pytest.raises(RuntimeError), transaction.atomic():
            seen["a"] = invoice_finalize(invoice=a, issue_date=ISSUE).number
            a_has_number.set()
            time.sleep(0.5)  # b is now waiting for the counter row
            raise RuntimeError("crash after taking a number")

    def waits():
        a_has_number.wait(10)
        seen["b"] = invoice_finalize(invoice=b, issue_date=ISSUE).number

    _run_in_threads([rolls_back, waits])
    assert seen == {"a": "INV-2026-000001", "b": "INV-2026-000001"}
    a.refresh_from_db()
    assert a.status == InvoiceStatus.DRAFT and a.number == ""
