"""Portal hardening (security probe, item 5): the card a pay link adds, the sign-in e-mail's path, logout beside a
staff session, and the Content-Security-Policy."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from core.links import invoice_link_token
from customers.portal import SESSION_USER_KEY
from payments.models import PaymentMethod
from payments.services import payment_method_set_default
from tests.portal.conftest import Account, make_invoice, signed_in_client

pytestmark = pytest.mark.django_db


# --- the card a payer adds on the pay page --------------------------------------------------------------


def _pay_link_client(invoice: Any) -> tuple[Client, str]:
    client = Client()
    token = invoice_link_token(invoice_id=invoice.pk, purpose="pay")
    pay_url = client.get(reverse("portal:invoice_link", args=[token]))["Location"]
    return client, pay_url


def _default(account: Account) -> PaymentMethod:
    return PaymentMethod.objects.get(customer=account.customer, is_default=True)


@pytest.mark.parametrize("card", ["pm_card_chargeDeclined", "pm_card_visa"])
def test_a_card_added_through_a_pay_link_never_becomes_the_customers_default(account_a: Account, card: str) -> None:
    before = _default(account_a)
    client, pay_url = _pay_link_client(account_a.open_invoice)
    client.post(pay_url, {"method": f"sandbox:{card}"})
    account_a.open_invoice.refresh_from_db()
    assert account_a.open_invoice.status == ("open" if card == "pm_card_chargeDeclined" else "paid")
    assert _default(account_a) == before
    added = PaymentMethod.objects.filter(customer=account_a.customer).exclude(pk=before.pk).get()
    assert not added.is_default


def test_a_declined_card_of_a_customer_without_cards_does_not_become_the_default(account_a: Account) -> None:
    PaymentMethod.objects.filter(customer=account_a.customer).delete()
    client, pay_url = _pay_link_client(account_a.open_invoice)
    client.post(pay_url, {"method": "sandbox:pm_card_chargeDeclined"})
    assert not PaymentMethod.objects.filter(customer=account_a.customer, is_default=True).exists()


def test_a_signed_in_customers_new_card_becomes_the_default_only_once_it_was_charged(account_a: Account) -> None:
    before = _default(account_a)
    client = signed_in_client(account_a.portal_user)
    pay_url = reverse("portal:invoice_pay", args=[account_a.open_invoice.number])
    client.post(pay_url, {"method": "sandbox:pm_card_chargeDeclined"})
    assert _default(account_a) == before  # declined: the old default stays
    client.post(pay_url, {"method": "sandbox:pm_card_mastercard"})
    account_a.open_invoice.refresh_from_db()
    assert account_a.open_invoice.status == "paid"
    assert _default(account_a).last4 == "4444"


def test_paying_with_a_saved_card_that_is_declined_does_not_make_it_the_default(account_a: Account) -> None:
    client = signed_in_client(account_a.portal_user)
    pay_url = reverse("portal:invoice_pay", args=[account_a.open_invoice.number])
    client.post(pay_url, {"method": "sandbox:pm_card_chargeDeclined"})
    declined = PaymentMethod.objects.get(customer=account_a.customer, last4="0002")
    payment_method_set_default(payment_method=account_a.payment_method)  # whatever happened before: not the 0002
    before = _default(account_a)
    assert before != declined
    other = make_invoice(account_a.customer, "10.00")
    client.post(reverse("portal:invoice_pay", args=[other.number]), {"method": f"saved:{declined.pk}"})
    assert _default(account_a) == before


# --- the sign-in e-mail: the same path for known and unknown addresses ----------------------------------


def test_the_sign_in_request_does_the_same_work_for_known_and_unknown_addresses(
    account_a: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core import mail
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from customers import tasks

    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(tasks.send_login_link, "delay", lambda **kwargs: queued.append(kwargs))
    work = {}
    for email in (account_a.portal_user.email, "nobody@portal.example"):
        with CaptureQueriesContext(connection) as queries:
            response = Client().post(reverse("portal:login"), {"email": email})
        assert response.status_code == 302
        work[email] = [query["sql"].split(" WHERE ")[0] for query in queries.captured_queries]
    known, unknown = work.values()
    assert known == unknown  # the request never looks the address up
    assert not any("customers_portaluser" in sql or "customers_logintoken" in sql for sql in known)
    assert mail.outbox == []  # nothing is sent inside the request
    assert queued == [
        {"email": account_a.portal_user.email, "ip": "127.0.0.1"},
        {"email": "nobody@portal.example", "ip": "127.0.0.1"},
    ]


def test_the_queued_task_sends_the_link_to_a_known_address_only(account_a: Account) -> None:
    from django.core import mail

    from customers.tasks import send_login_link

    send_login_link(email="nobody@portal.example", ip=None)
    assert mail.outbox == []
    send_login_link(email=account_a.portal_user.email.upper(), ip="10.0.0.1")
    assert [message.to for message in mail.outbox] == [[account_a.portal_user.email]]


def test_a_broker_outage_gives_the_same_answer_and_no_error(
    account_a: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    from customers import tasks

    def unreachable(**kwargs: Any) -> None:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.send_login_link, "delay", unreachable)
    response = Client().post(reverse("portal:login"), {"email": account_a.portal_user.email})
    assert response.status_code == 302 and response["Location"] == reverse("portal:login_sent")


# --- portal logout beside a staff session ---------------------------------------------------------------


def test_portal_logout_keeps_the_staff_admin_session_of_the_same_browser(account_a: Account) -> None:
    staff = User.objects.create_superuser("finance", "finance@example.com", "pw")
    client = signed_in_client(account_a.portal_user)
    client.force_login(staff)
    session = client.session
    session[SESSION_USER_KEY] = account_a.portal_user.pk  # force_login cycled the session: sign in to the portal again
    session.save()
    assert client.get(reverse("portal:overview")).status_code == 200
    assert client.get(reverse("admin:index")).status_code == 200

    assert client.post(reverse("portal:logout")).status_code == 302

    assert client.get(reverse("portal:overview")).status_code == 302  # signed out of the portal
    assert client.get(reverse("admin:index")).status_code == 200  # still signed in to the admin
    assert SESSION_USER_KEY not in client.session


def test_a_deactivated_portal_user_loses_the_portal_session_but_not_the_admin(account_a: Account) -> None:
    staff = User.objects.create_superuser("finance", "finance@example.com", "pw")
    client = Client()
    client.force_login(staff)
    session = client.session
    session[SESSION_USER_KEY] = account_a.portal_user.pk
    session.save()
    type(account_a.portal_user).objects.filter(pk=account_a.portal_user.pk).update(is_active=False)
    assert client.get(reverse("portal:overview")).status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


# --- Content-Security-Policy ----------------------------------------------------------------------------


def _directives(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_portal_and_admin_pages_carry_the_policy_and_still_render(account_a: Account) -> None:
    portal = signed_in_client(account_a.portal_user)
    staff = Client()
    staff.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    pages = [
        (Client(), reverse("portal:login"), b'name="email"'),
        (portal, reverse("portal:overview"), b"portal.css"),
        (portal, reverse("portal:invoice_pay", args=[account_a.open_invoice.number]), b'name="method"'),
        (staff, reverse("admin:index"), b"admin/css/base.css"),
        (staff, reverse("admin:customers_customer_change", args=[account_a.customer.pk]), b"admin/js/"),
        (staff, reverse("admin:invoicing_invoice_changelist"), b"actions"),
        (Client(), reverse("admin:login"), b"csrfmiddlewaretoken"),
    ]
    for client, url, marker in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert marker in response.content, url
        directives = _directives(response)
        assert directives["script-src"] == ["'self'", "https://js.stripe.com"], url
        assert "'unsafe-inline'" not in directives["script-src"]
        assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
        # every script the page loads is allowed by script-src (our static files; no inline code)
        html = response.content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            source = re.search(r'src="([^"]+)"', tag)
            assert source, (url, tag)  # an inline <script> would be refused by the browser
            src = source.group(1)
            assert (src.startswith("/") and not src.startswith("//")) or src.startswith("https://js.stripe.com/"), tag


def test_the_pdf_is_served_without_the_document_policy(account_a: Account) -> None:
    response = signed_in_client(account_a.portal_user).get(
        reverse("portal:invoice_pdf", args=[account_a.open_invoice.number])
    )
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert "Content-Security-Policy" not in response
