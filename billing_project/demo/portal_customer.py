"""The portal's demo customer (``portal@demo.example``, DEMO-0001): something on every portal page.

The earlier steps give it a yearly subscription whose first invoice was charged to its saved test card, and an
onboarding invoice paid by bank transfer — its paid history. This step adds, through the same services staff
use: a credit note (the onboarding's travel costs waived, booked as customer credit) and a follow-up invoice,
e-mailed and left open for the customer to pay in the portal (the credit is applied to it when it is issued,
as ``PAYMENTS_APPLY_CREDIT_ON_FINALIZE`` does for every invoice). One-off invoices are not charged
automatically, so it stays open until someone pays it. Idempotent: keyed by the credit note's reason and the
invoice's memo."""

from __future__ import annotations

from decimal import Decimal

from core.dates import billing_today
from customers.models import Customer
from invoicing.demo import DEMO_MEMO
from invoicing.models import BillingReason, CreditNote, Invoice
from invoicing.services import (
    CreditNoteLineSpec,
    InvoiceLineSpec,
    credit_note_issue,
    invoice_create_draft,
    invoice_finalize,
)

PORTAL_CUSTOMER = "DEMO-0001"
CREDIT_REASON = "Demo: travel costs of the onboarding workshop waived"
OPEN_INVOICE_MEMO = "Demo: follow-up workshop, to pay in the portal"


def seed_portal_customer() -> int:
    """Create what is missing; returns the number of documents issued."""
    customer = Customer.objects.filter(external_id=PORTAL_CUSTOMER).first()
    if customer is None:
        return 0
    created = 0
    onboarding = Invoice.objects.filter(customer=customer, memo=DEMO_MEMO).exclude(number="").first()
    if onboarding is not None and not CreditNote.objects.filter(invoice=onboarding, reason=CREDIT_REASON).exists():
        travel = onboarding.lines.filter(description="Travel costs").first()
        credit_note_issue(
            invoice=onboarding,
            reason=CREDIT_REASON,
            lines=[CreditNoteLineSpec(invoice_line_id=travel.pk)] if travel is not None else None,
        )
        created += 1
    if not Invoice.objects.filter(customer=customer, memo=OPEN_INVOICE_MEMO).exists():
        draft = invoice_create_draft(
            customer=customer,
            billing_reason=BillingReason.ONE_OFF,
            memo=OPEN_INVOICE_MEMO,
            lines=[
                InvoiceLineSpec(description="Follow-up workshop (half day)", unit_amount=Decimal("480.00")),
                InvoiceLineSpec(description="Workshop material", quantity=Decimal(6), unit_amount=Decimal("12.50")),
            ],
        )
        invoice_finalize(invoice=draft, issue_date=billing_today())
        created += 1
    return created
