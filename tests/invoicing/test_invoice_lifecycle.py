"""Finalization, the state machine (every transition an event row) and payments."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from core import events
from invoicing.models import BillingReason, Invoice, InvoiceEvent, InvoiceLine, InvoiceStatus
from invoicing.services import (
    InvoiceError,
    InvoiceLineSpec,
    InvoiceStateError,
    PaymentExceedsAmountDue,
    invoice_apply_payment,
    invoice_create_draft,
    invoice_finalize,
    invoice_line_add,
    invoice_mark_paid,
    invoice_mark_uncollectible,
    invoice_void,
    invoices_finalize_many,
)
from tests.factories.customers import CustomerFactory, StaffUserFactory
from tests.factories.invoicing import InvoiceFactory, invoices_issue_new

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


def test_finalize_snapshots_numbers_dates_and_records_an_event(series, vat_de, django_capture_on_commit_callbacks):
    customer = CustomerFactory(name="Müller GmbH", legal_name="Müller & Söhne GmbH", payment_terms_days=30)
    draft = invoice_create_draft(
        customer=customer,
        billing_reason=BillingReason.ONE_OFF,
        memo="Thanks",
        lines=[InvoiceLineSpec(description="Workshop", unit_amount=D("100.00"))],
    )
    assert draft.status == InvoiceStatus.DRAFT and draft.number == "" and draft.total == D("119.00")
    invoice_line_add(invoice=draft, line=InvoiceLineSpec(description="Travel", unit_amount=D("10.00")))
    actor = StaffUserFactory()
    finalized_ids: list[int] = []
    with (
        events.handler_registered(
            event_type="invoice.issued",
            name="test.finalized",
            phase=events.NOTIFY,
            handler=lambda event: finalized_ids.append(event.subject_id),
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        invoice = invoice_finalize(invoice=draft, issue_date=ISSUE, actor=actor)
    assert finalized_ids == [invoice.pk]
    invoice.refresh_from_db()
    assert (invoice.status, invoice.number) == (InvoiceStatus.OPEN, "INV-2026-000001")
    assert (invoice.issue_date, invoice.due_date) == (ISSUE, dt.date(2026, 4, 1))
    assert (invoice.total, invoice.amount_due) == (D("130.90"), D("130.90"))
    assert invoice.customer_snapshot["legal_name"] == "Müller & Söhne GmbH"
    assert invoice.customer_snapshot["postal_address"].startswith("Hauptstraße 1")
    assert set(invoice.customer_snapshot) >= {"name", "tax_id", "country", "language", "email"}
    assert invoice.seller_snapshot["legal_name"] == "Cadence Demo GmbH"
    event = InvoiceEvent.objects.get(invoice=invoice)
    assert (event.from_status, event.to_status, event.actor) == ("draft", "open", actor)
    # the snapshot does not follow later edits of the customer
    customer.name = "Renamed"
    customer.save()
    invoice.refresh_from_db()
    assert invoice.customer_snapshot["name"] == "Müller GmbH"


def test_zero_total_invoice_is_paid_at_finalization(series, vat_de):
    invoice = InvoiceFactory(lines=[{"unit_amount": D("10.00"), "discount_amount": D("10.00")}], finalized=ISSUE)
    assert invoice.status == InvoiceStatus.PAID and invoice.number and invoice.paid_at is not None


def test_invoice_without_lines_or_with_negative_total_cannot_be_finalized(series, vat_de):
    with pytest.raises(InvoiceError, match="no lines"):
        invoice_finalize(invoice=InvoiceFactory(lines=[]), issue_date=ISSUE)
    with pytest.raises(InvoiceError, match="negative"):
        invoice_finalize(invoice=InvoiceFactory(lines=[{"unit_amount": D("-5.00")}]), issue_date=ISSUE)


def test_illegal_transitions_are_refused_and_write_no_event(series, vat_de):
    invoice = InvoiceFactory(finalized=ISSUE)
    with pytest.raises(InvoiceStateError):
        invoice_finalize(invoice=invoice, issue_date=ISSUE)
    invoice_void(invoice=invoice, reason="duplicate")
    for action in (invoice_void, invoice_mark_uncollectible):
        with pytest.raises(InvoiceStateError, match="cannot go from void"):
            action(invoice=invoice)
    with pytest.raises(InvoiceStateError):
        invoice_apply_payment(invoice=invoice, amount=D("1.00"))
    assert list(InvoiceEvent.objects.filter(invoice=invoice).values_list("from_status", "to_status")) == [
        ("draft", "open"),
        ("open", "void"),
    ]


def test_void_keeps_the_number_and_amounts(series, vat_de):
    invoice = InvoiceFactory(finalized=ISSUE)
    number, total = invoice.number, invoice.total
    invoice_void(invoice=invoice, reason="sent to the wrong customer")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.number, invoice.total) == (InvoiceStatus.VOID, number, total)
    assert invoice.voided_at is not None
    assert invoice.events.last().reason == "sent to the wrong customer"


def test_draft_cannot_be_voided_and_paid_invoice_cannot_be_voided(series, vat_de):
    with pytest.raises(InvoiceStateError):
        invoice_void(invoice=InvoiceFactory())
    paid = InvoiceFactory(finalized=ISSUE)
    invoice_mark_paid(invoice=paid)
    with pytest.raises(InvoiceStateError):
        invoice_void(invoice=paid)


def test_payments_reduce_amount_due_and_never_exceed_it(series, vat_de):
    invoice = InvoiceFactory(finalized=ISSUE)  # 119.00
    invoice_apply_payment(invoice=invoice, amount=D("100.00"))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("open", D("100.00"), D("19.00"))
    with pytest.raises(PaymentExceedsAmountDue):
        invoice_apply_payment(invoice=invoice, amount=D("19.01"))
    with pytest.raises(InvoiceError):
        invoice_apply_payment(invoice=invoice, amount=D("0.001"))
    with pytest.raises(TypeError):
        invoice_apply_payment(invoice=invoice, amount=1.0)
    invoice_apply_payment(invoice=invoice, amount=D("19.00"))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == ("paid", D(0))
    assert invoice.events.last().to_status == "paid"


def test_uncollectible_invoice_can_still_be_paid(series, vat_de):
    invoice = InvoiceFactory(finalized=ISSUE)
    invoice_mark_uncollectible(invoice=invoice, reason="dunning step +60")
    invoice_mark_paid(invoice=invoice)
    assert [e.to_status for e in invoice.events.all()] == ["open", "uncollectible", "paid"]


def test_finalize_many_reports_partial_failures(series, vat_de):
    good = InvoiceFactory()
    empty = InvoiceFactory(lines=[])
    already = InvoiceFactory(finalized=ISSUE)
    outcome = invoices_finalize_many(invoices=Invoice.objects.filter(pk__in=[good.pk, empty.pk, already.pk]))
    assert [i.pk for i in outcome.succeeded] == [good.pk]
    failed = {invoice.pk: message for invoice, message in outcome.failed}
    assert set(failed) == {empty.pk, already.pk}
    assert "no lines" in failed[empty.pk]


def test_bulk_issue_builds_finalized_invoices_in_a_few_queries(series, vat_de, django_assert_max_num_queries):
    customers = CustomerFactory.create_batch(50)
    batch = []
    for customer in customers:
        invoice = Invoice(customer=customer, currency="EUR", billing_reason=BillingReason.SUBSCRIPTION_CYCLE)
        lines = [
            InvoiceLine(description="Plan", quantity=D(1), unit_amount=D("29.00")),
            InvoiceLine(description="Seats", quantity=D(3), unit_amount=D("3.335"), discount_amount=D("1.00")),
        ]
        batch.append((invoice, lines))
    # whatever the count; two of them write the invoice.issued events, two read the seller profile (its country
    # for the taxes, its details for the snapshot)
    with django_assert_max_num_queries(15):
        created = invoices_issue_new(invoices=batch, issue_date=ISSUE)
    assert [i.number for i in created] == [f"INV-2026-{n:06d}" for n in range(1, 51)]
    stored = Invoice.objects.get(pk=created[0].pk)
    assert (stored.status, stored.total) == (InvoiceStatus.OPEN, D("45.23"))  # 29.00 + 5.51 + (10.01 - 1.00) + 1.71
    assert InvoiceLine.objects.count() == 100 and InvoiceEvent.objects.count() == 50
