"""Webhooks under forgery (issue 10): the payment gateways' signed webhooks (sandbox, Stripe) and the e-mail
providers' tracking/inbound webhooks (anymail, basic auth). Every forged, altered, stale or unauthenticated call is
a 4xx and writes nothing — not an event row, not a payment, not a status. Replays of a *valid* event are another
part of issue 10 (idempotency); tests/payments/test_webhooks_and_stripe.py and tests/invoicing/test_email_webhooks.py
hold the first, narrower checks.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
import stripe
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from payments.gateways.sandbox import sign_payload
from payments.models import AttemptStatus, Payment, PaymentAttempt, WebhookEvent
from payments.views import MAX_WEBHOOK_BYTES
from tests.factories import CustomerFactory, InvoiceFactory, PaymentMethodFactory, SubscriptionFactory
from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory
from tests.reliability.conftest_security import basic_auth, changed_tables, db_digest, run_under_production

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)
STRIPE_SECRET = "whsec_reliability_test"


@pytest.fixture
def attempt(db: Any) -> PaymentAttempt:
    """A charge whose answer was lost: only a webhook can book it — the prize of a forged one."""
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=19)
    customer = CustomerFactory()
    method = PaymentMethodFactory(customer=customer)
    subscription = SubscriptionFactory(customer=customer, collection_method="charge_automatically")
    invoice = InvoiceFactory(customer=customer, subscription=subscription, finalized=ISSUE)
    return PaymentAttempt.objects.create(
        invoice=invoice,
        customer=customer,
        payment_method=method,
        attempt_number=1,
        attempted_on=ISSUE,
        currency="EUR",
        amount=invoice.amount_due,
        gateway="sandbox",
        idempotency_key="payment_attempt:forgery",
        gateway_reference="pi_sbx_forgery",
    )


def _succeeded_event(attempt: PaymentAttempt, event_id: str = "evt_forged") -> bytes:
    intent = {
        "id": attempt.gateway_reference,
        "object": "payment_intent",
        "amount": int(attempt.amount * 100),
        "currency": "eur",
        "status": "succeeded",
        "metadata": {"payment_attempt_id": str(attempt.pk)},
        "last_payment_error": None,
    }
    return json.dumps({"id": event_id, "type": "payment_intent.succeeded", "data": {"object": intent}}).encode()


def _post(client: Client, gateway: str, body: bytes, **headers: str) -> Any:
    return client.post(f"/webhooks/{gateway}/", data=body, content_type="application/json", **headers)


def _assert_nothing_booked(attempt: PaymentAttempt) -> None:
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.PROCESSING
    assert not Payment.objects.exists() and not WebhookEvent.objects.exists()
    attempt.invoice.refresh_from_db()
    assert attempt.invoice.status == "open"


# --- sandbox gateway ------------------------------------------------------------------------------------


def test_forged_sandbox_webhooks_are_rejected_and_write_nothing(attempt: PaymentAttempt, client: Client) -> None:
    body = _succeeded_event(attempt)
    other_body = _succeeded_event(attempt, event_id="evt_other")
    now = int(time.time())
    good = sign_payload(body, timestamp=now)
    good_v1 = good.split("v1=", 1)[1]
    forgeries = {
        "no signature header": None,
        "empty header": "",
        "garbage header": "garbage",
        "no timestamp": f"v1={good_v1}",
        "timestamp not a number": f"t=abc,v1={good_v1}",
        "no v1": f"t={now}",
        "wrong secret": sign_payload(body, secret="whsec_guess", timestamp=now),
        "empty secret": sign_payload(body, secret="", timestamp=now),
        "signature of another body": sign_payload(other_body, timestamp=now),
        "timestamp moved, same signature": f"t={now + 1},v1={good_v1}",
        "stale (an hour old)": sign_payload(body, timestamp=now - 3600),
        "from the future (an hour ahead)": sign_payload(body, timestamp=now + 3600),
        "v1 upper-cased": f"t={now},v1={good_v1.upper()}",
        "v1 truncated": f"t={now},v1={good_v1[:32]}",
    }
    before = db_digest()
    for label, header in forgeries.items():
        headers = {} if header is None else {"HTTP_SANDBOX_SIGNATURE": header}
        response = _post(client, "sandbox", body, **headers)
        assert response.status_code == 400, (label, response.status_code)
        assert response.json() == {"error": "invalid signature or payload"}, label  # no hint which check failed
    # Correctly signed, but not an event.
    for label, payload in {"not JSON": b"not json", "JSON without id": b'{"type": "x"}', "a list": b"[1]"}.items():
        assert _post(client, "sandbox", payload, HTTP_SANDBOX_SIGNATURE=sign_payload(payload)).status_code == 400, label
    huge = b" " * (MAX_WEBHOOK_BYTES + 1)
    assert _post(client, "sandbox", huge, HTTP_SANDBOX_SIGNATURE=sign_payload(huge)).status_code == 413
    assert _post(client, "no-such-gateway", body, HTTP_SANDBOX_SIGNATURE=good).status_code == 404
    assert client.get("/webhooks/sandbox/").status_code == 405
    assert changed_tables(before, db_digest()) == []
    _assert_nothing_booked(attempt)
    # The same body with its real signature is accepted: the refusals above are the signature check's.
    assert _post(client, "sandbox", body, HTTP_SANDBOX_SIGNATURE=good).status_code == 200
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.SUCCEEDED


def test_an_unconfigured_sandbox_secret_refuses_every_webhook(
    attempt: PaymentAttempt, client: Client, settings: Any
) -> None:
    settings.PAYMENTS_SANDBOX_WEBHOOK_SECRET = ""
    body = _succeeded_event(attempt)
    assert _post(client, "sandbox", body, HTTP_SANDBOX_SIGNATURE=sign_payload(body, secret="")).status_code == 400
    _assert_nothing_booked(attempt)


def test_a_sandbox_event_cannot_book_a_stripe_attempt(attempt: PaymentAttempt, client: Client) -> None:
    """The sandbox's secret is a demo value; even correctly signed, its events only touch sandbox attempts."""
    PaymentAttempt.objects.filter(pk=attempt.pk).update(gateway="stripe")
    body = _succeeded_event(attempt)
    response = _post(client, "sandbox", body, HTTP_SANDBOX_SIGNATURE=sign_payload(body))
    assert response.status_code == 200 and response.json()["outcome"].startswith("ignored")
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.PROCESSING and not Payment.objects.exists()


