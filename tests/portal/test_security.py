"""Ownership, sign-in tokens, rate limits, CSRF and enumeration: what the portal must refuse."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.urls import reverse

from core.links import invoice_link_token
from customers.models import LoginToken
from customers.portal import SESSION_USER_KEY
from tests.factories import InvoiceFactory
from tests.factories.portal import PortalUserFactory
from tests.portal.conftest import Account, signed_in_client

pytestmark = pytest.mark.django_db


def _foreign_urls(b: Account) -> list[tuple[str, str]]:
    """Every portal URL that names one of B's objects, with the method that uses it."""
    number = b.open_invoice.number
    return [
        ("get", reverse("portal:invoice_detail", args=[number])),
        ("get", reverse("portal:invoice_detail", args=[b.paid_invoice.number])),
        ("get", reverse("portal:invoice_pdf", args=[number])),
        ("get", reverse("portal:invoice_pay", args=[number])),
        ("post", reverse("portal:invoice_pay", args=[number])),
        ("get", reverse("portal:credit_note_pdf", args=[b.credit_note.number])),
        ("get", reverse("portal:payment_detail", args=[b.payment.pk])),
        ("post", reverse("portal:payment_method_default", args=[b.payment_method.pk])),
        ("post", reverse("portal:payment_method_remove", args=[b.payment_method.pk])),
    ]


def test_customer_a_gets_404_for_every_object_of_customer_b(
    client_a: Client, account_a: Account, account_b: Account
) -> None:
    for method, url in _foreign_urls(account_b):
        data = {"method": "sandbox:pm_card_visa"} if method == "post" else None
        response = getattr(client_a, method)(url, data)
        assert response.status_code == 404, (method, url, response.status_code)
    account_b.open_invoice.refresh_from_db()
    account_b.payment_method.refresh_from_db()
    assert account_b.open_invoice.status == "open"
    assert account_b.payment_method.is_active


def test_own_objects_are_served(client_a: Client, account_a: Account) -> None:
    for url in (
        reverse("portal:invoice_detail", args=[account_a.open_invoice.number]),
        reverse("portal:invoice_pay", args=[account_a.open_invoice.number]),
        reverse("portal:payment_detail", args=[account_a.payment.pk]),
    ):
        assert client_a.get(url).status_code == 200, url
    pdf = client_a.get(reverse("portal:invoice_pdf", args=[account_a.open_invoice.number]))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    note = client_a.get(reverse("portal:credit_note_pdf", args=[account_a.credit_note.number]))
    assert note.status_code == 200 and note.content.startswith(b"%PDF")


def test_lists_show_only_own_documents(client_a: Client, account_a: Account, account_b: Account) -> None:
    pages = {
        name: client_a.get(reverse(f"portal:{name}")).content.decode()
        for name in ("overview", "invoices", "credit_notes", "payments", "payment_methods")
    }
    everything = "".join(pages.values())
    assert account_a.open_invoice.number in pages["invoices"]
    assert account_a.credit_note.number in pages["credit_notes"]
    for foreign in (account_b.open_invoice.number, account_b.paid_invoice.number, account_b.credit_note.number):
        assert foreign not in everything
    assert f"/portal/payments/{account_b.payment.pk}/" not in pages["payments"]


def test_drafts_are_not_shown(client_a: Client, account_a: Account) -> None:
    draft = InvoiceFactory(customer=account_a.customer)
    assert client_a.get(reverse("portal:invoices")).content.decode().count("badge-") == 2
    assert draft.number == ""


def test_every_page_needs_a_sign_in(account_a: Account) -> None:
    anonymous = Client()
    for name in ("overview", "invoices", "credit_notes", "payments", "payment_methods", "subscriptions"):
        response = anonymous.get(reverse(f"portal:{name}"))
        assert response.status_code == 302 and response["Location"] == reverse("portal:login"), name
    response = anonymous.get(reverse("portal:invoice_pdf", args=[account_a.open_invoice.number]))
    assert response.status_code == 302


# --- sign-in links --------------------------------------------------------------------------------------


def _request_link(client: Client, email: str, **extra: Any) -> Any:
    return client.post(reverse("portal:login"), {"email": email}, **extra)


