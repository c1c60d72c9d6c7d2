"""Celery tasks: thin, load by id and call one service.

Beat schedules (registered in django-celery-beat): ``payments.retry_payments`` daily (retries due soft declines,
sends unsent failure e-mails), ``payments.recover_attempts`` every 10 minutes (re-sends attempts a crash left
``processing``)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from core.asof import parse_as_of
from payments import services


@shared_task(name="payments.collect_invoice")
def collect_invoice(invoice_id: int, as_of: str | None = None) -> int | None:
    attempt = services.invoice_collect(invoice_id=invoice_id, as_of=parse_as_of(as_of, option="as_of"))
    return attempt.pk if attempt else None


@shared_task(name="payments.retry_payments")
def retry_payments(as_of: str | None = None) -> dict[str, Any]:
    day = parse_as_of(as_of, option="as_of")
    return services.payment_attempts_retry_due(as_of=day).as_dict()


@shared_task(name="payments.recover_attempts")
def recover_attempts() -> int:
    return services.payment_attempts_recover()