# --- Stripe ---------------------------------------------------------------------------------------------


def test_forged_stripe_webhooks_are_rejected_and_write_nothing(
    attempt: PaymentAttempt, client: Client, settings: Any
) -> None:
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    PaymentAttempt.objects.filter(pk=attempt.pk).update(gateway="stripe")
    body = _succeeded_event(attempt).decode()
    now = int(time.time())
    sign = stripe.WebhookSignature.generate_signature_header
    good = sign(body, STRIPE_SECRET, timestamp=now)
    forgeries = {
        "no signature header": None,
        "garbage header": "garbage",
        "wrong secret": sign(body, "whsec_guess", timestamp=now),
        "signature of another body": sign(body.replace("evt_forged", "evt_other"), STRIPE_SECRET, timestamp=now),
        "stale (an hour old)": sign(body, STRIPE_SECRET, timestamp=now - 3600),
        "timestamp moved, same signature": good.replace(f"t={now}", f"t={now + 1}"),
        "v0 scheme only": good.replace("v1=", "v0="),
    }
    before = db_digest()
    for label, header in forgeries.items():
        headers = {} if header is None else {"HTTP_STRIPE_SIGNATURE": header}
        assert _post(client, "stripe", body.encode(), **headers).status_code == 400, label
    assert _post(client, "stripe", b"\xff\xfe", HTTP_STRIPE_SIGNATURE=good).status_code == 400  # not UTF-8
    settings.STRIPE_WEBHOOK_SECRET = ""
    unconfigured = sign(body, "", timestamp=now)
    assert _post(client, "stripe", body.encode(), HTTP_STRIPE_SIGNATURE=unconfigured).status_code == 400
    assert changed_tables(before, db_digest()) == []
    _assert_nothing_booked(attempt)
    settings.STRIPE_WEBHOOK_SECRET = STRIPE_SECRET
    assert _post(client, "stripe", body.encode(), HTTP_STRIPE_SIGNATURE=good).status_code == 200
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.SUCCEEDED


# --- e-mail provider webhooks (anymail) ------------------------------------------------------------------