def _link_from_outbox() -> str:
    match = re.search(r"https?://\S+/portal/login/([\w-]+)/", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


def test_sign_in_with_an_emailed_link(account_a: Account, settings: Any) -> None:
    client = Client()
    response = _request_link(client, "ALPHA@portal.example")
    assert response.status_code == 302 and response["Location"] == reverse("portal:login_sent")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["alpha@portal.example"]
    token = _link_from_outbox()
    # Only the hash is stored.
    stored = LoginToken.objects.get()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in stored.token_hash
    assert stored.expires_at - stored.created_at == dt.timedelta(minutes=15)
    assert stored.requested_ip == "127.0.0.1"
    # Opening the link (a mail scanner) does not use it up.
    assert client.get(reverse("portal:login_confirm", args=[token])).status_code == 200
    assert client.get(reverse("portal:login_confirm", args=[token])).status_code == 200
    session_before = client.session.session_key
    response = client.post(reverse("portal:login_confirm", args=[token]))
    assert response.status_code == 302 and response["Location"] == reverse("portal:overview")
    assert client.session[SESSION_USER_KEY] == account_a.portal_user.pk
    assert client.session.session_key != session_before
    assert client.get(reverse("portal:overview")).status_code == 200
    account_a.portal_user.refresh_from_db()
    assert account_a.portal_user.last_login_at is not None


def test_a_used_link_fails(account_a: Account) -> None:
    _request_link(Client(), account_a.portal_user.email)
    token = _link_from_outbox()
    assert Client().post(reverse("portal:login_confirm", args=[token])).status_code == 302
    other = Client()
    assert other.post(reverse("portal:login_confirm", args=[token])).status_code == 400
    assert SESSION_USER_KEY not in other.session
    assert other.get(reverse("portal:login_confirm", args=[token])).status_code == 400


def test_an_expired_link_fails(account_a: Account) -> None:
    with time_machine.travel(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC), tick=False):
        _request_link(Client(), account_a.portal_user.email)
    token = _link_from_outbox()
    with time_machine.travel(dt.datetime(2026, 3, 2, 9, 15, 1, tzinfo=dt.UTC), tick=False):
        client = Client()
        assert client.post(reverse("portal:login_confirm", args=[token])).status_code == 400
        assert SESSION_USER_KEY not in client.session
    assert LoginToken.objects.get().used_at is None


def test_a_tampered_link_fails(account_a: Account) -> None:
    _request_link(Client(), account_a.portal_user.email)
    token = _link_from_outbox()
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    client = Client()
    assert client.post(reverse("portal:login_confirm", args=[tampered])).status_code == 400
    assert client.post(reverse("portal:login_confirm", args=["x" * 43])).status_code == 400
    assert SESSION_USER_KEY not in client.session


def test_an_inactive_portal_user_gets_no_link_and_loses_the_session(account_a: Account) -> None:
    client = signed_in_client(account_a.portal_user)
    account_a.portal_user.is_active = False
    account_a.portal_user.save()
    assert client.get(reverse("portal:overview")).status_code == 302
    _request_link(Client(), account_a.portal_user.email)
    assert mail.outbox == []


def test_the_answer_is_the_same_for_unknown_addresses(account_a: Account) -> None:
    known = _request_link(Client(), account_a.portal_user.email)
    unknown = _request_link(Client(), "nobody@portal.example")
    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    page_known = Client().get(known["Location"]).content
    page_unknown = Client().get(unknown["Location"]).content
    assert page_known == page_unknown
    assert len(mail.outbox) == 1  # only the known address got a message


def test_rate_limit_per_email_applies_to_unknown_addresses_alike(account_a: Account, settings: Any) -> None:
    settings.PORTAL_LOGIN_RATE_PER_EMAIL = 3
    for email in (account_a.portal_user.email, "nobody@portal.example"):
        statuses = [_request_link(Client(), email).status_code for _ in range(4)]
        assert statuses == [302, 302, 302, 429], email
    assert len(mail.outbox) == 3


def test_rate_limit_per_ip(account_a: Account, settings: Any) -> None:
    settings.PORTAL_LOGIN_RATE_PER_IP = 4
    statuses = [_request_link(Client(), f"n{i}@portal.example").status_code for i in range(5)]
    assert statuses == [302, 302, 302, 302, 429]
    other_ip = _request_link(Client(), "n9@portal.example", REMOTE_ADDR="10.0.0.7")
    assert other_ip.status_code == 302


def test_logout_flushes_the_session(client_a: Client) -> None:
    response = client_a.post(reverse("portal:logout"))
    assert response.status_code == 302
    assert SESSION_USER_KEY not in client_a.session
    assert client_a.get(reverse("portal:overview")).status_code == 302


# --- CSRF -----------------------------------------------------------------------------------------------


