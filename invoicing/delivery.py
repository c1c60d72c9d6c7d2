"""Outbound e-mail to customers: THE machinery every customer message goes through (invoices now; reminders,
receipts and payment-failed notices later). See docs/decisions/delivery.md.

1. ``email_queue(...)`` renders the message (subject, text, HTML in the customer's language) and stores it as an
   ``OutboundEmail`` row under a unique ``idempotency_key`` — queueing the same key again returns the same row
   and sends nothing new — then, after commit, hands its id to the ``invoicing.send_outbound_email`` task.
2. ``outbound_email_send(email_id=…)`` (the task's body) claims the row with
   ``UPDATE … SET status='sending' WHERE status='queued'``: of two runs, one changes the row and sends, the
   other sees 0 rows and does nothing. Attachments (the invoice PDF) are read at send time, so the customer
   gets the current document. Provider errors: 5xx, 429, timeouts and connection errors put the row back to
   ``queued`` for a retry with exponential back-off until ``EMAIL_MAX_ATTEMPTS``; 4xx and refused recipients
   mark it ``failed`` at once, shown to staff.
3. Tracking webhooks (anymail's ``tracking`` signal, invoicing.webhooks) call ``email_event_record``: each
   provider event is stored once by its event id; delivered / bounced / complained move the row's status;
   a bounce or complaint flags the address in ``EmailAddressStatus``.

A message is sent at most once: a worker that dies between the claim and recording the result leaves the row
in ``sending`` rather than risking a second copy. The sweep marks such a row ``failed`` ("interrupted while
sending") once it has been claimed for ``EMAIL_SENDING_STALE_MINUTES``, so it counts among the failed e-mails on
the dashboard; staff check and resend it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import smtplib
import uuid
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from billing_project.lib.links import invoice_link_url
from invoicing import documents
from invoicing import formatting as fmt
from invoicing.models import (
    CreditNote,
    EmailAddressStatus,
    EmailEvent,
    EmailKind,
    EmailStatus,
    Invoice,
    OutboundEmail,
)

if TYPE_CHECKING:
    from anymail.signals import AnymailTrackingEvent

    from core.models import DomainEvent
    from customers.models import Customer

logger = logging.getLogger(__name__)
S = EmailStatus


class DeliveryError(Exception):
    pass


@dataclass(frozen=True)
class SendOutcome:
    """What one run of the send task did: ``status`` after the run, ``retry`` if it should run again."""

    email_id: int
    status: str
    attempts: int
    retry: bool = False
    skipped: bool = False


# --- queueing -------------------------------------------------------------------------------------------


def customer_recipients(customer: Customer) -> tuple[list[str], list[str]]:
    """(to, cc): the billing e-mail, and the cc addresses without duplicates of it."""
    to = [customer.email.strip()]
    seen = {to[0].lower()}
    cc = []
    for address in customer.cc_email_list:
        if address.lower() not in seen:
            seen.add(address.lower())
            cc.append(address)
    return to, cc


def _render(template: str, suffix: str, language: str, context: dict[str, Any]) -> str:
    names = [f"emails/{template}.{language}.{suffix}", f"emails/{template}.{fmt.DEFAULT_LANGUAGE}.{suffix}"]
    for name in names:
        try:
            return render_to_string(name, context)
        except TemplateDoesNotExist:
            continue
    raise TemplateDoesNotExist(names[0])


def email_render(*, template: str, context: dict[str, Any], language: str) -> tuple[str, str, str]:
    """(subject, text, html) from ``emails/<template>_subject.<lang>.txt``, ``<template>.<lang>.txt`` and
    ``<template>.<lang>.html`` (English where a language has none; the HTML part is optional)."""
    context = {**context, "lang": language}
    subject = " ".join(_render(f"{template}_subject", "txt", language, context).split())
    text = _render(template, "txt", language, context).strip() + "\n"
    try:
        html = _render(template, "html", language, context)
    except TemplateDoesNotExist:
        html = ""
    return subject, text, html


def email_queue(
    *,
    kind: str,
    customer: Customer,
    idempotency_key: str,
    template: str,
    context: dict[str, Any],
    subject: str | None = None,
    attachments_from: Invoice | CreditNote | None = None,
    invoice: Invoice | None = None,
    credit_note: CreditNote | None = None,
    to: list[str] | None = None,
    cc: list[str] | None = None,
    language: str | None = None,
) -> OutboundEmail:
    """Store a message for ``customer`` and send it after commit. Idempotent by ``idempotency_key``: a second
    call returns the first row (re-dispatching it if it is still queued) and never sends a second copy.
    ``attachments_from`` attaches that invoice's or credit note's PDF as it is at send time. ``subject``
    overrides the subject template. Recipients default to the customer's billing e-mail and cc addresses."""
    existing = OutboundEmail.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        _dispatch_if_queued(existing)
        return existing
    if isinstance(attachments_from, Invoice):
        invoice = invoice or attachments_from
    elif isinstance(attachments_from, CreditNote):
        credit_note = credit_note or attachments_from
    language = fmt.document_language(language or customer.language)
    rendered_subject, text, html = email_render(template=template, context=context, language=language)
    default_to, default_cc = customer_recipients(customer)
    email = OutboundEmail(
        kind=kind,
        idempotency_key=idempotency_key,
        customer=customer,
        invoice=invoice,
        credit_note=credit_note,
        attach_pdf=attachments_from is not None,
        language=language,
        from_email=settings.BILLING_FROM_EMAIL,
        to_emails=list(to) if to is not None else default_to,
        cc_emails=list(cc) if cc is not None else default_cc,
        subject=(subject or rendered_subject)[:300],
        body_text=text,
        body_html=html,
        template=template,
        queued_at=timezone.now(),
    )
    try:
        with transaction.atomic():
            email.save()
    except IntegrityError:
        # A concurrent caller queued the same key first: theirs is the message.
        return OutboundEmail.objects.get(idempotency_key=idempotency_key)
    _dispatch_if_queued(email)
    return email


