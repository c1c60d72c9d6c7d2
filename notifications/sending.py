"""Sending one stored message (the ``send_outbound_email`` task's body): claim the row, build the message with
its attachment, hand it to the provider, record the outcome. See notifications.services for the outbox."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import F
from django.utils import timezone

from core.errors import Unavailable
from notifications.models import EmailStatus, OutboundEmail

logger = logging.getLogger(__name__)
S = EmailStatus


class AttachmentNotReady(Unavailable):
    """An attachment provider cannot produce the document right now (storage, database): the message is retried
    like a provider's 5xx."""


class Attachment(NamedTuple):
    filename: str
    content: bytes
    mimetype: str = "application/pdf"


# (email) -> its attachments, or [] when the provider has nothing for it: registered by the apps that own
# documents (InvoicingConfig.ready). The first provider with attachments for a message gives all of them.
AttachmentProvider = Callable[[OutboundEmail], "Sequence[Attachment]"]
_attachment_providers: list[AttachmentProvider] = []


def register_attachment_provider(provider: AttachmentProvider) -> AttachmentProvider:
    if provider not in _attachment_providers:
        _attachment_providers.append(provider)
    return provider


@dataclass(frozen=True)
class SendOutcome:
    """What one run of the send task did: ``status`` after the run, ``retry`` if it should run again."""

    email_id: int
    status: str
    attempts: int
    retry: bool = False
    skipped: bool = False


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
    if email.attach_pdf:
        for provider in _attachment_providers:
            attachments = provider(email)
            if attachments:
                for attachment in attachments:
                    message.attach(attachment.filename, attachment.content, attachment.mimetype)
                break
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
    transient = is_transient(exc) or isinstance(exc, AttachmentNotReady)
    if transient and email.attempts < settings.EMAIL_MAX_ATTEMPTS:
        OutboundEmail.objects.filter(pk=email.pk, status=S.SENDING).update(status=S.QUEUED, last_error=error)
        logger.warning("e-mail %s attempt %s failed, will retry: %s", email.pk, email.attempts, error)
        return SendOutcome(email.pk, S.QUEUED, email.attempts, retry=True)
    OutboundEmail.objects.filter(pk=email.pk, status=S.SENDING).update(
        status=S.FAILED, last_error=error, failed_at=timezone.now()
    )
    logger.error("e-mail %s failed after %s attempt(s): %s", email.pk, email.attempts, error)
    return SendOutcome(email.pk, S.FAILED, email.attempts)
