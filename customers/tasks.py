"""Celery tasks of customers: thin, they call one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from customers.login_email import send_login_email
from customers.portal_services import portal_login_request


@shared_task(name="customers.send_login_link", ignore_result=True)
def send_login_link(email: str, ip: str | None = None) -> None:
    """Issue and e-mail a sign-in link for ``email`` if it has portal access; nothing otherwise. The token is made
    here, in the worker: the broker carries the address, never the link. The web request queues this for every
    address alike, so neither its answer nor its time tells whether the address is known."""
    link = portal_login_request(email=email, ip=ip)
    if link is not None:
        send_login_email(link)


@shared_task(
    bind=True,
    name="customers.check_vat_number",
    ignore_result=True,
    max_retries=None,
    acks_late=True,
)
def check_vat_number(self: Any, check_id: int) -> None:
    """Ask VIES about one queued check; while VIES is down, retry with exponential backoff (5 min, 10, 20, … up to
    ``VAT_CHECK_MAX_ATTEMPTS``); after that the daily "VAT number checks" job queues the number again."""
    from customers.vat import ViesUnavailable, vat_check_perform

    attempt = self.request.retries
    while True:
        try:
            vat_check_perform(check_id=check_id)
            return
        except ViesUnavailable as exc:
            attempt += 1
            if attempt >= settings.VAT_CHECK_MAX_ATTEMPTS:
                return  # left "unavailable": the daily job asks again
            if not self.request.is_eager:
                raise self.retry(exc=exc, countdown=300 * 2 ** (attempt - 1)) from exc
            # Eager mode (tests, scripts without a worker) has no queue to wait in: ask again at once.


@shared_task(name="customers.recheck_vat_numbers", ignore_result=True)
def recheck_vat_numbers() -> int:
    """The daily job: queue a VIES check for numbers never answered, left unavailable, or last found valid more
    than ``VAT_RECHECK_DAYS`` ago."""
    from customers.vat import vat_checks_queue_due

    return vat_checks_queue_due()
