from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from invoicing.models import InvoiceStatus
from payments.models import BankTransactionStatus, CreditLedgerEntry, Payment, PaymentStatus
from tests.factories.payments import BankTransactionFactory, PaymentMethodFactory, record_payment
from tests.payments.conftest import make_invoice

pytestmark = pytest.mark.django_db


def test_record_a_payment_with_allocations_on_one_screen(admin_client, customer):
    a = make_invoice(customer, "30.00")
    b = make_invoice(customer, "30.00")
    url = reverse("admin:payments_payment_add")
    assert admin_client.get(url).status_code == 200
    data = {
        "customer": customer.pk,
        "amount": "50.00",
        "currency": "",
        "method": "cash",
        "received_on": "2026-03-10",
        "reference": "counter",
        "allocations-TOTAL_FORMS": "2",
        "allocations-INITIAL_FORMS": "0",
        "allocations-0-invoice": b.number,
        "allocations-0-amount": "30.00",
        "allocations-1-invoice": a.number,
        "allocations-1-amount": "31.00",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200 and "more than its amount due" in response.content.decode()
    data["allocations-1-amount"] = "20.00"
    response = admin_client.post(url, data)
    assert response.status_code == 302
    payment = Payment.objects.get()
    a.refresh_from_db()
    b.refresh_from_db()
    assert b.status == InvoiceStatus.PAID and a.amount_due == Decimal("10.00")
    assert admin_client.get(reverse("admin:payments_payment_change", args=[payment.pk])).status_code == 200


def _manual_payment(customer, **extra) -> dict:
    return {
        "customer": customer.pk,
        "amount": "30.00",
        "currency": "",
        "method": "bank_transfer",
        "received_on": "2026-03-10",
        "reference": "INV-2026-000001",
        "allocations-TOTAL_FORMS": "0",
        "allocations-INITIAL_FORMS": "0",
        **extra,
    }


def test_the_same_manual_payment_submitted_twice_is_recorded_once_unless_confirmed(admin_client, customer):
    make_invoice(customer, "60.00")
    url = reverse("admin:payments_payment_add")
    assert admin_client.post(url, _manual_payment(customer)).status_code == 302
    again = admin_client.post(url, _manual_payment(customer))  # a double click, or a second clerk
    assert again.status_code == 200
    assert "with the same customer, amount, date, method and reference was recorded" in again.content.decode()
    assert Payment.objects.count() == 1
    # another amount or reference is another payment
    assert admin_client.post(url, _manual_payment(customer, reference="second instalment")).status_code == 302
    assert Payment.objects.count() == 2
    # the same money really came in twice: staff say so
    assert admin_client.post(url, _manual_payment(customer, record_again="on")).status_code == 302
    assert Payment.objects.count() == 3
    assert sum(p.amount for p in Payment.objects.all()) == Decimal("90.00")


def test_refund_screen_and_action(admin_client, customer):
    payment = record_payment(customer=customer, amount="40.00")
    url = reverse("admin:payments_payment_refund", args=[payment.pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"amount": "10.00", "reason": "goodwill"}).status_code == 302
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.PARTIALLY_REFUNDED
    changelist = reverse("admin:payments_payment_changelist")
    admin_client.post(changelist, {"action": "refund_in_full", "_selected_action": [payment.pk]})
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED


def test_reconciliation_queue_assign_and_ignore(admin_client, customer):
    invoice = make_invoice(customer, "100.00")
    queued = BankTransactionFactory(amount=Decimal("100.00"))
    other = BankTransactionFactory()
    changelist = reverse("admin:payments_banktransaction_changelist")
    assert "assign" in admin_client.get(changelist + "?queue=open").content.decode()
    url = reverse("admin:payments_banktransaction_assign", args=[queued.pk])
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"customer": customer.pk, "invoice": invoice.number}).status_code == 302
    queued.refresh_from_db()
    invoice.refresh_from_db()
    assert queued.status == BankTransactionStatus.ASSIGNED and invoice.status == InvoiceStatus.PAID
    url = reverse("admin:payments_banktransaction_ignore", args=[other.pk])
    assert admin_client.post(url, {"note": "interest"}).status_code == 302
    other.refresh_from_db()
    assert other.status == BankTransactionStatus.IGNORED


def test_credit_ledger_filtered_by_customer_and_manual_adjustment(admin_client, customer):
    url = reverse("admin:payments_creditledgerentry_add")
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(
        url, {"customer": customer.pk, "amount": "7.50", "currency": "EUR", "reason": "goodwill"}
    )
    assert response.status_code == 302
    assert CreditLedgerEntry.objects.get().amount == Decimal("7.50")
    changelist = reverse("admin:payments_creditledgerentry_changelist")
    response = admin_client.get(f"{changelist}?customer__id__exact={customer.pk}")
    assert "Credit balance of" in response.content.decode() and "€7.50" in response.content.decode()


def test_changelists_render(admin_client, customer):
    PaymentMethodFactory(customer=customer)
    record_payment(customer=customer, amount="5.00")
    for name in (
        "payment",
        "paymentattempt",
        "paymentmethod",
        "refund",
        "webhookevent",
        "banktransaction",
        "bankstatement",
    ):
        assert admin_client.get(reverse(f"admin:payments_{name}_changelist")).status_code == 200
