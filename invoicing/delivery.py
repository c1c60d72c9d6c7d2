"""Invoice and credit-note delivery: the invoice e-mail (once per invoice, or again when staff resend it) with
its PDF, through the outbox of ``notifications`` (stored, sent once, retried, tracked), and the invoicing part of
the e-mail sweep. See docs/decisions/delivery.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from core import formatting as fmt
from core.errors import NotAllowed
from core.links import invoice_link_url
from invoicing.models import Invoice, InvoiceStatus
from notifications.models import EmailKind, OutboundEmail
from notifications.services import email_queue, outbox_sweep
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
    seller = invoice.seller_snapshot or dict(settings.SELLER)
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
    """The finalize hook's e-mail: once per invoice (key ``invoice:<id>``), if the invoice is e-mailed at all."""
    if not settings.INVOICE_EMAIL_ON_FINALIZE:
        return None
    invoice = Invoice.objects.select_related("customer", "subscription").get(pk=invoice_id)
    if invoice.is_draft or not invoice_is_emailed_on_finalize(invoice):
        return None
    return invoice_email_queue(invoice=invoice, idempotency_key=f"invoice:{invoice.pk}")


def invoice_email_resend(*, invoice: Invoice) -> OutboundEmail:
    """Staff asked to send the invoice again (admin action): a new message each time."""
    invoice = Invoice.objects.select_related("customer").get(pk=invoice.pk)
    return invoice_email_queue(
        invoice=invoice, kind=EmailKind.INVOICE_RESEND, idempotency_key=f"invoice-resend:{invoice.pk}:{uuid.uuid4()}"
    )


def on_invoice_finalized(invoice_id: int) -> None:
    """Registered with invoicing.hooks (InvoicingConfig.ready): render the PDF, then e-mail it if due.

    A PDF that cannot be rendered or handed to the workers now (renderer, storage, broker) must not cost the
    customer the e-mail: it shows as "missing" and ``render_missing_pdfs`` renders it; the e-mail renders the PDF
    itself at send time and is retried until it can (it never goes out without it)."""
    from invoicing.tasks import render_invoice_pdf

    try:
        render_invoice_pdf.delay(invoice_id)
    except Exception:
        logger.exception("the PDF of invoice %s was not rendered now; render_missing_pdfs will", invoice_id)
    invoice_email_on_finalize(invoice_id=invoice_id)


def on_credit_note_issued(credit_note_id: int, amount_to_credit: Any) -> None:
    from invoicing.tasks import render_credit_note_pdf

    try:
        render_credit_note_pdf.delay(credit_note_id)
    except Exception:
        logger.exception("the PDF of credit note %s was not rendered now; render_missing_pdfs will", credit_note_id)


# --- the sweep (periodic job "E-mail sweep", command sweep_emails) -------------------------------------

# How far back the sweep looks for invoices whose finalize e-mail was never queued. Older ones are left alone:
# the sweep repairs a lost hand-off, it does not e-mail history (bulk loads run with the hooks switched off).
SWEEP_LOOKBACK = dt.timedelta(days=3)


@dataclass(frozen=True)
class SweepOutcome:
    invoice_emails_queued: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "invoice_emails_queued": self.invoice_emails_queued,
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
        }


def invoices_missing_finalize_email(*, now: dt.datetime, grace: dt.timedelta) -> list[int]:
    """Invoices finalized in the last days that are e-mailed on finalize but have no invoice e-mail: their
    after-commit hook never ran (the broker refused the hand-off, a worker died before the hook)."""
    return list(
        Invoice.objects.finalized()
        .exclude(status=InvoiceStatus.VOID)
        .filter(finalized_at__gte=now - SWEEP_LOOKBACK, finalized_at__lt=now - grace)
        .filter(Q(subscription__isnull=True) | Q(subscription__collection_method=CollectionMethod.SEND_INVOICE))
        .exclude(Exists(OutboundEmail.objects.filter(invoice=OuterRef("pk"), kind=EmailKind.INVOICE)))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def emails_sweep(*, now: dt.datetime | None = None, limit: int = 500) -> SweepOutcome:
    """The outbox sweep (every 10 minutes, and ``manage.py sweep_emails``): queue the invoice e-mails whose
    finalize hook never ran, send — here, without the broker — the queued messages whose task was lost, and mark
    the messages a dead worker left in ``sending`` failed (never re-sent on a guess): the last two are
    ``notifications.services.outbox_sweep``."""
    now = now or timezone.now()
    grace = dt.timedelta(minutes=settings.EMAIL_SWEEP_AFTER_MINUTES)
    queued = 0
    if settings.BILLING_AFTER_FINALIZE_HOOKS and settings.INVOICE_EMAIL_ON_FINALIZE:
        for invoice_id in invoices_missing_finalize_email(now=now, grace=grace):
            try:
                if invoice_email_on_finalize(invoice_id=invoice_id) is not None:
                    queued += 1
            except Exception:
                logger.exception("e-mail sweep: could not queue the e-mail of invoice %s", invoice_id)
    outbox = outbox_sweep(now=now, limit=limit)
    return SweepOutcome(
        invoice_emails_queued=queued,
        sent=outbox.sent,
        retrying=outbox.retrying,
        failed=outbox.failed,
        skipped=outbox.skipped,
        interrupted=outbox.interrupted,
    )