WEBHOOK_SECRET = "provider:s3cret-reliability"
# Providers that sign their webhooks in addition to basic auth need their key configured for the view to start.
PROVIDER_KEYS = {
    "MAILGUN_WEBHOOK_SIGNING_KEY": "mailgun-key",
    "MANDRILL_WEBHOOK_KEY": "mandrill-key",
    "POSTAL_WEBHOOK_KEY": "cG9zdGFsLWtleQ==",
    "MAILERSEND_SIGNING_SECRET": "mailersend-secret",
    "MAILERSEND_INBOUND_SECRET": "mailersend-inbound",
    "UNISENDER_GO_API_KEY": "unisender-key",
    "BREVO_API_KEY": "brevo-key",
    "SENDINBLUE_API_KEY": "sendinblue-key",
    "MAILTRAP_API_TOKEN": "mailtrap-token",
    "RESEND_API_KEY": "resend-key",
}
# amazon_ses verifies SNS signatures with boto3, which this build does not install: its view cannot start (500).
# (Resend is checked with basic auth: its svix signature check needs the svix package, not installed either.)
NOT_INSTALLED = frozenset({"amazon_ses"})


def _anymail_urls() -> list[str]:
    [anymail] = [p for p in get_resolver().url_patterns if isinstance(p, URLResolver) and str(p.pattern) == "anymail/"]
    urls = []
    for pattern in anymail.url_patterns:
        assert isinstance(pattern, URLPattern)
        route = str(pattern.pattern).lstrip("^").rstrip("$").replace("(_mime)?", "")
        urls.append(f"/anymail/{route}")
    return urls


def test_every_email_provider_webhook_refuses_calls_without_the_right_credentials(db: Any, settings: Any) -> None:
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET, **PROVIDER_KEYS}
    client = Client(raise_request_exception=False)
    urls = _anymail_urls()
    assert len(urls) >= 25 and "/anymail/postmark/tracking/" in urls
    bounce = json.dumps({"RecordType": "Bounce", "ID": 1, "MessageID": "m-1", "Email": "billing@customer.example"})
    before = db_digest()
    statuses = {}
    for url in urls:
        provider = url.split("/")[2]
        for auth in (None, basic_auth("provider:wrong"), basic_auth(WEBHOOK_SECRET[:-1])):
            headers = {} if auth is None else {"HTTP_AUTHORIZATION": auth}
            response = client.post(url, data=bounce, content_type="application/json", **headers)
            statuses[(url, auth)] = response.status_code
            if provider in NOT_INSTALLED:
                assert response.status_code >= 400, url
            else:
                assert response.status_code == 400, (url, auth, response.status_code)
    assert changed_tables(before, db_digest()) == []
    # With the right credentials Postmark's tracking call is accepted (so the 400s above are the auth check's).
    accepted = client.post(
        "/anymail/postmark/tracking/",
        data=bounce,
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET),
    )
    assert accepted.status_code == 200


def test_production_settings_close_webhooks_whose_secret_is_not_configured() -> None:
    """The case that failed: without ANYMAIL_WEBHOOK_SECRET anymail accepted tracking events from anyone (it only
    warns), and the sandbox gateway accepted webhooks signed with its public demo secret. Production settings now
    fail closed for both; a deployment that sets the secrets gets exactly those."""
    code = """
from payments.gateways.sandbox import sign_payload
from django.conf import settings
body = b'{"id": "evt_x", "type": "payment_intent.succeeded", "data": {"object": {}}}'
event = '{"RecordType": "Bounce", "ID": 1, "MessageID": "m-1", "Email": "a@b.example"}'
print(json.dumps({
    "anymail": client.post("/anymail/postmark/tracking/", data=event, content_type="application/json",
                           secure=True).status_code,
    "sandbox": client.post("/webhooks/sandbox/", data=body, content_type="application/json", secure=True,
                           HTTP_SANDBOX_SIGNATURE=sign_payload(body, secret="whsec_sandbox_demo")).status_code,
    "anymail_secret_set": bool(settings.ANYMAIL.get("WEBHOOK_SECRET")),
    "sandbox_secret": settings.PAYMENTS_SANDBOX_WEBHOOK_SECRET,
}))
"""
    assert run_under_production(code) == {
        "anymail": 400,
        "sandbox": 400,
        "anymail_secret_set": True,
        "sandbox_secret": "",
    }
    configured = run_under_production(
        code, {"ANYMAIL_WEBHOOK_SECRET": "ops:chosen", "PAYMENTS_SANDBOX_WEBHOOK_SECRET": "whsec_chosen_by_ops"}
    )
    assert configured["sandbox_secret"] == "whsec_chosen_by_ops" and configured["anymail"] == 400
