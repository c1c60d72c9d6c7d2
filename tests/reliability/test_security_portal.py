"""Portal security under hostile input (issue 10): object ids of another customer (IDOR), forged, altered,
replayed and expired sign-in and deep links, CSRF, and GETs that must not change anything.

The URL lists are derived from the portal URLconf (``billing_project.portal.urlpatterns``): a new portal URL that
this module does not know makes ``test_every_portal_url_is_classified`` fail, so it cannot ship untested.
Existing, narrower tests live in tests/portal/test_security.py; these extend them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.core import mail, signing
from django.test import Client
from django.urls import URLPattern, reverse

from billing_project import portal as portal_urls
from core.links import invoice_link_token, invoice_link_verify, method_link_token
from customers.models import LoginToken
from customers.portal import SESSION_LINK_KEY, SESSION_NEXT_KEY, SESSION_USER_KEY
from customers.portal_services import portal_user_invite
from invoicing.documents import credit_note_pdf_bytes, invoice_pdf_bytes
from invoicing.einvoice.service import einvoice_store
from payments.gateways.sandbox import SandboxGateway
from payments.models import PaymentAttempt
from tests.factories import SubscriptionFactory
from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory
from tests.portal.conftest import Account, make_invoice, signed_in_client
from tests.reliability.conftest_security import changed_tables, csrf_client_with_token, database_text, db_digest

pytestmark = pytest.mark.django_db

# --- the portal's URLs, classified ----------------------------------------------------------------------

# URLs that name no object: lists and forms of the signed-in customer, and the sign-in pages.
NO_OBJECT = frozenset(
    {
        "overview",
        "login",
        "login_sent",
        "logout",
        "invoices",
        "credit_notes",
        "quotes",
        "payments",
        "wallet",
        "payment_methods",
        "subscriptions",
        "billing_details",
        "documents_zip",
        # saving a method at Stripe (payments.portal_methods): the customer's own SetupIntent, checked server-side
        "payment_method_add_card",
        "payment_method_add_sepa",
        "payment_method_setup_return",
        "payment_method_added",
    }
)
# URLs whose argument is a bearer secret (a sign-in token, a signed deep link): whoever holds it is that customer
# for its scope by design. They are covered by the forging/tampering tests below, not by the ownership test.
BEARER = frozenset({"login_confirm", "invoice_link", "payment_method_link"})


class Accounts:
    """Customer A (the attacker's own account) and customer B (the victim), each with every kind of object."""

    def __init__(self) -> None:
        NumberSeriesFactory(default_invoices=True)
        NumberSeriesFactory(default_credit_notes=True)
        TaxRateFactory(country="DE", percentage=19)
        self.a = Account("Alpha")
        self.b = Account("Bravo")
        for account in (self.a, self.b):
            account.subscription = SubscriptionFactory(customer=account.customer)  # type: ignore[attr-defined]
            # an invoice with an e-invoice (Peppol): its XML download is an object URL like its PDF
            account.customer.einvoice_format = "peppol"
            account.customer.save(update_fields=["einvoice_format"])
            account.einvoice_invoice = make_invoice(account.customer, "80.00")  # type: ignore[attr-defined]
            account.quote = _sent_quote(account.customer)  # type: ignore[attr-defined]


def _sent_quote(customer: Any) -> Any:
    import datetime as dt

    from djmoney.money import Money

    from core.dates import billing_today
    from invoicing.quotes import quote_create, quote_send
    from subscriptions.services import ItemSpec
    from tests.factories import PriceFactory

    price = PriceFactory(unit_amount=Money("10.00", customer.currency))
    quote = quote_create(
        customer=customer, items=[ItemSpec(price=price)], valid_until=billing_today() + dt.timedelta(days=30)
    )
    return quote_send(quote=quote)


# url name → the URL kwargs naming one of the account's objects
OBJECT_KWARGS: dict[str, Callable[[Account], dict[str, Any]]] = {
    "invoice_detail": lambda acc: {"number": acc.open_invoice.number},
    "invoice_pdf": lambda acc: {"number": acc.open_invoice.number},
    "invoice_pay": lambda acc: {"number": acc.open_invoice.number},
    "invoice_einvoice": lambda acc: {"number": acc.einvoice_invoice.number},  # type: ignore[attr-defined]
    "credit_note_pdf": lambda acc: {"number": acc.credit_note.number},
    "quote_detail": lambda acc: {"number": acc.quote.number},  # type: ignore[attr-defined]
    "quote_pdf": lambda acc: {"number": acc.quote.number},  # type: ignore[attr-defined]
    "payment_detail": lambda acc: {"payment_id": acc.payment.pk},
    "payment_method_default": lambda acc: {"payment_method_id": acc.payment_method.pk},
    "payment_method_remove": lambda acc: {"payment_method_id": acc.payment_method.pk},
    "subscription_cancel": lambda acc: {"subscription_id": acc.subscription.pk},  # type: ignore[attr-defined]
    "subscription_cancel_undo": lambda acc: {"subscription_id": acc.subscription.pk},  # type: ignore[attr-defined]
    "subscription_change": lambda acc: {"subscription_id": acc.subscription.pk},  # type: ignore[attr-defined]
    "invoice_authenticate": lambda acc: {"number": acc.open_invoice.number},
    "invoice_authenticate_return": lambda acc: {"number": acc.open_invoice.number},
}
MISSING_KWARGS: dict[str, dict[str, Any]] = {
    "invoice_detail": {"number": "NOPE-999999"},
    "invoice_pdf": {"number": "NOPE-999999"},
    "invoice_pay": {"number": "NOPE-999999"},
    "invoice_einvoice": {"number": "NOPE-999999"},
    "credit_note_pdf": {"number": "NOPE-999999"},
    "quote_detail": {"number": "NOPE-999999"},
    "quote_pdf": {"number": "NOPE-999999"},
    "payment_detail": {"payment_id": 999_999_999},
    "payment_method_default": {"payment_method_id": 999_999_999},
    "payment_method_remove": {"payment_method_id": 999_999_999},
    "subscription_cancel": {"subscription_id": 999_999_999},
    "subscription_cancel_undo": {"subscription_id": 999_999_999},
    "subscription_change": {"subscription_id": 999_999_999},
    "invoice_authenticate": {"number": "NOPE-999999"},
    "invoice_authenticate_return": {"number": "NOPE-999999"},
}
POST_DATA = {
    "method": "sandbox:pm_card_visa",
    "card": "pm_card_visa",
    "email": "x@evil.example",
    "country": "DE",
    "cancellation_reason": "other",
    "price": "1",
    "quantity": "2",
    "confirm": "1",
}


def _portal_patterns() -> list[URLPattern]:
    return [p for p in portal_urls.urlpatterns if isinstance(p, URLPattern)]


def _url(name: str, kwargs: dict[str, Any] | None = None) -> str:
    return reverse(f"portal:{name}", kwargs=kwargs or None)


@pytest.fixture
def accounts(db: Any) -> Accounts:
    SandboxGateway.reset()
    yield Accounts()  # type: ignore[misc]
    SandboxGateway.reset()


def test_every_portal_url_is_classified() -> None:
    names = {pattern.name for pattern in _portal_patterns()}
    assert names == NO_OBJECT | BEARER | set(OBJECT_KWARGS), (
        "a portal URL was added or removed: classify it here (and prove who may use it)"
    )
    for pattern in _portal_patterns():
        has_argument = bool(pattern.pattern.converters)
        assert has_argument == (pattern.name in BEARER | set(OBJECT_KWARGS)), pattern.name
    assert set(MISSING_KWARGS) == set(OBJECT_KWARGS)


# --- IDOR -----------------------------------------------------------------------------------------------


def _visitor_clients(accounts: Accounts) -> dict[str, Client]:
    """A as a signed-in portal user, and A as a deep-link visitor of A's open invoice."""
    link_visitor = Client()
    token = invoice_link_token(invoice_id=accounts.a.open_invoice.pk, purpose="pay")
    assert link_visitor.get(_url("invoice_link", {"token": token})).status_code == 302
    return {"signed-in": signed_in_client(accounts.a.portal_user), "deep-link": link_visitor}


def test_another_customers_objects_answer_exactly_like_objects_that_do_not_exist(accounts: Accounts) -> None:
    """For every object URL × GET/POST × (signed-in, deep-link visitor): B's object gives the same status as an
    id that exists nowhere — 404 where the method is served — and nothing in the database changes."""
    b = accounts.b
    b_secrets = [b.open_invoice.number, b.paid_invoice.number, b.credit_note.number, "Bravo"]
    before = db_digest()
    seen: list[tuple[str, str, str, int]] = []
    for who, client in _visitor_clients(accounts).items():
        for name, kwargs_of in OBJECT_KWARGS.items():
            for method in ("get", "post"):
                foreign = getattr(client, method)(_url(name, kwargs_of(b)), POST_DATA if method == "post" else None)
                missing = getattr(client, method)(
                    _url(name, MISSING_KWARGS[name]), POST_DATA if method == "post" else None
                )
                assert foreign.status_code == missing.status_code, (who, method, name, foreign.status_code)
                assert foreign.status_code in (302, 404, 405), (who, method, name, foreign.status_code)
                if foreign.status_code == 302:  # a page a deep-link visitor may not use at all: to the sign-in
                    assert who == "deep-link" and foreign["Location"] == _url("login"), (method, name)
                body = foreign.content.decode("utf-8", "replace")
                assert not any(secret in body for secret in b_secrets), (who, method, name)
                seen.append((who, method, name, foreign.status_code))
    assert changed_tables(before, db_digest()) == []
    # Where the view serves the method at all, B's object is a 404 (never a 403 that would confirm it exists).
    signed_in = {(method, name): status for who, method, name, status in seen if who == "signed-in"}
    assert signed_in[("get", "invoice_detail")] == signed_in[("post", "invoice_pay")] == 404
    assert signed_in[("post", "payment_method_remove")] == signed_in[("post", "subscription_cancel")] == 404
    assert signed_in[("get", "payment_method_remove")] == 405  # POST-only view, the same for any id
    assert 403 not in {status for *_rest, status in seen}
    assert SandboxGateway.charges == []
    b.payment_method.refresh_from_db()
    assert b.payment_method.is_active and b.payment_method.is_default


def test_own_objects_are_served_so_the_404s_above_mean_something(accounts: Accounts) -> None:
    client = signed_in_client(accounts.a.portal_user)
    for name, kwargs_of in OBJECT_KWARGS.items():
        if name in (
            "payment_method_default",
            "payment_method_remove",
            "subscription_cancel",
            "subscription_cancel_undo",
        ):
            continue  # POST-only; exercised below
        if name == "subscription_change":
            continue  # needs a self-service price; served in tests/portal/test_selfservice.py
        if name in ("invoice_authenticate", "invoice_authenticate_return"):
            # nothing waits for 3-D Secure on this invoice: back to the invoice (tests/payments/test_stripe_*)
            response = client.get(_url(name, kwargs_of(accounts.a)))
            assert response.status_code == 302 and accounts.a.open_invoice.number in response["Location"]
            continue
        assert client.get(_url(name, kwargs_of(accounts.a))).status_code == 200, name
    own = OBJECT_KWARGS["subscription_cancel"](accounts.a)
    response = client.post(_url("subscription_cancel", own), {"cancellation_reason": "too_expensive"})
    assert response.status_code == 302
    accounts.a.subscription.refresh_from_db()  # type: ignore[attr-defined]
    assert accounts.a.subscription.cancel_at_period_end  # type: ignore[attr-defined]
    assert client.post(_url("subscription_cancel_undo", own)).status_code == 302
    accounts.a.subscription.refresh_from_db()  # type: ignore[attr-defined]
    assert not accounts.a.subscription.cancel_at_period_end  # type: ignore[attr-defined]


def test_paying_with_another_customers_saved_card_is_refused(accounts: Accounts) -> None:
    """The form field, not only the URL, names an object: ``saved:<id>`` of B's card on A's invoice."""
    client = signed_in_client(accounts.a.portal_user)
    url = _url("invoice_pay", {"number": accounts.a.open_invoice.number})
    response = client.post(url, {"method": f"saved:{accounts.b.payment_method.pk}"})
    assert response.status_code == 400
    assert not PaymentAttempt.objects.exists()
    assert SandboxGateway.charges == []
    accounts.a.open_invoice.refresh_from_db()
    assert accounts.a.open_invoice.status == "open"


def test_a_deep_link_visitor_cannot_pay_with_the_customers_saved_card(accounts: Accounts) -> None:
    client = _visitor_clients(accounts)["deep-link"]
    url = _url("invoice_pay", {"number": accounts.a.open_invoice.number})
    assert client.post(url, {"method": f"saved:{accounts.a.payment_method.pk}"}).status_code == 400
    assert not PaymentAttempt.objects.exists()


def test_a_signed_link_opens_its_own_invoice_and_a_second_link_replaces_the_first(accounts: Accounts) -> None:
    client = Client()
    first = invoice_link_token(invoice_id=accounts.a.open_invoice.pk)
    client.get(_url("invoice_link", {"token": first}))
    a_detail = _url("invoice_detail", {"number": accounts.a.open_invoice.number})
    assert client.get(a_detail).status_code == 200
    second = invoice_link_token(invoice_id=accounts.b.open_invoice.pk)
    client.get(_url("invoice_link", {"token": second}))
    assert client.get(_url("invoice_detail", {"number": accounts.b.open_invoice.number})).status_code == 200
    assert client.get(a_detail).status_code == 404  # the grant is for one invoice of one customer at a time
    assert client.session[SESSION_LINK_KEY]["customer_id"] == accounts.b.customer.pk


def test_a_link_to_another_customers_invoice_signs_the_current_customer_out(accounts: Accounts) -> None:
    client = signed_in_client(accounts.b.portal_user)
    token = invoice_link_token(invoice_id=accounts.a.open_invoice.pk)
    client.get(_url("invoice_link", {"token": token}))
    assert SESSION_USER_KEY not in client.session
    assert client.get(_url("invoices")).status_code == 302  # B's own list is no longer reachable here
    assert client.get(_url("invoice_detail", {"number": accounts.b.open_invoice.number})).status_code == 404


# --- sign-in links: forged, altered, replayed, expired --------------------------------------------------


def _request_link(email: str) -> str:
    Client().post(_url("login"), {"email": email})
    match = re.search(r"/portal/login/([\w-]+)/", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


def _confirm(token: str) -> tuple[int, Client]:
    client = Client()
    return client.post(_url("login_confirm", {"token": token})).status_code, client


def _variants(token: str) -> dict[str, str]:
    flipped = {f"char {i} changed": token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :] for i in (0, 21, 42)}
    return {
        **flipped,
        "last char dropped": token[:-1],
        "half of it": token[: len(token) // 2],
        "one char appended": token + "A",
        "upper-cased": token.upper(),
        "its stored SHA-256": hashlib.sha256(token.encode()).hexdigest(),
        "a signed deep link": invoice_link_token(invoice_id=1),
        "a single dash": "-",
    }


def test_altered_or_foreign_sign_in_tokens_never_sign_in_and_do_not_use_up_the_real_one(accounts: Accounts) -> None:
    token = _request_link(accounts.a.portal_user.email)
    assert len(token) == 43  # secrets.token_urlsafe(32): 256 bits
    for label, variant in _variants(token).items():
        status, client = _confirm(variant)
        assert status == 400, label
        assert SESSION_USER_KEY not in client.session, label
        assert Client().get(_url("login_confirm", {"token": variant})).status_code == 400, label
    assert LoginToken.objects.get().used_at is None
    # B's own link signs in B — never A — and A's link still works once, then never again.
    b_token = _request_link(accounts.b.portal_user.email)
    status, b_client = _confirm(b_token)
    assert status == 302 and b_client.session[SESSION_USER_KEY] == accounts.b.portal_user.pk
    status, a_client = _confirm(token)
    assert status == 302 and a_client.session[SESSION_USER_KEY] == accounts.a.portal_user.pk
    status, replay_client = _confirm(token)
    assert status == 400 and SESSION_USER_KEY not in replay_client.session


def test_a_sign_in_link_expires_at_fifteen_minutes_to_the_second(accounts: Accounts) -> None:
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        token = _request_link(accounts.a.portal_user.email)
    with time_machine.travel(start + dt.timedelta(minutes=14, seconds=59), tick=False):
        assert Client().get(_url("login_confirm", {"token": token})).status_code == 200
    with time_machine.travel(start + dt.timedelta(minutes=15), tick=False):
        assert _confirm(token)[0] == 400
    assert LoginToken.objects.get().used_at is None


def test_a_staff_invitation_is_single_use_and_expires_after_72_hours(accounts: Accounts) -> None:
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=False):
        link = portal_user_invite(customer=accounts.a.customer, email="new.person@alpha.example")
    with time_machine.travel(start + dt.timedelta(hours=72), tick=False):
        assert _confirm(link.token)[0] == 400
    with time_machine.travel(start, tick=False):
        second = portal_user_invite(customer=accounts.a.customer, email="new.person@alpha.example")
    with time_machine.travel(start + dt.timedelta(hours=71), tick=False):
        assert _confirm(second.token[:-1])[0] == 400
        assert _confirm(second.token)[0] == 302
        assert _confirm(second.token)[0] == 400


def test_raw_sign_in_tokens_are_stored_nowhere_only_their_hash(accounts: Accounts) -> None:
    token = _request_link(accounts.a.portal_user.email)
    invite = portal_user_invite(customer=accounts.b.customer, email="invitee@bravo.example")
    client = Client()
    client.get(_url("login_confirm", {"token": token}))  # the confirmation page keeps the token in its form only
    client.post(_url("login_confirm", {"token": token}))
    everything = database_text()
    for raw in (token, invite.token):
        assert raw not in everything
        assert hashlib.sha256(raw.encode()).hexdigest() in everything
    assert set(LoginToken.objects.values_list("token_hash", flat=True)) == {
        hashlib.sha256(raw.encode()).hexdigest() for raw in (token, invite.token)
    }


# --- signed deep links: forged and altered ---------------------------------------------------------------


def test_deep_links_signed_for_another_purpose_with_another_key_or_altered_are_refused(
    accounts: Accounts, settings: Any
) -> None:
    invoice_id = accounts.a.open_invoice.pk
    good = invoice_link_token(invoice_id=invoice_id)
    other_salt = signing.TimestampSigner(salt="django.contrib.sessions.backends.signed_cookies").sign_object(
        {"i": invoice_id, "p": "view"}, compress=True
    )
    unscoped_purpose = signing.TimestampSigner(salt="billing.portal.invoice-link").sign_object(
        {"i": invoice_id, "p": "admin"}, compress=True
    )
    id_as_text = signing.TimestampSigner(salt="billing.portal.invoice-link").sign_object(
        {"i": str(invoice_id), "p": "view"}, compress=True
    )
    settings.SECRET_KEY, original_key = "another-secret-key-" + "k" * 40, settings.SECRET_KEY
    other_key = invoice_link_token(invoice_id=invoice_id)
    settings.SECRET_KEY = original_key
    body, _sep, signature = good.rpartition(":")
    forged = {
        "other salt": other_salt,
        "purpose outside view/pay": unscoped_purpose,
        "invoice id as text": id_as_text,
        "other SECRET_KEY": other_key,
        "signature of another token": body
        + ":"
        + invoice_link_token(invoice_id=accounts.b.open_invoice.pk).rsplit(":", 1)[1],
        "signature dropped": body,
        "signature altered": body + ":" + signature[::-1],
        "a sign-in token": "x" * 43,
    }
    for label, token in forged.items():
        client = Client()
        assert client.get(_url("invoice_link", {"token": token})).status_code == 404, label
        assert SESSION_LINK_KEY not in client.session, label
        assert client.get(_url("invoice_detail", {"number": accounts.a.open_invoice.number})).status_code == 302
    assert invoice_link_verify(good).invoice_id == invoice_id


def test_a_deep_link_is_reusable_until_it_expires(accounts: Accounts) -> None:
    """Deliberate: invoice links in e-mails are not single use (customers open an invoice e-mail many times);
    they are scoped to one invoice, expire after PORTAL_LINK_MAX_AGE_DAYS, and a visit lasts an hour."""
    token = invoice_link_token(invoice_id=accounts.a.open_invoice.pk)
    for _ in range(3):
        assert Client().get(_url("invoice_link", {"token": token})).status_code == 302
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=45, minutes=1)):
        assert Client().get(_url("invoice_link", {"token": token})).status_code == 404


