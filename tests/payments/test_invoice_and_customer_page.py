"""The payment side of the invoice and customer pages (issue 18): the allocation previewed is what is saved,
credit applied, card charged, credit adjusted, payments on account; roles; bounded queries on the customer page."""

from __future__ import annotations

import re
from decimal import Decimal as D

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.messages import get_messages
from django.urls import reverse

from payments.models import CreditLedgerEntry, Payment, PaymentAllocation
from payments.selectors import customer_balances, customer_credit_balance
from payments.services import customer_credit_adjust, payment_allocation_preview
from tests.factories.customers import StaffUserFactory
from tests.factories.payments import PaymentMethodFactory, record_payment
from tests.payments.conftest import ISSUE, make_invoice

pytestmark = pytest.mark.django_db
CLERK, AUDITOR = "Billing clerk", "Auditor (read-only)"


def _login(client, role=CLERK):
    user = StaffUserFactory(group=role)
    client.force_login(user)
    return user


def _messages(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def _payment_data(amount, **extra):
    return {
        "amount": amount,
        "currency": "EUR",
        "received_on": "2026-03-10",
        "method": "bank_transfer",
        "reference": "SEPA 42",
        "notes": "",
        **extra,
    }


def _preview_then_record(client, url, amount):
    preview = client.post(url, _payment_data(amount, _preview="1"))
    assert preview.status_code == 200
    previewed = preview.context["hidden"]["previewed"]
    assert previewed
    return preview, client.post(url, _payment_data(amount, _confirm="1", previewed=previewed))


@pytest.mark.parametrize(
    ("amount", "to_invoice", "to_credit"), [("40.00", "40.00", "0.00"), ("130.00", "100.00", "30.00")]
)
def test_record_payment_on_the_invoice_page_saves_exactly_the_previewed_allocation(
    client, customer, amount, to_invoice, to_credit
):
    invoice = make_invoice(customer, "100.00")
    clerk = _login(client)
    url = reverse("admin:invoicing_invoice_record_payment", args=[invoice.pk])
    assert client.get(url).context["form"]["amount"].value() == D("100.00")  # the amount due, pre-filled
    preview, response = _preview_then_record(client, url, amount)
    shown = preview.context["preview"]["rows"]
    assert shown[0][:4] == [invoice.number, "Mar 16, 2026", "€100.00", f"€{to_invoice}"]
    assert shown[-1][3] == f"€{to_credit}"
    assert response.status_code == 302
    payment = Payment.objects.get(customer=customer)
    assert (payment.amount, payment.created_by) == (D(amount), clerk)
    assert list(PaymentAllocation.objects.filter(payment=payment).values_list("invoice_id", "amount")) == [
        (invoice.pk, D(to_invoice))
    ]
    assert customer_credit_balance(customer=customer, currency="EUR") == D(to_credit)
    invoice.refresh_from_db()
    assert invoice.amount_due == D("100.00") - D(to_invoice)
    assert f"€{to_invoice} to {invoice.number}" in _messages(response)[-1]
    assert LogEntry.objects.filter(object_id=str(invoice.pk), change_message__contains=f"€{amount}").exists()


def test_recording_without_a_preview_of_the_same_values_records_nothing(client, customer):
    invoice = make_invoice(customer, "100.00")
    _login(client)
    url = reverse("admin:invoicing_invoice_record_payment", args=[invoice.pk])
    response = client.post(url, _payment_data("40.00", _confirm="1", previewed="99.00|EUR|2026-03-10|bank_transfer"))
    assert response.status_code == 200 and response.context["preview"] is not None
    assert not Payment.objects.exists()


def test_payment_on_account_from_the_customer_page_settles_oldest_first_as_previewed(client, customer):
    older = make_invoice(customer, "50.00")
    newer = make_invoice(customer, "80.00", issue_date=ISSUE.replace(day=20))
    expected = payment_allocation_preview(customer=customer, amount=D("100.00"))
    assert [(i.pk, a) for i, a in expected.allocations] == [(older.pk, D("50.00")), (newer.pk, D("50.00"))]
    _login(client)
    url = reverse("admin:customers_customer_record_payment", args=[customer.pk])
    preview, response = _preview_then_record(client, url, "100.00")
    assert [row[3] for row in preview.context["preview"]["rows"]] == ["€50.00", "€50.00", "€0.00"]
    payment = Payment.objects.get()
    assert list(payment.allocations.order_by("pk").values_list("invoice_id", "amount")) == [
        (older.pk, D("50.00")),
        (newer.pk, D("50.00")),
    ]
    assert response.url == reverse("admin:customers_customer_change", args=[customer.pk])


def test_apply_customer_credit_button(client, customer):
    invoice = make_invoice(customer, "100.00")
    customer_credit_adjust(customer=customer, amount=D("30.00"), currency="EUR", reason="goodwill")
    _login(client)
    change = client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert 'data-action="apply_credit"' in change
    url = reverse("admin:invoicing_invoice_apply_credit", args=[invoice.pk])
    assert "€30.00" in client.get(url).content.decode()
    response = client.post(url, {"_confirm": "1"})
    invoice.refresh_from_db()
    assert invoice.amount_due == D("70.00")
    assert customer_credit_balance(customer=customer, currency="EUR") == 0
    assert _messages(response)[-1] == f"Applied €30.00 of customer credit to {invoice.number}: amount due now €70.00."


def test_charge_saved_card_now(client, customer):
    invoice = make_invoice(customer, "100.00")
    card = PaymentMethodFactory(customer=customer)
    _login(client)
    url = reverse("admin:invoicing_invoice_charge_now", args=[invoice.pk])
    assert "Charge €100.00 now" in client.get(url).content.decode()
    response = client.post(url, {"_confirm": "1"})
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    assert _messages(response)[-1].startswith(f"Charged €100.00 to {card}")


def test_a_declined_card_is_reported_and_leaves_the_invoice_open(client, customer):
    invoice = make_invoice(customer, "100.00")
    PaymentMethodFactory(customer=customer, declined=True)
    _login(client)
    response = client.post(reverse("admin:invoicing_invoice_charge_now", args=[invoice.pk]), {"_confirm": "1"})
    invoice.refresh_from_db()
    assert invoice.status == "open" and invoice.amount_due == D("100.00")
    assert "The charge of €100.00" in _messages(response)[-1] and "failed" in _messages(response)[-1]


def test_adjust_credit_from_the_customer_page(client, customer):
    clerk = _login(client)
    url = reverse("admin:customers_customer_adjust_credit", args=[customer.pk])
    response = client.post(url, {"amount": "25.00", "currency": "EUR", "reason": "late delivery"})
    assert response.status_code == 302
    entry = CreditLedgerEntry.objects.get(customer=customer)
    assert (entry.amount, entry.reason, entry.created_by) == (D("25.00"), "late delivery", clerk)
    assert "credit balance now €25.00" in _messages(response)[-1]
    too_much = client.post(url, {"amount": "-40.00", "currency": "EUR", "reason": "oops"})
    assert too_much.status_code == 200 and "cannot remove" in too_much.content.decode()
    assert customer_credit_balance(customer=customer, currency="EUR") == D("25.00")


def test_an_auditor_gets_403_on_the_payment_screens(client, customer):
    invoice = make_invoice(customer, "100.00")
    _login(client, AUDITOR)
    for url in (
        reverse("admin:invoicing_invoice_record_payment", args=[invoice.pk]),
        reverse("admin:invoicing_invoice_apply_credit", args=[invoice.pk]),
        reverse("admin:invoicing_invoice_charge_now", args=[invoice.pk]),
        reverse("admin:customers_customer_record_payment", args=[customer.pk]),
        reverse("admin:customers_customer_adjust_credit", args=[customer.pk]),
        reverse("admin:customers_customer_statement", args=[customer.pk]),
        reverse("admin:customers_customer_invite_portal", args=[customer.pk]),
    ):
        assert client.get(url).status_code == 403, url
        assert client.post(url, _payment_data("10.00", _confirm="1", reason="x")).status_code == 403, url
    assert not Payment.objects.exists() and not CreditLedgerEntry.objects.exists()
    page = client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    # no button that changes anything; the test clock ("Simulate") writes nothing and is a view
    assert re.findall(r'data-action="([a-z_]+)"', page) == ["simulate"]


def test_customer_page_shows_the_account_with_a_bounded_number_of_queries(
    client, customer, django_assert_max_num_queries
):
    _login(client)
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    make_invoice(customer, "100.00")
    with django_assert_max_num_queries(60) as few:
        assert client.get(url).status_code == 200
    for day in range(1, 26):
        make_invoice(customer, "10.00", issue_date=ISSUE.replace(day=day))
    record_payment(customer=customer, amount=D("35.00"))
    customer_credit_adjust(customer=customer, amount=D("5.00"), currency="EUR", reason="goodwill")
    with django_assert_max_num_queries(len(few.captured_queries)) as many:
        response = client.get(url)
    html = response.content.decode()
    assert len(many.captured_queries) <= len(few.captured_queries)
    balance = customer_balances(customer=customer, as_of=ISSUE)["EUR"]
    assert balance.due == D("100.00") + 25 * D("10.00") - D("35.00")
    assert "See all open invoices" in html and "€315.00" in html and "€5.00" in html
    assert {
        "new_subscription",
        "new_invoice",
        "bill_now",
        "record_payment",
        "adjust_credit",
        "statement",
        "invite_portal",
    } <= set(re.findall(r'data-action="([a-z_]+)"', html))
    assert f"{reverse('admin:subscriptions_subscription_add')}?customer={customer.pk}" in html
