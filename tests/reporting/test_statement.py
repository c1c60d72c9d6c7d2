"""Statement of account (issue 18): opening + invoices − payments − credit notes = closing, to the cent; the
closing balance equals what is due less the credit; the PDF says the same; the e-mail is queued once."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal as D

import pytest
import time_machine
from django.urls import reverse
from pypdf import PdfReader

from invoicing.services import credit_note_issue, invoice_void
from notifications.models import OutboundEmail
from payments.selectors import customer_balances
from payments.services import customer_credit_adjust
from reporting.statements import statement_email_attachment, statement_of_account, statement_pdf
from tests.factories.customers import CustomerFactory, StaffUserFactory
from tests.factories.invoicing import InvoiceFactory, NumberSeriesFactory, TaxRateFactory
from tests.factories.payments import record_payment

pytestmark = pytest.mark.django_db
FEB_1, FEB_28 = dt.date(2026, 2, 1), dt.date(2026, 2, 28)


def _invoice(customer, amount, day):
    return InvoiceFactory(
        customer=customer, lines=[{"description": "Service", "unit_amount": D(amount)}], finalized=day
    )


@pytest.fixture
def account(db):
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=D("19"))
    customer = CustomerFactory(exempt=True, name="Acme GmbH")
    january = _invoice(customer, "100.00", dt.date(2026, 1, 10))
    record_payment(customer=customer, amount="60.00", received_on=dt.date(2026, 1, 20))
    february = _invoice(customer, "200.00", dt.date(2026, 2, 5))
    voided = _invoice(customer, "999.00", dt.date(2026, 2, 6))
    invoice_void(invoice=voided, reason="wrong customer")
    credit_note_issue(invoice=february, reason="discount", amount=D("50.00"), issue_date=dt.date(2026, 2, 10))
    record_payment(customer=customer, amount="150.00", received_on=dt.date(2026, 2, 15))
    with time_machine.travel(dt.datetime(2026, 2, 20, 12, tzinfo=dt.UTC)):
        customer_credit_adjust(customer=customer, amount=D("10.00"), currency="EUR", reason="late delivery")
    with time_machine.travel(dt.datetime(2026, 3, 3, 12, tzinfo=dt.UTC)):
        record_payment(customer=customer, amount="5.00", received_on=dt.date(2026, 3, 3))
    return customer, january, february


def test_opening_plus_invoices_minus_payments_minus_credit_notes_is_the_closing_balance(account):
    customer, _, february = account
    statement = statement_of_account(customer=customer, start=FEB_1, end=FEB_28)
    assert statement.opening == D("40.00")  # 100.00 invoiced − 60.00 paid in January
    assert statement.invoices == D("200.00")  # the void invoice never counts
    assert statement.payments == D("150.00")
    assert statement.credit_notes == D("60.00")  # the 50.00 credit note and the 10.00 credit added
    assert statement.closing == D("30.00") == statement.opening + D("200.00") - D("150.00") - D("60.00")
    assert [(e.kind, e.reference, e.amount) for e in statement.entries] == [
        ("invoice", february.number, D("200.00")),
        ("credit_note", statement.entries[1].reference, D("-50.00")),
        ("payment", statement.entries[2].reference, D("-150.00")),
        ("adjustment", statement.entries[3].reference, D("-10.00")),
    ]
    # the statement up to today is the account: due − credit
    to_date = statement_of_account(customer=customer, start=FEB_1, end=dt.date.today())
    balance = customer_balances(customer=customer, as_of=dt.date.today())["EUR"]
    assert to_date.closing == balance.due - balance.credit == D("25.00")
    assert to_date.opening == statement.opening


def test_the_pdf_shows_the_same_figures(account):
    customer, _, february = account
    statement = statement_of_account(customer=customer, start=FEB_1, end=FEB_28)
    pages = PdfReader(io.BytesIO(statement_pdf(statement))).pages
    text = " ".join(" ".join(page.extract_text() for page in pages).split())
    for expected in (
        "Statement of account",
        "Acme GmbH",
        "Opening balance",
        "€40.00",
        "€200.00",
        "€150.00",
        "€50.00",
        "€10.00",
        "Closing balance",
        "€30.00",
        february.number,
    ):
        assert expected in text, expected
    assert "999" not in text


def test_staff_email_the_statement_once_per_request_and_download_it(client, account):
    customer, _, _ = account
    client.force_login(StaffUserFactory(group="Billing clerk"))
    url = reverse("admin:customers_customer_statement", args=[customer.pk])
    page = client.get(url)
    assert page.status_code == 200
    data = {"start": "2026-02-01", "end": "2026-02-28", "currency": "EUR", "request_key": "k1"}
    shown = client.post(url, {**data, "_show": "1"}).content.decode()
    assert "€30.00" in shown and "€40.00" in shown
    pdf = client.post(url, {**data, "_download": "1"})
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    client.post(url, {**data, "_send": "1"})
    response = client.post(url, {**data, "_send": "1"})  # double submit
    email = OutboundEmail.objects.get(kind="statement")
    assert email.to_emails == [customer.email] and "Feb 1, 2026" in email.subject
    assert "€30.00" in email.body_text
    [(filename, content, mimetype)] = statement_email_attachment(email)
    assert mimetype == "application/pdf"
    assert filename.endswith(".pdf") and content.startswith(b"%PDF")
    assert response.url == reverse("admin:customers_customer_change", args=[customer.pk])
