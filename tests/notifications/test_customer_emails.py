"""The customer e-mails besides the invoice (issue 20): credit note issued (its PDF attached), payment receipt,
refund issued, card about to expire — each queued once per document / event even when its handler runs twice,
to the billing address and the cc addresses, in the customer's language, amounts as money."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command

from core.models import DomainEvent
from invoicing import delivery
from invoicing.models import DocumentPdf
from invoicing.services import credit_note_issue
from notifications.models import EmailKind, EmailStatus, OutboundEmail
from payments import notifications
from payments.models import PaymentMethodKind
from payments.services import payment_refund
from tests.factories.customers import CustomerFactory
from tests.factories.invoicing import InvoiceFactory
from tests.factories.payments import PaymentMethodFactory, record_payment

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


def _customer(**kwargs):
    return CustomerFactory(
        email="billing@kunde.example", cc_emails="ap@kunde.example, cfo@kunde.example, BILLING@kunde.example", **kwargs
    )


def _invoice(customer, amount="100.00"):
    return InvoiceFactory(
        customer=customer, lines=[{"description": "Service", "unit_amount": D(amount)}], finalized=ISSUE
    )


def _messages(kind):
    return [m for m in mail.outbox if m.anymail_test_params["metadata"]["kind"] == kind]


def _event(event_type, **payload):
    return DomainEvent.objects.filter(type=event_type, **{f"payload__{k}": v for k, v in payload.items()}).get()


# --- credit note issued ---------------------------------------------------------------------------------


def test_credit_note_is_emailed_once_with_its_pdf_to_billing_and_cc(billing, django_capture_on_commit_callbacks):
    invoice = _invoice(_customer())
    with django_capture_on_commit_callbacks(execute=True):
        credit_note = credit_note_issue(invoice=invoice, reason="cancelled order", issue_date=ISSUE)

    [message] = _messages(EmailKind.CREDIT_NOTE)
    assert message.to == ["billing@kunde.example"] and message.cc == ["ap@kunde.example", "cfo@kunde.example"]
    assert message.subject == f"Credit note {credit_note.number} from Cadence Demo GmbH"
    assert f"credit note {credit_note.number} of Mar 2, 2026 for €119.00, crediting invoice {invoice.number}" in (
        message.body
    )
    assert "€119.00 reduced the amount due" in message.body
    [(filename, content, content_type)] = message.attachments
    assert filename == f"{credit_note.number}.pdf" and content_type == "application/pdf"
    # the attachment is the archived credit note, byte for byte
    archived = DocumentPdf.objects.get(credit_note=credit_note)
    assert content.startswith(b"%PDF") and content == archived.file.open("rb").read()

    # the deliver handler run again (a replayed event): the same row, nothing new sent
    event = _event("credit_note.issued", credit_note_id=credit_note.pk)
    with django_capture_on_commit_callbacks(execute=True):
        delivery.on_credit_note_issued_email(event)
        delivery.on_credit_note_issued_email(event)
    email = OutboundEmail.objects.get(credit_note=credit_note)
    assert email.kind == EmailKind.CREDIT_NOTE and email.idempotency_key == f"credit-note:{credit_note.pk}"
    assert email.status == EmailStatus.SENT and email.attempts == 1 and email.attach_pdf
    assert len(_messages(EmailKind.CREDIT_NOTE)) == 1


def test_german_customer_gets_the_credit_note_in_german(billing, django_capture_on_commit_callbacks):
    invoice = _invoice(_customer(language="de"))
    with django_capture_on_commit_callbacks(execute=True):
        credit_note = credit_note_issue(invoice=invoice, reason="Storno", amount=D("50.00"), issue_date=ISSUE)
    [message] = _messages(EmailKind.CREDIT_NOTE)
    assert message.subject == f"Gutschrift {credit_note.number} von Cadence Demo GmbH"
    assert f"anbei erhalten Sie die Gutschrift {credit_note.number} vom 02.03.2026 über 50,00\xa0€" in message.body


def test_an_emailed_credit_note_pdf_is_rendered_by_its_email_only(
    billing, monkeypatch, django_capture_on_commit_callbacks
):
    """The render task and the e-mail's attachment must not render the same PDF side by side."""
    render_tasks: list[int] = []

    class RecordingTask:
        @staticmethod
        def delay(credit_note_id):
            render_tasks.append(credit_note_id)

    monkeypatch.setattr(delivery, "render_credit_note_pdf", RecordingTask)
    invoice = _invoice(_customer())
    with django_capture_on_commit_callbacks(execute=True):
        credit_note = credit_note_issue(invoice=invoice, reason="cancelled order", issue_date=ISSUE)
    assert render_tasks == []
    assert DocumentPdf.objects.filter(credit_note=credit_note).count() == 1


