"""The e-mail sweep (periodic job "E-mail sweep", command ``sweep_emails``): messages whose task was lost are sent
here, without the broker; messages a dead worker left ``sending`` are marked failed for staff (never re-sent on a
guess)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from notifications.models import EmailStatus, OutboundEmail
from notifications.sending import outbound_email_send, retry_countdown

logger = logging.getLogger(__name__)
S = EmailStatus


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


@dataclass(frozen=True)
class OutboxSweepOutcome:
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


def outbox_sweep(*, now: dt.datetime | None = None, limit: int = 500) -> OutboxSweepOutcome:
    """The periodic job "E-mail sweep" (every 10 minutes, and ``manage.py sweep_emails``): send — here, without
    the broker — the queued messages whose task was lost, and mark the messages a dead worker left in ``sending``
    failed (never re-sent on a guess). Sending goes through ``outbound_email_send``, whose claim (``queued`` →
    ``sending``) lets exactly one of two overlapping sweeps, or a sweep and a late task, send a message."""
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
    return OutboxSweepOutcome(
        sent=counts[S.SENT],
        retrying=counts[S.QUEUED],
        failed=counts[S.FAILED],
        skipped=counts["skipped"],
        interrupted=interrupted,
    )