def _dispatch_if_queued(email: OutboundEmail) -> None:
    if email.status != S.QUEUED:
        return
    transaction.on_commit(partial(_dispatch, email.pk))


def _dispatch(email_id: int) -> None:
    """Hand a stored message to the workers. The row is the outbox: if the broker cannot take the task, the
    message stays ``queued`` and the periodic e-mail sweep sends it — the caller (a finalize, a billing run, a
    dunning run) must not fail over a message that is safely stored."""
    from invoicing.tasks import send_outbound_email

    try:
        send_outbound_email.delay(email_id)
    except BrokerUnavailable:
        logger.warning("e-mail %s stays queued: the broker is unreachable; the e-mail sweep will send it", email_id)


# --- invoice e-mails ------------------------------------------------------------------------------------


def invoice_is_emailed_on_finalize(invoice: Invoice) -> bool:
    """Manual and one-off invoices, and invoices of "send invoice" subscriptions, are e-mailed on finalize;
    "charge automatically" subscriptions are not (the payments app sends the receipt or the failure notice)."""
    from subscriptions.models import CollectionMethod

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
        attachments_from=invoice,
        language=(invoice.customer_snapshot or {}).get("language") or invoice.customer.language,
    )


def invoice_email_on_finalize(*, invoice_id: int) -> OutboundEmail | None:
    """The issued invoice's e-mail: once per invoice (key ``invoice:<id>``), if the invoice is e-mailed at all."""
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


def on_invoice_issued_render_pdf(event: DomainEvent) -> None:
    """Handler of ``invoice.issued``, deliver phase (InvoicingConfig.ready): render the PDF on a worker — after the
    settle phase, so the document states the amount due once the customer's credit is applied.

    A PDF that cannot be rendered or handed to the workers now (renderer, storage, broker) must not cost the
    customer the e-mail: it shows as "missing" and ``render_missing_pdfs`` renders it; the e-mail renders the PDF
    itself at send time and is retried until it can (it never goes out without it)."""
    from invoicing.tasks import render_invoice_pdf

    invoice_id = event.payload["invoice_id"]
    try:
        render_invoice_pdf.delay(invoice_id)
    except Exception:
        logger.exception("the PDF of invoice %s was not rendered now; render_missing_pdfs will", invoice_id)


def on_invoice_issued_email(event: DomainEvent) -> None:
    """Handler of ``invoice.issued``, deliver phase: e-mail the invoice if it is e-mailed at all (once per
    invoice: key ``invoice:<id>``). Its amounts are read now, after the settle phase applied any credit."""
    invoice_email_on_finalize(invoice_id=event.payload["invoice_id"])


