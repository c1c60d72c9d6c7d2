"""Invoice e-mails through django-anymail: who gets what, in which language, once, and what provider errors do."""

from __future__ import annotations

import datetime as dt
import io
import re
from decimal import Decimal as D
from unittest import mock

import pytest
import requests
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import AnymailAPIError, AnymailRequestsAPIError
from django.core import mail
from django.core.management import call_command
from django.urls import reverse

from core.links import invoice_link_verify
from invoicing import delivery
from invoicing.services import invoice_finalize
from notifications import sending
from notifications.models import EmailKind, EmailStatus, OutboundEmail
from notifications.sweep import outbox_sweep
from notifications.tasks import send_outbound_email
from subscriptions.models import CollectionMethod
from tests.factories import PriceFactory, SubscriptionFactory
from tests.factories.customers import CustomerFactory
from tests.factories.invoicing import InvoiceFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


@pytest.fixture(autouse=True)
def anymail_backend(settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.EMAIL_MAX_ATTEMPTS = 3
    mail.outbox = []


def _finalize(draft, capture):
    with capture(execute=True):
        invoice_finalize(invoice=draft, issue_date=ISSUE)
    draft.refresh_from_db()
    return draft


def test_finalized_manual_invoice_is_emailed_with_pdf_to_billing_and_cc(
    series, vat_de, django_capture_on_commit_callbacks
):
    customer = CustomerFactory(email="billing@kunde.example", cc_emails="ap@kunde.example, BILLING@kunde.example")
    invoice = _finalize(InvoiceFactory(customer=customer), django_capture_on_commit_callbacks)

    [message] = mail.outbox
    assert message.to == ["billing@kunde.example"] and message.cc == ["ap@kunde.example"]
    assert message.subject == f"Invoice {invoice.number} from Cadence Demo GmbH"
    assert "please find attached invoice" in message.body
    # the pay link is signed for this invoice, so it opens it without signing in
    [link] = re.findall(r"/portal/link/([^/\s]+)/", message.body)
    assert invoice_link_verify(link).invoice_id == invoice.pk
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html" and invoice.number in html
    [(filename, content, content_type)] = message.attachments
    assert filename == f"{invoice.number}.pdf" and content_type == "application/pdf" and content.startswith(b"%PDF")
    assert message.anymail_test_params["metadata"]["kind"] == "invoice"

    email = OutboundEmail.objects.get(invoice=invoice)
    assert email.kind == EmailKind.INVOICE and email.status == EmailStatus.SENT and email.attempts == 1
    assert email.to_emails == ["billing@kunde.example"] and email.cc_emails == ["ap@kunde.example"]
    assert email.provider_message_id != "" and email.esp_name == "Test"


def test_german_customer_gets_german_subject_and_body(series, vat_de, django_capture_on_commit_callbacks):
    invoice = _finalize(InvoiceFactory(customer=CustomerFactory(language="de")), django_capture_on_commit_callbacks)
    [message] = mail.outbox
    assert message.subject == f"Rechnung {invoice.number} von Cadence Demo GmbH"
    assert "anbei erhalten Sie die Rechnung" in message.body and "119,00\xa0€" in message.body


def test_invoices_of_charge_automatically_subscriptions_are_not_emailed(
    series, vat_de, django_capture_on_commit_callbacks
):
    price = PriceFactory()
    auto = SubscriptionFactory(price=price, collection_method=CollectionMethod.CHARGE_AUTOMATICALLY)
    send = SubscriptionFactory(price=price, collection_method=CollectionMethod.SEND_INVOICE)
    auto_invoice = _finalize(
        InvoiceFactory(customer=auto.customer, subscription=auto), django_capture_on_commit_callbacks
    )
    send_invoice = _finalize(
        InvoiceFactory(customer=send.customer, subscription=send), django_capture_on_commit_callbacks
    )
    # (the payments app may e-mail its own payment notice for the automatic one; the invoice e-mail is ours)
    invoice_subjects = [message.subject for message in mail.outbox if message.subject.startswith("Invoice ")]
    assert invoice_subjects == [f"Invoice {send_invoice.number} from Cadence Demo GmbH"]
    assert not OutboundEmail.objects.filter(invoice=auto_invoice, kind=EmailKind.INVOICE).exists()


def test_queueing_twice_and_running_the_task_twice_sends_one_email(series, vat_de):
    invoice = InvoiceFactory(finalized=ISSUE)
    first = delivery.invoice_email_on_finalize(invoice_id=invoice.pk)
    second = delivery.invoice_email_on_finalize(invoice_id=invoice.pk)
    assert first is not None and second is not None and first.pk == second.pk
    send_outbound_email.delay(first.pk)
    send_outbound_email.delay(first.pk)
    outcome = sending.outbound_email_send(email_id=first.pk)
    assert outcome.skipped and outcome.status == EmailStatus.SENT
    assert len(mail.outbox) == 1
    assert OutboundEmail.objects.get().attempts == 1


def _fail_then_send(*errors):
    """Patch the anymail test backend to raise ``errors`` one by one, then send normally."""
    pending = list(errors)
    real = AnymailTestBackend.post_to_esp

    def post_to_esp(self, payload, message):
        if pending:
            raise pending.pop(0)
        return real(self, payload, message)

    return mock.patch.object(AnymailTestBackend, "post_to_esp", post_to_esp)


def _provider_error(status_code):
    response = requests.Response()
    response.status_code, response.reason, response._content = status_code, "provider says no", b'{"error": 1}'
    response.encoding = "utf-8"
    return AnymailRequestsAPIError(f"provider answered HTTP {status_code}", status_code=status_code, response=response)


def test_provider_5xx_is_retried_and_then_sent(series, vat_de, django_capture_on_commit_callbacks):
    invoice = InvoiceFactory(finalized=ISSUE)
    with (
        _fail_then_send(_provider_error(503), AnymailAPIError("read timed out")),
        django_capture_on_commit_callbacks(execute=True),
    ):
        email = delivery.invoice_email_on_finalize(invoice_id=invoice.pk)
    email.refresh_from_db()
    assert email.status == EmailStatus.SENT and email.attempts == 3 and email.last_error == ""
    assert len(mail.outbox) == 1


def test_provider_5xx_until_the_limit_marks_failed(series, vat_de, django_capture_on_commit_callbacks):
    invoice = InvoiceFactory(finalized=ISSUE)
    with _fail_then_send(*[_provider_error(502) for _ in range(5)]), django_capture_on_commit_callbacks(execute=True):
        email = delivery.invoice_email_on_finalize(invoice_id=invoice.pk)
    email.refresh_from_db()
    assert email.status == EmailStatus.FAILED and email.attempts == 3 and "502" in email.last_error
    assert mail.outbox == []


def test_provider_4xx_fails_at_once_and_is_shown_to_staff(
    series, vat_de, admin_client, django_capture_on_commit_callbacks
):
    invoice = InvoiceFactory(finalized=ISSUE)
    with _fail_then_send(_provider_error(422)), django_capture_on_commit_callbacks(execute=True):
        email = delivery.invoice_email_on_finalize(invoice_id=invoice.pk)
    email.refresh_from_db()
    assert email.status == EmailStatus.FAILED and email.attempts == 1 and email.failed_at is not None
    assert "422" in email.last_error
    page = admin_client.get(reverse("admin:notifications_outboundemail_changelist"), {"status__exact": "failed"})
    assert "422" in page.content.decode()
    history = admin_client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert "e-mail history" in history.lower() and "Failed" in history


def test_retry_backoff_grows_and_is_capped(settings):
    settings.EMAIL_RETRY_BACKOFF_SECONDS = 60
    assert [sending.retry_countdown(n) for n in (1, 2, 3, 10)] == [60, 120, 240, 3600]


def test_admin_resend_action_sends_a_new_copy(series, vat_de, admin_client, django_capture_on_commit_callbacks):
    invoice = InvoiceFactory(finalized=ISSUE, lines=[{"unit_amount": D("10.00")}])
    with django_capture_on_commit_callbacks(execute=True):
        delivery.invoice_email_on_finalize(invoice_id=invoice.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:invoicing_invoice_changelist"),
            {"action": "resend_email_selected", "_selected_action": [invoice.pk]},
            follow=True,
        )
    assert response.status_code == 200
    assert len(mail.outbox) == 2
    assert sorted(OutboundEmail.objects.values_list("kind", flat=True)) == ["invoice", "invoice_resend"]


def test_sweep_marks_messages_a_dead_worker_left_sending_failed_and_never_resends_them(series, vat_de, admin_client):
    now = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
    dead, busy = (delivery.invoice_email_on_finalize(invoice_id=InvoiceFactory(finalized=ISSUE).pk) for _ in range(2))
    # a worker claimed each message (queued → sending) and then died (61 min ago) or is still talking to the
    # provider (2 min ago)
    OutboundEmail.objects.filter(pk=dead.pk).update(
        status=EmailStatus.SENDING, attempts=1, claimed_at=now - dt.timedelta(minutes=61)
    )
    OutboundEmail.objects.filter(pk=busy.pk).update(
        status=EmailStatus.SENDING, attempts=1, claimed_at=now - dt.timedelta(minutes=2)
    )

    outcome = outbox_sweep(now=now)

    assert (outcome.interrupted, outcome.sent, outcome.failed) == (1, 0, 0)
    dead.refresh_from_db()
    busy.refresh_from_db()
    assert dead.status == EmailStatus.FAILED and dead.failed_at == now and dead.attempts == 1
    assert dead.last_error.startswith("Interrupted while sending")
    assert busy.status == EmailStatus.SENDING and busy.failed_at is None
    assert mail.outbox == []  # at most once: never re-sent on a guess
    # staff find it among the failed e-mails, with the reason
    page = admin_client.get(reverse("admin:notifications_outboundemail_changelist"), {"status__exact": "failed"})
    assert "Interrupted while sending" in page.content.decode()
    # a second sweep has nothing more to do; the command reports the count
    assert outbox_sweep(now=now + dt.timedelta(minutes=10)).interrupted == 0
    OutboundEmail.objects.filter(pk=busy.pk).update(claimed_at=now - dt.timedelta(hours=2))
    out = io.StringIO()
    call_command("sweep_emails", stdout=out)
    assert "1 interrupted while sending marked failed" in out.getvalue()
    assert OutboundEmail.objects.get(pk=busy.pk).status == EmailStatus.FAILED and mail.outbox == []
