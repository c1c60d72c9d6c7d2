"""Invoice and credit-note delivery: the deliver-phase handlers of ``invoice.issued`` and ``credit_note.issued``
(render the PDF, e-mail the invoice) and the invoice e-mail itself (once per invoice, or again when staff resend
it), through the outbox of ``notifications`` (stored, sent once, retried, tracked). See docs/decisions/delivery.md.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings

from core import formatting as fmt
from core.errors import NotAllowed
from core.links import invoice_link_url
from core.models import DomainEvent
from customers.seller import seller_snapshot
from invoicing.documents import tax_rows
from invoicing.models import CreditNote, Invoice
from invoicing.tasks import render_credit_note_pdf, render_invoice_pdf
from notifications.models import EmailKind, OutboundEmail
from notifications.services import email_queue
from subscriptions.models import CollectionMethod

logger = logging.getLogger(__name__)


class DeliveryError(NotAllowed):
    pass


# --- invoice e-mails ------------------------------------------------------------------------------------


def invoice_is_emailed_on_finalize(invoice: Invoice) -> bool:
    """Manual and one-off invoices, and invoices of "send invoice" subscriptions, are e-mailed on finalize;
    "charge automatically" subscriptions are not (the payments app sends the receipt or the failure notice)."""
    if invoice.subscription_id is None:
        return True
    assert invoice.subscription is not None
    return bool(invoice.subscription.collection_method == CollectionMethod.SEND_INVOICE)


def invoice_email_context(invoice: Invoice) -> dict[str, Any]:
    customer = invoice.customer_snapshot or {"name": invoice.customer.name, "language": invoice.customer.language}
    seller = invoice.seller_snapshot or seller_snapshot()
    lang = fmt.document_language(customer.get("language"))
    return {
        "invoice": invoice,
        "number": invoice.number,
        "customer_name": customer.get("legal_name") or customer.get("name", ""),
        "seller_name": seller.get("legal_name", ""),
        "seller_email": seller.get("email", ""),
        "total": fmt.money(invoice.total, invoice.currency, lang),
        "amount_due": fmt.money(invoice.amount_due, invoice.currency, lang),
        "is_due": invoice.amount_due > 0,
        "issue_date": fmt.date(invoice.issue_date, lang),
        "due_date": fmt.date(invoice.due_date, lang),
        # signed, scoped to this invoice and expiring: it opens the invoice without signing in (the PDF keeps
        # the plain portal address, since a printed document outlives any link's expiry)
        "pay_url": invoice_link_url(invoice_id=invoice.pk, purpose="pay"),
        "iban": fmt.iban(str(seller.get("iban", ""))),
        "bic": seller.get("bic", ""),
        # the VAT breakdown per category and rate, spelled out when the invoice has more than one (mixed rates)
        "tax_rows": tax_rows(invoice.tax_summary, invoice.currency, lang, invoice.tax_treatment)
        if len(invoice.tax_summary or []) > 1
        else [],
    }


def invoice_email_queue(*, invoice: Invoice, kind: str = EmailKind.INVOICE, idempotency_key: str) -> OutboundEmail:
    if invoice.is_draft:
        raise DeliveryError(f"invoice {invoice.pk} is a draft: drafts are not sent")
    return email_queue(
        kind=kind,
        customer=invoice.customer,
        idempotency_key=idempotency_key,
        template="invoice",
        context=invoice_email_context(invoice),
        invoice=invoice,
        attach_pdf=True,
        language=(invoice.customer_snapshot or {}).get("language") or invoice.customer.language,
    )


def invoice_email_on_finalize(*, invoice_id: int) -> OutboundEmail | None:
    """The issued invoice's e-mail: once per invoice (key ``invoice:<id>``), if the invoice is e-mailed at all."""
    if not settings.INVOICE_EMAIL_ON_FINALIZE:
        return None
    invoice = Invoice.objects.select_related("customer", "subscription").get(pk=invoice_id)
    if not _emailed_on_finalize(invoice):
        return None
    return invoice_email_queue(invoice=invoice, idempotency_key=f"invoice:{invoice.pk}")


def invoice_email_resend(*, invoice: Invoice) -> OutboundEmail:
    """Staff asked to send the invoice again (admin action): a new message each time."""
    invoice = Invoice.objects.select_related("customer").get(pk=invoice.pk)
    return invoice_email_queue(
        invoice=invoice, kind=EmailKind.INVOICE_RESEND, idempotency_key=f"invoice-resend:{invoice.pk}:{uuid.uuid4()}"
    )


def invoice_email_send(*, invoice: Invoice, request_key: str | None = None) -> tuple[OutboundEmail, bool]:
    """Staff's Send / Resend button. Without ``request_key``: the invoice's first e-mail, under the key finalize
    uses (``invoice:<id>``), so the automatic e-mail and the button never both go out. With it: a resend keyed by
    the staff's request (one key per form shown), so a double submit queues one message. Returns the message and
    whether this call queued it (False: it was queued before, nothing new is sent)."""
    invoice = Invoice.objects.select_related("customer").get(pk=invoice.pk)
    if request_key is None:
        key, kind = f"invoice:{invoice.pk}", EmailKind.INVOICE
    else:
        key, kind = f"invoice-resend:{invoice.pk}:{request_key[:64]}", EmailKind.INVOICE_RESEND
    existed = OutboundEmail.objects.filter(idempotency_key=key).exists()
    email = invoice_email_queue(invoice=invoice, kind=kind, idempotency_key=key)
    return email, not existed


