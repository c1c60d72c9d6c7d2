from __future__ import annotations

import datetime as dt
import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import stripe

from invoicing.models import InvoiceStatus
from payments.gateways.sandbox import sign_payload
from payments.models import AttemptStatus, Payment, PaymentAttempt, PaymentMethodKind, RefundStatus, WebhookEvent
from payments.services import invoice_collect, payment_refund
from tests.factories import InvoiceFactory, SubscriptionFactory
from tests.factories.payments import PaymentMethodFactory, record_payment

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


# --- sandbox webhooks -----------------------------------------------------------------------------------


def _post(client, gateway, event, *, header_name="HTTP_SANDBOX_SIGNATURE", signature=None, timestamp=None):
    body = json.dumps(event).encode()
    signature = signature or sign_payload(body, timestamp=timestamp)
    return client.post(f"/webhooks/{gateway}/", data=body, content_type="application/json", **{header_name: signature})


@pytest.fixture
def processing_attempt(customer):
    """An attempt whose gateway answer got lost: only the webhook will tell."""
    PaymentMethodFactory(customer=customer)
    subscription = SubscriptionFactory(customer=customer, collection_method="charge_automatically")
    invoice = InvoiceFactory(customer=customer, subscription=subscription, finalized=ISSUE)
    return PaymentAttempt.objects.create(
        invoice=invoice,
        customer=customer,
        payment_method=customer.payment_methods.get(),
        attempt_number=1,
        attempted_on=ISSUE,
        currency="EUR",
        amount=invoice.amount_due,
        gateway="sandbox",
        idempotency_key="payment_attempt:test",
        gateway_reference="pi_sbx_1",
    )


def _intent_event(event_id, event_type, attempt, status):
    intent = {
        "id": "pi_sbx_1",
        "object": "payment_intent",
        "amount": int(attempt.amount * 100),
        "currency": "eur",
        "status": status,
        "metadata": {"payment_attempt_id": str(attempt.pk)},
        "last_payment_error": None
        if status == "succeeded"
        else {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Insufficient funds."},
    }
    return {"id": event_id, "type": event_type, "data": {"object": intent}}


def test_a_webhook_books_a_lost_answer_once_even_when_replayed(client, processing_attempt):
    event = _intent_event("evt_1", "payment_intent.succeeded", processing_attempt, "succeeded")
    first = _post(client, "sandbox", event)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    replay = _post(client, "sandbox", event)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    processing_attempt.refresh_from_db()
    assert processing_attempt.status == AttemptStatus.SUCCEEDED
    assert Payment.objects.count() == 1
    assert WebhookEvent.objects.get().processed_at is not None
    processing_attempt.invoice.refresh_from_db()
    assert processing_attempt.invoice.status == InvoiceStatus.PAID


def test_a_failure_event_arriving_after_the_success_changes_nothing(client, processing_attempt):
    _post(client, "sandbox", _intent_event("evt_ok", "payment_intent.succeeded", processing_attempt, "succeeded"))
    late = _post(
        client,
        "sandbox",
        _intent_event("evt_old", "payment_intent.payment_failed", processing_attempt, "requires_payment_method"),
    )
    assert late.status_code == 200 and "nothing to do" in late.json()["outcome"]
    processing_attempt.refresh_from_db()
    assert processing_attempt.status == AttemptStatus.SUCCEEDED


def test_a_success_arriving_after_a_recorded_failure_still_books_the_payment(client, processing_attempt):
    _post(
        client,
        "sandbox",
        _intent_event("evt_f", "payment_intent.payment_failed", processing_attempt, "requires_payment_method"),
    )
    processing_attempt.refresh_from_db()
    assert processing_attempt.status == AttemptStatus.FAILED and processing_attempt.next_retry_on is not None
    _post(client, "sandbox", _intent_event("evt_s", "payment_intent.succeeded", processing_attempt, "succeeded"))
    processing_attempt.refresh_from_db()
    assert processing_attempt.status == AttemptStatus.SUCCEEDED and processing_attempt.next_retry_on is None
    assert Payment.objects.count() == 1


def test_bad_signatures_and_stale_timestamps_are_rejected(client, processing_attempt):
    event = _intent_event("evt_bad", "payment_intent.succeeded", processing_attempt, "succeeded")
    assert _post(client, "sandbox", event, signature="t=1,v1=deadbeef").status_code == 400
    forged = sign_payload(b"{}", secret="not-the-secret")
    assert _post(client, "sandbox", event, signature=forged).status_code == 400
    stale = int(time.time()) - 3600
    assert _post(client, "sandbox", event, timestamp=stale).status_code == 400
    assert _post(client, "unknown", event).status_code == 404
    assert client.get("/webhooks/sandbox/").status_code == 405
    assert not WebhookEvent.objects.exists()
    processing_attempt.refresh_from_db()
    assert processing_attempt.status == AttemptStatus.PROCESSING


# --- Stripe, against a loopback stub ---------------------------------------------------------------------


class StripeStub(BaseHTTPRequestHandler):
    """Answers the Stripe endpoints the adapter uses with Stripe-shaped JSON, honouring idempotency keys."""

    requests: list[dict[str, Any]] = []
    answers: dict[str, tuple[int, dict[str, Any]]] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = {key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()}
        key = self.headers.get("Idempotency-Key", "")
        self.requests.append(
            {"path": self.path, "form": form, "idempotency_key": key, "auth": self.headers.get("Authorization")}
        )
        if key not in self.answers:
            self.answers[key] = self._answer(form)
        status, body = self.answers[key]
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", "req_stub")
        self.end_headers()
        self.wfile.write(payload)

    def _answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        number = len(self.answers) + 1
        if self.path == "/v1/payment_intents":
            intent = {
                "id": f"pi_stub_{number}",
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "currency": form["currency"],
                "customer": form.get("customer"),
                "payment_method": form["payment_method"],
                "status": "succeeded",
                "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
                "last_payment_error": None,
            }
            if form["payment_method"] == "pm_declined":
                error = {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "insufficient_funds",
                    "message": "Your card has insufficient funds.",
                    "payment_intent": {**intent, "status": "requires_payment_method"},
                }
                return 402, {"error": error}
            return 200, intent
        if self.path == "/v1/refunds":
            return 200, {
                "id": f"re_stub_{number}",
                "object": "refund",
                "amount": int(form["amount"]),
                "payment_intent": form["payment_intent"],
                "status": "succeeded",
            }
        return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL {self.path}"}}


@pytest.fixture
def stripe_stub(settings):
    StripeStub.requests = []
    StripeStub.answers = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), StripeStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    settings.STRIPE_API_KEY = "sk_test_stub"
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_stub"
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    yield StripeStub
    server.shutdown()
    server.server_close()


