"""The invoice page's buttons (issue 18): each one's outcome (states, amounts as money, e-mails queued once,
credit notes whole / lines / amount), who sees which button, 403 for the rest, the one-off invoice flow, and a
bounded number of queries on the page."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal as D

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from customers.portal import SESSION_LINK_KEY, SESSION_USER_KEY
from invoicing.models import CreditNote, Invoice, InvoiceEvent, InvoiceStatus
from notifications.models import OutboundEmail
from tests.factories.customers import CustomerFactory, StaffUserFactory
from tests.factories.invoicing import InvoiceFactory
from tests.factories.subscriptions import PriceFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)
ADMIN, CLERK, AUDITOR = "Billing admin", "Billing clerk", "Auditor (read-only)"


def _login(client, role):
    user = StaffUserFactory(group=role)
    client.force_login(user)
    return user


def _messages(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def _actions(html):
    return set(re.findall(r'data-action="([a-z_]+)"', html))


def _url(name, invoice):
    return reverse(f"admin:invoicing_invoice_{name}", args=[invoice.pk])


def _two_line_invoice(**kwargs):
    return InvoiceFactory(
        lines=[
            {"description": "Consulting", "unit_amount": D("100.00")},
            {"description": "Travel", "unit_amount": D("50.00")},
        ],
        **kwargs,
    )


def test_buttons_follow_the_role_and_the_state(client, series, vat_de):
    draft = InvoiceFactory()
    open_invoice = InvoiceFactory(finalized=ISSUE)
    _login(client, CLERK)
    assert _actions(client.get(_url("change", draft)).content.decode()) == {"finalize", "pdf"}
    assert _actions(client.get(_url("change", open_invoice)).content.decode()) == {
        "send_email",
        "record_payment",
        "credit_note",
        "pdf",
        "portal_preview",
    }
    _login(client, ADMIN)
    html = client.get(_url("change", open_invoice)).content.decode()
    assert {"void", "mark_uncollectible", "record_payment"} <= _actions(html)
    assert "Send e-mail" in html and "Record payment" in html and "Open as the customer sees it" in html


def test_an_auditor_sees_no_buttons_and_every_action_url_is_403(client, series, vat_de):
    draft = InvoiceFactory()
    invoice = InvoiceFactory(finalized=ISSUE)
    _login(client, AUDITOR)
    assert _actions(client.get(_url("change", invoice)).content.decode()) == set()
    for name, target in [
        ("finalize", draft),
        ("send_email", invoice),
        ("void", invoice),
        ("mark_uncollectible", invoice),
        ("credit_note", invoice),
        ("record_payment", invoice),
        ("apply_credit", invoice),
        ("charge_now", invoice),
    ]:
        assert client.get(_url(name, target)).status_code == 403, name
        assert client.post(_url(name, target), {"reason": "x", "amount": "1"}).status_code == 403, name
    draft.refresh_from_db()
    invoice.refresh_from_db()
    assert (draft.status, invoice.status) == ("draft", "open")
    assert client.get(_url("pdf", invoice)).status_code == 200  # reading stays possible
    assert client.get(_url("portal_preview", invoice)).status_code == 200


def test_finalize_button_numbers_the_draft_emails_it_once_and_is_audited(
    client, series, vat_de, django_capture_on_commit_callbacks
):
    draft = InvoiceFactory()
    clerk = _login(client, CLERK)
    page = client.get(_url("finalize", draft)).content.decode()
    assert "€119.00" in page and "Finalize invoice" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(_url("finalize", draft), {"_confirm": "1"})
    assert response.status_code == 302 and response.url == _url("change", draft)
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.OPEN and draft.number.startswith("INV-")
    assert InvoiceEvent.objects.get(invoice=draft, to_status="open").actor == clerk
    [message] = _messages(response)
    assert f"Finalized {draft.number}: total €119.00" in message
    assert LogEntry.objects.filter(object_id=str(draft.pk), user=clerk, change_message__contains="€119.00").exists()
    assert OutboundEmail.objects.filter(invoice=draft).count() == 1
    # a second POST (double click) changes nothing
    client.post(_url("finalize", draft), {"_confirm": "1"})
    assert OutboundEmail.objects.filter(invoice=draft).count() == 1


def test_send_then_resend_queue_one_email_per_request(client, series, vat_de):
    invoice = InvoiceFactory(finalized=ISSUE)  # finalized without the deliver phase: no e-mail yet
    _login(client, CLERK)
    page = client.get(_url("send_email", invoice))
    form = page.context["form"]
    assert form["mode"].value() == "first"
    data = {"request_key": form["request_key"].value(), "mode": "first", "_confirm": "1"}
    first = client.post(_url("send_email", invoice), data)
    client.post(_url("send_email", invoice), data)  # double submit
    assert list(OutboundEmail.objects.filter(invoice=invoice).values_list("idempotency_key", flat=True)) == [
        f"invoice:{invoice.pk}"
    ]
    assert "Queued the invoice e-mail" in _messages(first)[0] and "€119.00" in _messages(first)[0]
    resend = client.get(_url("send_email", invoice)).context["form"]
    assert resend["mode"].value() == "resend"
    assert "Resend e-mail" in client.get(_url("change", invoice)).content.decode()
    data = {"request_key": resend["request_key"].value(), "mode": "resend", "_confirm": "1"}
    client.post(_url("send_email", invoice), data)
    client.post(_url("send_email", invoice), data)
    assert sorted(OutboundEmail.objects.filter(invoice=invoice).values_list("kind", flat=True)) == [
        "invoice",
        "invoice_resend",
    ]


def test_void_and_mark_uncollectible_need_a_reason_and_record_it(client, series, vat_de):
    to_void, to_write_off = InvoiceFactory(finalized=ISSUE), InvoiceFactory(finalized=ISSUE)
    admin_user = _login(client, ADMIN)
    assert client.post(_url("void", to_void), {"reason": ""}).status_code == 200  # form error, nothing done
    response = client.post(_url("void", to_void), {"reason": "sent twice"})
    to_void.refresh_from_db()
    assert to_void.status == InvoiceStatus.VOID
    assert _messages(response) == [f"Voided {to_void.number}: €119.00 is no longer due."]
    event = InvoiceEvent.objects.get(invoice=to_void, to_status="void")
    assert (event.actor, event.reason) == (admin_user, "sent twice")
    response = client.post(_url("mark_uncollectible", to_write_off), {"reason": "insolvent"})
    to_write_off.refresh_from_db()
    assert to_write_off.status == InvoiceStatus.UNCOLLECTIBLE
    assert "€119.00 written off" in _messages(response)[-1]
    assert InvoiceEvent.objects.get(invoice=to_write_off, to_status="uncollectible").reason == "insolvent"
    # the clerk may do neither
    _login(client, CLERK)
    other = InvoiceFactory(finalized=ISSUE)
    assert client.post(_url("void", other), {"reason": "x"}).status_code == 403
    assert client.post(_url("mark_uncollectible", other), {"reason": "x"}).status_code == 403


@pytest.mark.parametrize(
    ("mode", "extra", "credited", "due_after"),
    [
        ("full", {}, D("178.50"), D("0.00")),
        ("lines", {"lines": "travel"}, D("59.50"), D("119.00")),
        ("amount", {"amount": "23.80"}, D("23.80"), D("154.70")),
    ],
)
def test_credit_note_for_the_whole_invoice_some_lines_or_an_amount(
    client, series, vat_de, mode, extra, credited, due_after
):
    invoice = _two_line_invoice(finalized=ISSUE)
    assert invoice.total == D("178.50")
    clerk = _login(client, CLERK)
    data = {"mode": mode, "reason": "goodwill", "memo": ""}
    if mode == "lines":
        data["lines"] = [invoice.lines.get(description="Travel").pk]
    if mode == "amount":
        data["amount"] = extra["amount"]
    preview = client.post(_url("credit_note", invoice), {**data, "_preview": "1"})
    assert preview.status_code == 200 and not CreditNote.objects.exists()
    shown = preview.context["preview"]
    # creating without a preview of the same values issues nothing
    client.post(_url("credit_note", invoice), {**data, "reason": "other", "_confirm": "1", "previewed": "x"})
    assert not CreditNote.objects.exists()
    response = client.post(
        _url("credit_note", invoice), {**data, "_confirm": "1", "previewed": preview.context["previewed"]}
    )
    assert response.status_code == 302
    note = CreditNote.objects.get(invoice=invoice)
    assert (shown["total"], shown["applied"]) == (f"€{credited:,}", f"€{credited:,}")
    assert note.number == "CN-2026-000001"  # the preview's rolled-back number left no gap
    invoice.refresh_from_db()
    assert (note.total, note.amount_applied, invoice.amount_due) == (credited, credited, due_after)
    assert note.issued_by == clerk
    text = f"€{credited:,}"
    assert any(text in message for message in _messages(response))
    assert LogEntry.objects.filter(object_id=str(invoice.pk), change_message__contains="goodwill").exists()


def test_open_as_the_customer_sees_it_is_a_staff_preview_without_customer_access(client, series, vat_de):
    invoice = InvoiceFactory(finalized=ISSUE, customer=CustomerFactory(language="de"))
    _login(client, CLERK)
    response = client.get(_url("portal_preview", invoice))
    html = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert "Staff preview" in html and invoice.number in html and "119,00" in html  # German, as the customer reads it
    assert SESSION_USER_KEY not in client.session and SESSION_LINK_KEY not in client.session
    assert client.get(_url("portal_preview", InvoiceFactory())).status_code == 404  # drafts are never shown


def test_one_off_invoice_from_the_catalog_and_free_text_then_finalize(client, series, vat_de):
    customer = CustomerFactory(currency="EUR")
    price = PriceFactory(unit_amount=D("40.00"), pricing_model="flat")
    _login(client, CLERK)
    add_url = reverse("admin:invoicing_invoice_add")
    page = client.get(add_url, {"customer": customer.pk})
    form = page.context["adminform"].form
    assert form.initial["customer"] == str(customer.pk) and form.initial["billing_reason"] == "one_off"
    data = {
        "customer": customer.pk,
        "currency": "EUR",
        "billing_reason": "one_off",
        "memo": "",
        "footer": "",
        "lines-TOTAL_FORMS": "2",
        "lines-INITIAL_FORMS": "0",
        "lines-0-position": "1",
        "lines-0-kind": "one_off",
        "lines-0-price": price.pk,
        "lines-0-quantity": "2",
        "lines-0-discount_amount": "0",
        "lines-1-position": "2",
        "lines-1-kind": "one_off",
        "lines-1-description": "Setup work",
        "lines-1-quantity": "1",
        "lines-1-unit_amount": "10.00",
        "lines-1-discount_amount": "0",
        "_save": "Save",
    }
    response = client.post(add_url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    invoice = Invoice.objects.get(customer=customer)
    assert response.url == _url("change", invoice)
    lines = list(invoice.lines.order_by("position").values_list("description", "price_id", "amount"))
    assert lines == [(price.product.name, price.pk, D("80.00")), ("Setup work", None, D("10.00"))]
    assert invoice.total == D("107.10")  # 90.00 + 19 % VAT
    assert "total €107.10" in _messages(response)[0]
    client.post(_url("finalize", invoice), {"_confirm": "1"})
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.total == D("107.10")


def test_a_price_in_another_currency_is_a_line_error(client, series, vat_de):
    customer = CustomerFactory(currency="EUR")
    price = PriceFactory(unit_amount=D("40.00"), unit_amount_currency="USD")
    _login(client, CLERK)
    data = {
        "customer": customer.pk,
        "currency": "EUR",
        "billing_reason": "one_off",
        "lines-TOTAL_FORMS": "1",
        "lines-INITIAL_FORMS": "0",
        "lines-0-position": "1",
        "lines-0-kind": "one_off",
        "lines-0-price": price.pk,
        "lines-0-quantity": "1",
        "lines-0-discount_amount": "0",
    }
    response = client.post(reverse("admin:invoicing_invoice_add"), data)
    assert response.status_code == 200
    assert "is priced in USD, the invoice in EUR" in response.content.decode()
    assert not Invoice.objects.filter(customer=customer).exists()


def test_invoice_page_queries_do_not_grow_with_lines_and_emails(client, series, vat_de, django_assert_max_num_queries):
    small = InvoiceFactory(finalized=ISSUE)
    big = InvoiceFactory(
        lines=[{"description": f"Line {i}", "unit_amount": D("1.00")} for i in range(40)], finalized=ISSUE
    )
    _login(client, CLERK)
    for invoice in (small, big):
        with django_assert_max_num_queries(45):
            assert client.get(_url("change", invoice)).status_code == 200