def test_without_emails_on_issue_the_render_task_renders_the_credit_note(
    billing, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.INVOICE_EMAIL_ON_FINALIZE = False
    render_tasks: list[int] = []

    class RecordingTask:
        @staticmethod
        def delay(credit_note_id):
            render_tasks.append(credit_note_id)

    monkeypatch.setattr(delivery, "render_credit_note_pdf", RecordingTask)
    invoice = _invoice(_customer())
    with django_capture_on_commit_callbacks(execute=True):
        credit_note = credit_note_issue(invoice=invoice, reason="cancelled order", issue_date=ISSUE)
    assert render_tasks == [credit_note.pk]
    assert not OutboundEmail.objects.filter(credit_note=credit_note).exists()


# --- payment receipt ------------------------------------------------------------------------------------


def test_bank_payment_receipt_states_amount_date_method_invoices_and_remaining_balance(
    billing, django_capture_on_commit_callbacks
):
    customer = _customer(exempt=True)
    first, second = _invoice(customer, "60.00"), _invoice(customer, "100.00")
    with django_capture_on_commit_callbacks(execute=True):
        payment = record_payment(customer=customer, amount="90.00", reference="Kd 4711")

    [message] = _messages(EmailKind.PAYMENT_RECEIPT)
    assert message.to == ["billing@kunde.example"] and message.cc == ["ap@kunde.example", "cfo@kunde.example"]
    assert message.subject == "Payment received: €90.00 — thank you"
    body = message.body
    assert "we received your payment of €90.00 on Mar 10, 2026 by bank transfer (reference: Kd 4711)" in body
    assert f"- invoice {first.number}: €60.00\n- invoice {second.number}: €30.00\n" in body
    assert "Remaining balance: €70.00 is still open." in body
    assert "https://billing.example/portal/" in body
    [(html, _)] = message.alternatives
    assert "€90.00" in html

    # the handler run twice: one receipt
    event = _event("payment.succeeded", payment_id=payment.pk)
    with django_capture_on_commit_callbacks(execute=True):
        notifications.on_payment_succeeded_receipt(event)
        notifications.on_payment_succeeded_receipt(event)
    [email] = OutboundEmail.objects.filter(kind=EmailKind.PAYMENT_RECEIPT)
    assert email.idempotency_key == f"payment-receipt:{payment.pk}" and email.status == EmailStatus.SENT
    assert len(_messages(EmailKind.PAYMENT_RECEIPT)) == 1


def test_overpayment_receipt_in_german_names_the_credit(billing, django_capture_on_commit_callbacks):
    customer = _customer(exempt=True, language="de")
    invoice = _invoice(customer, "60.00")
    with django_capture_on_commit_callbacks(execute=True):
        record_payment(customer=customer, amount="75.50")
    [message] = _messages(EmailKind.PAYMENT_RECEIPT)
    assert message.subject == "Zahlungseingang: 75,50 € — vielen Dank"  # (the subject is one line of plain spaces)
    assert "Ihre Zahlung über 75,50\xa0€ ist am 10.03.2026 per Überweisung bei uns eingegangen" in message.body
    assert f"- Rechnung {invoice.number}: 60,00\xa0€" in message.body
    assert "15,50\xa0€ wurden Ihrem Guthaben gutgeschrieben" in message.body
    assert "Offener Restbetrag: 0,00\xa0€ — Sie haben keine offenen Rechnungen." in message.body
    assert "Ihr Guthaben: 15,50\xa0€." in message.body


def test_card_payment_of_an_automatically_charged_invoice_gets_one_receipt(billing, django_capture_on_commit_callbacks):
    from payments.services import invoice_collect

    customer = _customer(exempt=True)
    method = PaymentMethodFactory(customer=customer, brand="visa", last4="4242")
    invoice = _invoice(customer, "49.00")
    with django_capture_on_commit_callbacks(execute=True):
        attempt = invoice_collect(
            invoice_id=invoice.pk, as_of=ISSUE, require_automatic=False, payment_method_id=method.pk
        )
    assert attempt is not None and attempt.payment_id is not None
    [message] = _messages(EmailKind.PAYMENT_RECEIPT)
    assert "€49.00" in message.body and "by card (visa •••• 4242)" in message.body
    assert OutboundEmail.objects.filter(kind=EmailKind.PAYMENT_RECEIPT).count() == 1


def test_a_matched_bank_transfer_gets_one_receipt_even_when_the_statement_is_imported_twice(
    billing, django_capture_on_commit_callbacks
):
    from payments.bank_import import bank_statement_import

    customer = _customer(exempt=True, language="de")
    invoice = _invoice(customer, "100.00")
    header = "Transaction ID;Booking date;Amount;Currency;Counterparty;IBAN;Remittance information\n"
    data = (header + f"TX-1;12.03.2026;100,00;EUR;Kunde GmbH;;Rechnung {invoice.number}\n").encode()
    with django_capture_on_commit_callbacks(execute=True):
        bank_statement_import(data=data, format="csv", filename="march.csv")
    with django_capture_on_commit_callbacks(execute=True):
        bank_statement_import(data=data, format="csv", filename="march.csv")
    [message] = _messages(EmailKind.PAYMENT_RECEIPT)
    assert "Ihre Zahlung über 100,00\xa0€ ist am 12.03.2026 per Überweisung bei uns eingegangen" in message.body
    assert f"- Rechnung {invoice.number}: 100,00\xa0€" in message.body
    assert message.cc == ["ap@kunde.example", "cfo@kunde.example"]


# --- refund issued --------------------------------------------------------------------------------------


def test_refund_is_emailed_once_in_the_customers_language(billing, django_capture_on_commit_callbacks):
    customer = _customer(exempt=True, language="de")
    invoice = _invoice(customer, "60.00")
    method = PaymentMethodFactory(customer=customer, brand="visa", last4="4242")
    payment = record_payment(
        customer=customer,
        amount="60.00",
        invoice=invoice,
        method=PaymentMethodKind.CARD,
        gateway="sandbox",
        gateway_reference="pi_sbx_manual",
        payment_method=method,
    )
    with django_capture_on_commit_callbacks(execute=True):
        refund = payment_refund(payment=payment, amount=D("10.00"), reason="Kulanz")
    [message] = _messages(EmailKind.REFUND)
    assert message.to == ["billing@kunde.example"] and message.cc == ["ap@kunde.example", "cfo@kunde.example"]
    assert message.subject == "Erstattung über 10,00 € veranlasst"
    assert "10,00\xa0€ per Karte (visa •••• 4242) erstattet, aus Ihrer Zahlung über 60,00\xa0€ vom 10.03.2026" in (
        message.body
    )
    assert "Grund: Kulanz" in message.body
    assert "10,00\xa0€ der Erstattung sind auf den Rechnungen" in message.body

    event = _event("payment.refunded", refund_id=refund.pk)
    with django_capture_on_commit_callbacks(execute=True):
        notifications.on_payment_refunded_email(event)
        notifications.on_payment_refunded_email(event)
    [email] = OutboundEmail.objects.filter(kind=EmailKind.REFUND)
    assert email.idempotency_key == f"refund:{refund.pk}" and email.language == "de"
    assert len(_messages(EmailKind.REFUND)) == 1


# --- card about to expire -------------------------------------------------------------------------------


def test_card_expiry_job_picks_default_cards_expiring_this_month_or_next_once_per_card_and_expiry(
    db, django_capture_on_commit_callbacks
):
    today = dt.date(2026, 11, 20)
    this_month = PaymentMethodFactory(customer=_customer(), exp_month=11, exp_year=2026, last4="1111")
    next_month = PaymentMethodFactory(customer=CustomerFactory(language="de"), exp_month=12, exp_year=2026)
    PaymentMethodFactory(exp_month=1, exp_year=2027)  # in two months: not yet
    PaymentMethodFactory(exp_month=10, exp_year=2026)  # expired already
    PaymentMethodFactory(exp_month=11, exp_year=2026, is_default=False)  # not the card that is charged
    PaymentMethodFactory(exp_month=11, exp_year=2026, is_active=False)
    PaymentMethodFactory(exp_month=None, exp_year=None)

    with django_capture_on_commit_callbacks(execute=True):
        report = notifications.card_expiry_notices_send(as_of=today)
    assert (report.cards, report.queued, report.already_sent) == (2, 2, 0)
    keys = set(OutboundEmail.objects.values_list("idempotency_key", flat=True))
    assert keys == {f"card-expiring:{this_month.pk}:2026-11", f"card-expiring:{next_month.pk}:2026-12"}

    english = next(m for m in mail.outbox if m.to == ["billing@kunde.example"])
    assert english.cc == ["ap@kunde.example", "cfo@kunde.example"]
    assert english.subject == "Your card visa •••• 1111 expires on Nov 30, 2026"
    assert "https://billing.example/portal/payment-methods/" in english.body
    german = next(m for m in mail.outbox if m is not english)
    assert "läuft Ende 12/2026 ab (31.12.2026)" in german.body

    # the next day, and again the same day: nothing new
    with django_capture_on_commit_callbacks(execute=True):
        again = notifications.card_expiry_notices_send(as_of=today + dt.timedelta(days=1))
        notifications.card_expiry_notices_send(as_of=today + dt.timedelta(days=1))
    assert (again.cards, again.queued, again.already_sent) == (2, 0, 2)
    assert len(mail.outbox) == 2 and OutboundEmail.objects.count() == 2

    # a month later the December card is still in range (this month now) but was told: nothing; the
    # January card comes into range and is told once
    with django_capture_on_commit_callbacks(execute=True):
        december = notifications.card_expiry_notices_send(as_of=dt.date(2026, 12, 1))
    assert (december.cards, december.queued, december.already_sent) == (2, 1, 1)
    assert len(mail.outbox) == 3


def test_card_expiry_command(db, django_capture_on_commit_callbacks):
    method = PaymentMethodFactory(exp_month=1, exp_year=2027)
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("card_expiry_notices", "--as-of", "2026-12-15", stdout=out)
    assert "1 default card(s) expiring this month or next, 1 e-mail(s) queued, 0 already sent" in out.getvalue()
    out = StringIO()
    call_command("card_expiry_notices", "--as-of", "2026-12-16", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {
        "as_of": "2026-12-16",
        "cards": 1,
        "queued": 0,
        "already_sent": 1,
        "errors": [],
    }
    assert OutboundEmail.objects.get().idempotency_key == f"card-expiring:{method.pk}:2027-01"
    assert len(mail.outbox) == 1


# --- every language has all three parts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "language", "phrase"),
    [
        ("credit_note", "fr", "veuillez trouver ci-joint l'avoir CN-1"),
        ("credit_note", "es", "adjuntamos la factura rectificativa CN-1"),
        ("payments/payment_receipt", "fr", "nous avons reçu votre paiement de 90,00 €"),
        ("payments/payment_receipt", "es", "hemos recibido su pago de 90,00 €"),
        ("payments/refund", "fr", "nous vous avons remboursé 90,00 €"),
        ("payments/refund", "es", "le hemos reembolsado 90,00 €"),
        ("payments/card_expiring", "fr", "expire fin 12/2026"),
        ("payments/card_expiring", "es", "caduca a finales de 12/2026"),
    ],
)
def test_french_and_spanish_templates_have_subject_text_and_html(template, language, phrase):
    from notifications.services import email_render

    context = {
        "customer_name": "Client",
        "number": "CN-1",
        "invoice_number": "INV-1",
        "total": "90,00 €",
        "amount": "90,00 €",
        "card": "visa •••• 4242",
        "expiry": "12/2026",
        "expires_on": "31/12/2026",
        "seller_name": "Cadence Demo GmbH",
    }
    subject, text, html = email_render(template=template, context=context, language=language)
    assert subject and phrase in text and f'lang="{language}"' in html
    english_subject, _, _ = email_render(template=template, context=context, language="en")
    assert subject != english_subject
