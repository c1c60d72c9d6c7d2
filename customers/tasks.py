"""Celery tasks of customers: thin, they call one service."""

from __future__ import annotations

from celery import shared_task

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