def test_the_page_after_sign_in_is_never_another_site(accounts: Accounts) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        client = Client()
        session = client.session
        session[SESSION_NEXT_KEY] = target
        session.save()
        link = portal_user_invite(customer=accounts.a.customer)
        response = client.post(_url("login_confirm", {"token": link.token}))
        assert response.status_code == 302 and response["Location"] == _url("overview"), target


# --- CSRF and safe methods ------------------------------------------------------------------------------


def _own_url(pattern: URLPattern, a: Account, tokens: dict[str, str]) -> str:
    if pattern.name in OBJECT_KWARGS:
        return _url(pattern.name, OBJECT_KWARGS[pattern.name](a))
    if pattern.name in BEARER:
        return _url(pattern.name, {"token": tokens[pattern.name]})
    return _url(pattern.name)


def test_every_portal_post_without_a_csrf_token_is_refused_and_changes_nothing(accounts: Accounts) -> None:
    a = accounts.a
    tokens = {
        "login_confirm": portal_user_invite(customer=a.customer).token,
        "invoice_link": invoice_link_token(invoice_id=a.open_invoice.pk),
        "payment_method_link": method_link_token(customer_id=a.customer.pk),
    }
    before = db_digest()
    for signed_in in (True, False):
        client = (
            signed_in_client(a.portal_user, enforce_csrf_checks=True) if signed_in else Client(enforce_csrf_checks=True)
        )
        for pattern in _portal_patterns():
            url = _own_url(pattern, a, tokens)
            response = client.post(url, POST_DATA)
            assert response.status_code == 403, (signed_in, url, response.status_code)
            assert b"CSRF" in response.content, url
    assert changed_tables(before, db_digest()) == []
    assert mail.outbox == [] and SandboxGateway.charges == []
    # The refusal is the CSRF check's: with the token the same client's POST goes through.
    client = signed_in_client(a.portal_user, enforce_csrf_checks=True)
    token = csrf_client_with_token(client, _url("billing_details"))
    response = client.post(
        _url("billing_details"), {"email": "new@alpha.example", "country": "DE"}, HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 302
    a.customer.refresh_from_db()
    assert a.customer.email == "new@alpha.example"


def test_every_portal_get_changes_nothing(accounts: Accounts) -> None:
    """GET (and HEAD) of every portal URL, signed in and as a deep-link visitor: no business row changes. A sign-in
    link is not used up by opening it; logout by GET does not sign out. (PDFs are rendered beforehand: a GET may
    fill the PDF store, which is a cache, so the digest is taken once they are current.)"""
    a = accounts.a
    invoice_pdf_bytes(invoice_id=a.open_invoice.pk)
    credit_note_pdf_bytes(credit_note_id=a.credit_note.pk)
    einvoice_store(invoice=a.einvoice_invoice)  # type: ignore[attr-defined]
    tokens = {
        "login_confirm": portal_user_invite(customer=a.customer).token,
        "invoice_link": invoice_link_token(invoice_id=a.open_invoice.pk),
        "payment_method_link": method_link_token(customer_id=a.customer.pk),
    }
    before = db_digest()
    clients = _visitor_clients(accounts)
    for client in clients.values():
        for pattern in _portal_patterns():
            url = _own_url(pattern, a, tokens)
            assert client.get(url).status_code in (200, 302, 404, 405), url
            assert client.head(url).status_code in (200, 302, 404, 405), url
    assert changed_tables(before, db_digest()) == []
    assert LoginToken.objects.filter(used_at__isnull=False).count() == 0
    assert clients["signed-in"].session[SESSION_USER_KEY] == a.portal_user.pk
    assert mail.outbox == []
