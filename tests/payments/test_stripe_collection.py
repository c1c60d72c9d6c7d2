"""Issue 23 acceptance: cards saved with a SetupIntent, 3-D Secure of an off-session charge, SEPA Direct Debit,
and Stripe's webhooks — against the local fake of Stripe's HTTP API (tests/payments/stripe_fake.py) with signed
webhook deliveries. Nothing here reaches the internet."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone
from djmoney.money import Money

from core.links import method_link_url
from customers.portal import SESSION_USER_KEY
from dunning.models import DunningAction
from dunning.services import seed_dunning, send_reminders
from invoicing.billing_run import billing_run
from invoicing.models import CreditNote, Invoice, InvoiceStatus
from payments.models import (
    AttemptStatus,
    CreditLedgerEntry,
    Dispute,
    DisputeStatus,
    FeeKind,
    GatewayFee,
    MethodType,
    Payment,
    PaymentAttempt,
    PaymentMethod,
    PaymentStatus,
    Refund,
    WebhookEvent,
)
from payments.selectors import customer_credit_balance
from payments.services import payment_attempts_recover, payment_attempts_retry_due
from tests.factories import CustomerFactory, SubscriptionFactory
from tests.factories.portal import PortalUserFactory
from tests.factories.subscriptions import PriceFactory
from tests.payments.stripe_fake import WEBHOOK_SECRET, serve_fake_stripe, signed

pytestmark = pytest.mark.django_db
MAR_1 = dt.date(2026, 3, 1)
GOOD_IBAN = "DE89 3704 0044 0532 0130 00"


@pytest.fixture
def fake_stripe(settings: Any) -> Any:
    with serve_fake_stripe() as fake:
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_API_KEY = "sk_test_fake"
        settings.STRIPE_PUBLISHABLE_KEY = "pk_test_fake"
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        settings.PAYMENTS_DEFAULT_GATEWAY = "stripe"
        yield fake


@pytest.fixture
def account(billing: Any) -> Any:
    customer = CustomerFactory(exempt=True, email="ap@kunde.example", language="de")
    portal_user = PortalUserFactory(customer=customer, email="portal@kunde.example")
    client = Client()
    session = client.session
    session[SESSION_USER_KEY] = portal_user.pk
    session.save()
    return customer, client


def _subscribe(customer: Any, amount: str = "49.00") -> Any:
    price = PriceFactory(unit_amount=Money(Decimal(amount), "EUR"))
    return SubscriptionFactory(
        customer=customer, price=price, start_date=MAR_1, collection_method="charge_automatically"
    )


def _deliver(client: Client, fake: Any, event: dict[str, Any]) -> Any:
    body, header = signed(event)
    return client.post("/webhooks/stripe/", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)


def _save_card(client: Client, fake: Any, test_card: str = "pm_card_visa") -> PaymentMethod:
    """The portal's card page, then what Stripe.js does (confirm the SetupIntent at Stripe), then Stripe's redirect
    to the return page."""
    page = client.get("/portal/payment-methods/add/card/")
    assert page.status_code == 200
    secret = re.search(r'data-client-secret="([^"]+)"', page.content.decode()).group(1)
    setup_intent_id = secret.split("_secret_")[0]
    fake.handle("POST", f"/v1/setup_intents/{setup_intent_id}/confirm", {"payment_method": test_card})
    back = client.get(f"/portal/payment-methods/add/return/?setup_intent={setup_intent_id}")
    assert back.status_code == 302 and back["Location"] == "/portal/payment-methods/"
    return PaymentMethod.objects.get(token=fake.objects[setup_intent_id]["payment_method"])


def _bill(as_of: dt.date, capture: Any) -> Invoice:
    with capture(execute=True):
        billing_run(as_of=as_of)
    return Invoice.objects.order_by("-pk").first()


# --- saving a card, charged by the billing run ---------------------------------------------------------


def test_a_card_saved_with_a_setup_intent_is_charged_off_session_by_the_billing_run(
    account, fake_stripe, django_capture_on_commit_callbacks
):
    customer, client = account
    method = _save_card(client, fake_stripe)
    assert (method.type, method.brand, method.last4, method.exp_month, method.exp_year) == (
        MethodType.CARD,
        "visa",
        "4242",
        12,
        2034,
    )
    assert method.is_default and method.gateway_customer_id.startswith("cus_fake")
    [customer_call] = fake_stripe.calls("POST", "/v1/customers")
    assert customer_call["idempotency_key"] == f"customer:{customer.pk}"
    [setup_call] = fake_stripe.calls("POST", "/v1/setup_intents")
    assert setup_call["params"]["usage"] == "off_session"
    assert setup_call["params"]["metadata"] == {"customer_id": str(customer.pk)}
    # the return page read the SetupIntent from Stripe, with the method and mandate expanded
    [read] = fake_stripe.calls("GET", "/v1/setup_intents/")
    assert read["params"]["expand"] == ["payment_method", "mandate"]

    _subscribe(customer, "49.00")
    invoice = _bill(MAR_1, django_capture_on_commit_callbacks)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_due == 0
    [charge] = fake_stripe.calls("POST", "/v1/payment_intents")
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert charge["params"]["amount"] == "4900" and charge["params"]["off_session"] == "true"
    assert charge["params"]["payment_method"] == method.token
    assert charge["params"]["customer"] == method.gateway_customer_id
    assert charge["idempotency_key"] == f"payment_attempt:{attempt.pk}"
    assert attempt.payment.amount == Decimal("49.00") and attempt.payment.payment_method == method


def test_the_return_page_never_saves_another_customers_setup_intent(account, fake_stripe, billing):
    _customer, client = account
    other = CustomerFactory(exempt=True)
    other_portal = PortalUserFactory(customer=other, email="other@kunde.example")
    other_client = Client()
    session = other_client.session
    session[SESSION_USER_KEY] = other_portal.pk
    session.save()
    page = other_client.get("/portal/payment-methods/add/card/")
    setup_intent_id = re.search(r'data-client-secret="(seti_[^_]+)_secret', page.content.decode()).group(1)
    fake_stripe.handle("POST", f"/v1/setup_intents/{setup_intent_id}/confirm", {"payment_method": "pm_card_visa"})
    stolen = client.get(f"/portal/payment-methods/add/return/?setup_intent={setup_intent_id}")
    assert stolen.status_code == 404
    assert not PaymentMethod.objects.exists()


def test_remove_detaches_at_stripe_and_default_switches_between_card_and_sepa(
    account, fake_stripe, django_capture_on_commit_callbacks
):
    _customer, client = account
    card = _save_card(client, fake_stripe)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/portal/payment-methods/add/sepa/",
            {"account_holder": "Kunde GmbH", "iban": GOOD_IBAN, "email": "ap@kunde.example"},
        )
    sepa = PaymentMethod.objects.get(type=MethodType.SEPA_DEBIT)
    card.refresh_from_db()
    assert sepa.is_default and not card.is_default
    client.post(f"/portal/payment-methods/{card.pk}/default/")
    card.refresh_from_db()
    sepa.refresh_from_db()
    assert card.is_default and not sepa.is_default
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/portal/payment-methods/{card.pk}/remove/")
    card.refresh_from_db()
    sepa.refresh_from_db()
    assert not card.is_active and sepa.is_default
    assert fake_stripe.calls("POST", f"/v1/payment_methods/{card.token}/detach")
    assert fake_stripe.objects[card.token]["customer"] is None


def test_staffs_add_card_link_opens_the_card_page_of_that_customer_only(
    account, fake_stripe, admin_client, django_capture_on_commit_callbacks
):
    customer, _client = account
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/customers/customer/{customer.pk}/send-method-link/", {"_confirm": "1"})
    assert response.status_code == 302
    [message] = [m for m in mail.outbox if "Zahlungsart" in m.subject]
    link = re.search(r"http\S+/portal/method-link/\S+/", message.body).group(0)
    assert link.startswith(method_link_url(customer_id=customer.pk).split("/portal/")[0])
    visitor = Client()
    opened = visitor.get(link[link.index("/portal/") :])
    assert opened.status_code == 302 and opened["Location"] == "/portal/payment-methods/add/card/"
    assert visitor.get("/portal/payment-methods/add/card/").status_code == 200
    assert visitor.get("/portal/invoices/").status_code == 302  # nothing else of the customer
    assert visitor.get("/portal/method-link/tampered/").status_code == 404


# --- 3-D Secure of an off-session charge ---------------------------------------------------------------


def test_requires_action_emails_a_link_completed_in_the_portal_and_dunning_waits(
    account, fake_stripe, django_capture_on_commit_callbacks, settings, time_machine
):
    customer, client = account
    seed_dunning()
    settings.PAYMENT_ACTION_GRACE_DAYS = 7
    time_machine.move_to(dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC))
    _save_card(client, fake_stripe, "pm_card_authenticationRequired")
    _subscribe(customer, "49.00")
    invoice = _bill(MAR_1, django_capture_on_commit_callbacks)
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert attempt.status == AttemptStatus.REQUIRES_ACTION and attempt.next_retry_on is None
    assert attempt.gateway_reference.startswith("pi_fake")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    # Stripe's payment_failed event for the same intent (authentication_required) is not a decline
    intent = fake_stripe.objects[attempt.gateway_reference]
    _deliver(Client(), fake_stripe, fake_stripe.event("payment_intent.payment_failed", intent))
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.REQUIRES_ACTION and not attempt.failure_email_sent_at
    [email] = [m for m in mail.outbox if "bestätigen" in m.subject]
    assert invoice.number in email.subject and "3-D Secure" in email.body
    link = re.search(r"http\S+/portal/link/\S+/", email.body).group(0)

    # the retry job and the dunning run leave it alone meanwhile (due date passed, grace not)
    for day in (dt.date(2026, 3, 5), dt.date(2026, 3, 7)):
        send_reminders(as_of=day)
    assert not DunningAction.objects.filter(invoice=invoice).exists()
    assert len(fake_stripe.calls("POST", "/v1/payment_intents")) == 1

    visitor = Client()
    opened = visitor.get(link[link.index("/portal/") :])
    assert opened["Location"] == f"/portal/invoices/{invoice.number}/authenticate/"
    pay = visitor.get(f"/portal/invoices/{invoice.number}/pay/")
    assert pay["Location"] == opened["Location"]  # "Pay now" leads to the pending confirmation, not a new charge
    page = visitor.get(opened["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert intent["client_secret"] in html and 'data-stripe-mode="authenticate"' in html
    # what stripe.confirmCardPayment does, then the browser comes back
    fake_stripe.handle("POST", f"/v1/payment_intents/{intent['id']}/confirm", {})
    back = visitor.get(f"/portal/invoices/{invoice.number}/authenticate/return/")
    assert back.status_code == 302
    invoice.refresh_from_db()
    attempt.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and attempt.status == AttemptStatus.SUCCEEDED
    assert Payment.objects.get().amount == Decimal("49.00")
    # the succeeded webhook arriving after the return page books nothing more
    _deliver(Client(), fake_stripe, fake_stripe.event("payment_intent.succeeded", fake_stripe.objects[intent["id"]]))
    assert Payment.objects.count() == 1
    send_reminders(as_of=dt.date(2026, 3, 20))
    assert not DunningAction.objects.filter(invoice=invoice).exists()


def test_an_unanswered_authentication_goes_to_dunning_after_the_grace_period(
    account, fake_stripe, django_capture_on_commit_callbacks, settings
):
    customer, client = account
    seed_dunning()
    settings.PAYMENT_ACTION_GRACE_DAYS = 7
    _save_card(client, fake_stripe, "pm_card_authenticationRequired")
    _subscribe(customer)
    invoice = _bill(MAR_1, django_capture_on_commit_callbacks)
    assert invoice.due_date is not None
    late = max(invoice.due_date + dt.timedelta(days=30), MAR_1 + dt.timedelta(days=8))
    with django_capture_on_commit_callbacks(execute=True):
        send_reminders(as_of=MAR_1 + dt.timedelta(days=7))
    assert not DunningAction.objects.filter(invoice=invoice).exists()
    with django_capture_on_commit_callbacks(execute=True):
        send_reminders(as_of=late)
    assert DunningAction.objects.filter(invoice=invoice).exists()


# --- SEPA Direct Debit ---------------------------------------------------------------------------------


def test_a_bad_iban_is_refused_before_stripe_is_called(account, fake_stripe):
    _customer, client = account
    response = client.post(
        "/portal/payment-methods/add/sepa/",
        {"account_holder": "Kunde GmbH", "iban": "DE89 3704 0044 0532 0130 01", "email": "ap@kunde.example"},
    )
    assert response.status_code == 400
    assert "IBAN" in response.content.decode()
    assert not fake_stripe.calls("POST", "/v1/setup_intents") and not PaymentMethod.objects.exists()


def _sepa_invoice(account: Any, fake: Any, capture: Any) -> tuple[Any, Invoice, PaymentAttempt, PaymentMethod]:
    customer, client = account
    page = client.get("/portal/payment-methods/add/sepa/")
    assert "Stripe" in page.content.decode() and 'data-testid="mandate-text"' in page.content.decode()
    with capture(execute=True):
        response = client.post(
            "/portal/payment-methods/add/sepa/",
            {"account_holder": "Kunde GmbH", "iban": GOOD_IBAN, "email": "ap@kunde.example"},
        )
    assert response.status_code == 302
    method = PaymentMethod.objects.get()
    [setup] = fake.calls("POST", "/v1/setup_intents")
    assert setup["params"]["payment_method_data"]["sepa_debit"]["iban"] == "DE89370400440532013000"
    assert setup["params"]["mandate_data"]["customer_acceptance"]["type"] == "online"
    assert method.type == MethodType.SEPA_DEBIT and method.last4 == "3000" and method.is_default
    assert method.mandate_id.startswith("mandate_fake") and method.mandate_reference.startswith("FAKE")
    [mandate_mail] = [m for m in mail.outbox if "SEPA-Lastschriftmandat" in m.subject]
    assert method.mandate_reference in mandate_mail.body and "8 Wochen" in mandate_mail.body
    _subscribe(customer, "49.00")
    invoice = _bill(MAR_1, capture)
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    return client, invoice, attempt, method


def test_a_sepa_debit_stays_processing_then_succeeds_by_webhook_days_later(
    account, fake_stripe, django_capture_on_commit_callbacks, time_machine
):
    time_machine.move_to(dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC))
    client, invoice, attempt, method = _sepa_invoice(account, fake_stripe, django_capture_on_commit_callbacks)
    assert attempt.status == AttemptStatus.PROCESSING and attempt.debit_on_or_after == dt.date(2026, 3, 4)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    page = client.get(f"/portal/invoices/{invoice.number}/").content.decode()
    assert "04.03.2026" in page and method.mandate_reference in page and "3000" in page

    # the stale-work sweep never re-sends a debit the bank is working on (a second PaymentIntent = two debits)
    payment_attempts_recover(now=timezone.now() + dt.timedelta(days=2))
    assert len(fake_stripe.calls("POST", "/v1/payment_intents")) == 1

    time_machine.move_to(dt.datetime(2026, 3, 4, 9, tzinfo=dt.UTC))
    intent = {**fake_stripe.objects[attempt.gateway_reference], "status": "succeeded"}
    event = fake_stripe.event("payment_intent.succeeded", intent)
    for _ in range(3):
        assert _deliver(Client(), fake_stripe, event).status_code == 200
    invoice.refresh_from_db()
    attempt.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and attempt.status == AttemptStatus.SUCCEEDED
    payment = Payment.objects.get()
    assert payment.received_on == dt.date(2026, 3, 4) and payment.method == "direct_debit"
    assert WebhookEvent.objects.count() == 1


def test_a_failed_sepa_debit_reopens_the_invoice_books_the_fee_and_starts_dunning(
    account, fake_stripe, django_capture_on_commit_callbacks, settings, time_machine
):
    settings.PAYMENTS_SEPA_FAILURE_FEE = "3.50"
    seed_dunning()
    time_machine.move_to(dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC))
    _client, invoice, attempt, _method = _sepa_invoice(account, fake_stripe, django_capture_on_commit_callbacks)
    invoice.refresh_from_db()
    # in flight with the bank: not chased even though it is due
    send_reminders(as_of=invoice.due_date + dt.timedelta(days=1))
    assert not DunningAction.objects.filter(invoice=invoice).exists()

    time_machine.move_to(dt.datetime(2026, 3, 5, 9, tzinfo=dt.UTC))
    intent = {
        **fake_stripe.objects[attempt.gateway_reference],
        "status": "requires_payment_method",
        "last_payment_error": {"code": "payment_method_invalid", "decline_code": "insufficient_funds"},
    }
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            _deliver(
                Client(), fake_stripe, fake_stripe.event("payment_intent.payment_failed", intent, event_id="evt_f")
            )
    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert attempt.status == AttemptStatus.FAILED and attempt.final_failure and attempt.next_retry_on is None
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_due == Decimal("49.00")
    [fee] = GatewayFee.objects.all()
    assert (fee.kind, fee.amount, fee.invoice_id) == (FeeKind.DEBIT_FAILURE, Decimal("3.50"), invoice.pk)
    assert [m for m in mail.outbox if invoice.number in m.subject and "fehlgeschlagen" in m.subject]
    with django_capture_on_commit_callbacks(execute=True):
        send_reminders(as_of=invoice.due_date + dt.timedelta(days=1))
    assert DunningAction.objects.filter(invoice=invoice).exists()


# --- dashboard refunds and disputes, each reflected once -----------------------------------------------


@pytest.fixture
def paid_by_card(account, fake_stripe, django_capture_on_commit_callbacks):
    customer, client = account
    _save_card(client, fake_stripe)
    _subscribe(customer, "49.00")
    invoice = _bill(MAR_1, django_capture_on_commit_callbacks)
    payment = Payment.objects.get()
    assert invoice.status == InvoiceStatus.PAID or Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.PAID
    return customer, Invoice.objects.get(pk=invoice.pk), payment


def test_a_dashboard_refund_becomes_a_refund_and_credit_note_once(paid_by_card, fake_stripe):
    customer, invoice, payment = paid_by_card
    charge = {
        "id": "ch_fake1",
        "object": "charge",
        "payment_intent": payment.gateway_reference,
        "amount": 4900,
        "amount_refunded": 1900,
        "refunded": False,
        "refunds": {
            "object": "list",
            "data": [{"id": "re_dash1", "object": "refund", "amount": 1900, "status": "succeeded", "metadata": {}}],
        },
    }
    event = fake_stripe.event("charge.refunded", charge)
    outcomes = [_deliver(Client(), fake_stripe, event).json() for _ in range(3)]
    assert [o["duplicate"] for o in outcomes] == [False, True, True]
    refund = Refund.objects.get()
    assert (refund.amount, refund.gateway_reference, refund.status) == (Decimal("19.00"), "re_dash1", "succeeded")
    credit_note = CreditNote.objects.get(invoice=invoice)
    assert credit_note.total == Decimal("19.00")
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.PARTIALLY_REFUNDED and payment.amount_refunded == Decimal("19.00")
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_due == 0  # credited, so nothing re-opened
    assert customer_credit_balance(customer=customer, currency="EUR") == 0
    # the same refund under a new event id (Stripe's charge.refunded again after a second refund): still once
    again = fake_stripe.event("charge.refunded", charge)
    assert "nothing new" in _deliver(Client(), fake_stripe, again).json()["outcome"]
    assert Refund.objects.count() == 1 and CreditNote.objects.count() == 1


def test_our_own_refund_is_not_booked_again_by_its_charge_refunded_event(paid_by_card, fake_stripe):
    from payments.services import payment_refund

    _customer, _invoice, payment = paid_by_card
    refund = payment_refund(payment=payment, amount=Decimal("9.00"), reason="goodwill")
    stripe_refund = fake_stripe.objects[refund.gateway_reference]
    assert stripe_refund["metadata"] == {"refund_id": str(refund.pk)}
    charge = {
        "id": "ch_fake2",
        "object": "charge",
        "payment_intent": payment.gateway_reference,
        "refunds": {"object": "list", "data": [stripe_refund]},
    }
    _deliver(Client(), fake_stripe, fake_stripe.event("charge.refunded", charge))
    assert Refund.objects.count() == 1 and not CreditNote.objects.exists()


def test_a_lost_dispute_flags_books_the_fee_and_reopens_the_invoice_once(
    paid_by_card, fake_stripe, django_capture_on_commit_callbacks, admin_client
):
    customer, invoice, payment = paid_by_card
    dispute = {
        "id": "dp_fake1",
        "object": "dispute",
        "amount": 4900,
        "currency": "eur",
        "charge": "ch_fake1",
        "payment_intent": payment.gateway_reference,
        "reason": "fraudulent",
        "status": "needs_response",
        "balance_transactions": [{"id": "txn_1", "amount": -4900, "fee": 1500}],
    }
    created = fake_stripe.event("charge.dispute.created", dispute)
    for _ in range(3):
        _deliver(Client(), fake_stripe, created)
    row = Dispute.objects.get()
    assert (row.status, row.invoice_id, row.amount, row.reason) == ("open", invoice.pk, Decimal("49.00"), "fraudulent")
    [fee] = GatewayFee.objects.all()
    assert (fee.kind, fee.amount) == (FeeKind.DISPUTE, Decimal("15.00"))
    page = admin_client.get(f"/admin/invoicing/invoice/{invoice.pk}/change/").content.decode()
    assert "Disputed: the customer" in page and "opened dispute dp_fake1" in page

    closed = fake_stripe.event("charge.dispute.closed", {**dispute, "status": "lost"})
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            assert _deliver(Client(), fake_stripe, closed).status_code == 200
    row.refresh_from_db()
    invoice.refresh_from_db()
    payment.refresh_from_db()
    assert row.status == DisputeStatus.LOST and row.refund is not None
    assert Refund.objects.count() == 1 and row.refund.amount == Decimal("49.00")
    assert payment.status == PaymentStatus.REFUNDED
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_due == Decimal("49.00")
    assert not CreditNote.objects.exists() and GatewayFee.objects.count() == 1
    assert not [m for m in mail.outbox if "erstatt" in m.subject.lower()]  # the bank took it back, not us
    assert not CreditLedgerEntry.objects.filter(customer=customer).exclude(amount=0).exists()


def test_card_updates_and_unknown_events_are_acknowledged(account, fake_stripe):
    _customer, client = account
    method = _save_card(client, fake_stripe)
    updated = {**fake_stripe.objects[method.token]}
    updated["card"] = {**updated["card"], "exp_month": 3, "exp_year": 2031, "last4": "4242"}
    assert (
        _deliver(Client(), fake_stripe, fake_stripe.event("payment_method.automatically_updated", updated)).status_code
        == 200
    )
    method.refresh_from_db()
    assert (method.exp_month, method.exp_year) == (3, 2031)
    unknown = _deliver(Client(), fake_stripe, fake_stripe.event("customer.tax_id.created", {"id": "txi_1"}))
    assert unknown.status_code == 200 and unknown.json()["outcome"].startswith("ignored")
    forged = signed(fake_stripe.event("charge.refunded", {}), secret="whsec_other")
    response = Client().post(
        "/webhooks/stripe/", data=forged[0], content_type="application/json", HTTP_STRIPE_SIGNATURE=forged[1]
    )
    assert response.status_code == 400


def test_a_dashboard_refund_without_embedded_refunds_is_listed_from_stripe(paid_by_card, fake_stripe):
    _customer, invoice, payment = paid_by_card
    charge = fake_stripe.dashboard_refund(payment.gateway_reference, 4900)
    for _ in range(3):
        _deliver(Client(), fake_stripe, fake_stripe.event("charge.refunded", charge, event_id="evt_r"))
    assert fake_stripe.calls("GET", "/v1/refunds")[0]["params"]["charge"] == charge["id"]
    refund = Refund.objects.get()
    assert refund.amount == Decimal("49.00") and CreditNote.objects.get(invoice=invoice).total == Decimal("49.00")
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED


def test_a_debit_whose_webhook_was_lost_is_booked_by_the_daily_retry_job(
    account, fake_stripe, django_capture_on_commit_callbacks, time_machine
):
    time_machine.move_to(dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC))
    _client, invoice, attempt, _method = _sepa_invoice(account, fake_stripe, django_capture_on_commit_callbacks)
    payment_attempts_retry_due(as_of=MAR_1)  # the same day: not asked yet
    assert not fake_stripe.calls("GET", "/v1/payment_intents/")
    fake_stripe.objects[attempt.gateway_reference]["status"] = "succeeded"  # the bank cleared it; no webhook came
    time_machine.move_to(dt.datetime(2026, 3, 5, 9, tzinfo=dt.UTC))
    with django_capture_on_commit_callbacks(execute=True):
        payment_attempts_retry_due(as_of=dt.date(2026, 3, 5))
    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert attempt.status == AttemptStatus.SUCCEEDED and invoice.status == InvoiceStatus.PAID
    assert len(fake_stripe.calls("POST", "/v1/payment_intents")) == 1