def on_invoice_issued_render_pdf(event: DomainEvent) -> None:
    """Handler of ``invoice.issued``, deliver phase (InvoicingConfig.ready): render the PDF on a worker — after the
    settle phase, so the document states the amount due once the customer's credit is applied.

    A PDF that cannot be rendered or handed to the workers now (renderer, storage, broker) must not cost the
    customer the e-mail: it shows as "missing" and ``render_missing_pdfs`` renders it; the e-mail renders the PDF
    itself at send time and is retried until it can (it never goes out without it).

    An invoice that is e-mailed now gets its PDF from that e-mail: the send renders and stores it once
    (``documents.email_attachment``). A render task as well would race the send on another worker — the same PDF
    rendered twice, the second insert waiting on the first's row (docs/PERFORMANCE.md, "After issue")."""
    invoice_id = event.payload["invoice_id"]
    if _emailed_now(invoice_id):
        return
    try:
        render_invoice_pdf.delay(invoice_id)
    except Exception:
        logger.exception("the PDF of invoice %s was not rendered now; render_missing_pdfs will", invoice_id)


def _emailed_on_finalize(invoice: Invoice) -> bool:
    return settings.INVOICE_EMAIL_ON_FINALIZE and not invoice.is_draft and invoice_is_emailed_on_finalize(invoice)


def _emailed_now(invoice_id: int) -> bool:
    """Whether ``on_invoice_issued_email`` e-mails this invoice (its PDF attached)."""
    if not settings.INVOICE_EMAIL_ON_FINALIZE:
        return False
    invoice = Invoice.objects.select_related("subscription").filter(pk=invoice_id).first()
    return invoice is not None and _emailed_on_finalize(invoice)


def on_invoice_issued_email(event: DomainEvent) -> None:
    """Handler of ``invoice.issued``, deliver phase: e-mail the invoice if it is e-mailed at all (once per
    invoice: key ``invoice:<id>``). Its amounts are read now, after the settle phase applied any credit."""
    invoice_email_on_finalize(invoice_id=event.payload["invoice_id"])


# --- credit-note e-mails --------------------------------------------------------------------------------


def credit_note_email_context(credit_note: CreditNote) -> dict[str, Any]:
    customer = credit_note.customer_snapshot or {
        "name": credit_note.customer.name,
        "language": credit_note.customer.language,
    }
    seller = credit_note.seller_snapshot or seller_snapshot()
    lang = fmt.document_language(customer.get("language"))
    currency = credit_note.currency
    return {
        "credit_note": credit_note,
        "number": credit_note.number,
        "invoice_number": credit_note.invoice.number,
        "customer_name": customer.get("legal_name") or customer.get("name", ""),
        "seller_name": seller.get("legal_name", ""),
        "seller_email": seller.get("email", ""),
        "total": fmt.money(credit_note.total, currency, lang),
        "amount_applied": fmt.money(credit_note.amount_applied, currency, lang),
        "has_applied": credit_note.amount_applied > 0,
        "amount_to_credit": fmt.money(credit_note.amount_to_customer_credit, currency, lang),
        "has_credit": credit_note.amount_to_customer_credit > 0,
        "issue_date": fmt.date(credit_note.issue_date, lang),
        "reason": credit_note.reason,
    }


def credit_note_emailed(credit_note_id: int) -> bool:
    """Every issued credit note is e-mailed (with its PDF) unless e-mails on issue are switched off
    (``INVOICE_EMAIL_ON_FINALIZE``)."""
    return bool(settings.INVOICE_EMAIL_ON_FINALIZE) and CreditNote.objects.filter(pk=credit_note_id).exists()


def credit_note_email_on_issue(*, credit_note_id: int) -> OutboundEmail | None:
    """The issued credit note's e-mail, its PDF attached: once per credit note (key ``credit-note:<id>``), to the
    customer's billing address and cc addresses, in the language of the credit note."""
    if not credit_note_emailed(credit_note_id):
        return None
    credit_note = CreditNote.objects.select_related("customer", "invoice").get(pk=credit_note_id)
    return email_queue(
        kind=EmailKind.CREDIT_NOTE,
        customer=credit_note.customer,
        idempotency_key=f"credit-note:{credit_note.pk}",
        template="credit_note",
        context=credit_note_email_context(credit_note),
        credit_note=credit_note,
        attach_pdf=True,
        language=(credit_note.customer_snapshot or {}).get("language") or credit_note.customer.language,
    )


def on_credit_note_issued_email(event: DomainEvent) -> None:
    """Handler of ``credit_note.issued``, deliver phase: e-mail the credit note (once: key ``credit-note:<id>``)."""
    credit_note_email_on_issue(credit_note_id=event.payload["credit_note_id"])


def on_credit_note_issued_render_pdf(event: DomainEvent) -> None:
    """Handler of ``credit_note.issued``, deliver phase: render the credit note's PDF on a worker — unless the
    credit note is e-mailed now: then its e-mail renders and stores the PDF once at send time
    (``documents.email_attachment``), as for invoices (``_emailed_now``), so two workers never render the same
    PDF at once."""
    credit_note_id = event.payload["credit_note_id"]
    if credit_note_emailed(credit_note_id):
        return
    try:
        render_credit_note_pdf.delay(credit_note_id)
    except Exception:
        logger.exception("the PDF of credit note %s was not rendered now; render_missing_pdfs will", credit_note_id)