def test_stripe_charges_off_session_with_the_attempt_idempotency_key(customer, stripe_stub):
    method = PaymentMethodFactory(customer=customer, stripe=True)
    invoice = InvoiceFactory(
        customer=customer, lines=[{"description": "x", "unit_amount": Decimal("12.34")}], finalized=ISSUE
    )
    attempt = invoice_collect(invoice_id=invoice.pk, as_of=ISSUE, require_automatic=False)
    assert attempt is not None and attempt.status == AttemptStatus.SUCCEEDED
    [request] = stripe_stub.requests
    assert request["path"] == "/v1/payment_intents"
    assert request["idempotency_key"] == f"payment_attempt:{attempt.pk}"
    assert request["auth"] == "Bearer sk_test_stub"
    assert request["form"]["amount"] == "1234" and request["form"]["currency"] == "eur"
    assert request["form"]["off_session"] == "true" and request["form"]["confirm"] == "true"
    assert request["form"]["payment_method"] == method.token
    assert request["form"]["customer"] == method.gateway_customer_id
    assert attempt.payment.gateway_reference == "pi_stub_1"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID

    refund = payment_refund(payment=attempt.payment, amount=Decimal("2.34"), reason="goodwill")
    assert refund.status == RefundStatus.SUCCEEDED and refund.gateway_reference == "re_stub_2"
    # our refund id travels as metadata, so charge.refunded can tell it from a dashboard refund
    assert stripe_stub.requests[-1]["form"] == {
        "payment_intent": "pi_stub_1",
        "amount": "234",
        "metadata[refund_id]": str(refund.pk),
    }
    assert stripe_stub.requests[-1]["idempotency_key"] == f"refund:{refund.pk}"


def test_a_stripe_card_error_is_a_soft_decline(customer, stripe_stub):
    PaymentMethodFactory(customer=customer, stripe=True, token="pm_declined")
    invoice = InvoiceFactory(customer=customer, finalized=ISSUE)
    attempt = invoice_collect(invoice_id=invoice.pk, as_of=ISSUE, require_automatic=False)
    assert (attempt.status, attempt.decline_code, attempt.decline_type) == ("failed", "insufficient_funds", "soft")
    assert attempt.gateway_reference == "pi_stub_1"
    assert attempt.next_retry_on == dt.date(2026, 3, 5)


def test_an_unreachable_stripe_leaves_the_attempt_processing(customer, settings):
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens on the discard port
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    PaymentMethodFactory(customer=customer, stripe=True)
    invoice = InvoiceFactory(customer=customer, finalized=ISSUE)
    attempt = invoice_collect(invoice_id=invoice.pk, as_of=ISSUE, require_automatic=False)
    assert attempt.status == AttemptStatus.PROCESSING


def test_stripe_webhooks_are_verified_by_the_library(client, stripe_stub, customer):
    payment = record_payment(
        customer=customer, amount="5.00", method=PaymentMethodKind.CARD, gateway="stripe", gateway_reference="pi_x"
    )
    body = json.dumps({"id": "evt_stripe_1", "object": "event", "type": "charge.refunded", "data": {"object": {}}})
    good = stripe.WebhookSignature.generate_signature_header(body, "whsec_test_stub")
    response = client.post("/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=good)
    assert response.status_code == 200 and response.json()["outcome"].startswith("ignored")
    replay = client.post("/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=good)
    assert replay.json()["duplicate"] is True
    stale = stripe.WebhookSignature.generate_signature_header(
        body, "whsec_test_stub", timestamp=int(time.time()) - 3600
    )
    assert (
        client.post(
            "/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=stale
        ).status_code
        == 400
    )
    wrong = stripe.WebhookSignature.generate_signature_header(body, "whsec_other")
    assert (
        client.post(
            "/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=wrong
        ).status_code
        == 400
    )
    assert WebhookEvent.objects.count() == 1
    assert payment.status == "succeeded"
