"""The e-mail outbox: THE machinery every customer message goes through (invoices, credit notes, reminders,
payment-failed notices). See docs/decisions/delivery.md.

1. ``email_queue(...)`` renders the message (subject, text, HTML in the customer's language) and stores it as an
   ``OutboundEmail`` row under a unique ``idempotency_key`` — queueing the same key again returns the same row
   and sends nothing new — then, after commit, hands its id to the ``send_outbound_email`` task.
2. ``outbound_email_send(email_id=…)`` (the task's body) claims the row with
   ``UPDATE … SET status='sending' WHERE status='queued'``: of two runs, one changes the row and sends, the
   other sees 0 rows and does nothing. Attachments (an invoice's PDF) come from the providers the apps above
   register (``register_attachment_provider``) and are read at send time. Provider errors: 5xx, 429, timeouts and
   connection errors put the row back to ``queued`` for a retry with exponential back-off until
   ``EMAIL_MAX_ATTEMPTS``; 4xx and refused recipients mark it ``failed`` at once, shown to staff.
3. Tracking webhooks (anymail's ``tracking`` signal, notifications.webhooks) call ``email_event_record``: each
   provider event is stored once by its event id; delivered / bounced / complained move the row's status;
   a bounce or complaint flags the address in ``EmailAddressStatus``.

A message is sent at most once: a worker that dies between the claim and recording the result leaves the row
in ``sending`` rather than risking a second copy. ``outbox_sweep`` marks such a row ``failed`` ("interrupted while
sending") once it has been claimed for ``EMAIL_SENDING_STALE_MINUTES``, so it counts among the failed e-mails on
the dashboard; staff check and resend it.

This is the bottom application layer: it imports only ``core``. The customer and the document of a message are
passed in (any object with ``pk``, ``email``, ``cc_email_list`` and ``language`` is a customer here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from core import formatting as fmt
from notifications.models import EmailStatus, OutboundEmail
from notifications.tasks import send_outbound_email

logger = logging.getLogger(__name__)
S = EmailStatus


# --- queueing -------------------------------------------------------------------------------------------


def customer_recipients(customer: Any) -> tuple[list[str], list[str]]:
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


SenderProvider = Callable[[], str]
_sender_provider: list[SenderProvider] = []


def register_sender_provider(provider: SenderProvider) -> None:
    """The From address of every message comes from the seller profile, which a higher app (customers) owns:
    it registers the function that reads it (CustomersConfig.ready)."""
    _sender_provider[:] = [provider]


def sender_address() -> str:
    return (_sender_provider[0]() if _sender_provider else "") or settings.BILLING_FROM_EMAIL


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
    customer: Any,
    idempotency_key: str,
    template: str,
    context: dict[str, Any],
    subject: str | None = None,
    invoice: Any = None,
    credit_note: Any = None,
    attach_pdf: bool = False,
    to: list[str] | None = None,
    cc: list[str] | None = None,
    language: str | None = None,
) -> OutboundEmail:
    """Store a message for ``customer`` and send it after commit. Idempotent by ``idempotency_key``: a second
    call returns the first row (re-dispatching it if it is still queued) and never sends a second copy.
    ``attach_pdf`` attaches the PDF of ``invoice`` or ``credit_note`` as it is at send time. ``subject``
    overrides the subject template. Recipients default to the customer's billing e-mail and cc addresses."""
    existing = OutboundEmail.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        _dispatch_if_queued(existing)
        return existing
    language = fmt.document_language(language or customer.language)
    rendered_subject, text, html = email_render(template=template, context=context, language=language)
    default_to, default_cc = customer_recipients(customer)
    email = OutboundEmail(
        kind=kind,
        idempotency_key=idempotency_key,
        customer=customer,
        invoice=invoice,
        credit_note=credit_note,
        attach_pdf=attach_pdf,
        language=language,
        from_email=sender_address(),
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

    try:
        send_outbound_email.delay(email_id)
    except BrokerUnavailable:
        logger.warning("e-mail %s stays queued: the broker is unreachable; the e-mail sweep will send it", email_id)
