"""/api/v1/invoices, credit_notes, payments, domain_events: exact amounts through the admin's services; bad input
is problem JSON naming the field and writes nothing; lists have bounded queries."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core import mail
from pypdf import PdfReader

from core.models import DomainEvent
from invoicing.einvoice import validation
from invoicing.models import CreditNote, Invoice
from payments.models import Payment, Refund
from tests.factories import CustomerFactory, InvoiceFactory, PaymentMethodFactory, record_payment

pytestmark = pytest.mark.django_db
D = dt.date


@pytest.fixture
def issued(series, vat_de):
    return InvoiceFactory(
        lines=[{"description": "Consulting", "unit_amount": Decimal("100.00")}], finalized=D(2026, 3, 2)
    )


def test_create_draft_then_finalize(api, series, vat_de):
    customer = CustomerFactory()
    response = api.post(
        "/api/v1/invoices",
        {
            "customer": customer.pk,
            "lines": [
                {"description": "Workshop", "quantity": "3", "unit_amount": "3.335"},
                {"description": "Travel", "unit_amount": "50.00"},
            ],
        },
    )
    assert response.status_code == 201, response.content
    draft = response.json()
    assert draft["status"] == "draft" and draft["number"] == ""
    assert [line["amount"] for line in draft["lines"]] == ["10.01", "50.00"]
    response = api.post(f"/api/v1/invoices/{draft['id']}/finalize", {"issue_date": "2026-03-02"})
    assert response.status_code == 200, response.content
    issued = response.json()
    assert issued["status"] == "open" and issued["number"] and issued["issue_date"] == "2026-03-02"
    assert issued["total"] == "71.41"  # 10.01 + 1.90 + 50.00 + 9.50
    assert issued["due_date"] == "2026-03-16"
    again = api.post(f"/api/v1/invoices/{draft['id']}/finalize", {})
    assert again.status_code == 409 and again.json()["code"] == "invoice_state_error"


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ([{"description": "x", "unit_amount": 12.5}], None),  # a JSON number is read exactly: accepted
        ([{"description": "x", "unit_amount": "twelve"}], "lines.0.unit_amount"),
        ([{"description": "x", "unit_amount": "1", "quantity": "-1"}], "lines.0.quantity"),
        ([{"description": "x", "unit_amount": "1", "discount_amount": "0.001"}], "lines.0.discount_amount"),
        ([{"unit_amount": "1"}], "lines.0.description"),
        ([{"description": "x", "unit_amount": "1e30"}], "lines.0.unit_amount"),
    ],
)
def test_draft_line_input(api, series, vat_de, lines, field):
    response = api.post("/api/v1/invoices", {"customer": CustomerFactory().pk, "lines": lines})
    if field is None:
        assert response.status_code == 201, response.content
        assert response.json()["lines"][0]["unit_amount"] == "12.50"
        return
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not Invoice.objects.exists()


def test_draft_in_a_currency_not_billed_is_refused(api, series):
    response = api.post(
        "/api/v1/invoices",
        {"customer": CustomerFactory().pk, "currency": "XYZ", "lines": [{"description": "x", "unit_amount": "1"}]},
    )
    assert response.status_code == 400 and response.json()["field"] == "currency"
    assert not Invoice.objects.exists()


def test_list_filters_and_bounded_queries(api, issued, series, vat_de, django_assert_max_num_queries):
    other = InvoiceFactory(lines=[{"description": "x", "unit_amount": Decimal("5.00")}] * 3)
    for _ in range(5):
        InvoiceFactory(customer=issued.customer, lines=[{"description": "y", "unit_amount": Decimal("1.00")}] * 3)
    with django_assert_max_num_queries(6):
        page = api.get("/api/v1/invoices", {"customer": issued.customer_id}).json()
    assert len(page["data"]) == 6 and other.pk not in [row["id"] for row in page["data"]]
    assert [row["id"] for row in api.get("/api/v1/invoices", {"status": "open"}).json()["data"]] == [issued.pk]
    assert [row["id"] for row in api.get("/api/v1/invoices", {"number": issued.number}).json()["data"]] == [issued.pk]
    dated = api.get("/api/v1/invoices", {"issued_from": "2026-03-02", "issued_to": "2026-03-02"}).json()["data"]
    assert [row["id"] for row in dated] == [issued.pk]
    bad = api.get("/api/v1/invoices", {"issued_from": "2026-02-30"})
    assert bad.status_code == 400 and bad.json()["field"] == "issued_from"
    bad = api.get("/api/v1/invoices", {"status": "lost"})
    assert bad.status_code == 400 and bad.json()["field"] == "status"


def test_einvoice(reader, series, vat_de):
    customer = CustomerFactory(einvoice_format="xrechnung_cii", buyer_reference="04011000-12345-34")
    invoice = InvoiceFactory(
        customer=customer,
        lines=[{"description": "Service", "unit_amount": Decimal("100.00")}],
        finalized=dt.date(2026, 3, 2),
    )
    response = reader.get(f"/api/v1/invoices/{invoice.pk}/einvoice")
    assert response.status_code == 200 and response["Content-Type"] == "application/xml"
    assert validation.validate(response.content, xrechnung=True).errors == ()
    assert f"{invoice.number}-xrechnung-cii.xml" in response["Content-Disposition"]
    plain = InvoiceFactory(
        lines=[{"description": "Service", "unit_amount": Decimal("10.00")}], finalized=dt.date(2026, 3, 2)
    )
    missing = reader.get(f"/api/v1/invoices/{plain.pk}/einvoice")
    assert missing.status_code == 404 and missing["Content-Type"].startswith("application/problem+json")


def test_pdf(api, issued):
    response = api.get(f"/api/v1/invoices/{issued.pk}/pdf")
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert issued.number in text and "119" in text


def test_void(api, issued):
    response = api.post(f"/api/v1/invoices/{issued.pk}/void", {"reason": "sent twice"})
    assert response.status_code == 200 and response.json()["status"] == "void"
    assert response.json()["number"] == issued.number


def test_void_with_payment_is_409(api, issued):
    record_payment(customer=issued.customer, amount="10.00")
    response = api.post(f"/api/v1/invoices/{issued.pk}/void", {})
    assert response.status_code == 409
    assert Invoice.objects.get(pk=issued.pk).status == "open"


def test_send_queues_the_invoice_email(api, issued, django_capture_on_commit_callbacks):
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/invoices/{issued.pk}/send", {"resend": True})
    assert response.status_code == 200, response.content
    assert any(issued.number in message.subject for message in mail.outbox)


def test_pay_with_saved_card(api, issued):
    PaymentMethodFactory(customer=issued.customer)
    response = api.post(f"/api/v1/invoices/{issued.pk}/pay", {})
    assert response.status_code == 200, response.content
    attempt = response.json()
    assert attempt["object"] == "payment_attempt" and attempt["status"] == "succeeded"
    assert attempt["amount"] == "119.00"
    assert Invoice.objects.get(pk=issued.pk).status == "paid"
    again = api.post(f"/api/v1/invoices/{issued.pk}/pay", {})
    assert again.status_code == 409 and again.json()["code"] == "nothing_to_charge"


def test_pay_declined_card_reports_the_decline(api, issued):
    PaymentMethodFactory(customer=issued.customer, declined=True)
    attempt = api.post(f"/api/v1/invoices/{issued.pk}/pay", {}).json()
    assert attempt["status"] == "failed" and attempt["decline_code"]
    assert Invoice.objects.get(pk=issued.pk).status == "open"


def test_pay_with_another_customers_method_is_refused(api, issued):
    stranger = PaymentMethodFactory()
    response = api.post(f"/api/v1/invoices/{issued.pk}/pay", {"payment_method": stranger.pk})
    assert response.status_code == 422 and response.json()["field"] == "payment_method"


def test_credit_note_for_an_amount_and_for_a_line(api, issued):
    response = api.post("/api/v1/credit_notes", {"invoice": issued.pk, "reason": "goodwill", "amount": "11.90"})
    assert response.status_code == 201, response.content
    note = response.json()
    assert note["total"] == "11.90" and note["net_total"] == "10.00" and note["amount_applied"] == "11.90"
    assert api.get(f"/api/v1/invoices/{issued.pk}").json()["amount_due"] == "107.10"
    line_id = issued.lines.get().pk
    response = api.post(
        "/api/v1/credit_notes",
        {"invoice": issued.pk, "reason": "half", "lines": [{"invoice_line": line_id, "quantity": "0.5"}]},
    )
    assert response.status_code == 201, response.content
    assert response.json()["total"] == "59.50"
    pdf = api.get(f"/api/v1/credit_notes/{note['id']}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"reason": "x", "amount": "-5"}, 400, "amount"),
        ({"reason": "x", "amount": "1.001"}, 400, "amount"),
        ({"reason": "", "amount": "5"}, 400, "reason"),
        ({"reason": "x", "amount": "500.00"}, 422, None),
        ({"reason": "x", "lines": [{"invoice_line": 999999}]}, 400, "lines.0.invoice_line"),
    ],
)
def test_credit_note_bad_input(api, issued, body, status, field):
    response = api.post("/api/v1/credit_notes", {"invoice": issued.pk, **body})
    assert response.status_code == status, response.content
    assert response.json().get("field") == field
    assert not CreditNote.objects.exists()


def test_record_payment_settles_and_refund(api, issued):
    response = api.post(
        "/api/v1/payments",
        {"customer": issued.customer_id, "amount": "150.00", "received_on": "2026-03-10", "reference": "SEPA 123"},
    )
    assert response.status_code == 201, response.content
    payment = response.json()
    assert payment["allocations"] == [{"invoice": issued.pk, "amount": "119.00", "amount_refunded": "0.00"}]
    balance = api.get(f"/api/v1/customers/{issued.customer_id}/balance").json()["balances"][0]
    assert balance["credit"] == "31.00" and balance["amount_due"] == "0.00"
    response = api.post(f"/api/v1/payments/{payment['id']}/refund", {"amount": "150.00", "reason": "returned"})
    assert response.status_code == 201, response.content
    assert response.json()["amount"] == "150.00" and response.json()["object"] == "refund"
    assert Invoice.objects.get(pk=issued.pk).status == "open"
    again = api.post(f"/api/v1/payments/{payment['id']}/refund", {"reason": "again"})
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": "0"}, "amount"),
        ({"amount": "-10.00"}, "amount"),
        ({"amount": "10.005"}, "amount"),
        ({"amount": "10", "currency": "XYZ"}, "currency"),
        ({"amount": "10", "invoice": 999999}, "invoice"),
        ({"amount": "10", "allocations": [{"invoice": 999999, "amount": "1"}]}, "allocations.0.invoice"),
        ({"amount": "10", "received_on": "yesterday"}, "received_on"),
        ({"amount": True}, "amount"),
    ],
)
def test_payment_bad_input(api, issued, body, field):
    response = api.post("/api/v1/payments", {"customer": issued.customer_id, **body})
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not Payment.objects.exists()


def test_payment_in_another_currency_than_the_invoice_named_is_refused(api, issued):
    response = api.post(
        "/api/v1/payments", {"customer": issued.customer_id, "amount": "10.00", "currency": "USD", "invoice": issued.pk}
    )
    assert response.status_code == 422, response.content
    assert not Payment.objects.exists() and not Refund.objects.exists()


def test_domain_events(api, issued):
    response = api.get("/api/v1/domain_events", {"type": "invoice.issued"})
    assert response.status_code == 200
    [event] = response.json()["data"]
    assert event["subject_type"] == "invoice" and event["subject_id"] == issued.pk
    assert event["payload"]["invoice_id"] == issued.pk
    assert api.get(f"/api/v1/domain_events/{event['id']}").json()["type"] == "invoice.issued"
    assert DomainEvent.objects.filter(type="invoice.issued").count() == 1


def test_read_key_reads_everything_and_writes_nothing(reader, issued):
    for path in (
        "/api/v1/invoices",
        f"/api/v1/invoices/{issued.pk}",
        "/api/v1/credit_notes",
        "/api/v1/payments",
        "/api/v1/domain_events",
        "/api/v1/products",
        "/api/v1/prices",
        "/api/v1/coupons",
        "/api/v1/subscriptions",
        "/api/v1/customers",
    ):
        assert reader.get(path).status_code == 200, path
    for path in (
        "/api/v1/invoices",
        f"/api/v1/invoices/{issued.pk}/void",
        f"/api/v1/invoices/{issued.pk}/pay",
        f"/api/v1/invoices/{issued.pk}/send",
        "/api/v1/credit_notes",
        "/api/v1/payments",
        "/api/v1/products",
        "/api/v1/prices",
        "/api/v1/coupons",
        "/api/v1/subscriptions",
    ):
        response = reader.post(path, {})
        assert response.status_code == 403, path
        assert response.json()["code"] == "insufficient_scope"
    assert Invoice.objects.get(pk=issued.pk).status == "open"