def test_forms_without_csrf_token_get_403(account_a: Account) -> None:
    client = signed_in_client(account_a.portal_user, enforce_csrf_checks=True)
    number = account_a.open_invoice.number
    posts = [
        (reverse("portal:invoice_pay", args=[number]), {"method": "sandbox:pm_card_visa"}),
        (reverse("portal:billing_details"), {"email": "x@y.example", "country": "DE"}),
        (reverse("portal:payment_methods"), {"card": "pm_card_visa"}),
        (reverse("portal:payment_method_default", args=[account_a.payment_method.pk]), {}),
        (reverse("portal:payment_method_remove", args=[account_a.payment_method.pk]), {}),
        (reverse("portal:subscription_cancel", args=[1]), {"cancellation_reason": "unused"}),
        (reverse("portal:subscription_cancel_undo", args=[1]), {}),
        (reverse("portal:subscription_change", args=[1]), {"price": "1", "quantity": "2", "confirm": "1"}),
        (reverse("portal:logout"), {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.post(reverse("portal:login"), {"email": "alpha@portal.example"}).status_code == 403
    assert anonymous.post(reverse("portal:login_confirm", args=["x" * 43])).status_code == 403
    account_a.open_invoice.refresh_from_db()
    assert account_a.open_invoice.status == "open"
    assert mail.outbox == []


def test_forms_carry_a_csrf_token(account_a: Account) -> None:
    client = signed_in_client(account_a.portal_user, enforce_csrf_checks=True)
    for name in ("billing_details", "payment_methods"):
        assert b'name="csrfmiddlewaretoken"' in client.get(reverse(f"portal:{name}")).content
    assert b'name="csrfmiddlewaretoken"' in Client().get(reverse("portal:login")).content


# --- deep links -----------------------------------------------------------------------------------------


def test_a_deep_link_opens_that_invoice_only(account_a: Account, account_b: Account) -> None:
    client = Client()
    token = invoice_link_token(invoice_id=account_a.open_invoice.pk)
    response = client.get(reverse("portal:invoice_link", args=[token]))
    assert response["Location"] == reverse("portal:invoice_detail", args=[account_a.open_invoice.number])
    page = client.get(response["Location"])
    assert page.status_code == 200 and account_a.open_invoice.number.encode() in page.content
    assert client.get(reverse("portal:invoice_pdf", args=[account_a.open_invoice.number])).status_code == 200
    assert client.get(reverse("portal:invoice_pay", args=[account_a.open_invoice.number])).status_code == 200
    # Nothing else: not the customer's other invoices, not B's, no list pages.
    for url in (
        reverse("portal:invoice_detail", args=[account_a.paid_invoice.number]),
        reverse("portal:invoice_pdf", args=[account_a.paid_invoice.number]),
        reverse("portal:invoice_detail", args=[account_b.open_invoice.number]),
    ):
        assert client.get(url).status_code == 404, url
    for name in ("overview", "invoices", "payments", "payment_methods", "billing_details", "credit_notes"):
        assert client.get(reverse(f"portal:{name}")).status_code == 302, name
    assert client.get(reverse("portal:payment_detail", args=[account_a.payment.pk])).status_code == 302
    # The saved cards are not shown to a link visitor.
    assert b"saved:" not in client.get(reverse("portal:invoice_pay", args=[account_a.open_invoice.number])).content


def test_a_deep_link_lets_the_visitor_pay(account_a: Account) -> None:
    client = Client()
    token = invoice_link_token(invoice_id=account_a.open_invoice.pk, purpose="pay")
    response = client.get(reverse("portal:invoice_link", args=[token]))
    assert response["Location"] == reverse("portal:invoice_pay", args=[account_a.open_invoice.number])
    client.post(response["Location"], {"method": "sandbox:pm_card_visa"})
    account_a.open_invoice.refresh_from_db()
    assert account_a.open_invoice.status == "paid"


def test_tampered_and_expired_deep_links_fail(account_a: Account, settings: Any) -> None:
    token = invoice_link_token(invoice_id=account_a.open_invoice.pk)
    client = Client()
    assert client.get(reverse("portal:invoice_link", args=[token[:-2] + "xx"])).status_code == 404
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=46)):
        assert client.get(reverse("portal:invoice_link", args=[token])).status_code == 404
    assert client.get(reverse("portal:invoice_detail", args=[account_a.open_invoice.number])).status_code == 302


def test_a_deep_link_grant_expires(account_a: Account) -> None:
    client = Client()
    token = invoice_link_token(invoice_id=account_a.open_invoice.pk)
    url = client.get(reverse("portal:invoice_link", args=[token]))["Location"]
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(hours=2)):
        assert client.get(url).status_code == 302


def test_a_second_portal_user_of_the_same_customer_sees_the_same_invoices(account_a: Account) -> None:
    colleague = PortalUserFactory(customer=account_a.customer)
    client = signed_in_client(colleague)
    assert account_a.open_invoice.number.encode() in client.get(reverse("portal:invoices")).content
