"""A finalized invoice cannot change through save(), QuerySet.update(), bulk_update, its lines or delete —
only the services' payment/credit/status fields move."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from django.db import transaction

from invoicing.models import CreditNote, DocumentImmutable, Invoice, InvoiceLine
from invoicing.services import credit_note_issue, invoice_apply_payment
from tests.factories.invoicing import InvoiceFactory, InvoiceLineFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


@pytest.fixture
def finalized(series, vat_de):
    return InvoiceFactory(finalized=ISSUE, memo="original")


def _unchanged(invoice):
    stored = Invoice.objects.get(pk=invoice.pk)
    assert (stored.memo, stored.total, stored.number) == ("original", D("119.00"), invoice.number)


def test_save_refuses(finalized):
    finalized.memo = "edited"
    with pytest.raises(DocumentImmutable):
        finalized.save()
    with pytest.raises(DocumentImmutable):
        finalized.save(update_fields=["memo"])
    _unchanged(finalized)


def test_save_of_a_stale_draft_instance_refuses(series, vat_de):
    stale = InvoiceFactory(memo="original")
    copy = Invoice.objects.get(pk=stale.pk)
    from invoicing.services import invoice_finalize

    finalized = invoice_finalize(invoice=copy, issue_date=ISSUE)
    stale.memo = "edited"
    # The UPDATE is guarded by status='draft': it matches nothing, and save() raises (inside save(), so the
    # surrounding transaction is marked for rollback, as with any failed save).
    with pytest.raises(DocumentImmutable), transaction.atomic():
        stale.save()
    _unchanged(finalized)


def test_queryset_update_refuses(finalized):
    with pytest.raises(DocumentImmutable):
        Invoice.objects.filter(pk=finalized.pk).update(memo="edited")
    with pytest.raises(DocumentImmutable):
        Invoice.objects.filter(pk=finalized.pk).update(total=D(1), amount_due=D(1))
    _unchanged(finalized)


def test_bulk_update_refuses(finalized):
    finalized.memo = "edited"
    with pytest.raises(DocumentImmutable):
        Invoice.objects.bulk_update([finalized], ["memo"])
    _unchanged(finalized)


def test_delete_refuses(finalized):
    with pytest.raises(DocumentImmutable):
        finalized.delete()
    with pytest.raises(DocumentImmutable):
        Invoice.objects.filter(pk=finalized.pk).delete()
    assert Invoice.objects.filter(pk=finalized.pk).exists()


def test_lines_cannot_be_added_changed_or_deleted(finalized):
    line = finalized.lines.get()
    line.unit_amount = D(1)
    with pytest.raises(DocumentImmutable):
        line.save()
    with pytest.raises(DocumentImmutable):
        InvoiceLineFactory(invoice=finalized)
    with pytest.raises(DocumentImmutable):
        InvoiceLine.objects.filter(pk=line.pk).update(unit_amount=D(1))
    with pytest.raises(DocumentImmutable):
        InvoiceLine.objects.bulk_update([line], ["unit_amount"])
    with pytest.raises(DocumentImmutable):
        line.delete()
    with pytest.raises(DocumentImmutable):
        InvoiceLine.objects.filter(invoice=finalized).delete()
    assert InvoiceLine.objects.get(pk=line.pk).unit_amount == D("100.00")


def test_drafts_stay_editable(series, vat_de):
    draft = InvoiceFactory()
    draft.memo = "edited"
    draft.save()
    Invoice.objects.filter(pk=draft.pk).update(footer="f")
    InvoiceLine.objects.filter(invoice=draft).update(description="changed")
    draft.lines.get().delete()
    draft.delete()


def test_services_still_move_payment_fields(finalized):
    invoice_apply_payment(invoice=finalized, amount=D("19.00"))
    stored = Invoice.objects.get(pk=finalized.pk)
    assert (stored.amount_paid, stored.amount_due) == (D("19.00"), D("100.00"))
    _unchanged(finalized)


def test_credit_notes_are_read_only(finalized):
    credit_note = credit_note_issue(invoice=finalized, reason="goodwill", amount=D("10.00"))
    with pytest.raises(DocumentImmutable):
        credit_note.save()
    with pytest.raises(DocumentImmutable):
        CreditNote.objects.filter(pk=credit_note.pk).update(reason="x")
    with pytest.raises(DocumentImmutable):
        credit_note.delete()
    with pytest.raises(DocumentImmutable):
        credit_note.lines.all().update(net_amount=D(0))
