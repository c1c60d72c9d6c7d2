"""Credit notes: full, partial by amount and by line, own series, reduce the amount due, remainder to credit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from core import events
from invoicing.models import CreditNote, InvoiceStatus
from invoicing.selectors import invoice_creditable_amount
from invoicing.services import (
    CreditNoteError,
    CreditNoteLineSpec,
    credit_note_issue,
    invoice_apply_payment,
    invoice_void,
)
from tests.factories.invoicing import InvoiceFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


@pytest.fixture
def invoice(series, vat_de):
    # 2 × 50.00 + 1 × 20.00, 19 % → 119.00 + 23.80 = 142.80
    return InvoiceFactory(
        lines=[
            {"description": "Plan", "quantity": D(2), "unit_amount": D("50.00")},
            {"description": "Setup", "unit_amount": D("20.00")},
        ],
        finalized=ISSUE,
    )


def test_full_credit_note_settles_an_open_invoice(invoice, django_capture_on_commit_callbacks):
    seen = []
    with (
        events.handler_registered(
            event_type="credit_note.issued",
            name="test.seen",
            phase=events.NOTIFY,
            handler=lambda event: seen.append((event.subject_id, D(event.payload["amount_to_customer_credit"]))),
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        credit_note = credit_note_issue(invoice=invoice, reason="cancelled order", issue_date=ISSUE)
    assert credit_note.number == "CN-2026-000001"
    assert (credit_note.net_total, credit_note.tax_total, credit_note.total) == (D("120.00"), D("22.80"), D("142.80"))
    assert (credit_note.amount_applied, credit_note.amount_to_customer_credit) == (D("142.80"), D(0))
    assert seen == [(credit_note.pk, D(0))]
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_credited, invoice.amount_due) == (InvoiceStatus.PAID, D("142.80"), D(0))
    assert invoice.events.last().reason == "settled by credit note CN-2026-000001"
    assert invoice.number.startswith("INV-")  # own series


def test_partial_credit_by_amount_reduces_the_amount_due(invoice):
    credit_note = credit_note_issue(invoice=invoice, reason="goodwill", amount=D("11.90"))
    assert (credit_note.net_total, credit_note.tax_total) == (D("10.00"), D("1.90"))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.OPEN, D("130.90"))
    assert invoice_creditable_amount(invoice=invoice) == D("130.90")


def test_partial_credit_by_line_and_by_quantity(invoice):
    plan, setup = invoice.lines.order_by("position")
    credit_note = credit_note_issue(
        invoice=invoice,
        reason="one seat less, setup waived",
        lines=[
            CreditNoteLineSpec(invoice_line_id=plan.pk, quantity=D(1)),
            CreditNoteLineSpec(invoice_line_id=setup.pk),
        ],
    )
    assert [(ln.net_amount, ln.tax_amount) for ln in credit_note.lines.order_by("position")] == [
        (D("50.00"), D("9.50")),
        (D("20.00"), D("3.80")),
    ]
    assert credit_note.total == D("83.30")
    with pytest.raises(CreditNoteError, match="more than its total"):
        credit_note_issue(invoice=invoice, reason="again", lines=[CreditNoteLineSpec(invoice_line_id=setup.pk)])


def test_credit_on_a_paid_invoice_becomes_customer_credit(invoice, django_capture_on_commit_callbacks):
    invoice_apply_payment(invoice=invoice, amount=D("142.80"))
    seen = []
    with (
        events.handler_registered(
            event_type="credit_note.issued",
            name="test.seen",
            phase=events.NOTIFY,
            handler=lambda event: seen.append(D(event.payload["amount_to_customer_credit"])),
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        credit_note = credit_note_issue(invoice=invoice, reason="refund part", amount=D("23.80"))
    assert (credit_note.amount_applied, credit_note.amount_to_customer_credit) == (D(0), D("23.80"))
    assert seen == [D("23.80")]


def test_remainder_beyond_the_amount_due_goes_to_customer_credit(invoice):
    invoice_apply_payment(invoice=invoice, amount=D("100.00"))  # 42.80 due
    credit_note = credit_note_issue(invoice=invoice, reason="returned goods", amount=D("59.50"))
    assert (credit_note.amount_applied, credit_note.amount_to_customer_credit) == (D("42.80"), D("16.70"))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_credited, invoice.amount_due) == (
        InvoiceStatus.PAID,
        D("100.00"),
        D("42.80"),
        D(0),
    )


def test_never_more_than_the_invoice_total(invoice):
    credit_note_issue(invoice=invoice, reason="first", amount=D("100.00"))
    with pytest.raises(CreditNoteError, match=r"exceeds the creditable 42\.80"):
        credit_note_issue(invoice=invoice, reason="second", amount=D("50.00"))
    rest = credit_note_issue(invoice=invoice, reason="the rest")  # "full" = what is left
    assert rest.total == D("42.80")
    assert CreditNote.objects.filter(invoice=invoice).count() == 2


def test_only_open_or_paid_invoices_take_credit_notes(series, vat_de):
    with pytest.raises(CreditNoteError, match="draft"):
        credit_note_issue(invoice=InvoiceFactory(), reason="x")
    voided = InvoiceFactory(finalized=ISSUE)
    invoice_void(invoice=voided)
    with pytest.raises(CreditNoteError, match="void"):
        credit_note_issue(invoice=voided, reason="x")


def test_invoice_with_a_credit_note_cannot_be_voided(invoice):
    credit_note_issue(invoice=invoice, reason="goodwill", amount=D("1.00"))
    with pytest.raises(Exception, match="credit notes"):
        invoice_void(invoice=invoice)


def test_jpy_credit_by_amount_splits_tax_without_decimals(series):
    from tests.factories.customers import CustomerFactory
    from tests.factories.invoicing import TaxRateFactory

    TaxRateFactory(country="DE", percentage=D(10))
    invoice = InvoiceFactory(
        customer=CustomerFactory(currency="JPY"), lines=[{"unit_amount": D(1234)}], finalized=ISSUE
    )
    credit_note = credit_note_issue(invoice=invoice, reason="discount", amount=D(500))
    assert (credit_note.net_total, credit_note.tax_total) == (D(455), D(45))