def on_credit_note_issued_render_pdf(event: DomainEvent) -> None:
    """Handler of ``credit_note.issued``, deliver phase: render the credit note's PDF on a worker."""
    from invoicing.tasks import render_credit_note_pdf

    credit_note_id = event.payload["credit_note_id"]
    try:
        render_credit_note_pdf.delay(credit_note_id)
    except Exception:
        logger.exception("the PDF of credit note %s was not rendered now; render_missing_pdfs will", credit_note_id)


# --- sending --------------------------------------------------------------------------------------------


def retry_countdown(attempts: int) -> int:
    """Seconds before attempt ``attempts + 1``: base × 2^(attempts−1), at most an hour."""
    base = max(1, settings.EMAIL_RETRY_BACKOFF_SECONDS)
    return int(min(3600, base * 2 ** max(0, attempts - 1)))


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: provider 5xx / 429, timeouts, connection errors, SMTP 4xx. Not: provider 4xx, refused
    recipients, SMTP 5xx, bad configuration."""
    from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused

    if isinstance(exc, AnymailRecipientsRefused):
        return False
    if isinstance(exc, AnymailAPIError):
        status = getattr(exc, "status_code", None)
        if status is None:
            # No HTTP response at all: a timeout or a connection error wrapped by anymail.
            return True
        return status >= 500 or status == 429
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPSenderRefused):
        return False
    # Timeouts, refused or reset connections, other SMTP errors (all OSError subclasses).
    return isinstance(exc, OSError)


def _message(email: OutboundEmail) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=email.subject,
        body=email.body_text,
        from_email=email.from_email,
        to=list(email.to_emails),
        cc=list(email.cc_emails),
        reply_to=list(settings.BILLING_REPLY_TO) or None,
        connection=get_connection(),
    )
    if email.body_html:
        message.attach_alternative(email.body_html, "text/html")
    if email.attach_pdf and email.invoice_id is not None:
        filename, content = documents.invoice_pdf_bytes(invoice_id=email.invoice_id)
        message.attach(filename, content, "application/pdf")
    elif email.attach_pdf and email.credit_note_id is not None:
        filename, content = documents.credit_note_pdf_bytes(credit_note_id=email.credit_note_id)
        message.attach(filename, content, "application/pdf")
    # anymail: echoed back in tracking events, so an event finds its row even without a message id.
    message.metadata = {"outbound_email_id": str(email.pk), "kind": email.kind}  # type: ignore[attr-defined]
    message.tags = [email.kind]  # type: ignore[attr-defined]
    return message


def outbound_email_send(*, email_id: int) -> SendOutcome:
    """Send one queued message (the ``send_outbound_email`` task). Safe to run any number of times."""
    now = timezone.now()
    claimed = OutboundEmail.objects.filter(pk=email_id, status=S.QUEUED).update(
        status=S.SENDING, attempts=F("attempts") + 1, claimed_at=now
    )
    email = OutboundEmail.objects.get(pk=email_id)
    if claimed != 1:
        return SendOutcome(email_id, email.status, email.attempts, skipped=True)
    try:
        message = _message(email)
        message.send()
    except Exception as exc:
        return _record_failure(email, exc)
    status = getattr(message, "anymail_status", None)
    message_id = getattr(status, "message_id", None) if status is not None else None
    if isinstance(message_id, set):  # one id per recipient at some providers: keep one, stably
        message_id = sorted(str(value) for value in message_id)[0] if message_id else None
    esp_name = getattr(message.connection, "esp_name", "") or ""
    OutboundEmail.objects.filter(pk=email.pk, status=S.SENDING).update(
        status=S.SENT,
        sent_at=timezone.now(),
        provider_message_id="" if message_id is None else str(message_id)[:200],
        esp_name=str(esp_name)[:40],
        last_error="",
    )
    logger.info("sent %s e-mail %s (attempt %s)", email.kind, email.pk, email.attempts)
    return SendOutcome(email.pk, S.SENT, email.attempts)


def _record_failure(email: OutboundEmail, exc: Exception) -> SendOutcome:
    try:
        error = f"{type(exc).__name__}: {exc}"[:2000]
    except Exception:  # some provider exceptions cannot describe a partial response
        error = f"{type(exc).__name__} (status {getattr(exc, 'status_code', None)})"
    # A document that cannot be rendered right now (storage, database) is worth another try as well.
    transient = is_transient(exc) or isinstance(exc, documents.DocumentRenderError)
    if transient and email.attempts < settings.EMAIL_MAX_ATTEMPTS:
        OutboundEmail.objects.filter(pk=email.pk, status=S.SENDING).update(status=S.QUEUED, last_error=error)
        logger.warning("e-mail %s attempt %s failed, will retry: %s", email.pk, email.attempts, error)
        return SendOutcome(email.pk, S.QUEUED, email.attempts, retry=True)
    OutboundEmail.objects.filter(pk=email.pk, status=S.SENDING).update(
        status=S.FAILED, last_error=error, failed_at=timezone.now()
    )
    logger.error("e-mail %s failed after %s attempt(s): %s", email.pk, email.attempts, error)
    return SendOutcome(email.pk, S.FAILED, email.attempts)


# --- the sweep (periodic job "E-mail sweep", command sweep_emails) -------------------------------------


@dataclass(frozen=True)
class SweepOutcome:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
        }


INTERRUPTED_ERROR = (
    "Interrupted while sending: the worker stopped after claiming this message and before the provider's answer "
    "was recorded. The customer may or may not have received it; it is not re-sent automatically. Check and "
    "resend it from the invoice if needed."
)


def emails_interrupted_mark_failed(*, now: dt.datetime) -> int:
    """Messages left in ``sending`` by a worker that died mid-send → ``failed`` with an explanation, so staff see
    them among the failed e-mails. Never re-sent here: the provider may have accepted the message."""
    stale = now - dt.timedelta(minutes=settings.EMAIL_SENDING_STALE_MINUTES)
    return OutboundEmail.objects.filter(status=S.SENDING, claimed_at__lt=stale).update(
        status=S.FAILED, failed_at=now, last_error=INTERRUPTED_ERROR
    )


def emails_due_for_sweep(*, now: dt.datetime, grace: dt.timedelta, limit: int) -> list[int]:
    """Queued messages nobody is going to send: never tried and older than ``grace`` (their task was never
    enqueued, or was lost), or tried and past their back-off by more than ``grace`` (the retry was lost)."""
    candidates = (
        OutboundEmail.objects.filter(status=S.QUEUED)
        .filter(Q(attempts=0, queued_at__lt=now - grace) | Q(attempts__gt=0, claimed_at__lt=now - grace))
        .order_by("queued_at", "pk")
        .values_list("pk", "attempts", "claimed_at")[:limit]
    )
    return [
        pk
        for pk, attempts, claimed_at in candidates
        if attempts == 0
        or (claimed_at is not None and claimed_at + dt.timedelta(seconds=retry_countdown(attempts)) + grace <= now)
    ]


def emails_sweep(*, now: dt.datetime | None = None, limit: int = 500) -> SweepOutcome:
    """The outbox sweep (every 10 minutes, and ``manage.py sweep_emails``): send — here, without the broker — the
    queued messages whose task was lost, and mark the messages a dead worker left in ``sending`` failed (never
    re-sent on a guess). An invoice e-mail that was never queued (the after-commit dispatch was lost) is queued by
    the domain events sweep (``manage.py process_events``), after its invoice's settle handlers ran. Sending goes
    through ``outbound_email_send``, whose claim (``queued`` → ``sending``) lets exactly one of two overlapping
    sweeps, or a sweep and a late task, send a message."""
    now = now or timezone.now()
    grace = dt.timedelta(minutes=settings.EMAIL_SWEEP_AFTER_MINUTES)
    interrupted = emails_interrupted_mark_failed(now=now)
    if interrupted:
        logger.error("e-mail sweep: %s e-mail(s) interrupted while sending marked failed", interrupted)
    counts = {S.SENT: 0, S.QUEUED: 0, S.FAILED: 0, "skipped": 0}
    for email_id in emails_due_for_sweep(now=now, grace=grace, limit=limit):
        try:
            outcome = outbound_email_send(email_id=email_id)
        except Exception:
            logger.exception("e-mail sweep: sending e-mail %s failed", email_id)
            continue
        key = "skipped" if outcome.skipped else outcome.status
        counts[key] = counts.get(key, 0) + 1
    return SweepOutcome(
        sent=counts[S.SENT],
        retrying=counts[S.QUEUED],
        failed=counts[S.FAILED],
        skipped=counts["skipped"],
        interrupted=interrupted,
    )


# --- tracking -------------------------------------------------------------------------------------------

# anymail event type → the status it moves a message to, and the statuses it may move it from.
_TRANSITIONS: dict[str, tuple[str, frozenset[str]]] = {
    "delivered": (S.DELIVERED, frozenset({S.SENDING, S.SENT})),
    "bounced": (S.BOUNCED, frozenset({S.SENDING, S.SENT, S.DELIVERED})),
    "rejected": (S.FAILED, frozenset({S.SENDING, S.SENT})),
    "failed": (S.FAILED, frozenset({S.SENDING, S.SENT})),
    "complained": (S.COMPLAINED, frozenset({S.SENDING, S.SENT, S.DELIVERED, S.BOUNCED})),
}
_TIMESTAMP_FIELD: dict[str, str] = {S.DELIVERED: "delivered_at", S.BOUNCED: "bounced_at", S.FAILED: "failed_at"}


def tracking_event_id(*, esp_name: str, event: AnymailTrackingEvent) -> str:
    """The provider's event id, or (for providers that send none with some events) a hash of what makes the
    event unique, so that a replayed webhook maps to the same id."""
    if event.event_id:
        return f"{esp_name}:{event.event_id}"[:200]
    parts = [esp_name, event.event_type, event.message_id, event.recipient, event.timestamp, event.description]
    digest = hashlib.sha256("|".join("" if part is None else str(part) for part in parts).encode()).hexdigest()
    return f"{esp_name}:sha256:{digest}"


def _json_safe(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return {"repr": repr(value)[:5000]}


def _find_email(event: AnymailTrackingEvent) -> OutboundEmail | None:
    message_id = "" if event.message_id is None else str(event.message_id)
    if message_id:
        found = OutboundEmail.objects.filter(provider_message_id=message_id).order_by("-pk").first()
        if found is not None:
            return found
    email_id = (event.metadata or {}).get("outbound_email_id")
    if email_id and str(email_id).isdigit():
        return OutboundEmail.objects.filter(pk=int(email_id)).first()
    return None


def email_event_record(*, esp_name: str, event: AnymailTrackingEvent) -> EmailEvent | None:
    """Store a tracking event once and apply it. Returns ``None`` for a replay (already stored)."""
    event_id = tracking_event_id(esp_name=esp_name, event=event)
    occurred_at = event.timestamp if isinstance(event.timestamp, dt.datetime) else None
    recipient = (event.recipient or "").strip().lower()
    with transaction.atomic():
        email = _find_email(event)
        try:
            with transaction.atomic():
                stored = EmailEvent.objects.create(
                    event_id=event_id,
                    outbound_email=email,
                    esp_name=esp_name[:40],
                    event_type=str(event.event_type)[:30],
                    recipient=recipient[:254],
                    provider_message_id="" if event.message_id is None else str(event.message_id)[:200],
                    occurred_at=occurred_at,
                    received_at=timezone.now(),
                    description=str(event.description or event.mta_response or "")[:2000],
                    payload=_json_safe(event.esp_event),
                )
        except IntegrityError:
            logger.info("e-mail event %s already recorded", event_id)
            return None
        at = occurred_at or stored.received_at
        if email is not None:
            _apply_to_email(email.pk, str(event.event_type), recipient, at)
        if recipient and event.event_type in ("bounced", "complained"):
            _flag_address(recipient, str(event.event_type), at, stored.description)
        elif recipient and event.event_type == "delivered":
            EmailAddressStatus.objects.filter(email=recipient, bounced_at__lt=at).update(bounced_at=None, reason="")
    return stored


def _apply_to_email(email_id: int, event_type: str, recipient: str, at: dt.datetime) -> None:
    email = OutboundEmail.objects.select_for_update().get(pk=email_id)
    if event_type == "opened":
        if email.opened_at is None:
            OutboundEmail.objects.filter(pk=email.pk).update(opened_at=at)
        return
    if event_type not in _TRANSITIONS:
        return
    # The message's status follows its main recipients; a bounce at a cc address only flags that address.
    main = {address.lower() for address in email.to_emails}
    if recipient and recipient not in main:
        return
    to_status, from_statuses = _TRANSITIONS[event_type]
    if email.status not in from_statuses:
        return
    updates: dict[str, Any] = {"status": to_status}
    if to_status in _TIMESTAMP_FIELD:
        updates[_TIMESTAMP_FIELD[to_status]] = at
    OutboundEmail.objects.filter(pk=email.pk, status=email.status).update(**updates)


def _flag_address(address: str, event_type: str, at: dt.datetime, reason: str) -> None:
    field = "bounced_at" if event_type == "bounced" else "complained_at"
    status, _created = EmailAddressStatus.objects.get_or_create(email=address)
    setattr(status, field, at)
    status.reason = reason[:2000] or event_type
    status.save()
