"""The stale-work sweeper (periodic job "Stale work sweeper", ``manage.py sweep_stale``): work a dead worker left
"in progress" is found by its heartbeat and resumed or shown to staff — never silently left.

- billing run ``running`` — heartbeat ``heartbeat_at``, written with each chunk's done-marker. After
  ``BILLING_RUN_STALE_MINUTES`` it is marked ``interrupted`` (dashboard) and a new run bills what it left
  (invoicing.stale_runs).
- payment attempt ``processing`` — heartbeat ``processing_since``, written before the gateway is called. After
  ``PAYMENTS_PROCESSING_TIMEOUT_MINUTES`` it is re-sent with the same idempotency key, so never charged twice
  (payments.services.payment_attempts_recover).
- e-mail ``sending`` — heartbeat ``claimed_at``, written when a worker claims it. After
  ``EMAIL_SENDING_STALE_MINUTES`` it is marked failed ("interrupted while sending") for staff to check and resend,
  never re-sent on a guess (notifications.sweep).

It lives in the site layer because it spans three apps; each part is that app's own service. One part failing
does not stop the others: the error is logged and reported.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from invoicing.stale_runs import InterruptedRun, billing_runs_sweep_stale
from notifications.sweep import emails_interrupted_mark_failed
from payments.services import payment_attempts_recover

logger = logging.getLogger(__name__)


@dataclass
class StaleSweepReport:
    billing_runs: list[InterruptedRun] = field(default_factory=list)
    payment_attempts_resent: int = 0
    emails_marked_failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        return len(self.billing_runs) + self.payment_attempts_resent + self.emails_marked_failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "billing_runs_interrupted": [run.as_dict() for run in self.billing_runs],
            "payment_attempts_resent": self.payment_attempts_resent,
            "emails_marked_failed": self.emails_marked_failed,
            "errors": self.errors,
        }


def stale_work_sweep(*, now: dt.datetime | None = None) -> StaleSweepReport:
    now = now or timezone.now()
    report = StaleSweepReport()
    try:
        report.billing_runs = billing_runs_sweep_stale(now=now)
    except Exception as exc:
        logger.exception("stale-work sweep: billing runs")
        report.errors.append(f"billing runs: {type(exc).__name__}: {exc}")
    try:
        report.payment_attempts_resent = payment_attempts_recover(now=now)
    except Exception as exc:
        logger.exception("stale-work sweep: payment attempts")
        report.errors.append(f"payment attempts: {type(exc).__name__}: {exc}")
    try:
        report.emails_marked_failed = emails_interrupted_mark_failed(now=now)
    except Exception as exc:
        logger.exception("stale-work sweep: e-mails")
        report.errors.append(f"e-mails: {type(exc).__name__}: {exc}")
    if report.emails_marked_failed:
        logger.error(
            "stale-work sweep: %s e-mail(s) interrupted while sending marked failed", report.emails_marked_failed
        )
    return report
