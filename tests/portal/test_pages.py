"""Portal pages: pay now, payment methods, billing details, subscriptions, language, and bounded queries."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from customers.models import PortalUser
from invoicing.models import Invoice, InvoiceStatus, NumberSeries
from payments.models import PaymentMethod
from payments.services import customer_credit_from_credit_note
from tests.factories import PriceFactory, SubscriptionFactory
from tests.portal.conftest import Account, signed_in_client

pytestmark = pytest.mark.django_db


def test_pay_now_with_a_sandbox_card_marks_the_invoice_paid(client_a: Client, account_a: Account) -> None:
    invoice = account_a.open_invoice
    response = client_a.post(reverse("portal:invoice_pay", args=[invoice.number]), {"method": "sandbox:pm_card_amex"})
    assert response["Location"] == reverse("portal:invoice_detail", args=[invoice.number])
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_due == 0
    page = client_a.get(response["Location"]).content.decode()
    assert "Your payment was successful" in page and 'data-testid="invoice-status">Paid<' in page
    default = PaymentMethod.objects.get(customer=account_a.customer, is_default=True)
    assert default.last4 == "8431" and default.token.startswith("pm_card_amex:")


def test_a_declined_card_shows_the_reason_and_leaves_the_invoice_open(client_a: Client, account_a: Account) -> None:
    invoice = account_a.open_invoice
    url = reverse("portal:invoice_pay", args=[invoice.number])
    response = client_a.post(url, {"method": "sandbox:pm_card_chargeDeclinedInsufficientFunds"}, follow=True)
    assert "insufficient funds" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN


def test_pay_with_a_saved_card(client_a: Client, account_a: Account) -> None:
    invoice = account_a.open_invoice
    client_a.post(
        reverse("portal:invoice_pay", args=[invoice.number]), {"method": f"saved:{account_a.payment_method.pk}"}
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_payment_methods_add_default_remove(client_a: Client, account_a: Account) -> None:
    client_a.post(reverse("portal:payment_methods"), {"card": "pm_card_mastercard"})
    methods = list(PaymentMethod.objects.filter(customer=account_a.customer, is_active=True).order_by("pk"))
    assert [m.last4 for m in methods] == ["4242", "4444"] and methods[1].is_default
    client_a.post(reverse("portal:payment_method_default", args=[methods[0].pk]))
    methods[0].refresh_from_db()
    assert methods[0].is_default
    client_a.post(reverse("portal:payment_method_remove", args=[methods[0].pk]))
    methods[0].refresh_from_db()
    methods[1].refresh_from_db()
    assert not methods[0].is_active and methods[1].is_default


def test_billing_details_are_validated_by_the_customer_rules(client_a: Client, account_a: Account) -> None:
    url = reverse("portal:billing_details")
    data = {"legal_name": "Alpha GmbH", "email": "ap@alpha.example", "country": "DE", "tax_id": "DE123"}
    response = client_a.post(url, data)
    assert response.status_code == 400 and "not a valid EU VAT number" in response.content.decode()
    response = client_a.post(url, {**data, "tax_id": "de 136 695 976", "city": "Köln"})
    assert response.status_code == 302
    account_a.customer.refresh_from_db()
    assert (account_a.customer.tax_id, account_a.customer.city) == ("DE136695976", "Köln")
    response = client_a.post(url, {**data, "email": "not-an-email"})
    assert response.status_code == 400


def test_cancel_at_period_end(client_a: Client, account_a: Account, settings: Any) -> None:
    subscription = SubscriptionFactory(customer=account_a.customer, price=PriceFactory())
    page = client_a.get(reverse("portal:subscriptions")).content.decode()
    assert "Cancel at the end of the period" in page
    settings.PORTAL_ALLOW_CANCEL = False
    assert "Cancel at the end" not in client_a.get(reverse("portal:subscriptions")).content.decode()
    assert client_a.post(reverse("portal:subscription_cancel", args=[subscription.pk])).status_code == 404
    settings.PORTAL_ALLOW_CANCEL = True
    client_a.post(reverse("portal:subscription_cancel", args=[subscription.pk]), {"cancellation_reason": "unused"})
    subscription.refresh_from_db()
    assert subscription.cancel_at_period_end and subscription.status == "active"


def test_another_customers_subscription_cannot_be_cancelled(client_a: Client, account_b: Account) -> None:
    subscription = SubscriptionFactory(customer=account_b.customer, price=PriceFactory())
    assert client_a.post(reverse("portal:subscription_cancel", args=[subscription.pk])).status_code == 404
    subscription.refresh_from_db()
    assert not subscription.cancel_at_period_end


def test_overview_shows_amount_due_and_credit(client_a: Client, account_a: Account) -> None:
    # What the credit-note hook does after commit (plain django_db tests run no on_commit callbacks).
    customer_credit_from_credit_note(account_a.credit_note.pk, account_a.credit_note.amount_to_customer_credit)
    page = client_a.get(reverse("portal:overview")).content.decode()
    assert "€120.00" in page  # the open invoice
    assert "€10.00" in page  # the credit note on the paid invoice went to the credit balance


def test_pages_speak_the_customers_language(account_a: Account) -> None:
    account_a.customer.language = "de"
    account_a.customer.save()
    client = signed_in_client(account_a.portal_user)
    page = client.get(reverse("portal:overview")).content.decode()
    assert "Offener Betrag" in page and "Rechnungen" in page and 'lang="de"' in page
    detail = client.get(reverse("portal:invoice_detail", args=[account_a.open_invoice.number])).content.decode()
    assert "Rechnung" in detail and "PDF herunterladen" in detail


def test_pages_speak_french_with_french_money_and_dates(account_a: Account) -> None:
    account_a.customer.language = "fr"
    account_a.customer.save()
    client = signed_in_client(account_a.portal_user)
    page = client.get(reverse("portal:overview")).content.decode()
    assert 'lang="fr"' in page and "Vue d’ensemble" in page and "Factures" in page and "Montant dû" in page
    assert "120,00\xa0€" in page and "€120.00" not in page  # the open invoice's amount due
    invoices = client.get(reverse("portal:invoices")).content.decode()
    assert "2 mars 2026" in invoices and "03/02/2026" not in invoices  # issue date, one style per language
    detail = client.get(reverse("portal:invoice_detail", args=[account_a.open_invoice.number])).content.decode()
    assert "Facture" in detail and "Télécharger le PDF" in detail and "Download PDF" not in detail
    details = client.get(reverse("portal:billing_details")).content.decode()
    assert "Langue" in details and '<option value="fr" selected>Français</option>' in details


def test_the_customer_chooses_the_language_in_the_billing_details(client_a: Client, account_a: Account) -> None:
    url = reverse("portal:billing_details")
    data = {"legal_name": "Alpha SL", "email": "ap@alpha.example", "country": "ES", "language": "es"}
    response = client_a.post(url, data, follow=True)
    account_a.customer.refresh_from_db()
    assert account_a.customer.language == "es"  # documents and e-mails follow it too
    page = response.content.decode()
    assert 'lang="es"' in page and "Sus datos de facturación se han guardado." in page
    assert client_a.post(url, {**data, "language": "xx"}).status_code == 400
    account_a.customer.refresh_from_db()
    assert account_a.customer.language == "es"


def test_invoice_list_queries_stay_bounded_with_1000_invoices(
    account_a: Account, django_assert_max_num_queries: Any
) -> None:
    series = NumberSeries.objects.get(code="invoices")
    template = account_a.open_invoice
    Invoice.objects.bulk_create(
        Invoice(
            customer=account_a.customer,
            currency="EUR",
            status=InvoiceStatus.OPEN if i % 3 else InvoiceStatus.PAID,
            number_series=series,
            number=f"BULK-{i:05d}",
            issue_date=dt.date(2025, 1, 1) + dt.timedelta(days=i % 365),
            due_date=dt.date(2025, 1, 15) + dt.timedelta(days=i % 365),
            subtotal=Decimal("10.00"),
            total=Decimal("10.00"),
            amount_paid=Decimal("0") if i % 3 else Decimal("10.00"),
            amount_due=Decimal("10.00") if i % 3 else Decimal("0"),
            customer_snapshot=template.customer_snapshot,
            seller_snapshot=template.seller_snapshot,
        )
        for i in range(1000)
    )
    client = signed_in_client(account_a.portal_user)
    for url in (
        reverse("portal:invoices"),
        reverse("portal:invoices") + "?status=open&page=20",
        reverse("portal:overview"),
    ):
        with django_assert_max_num_queries(10):
            response = client.get(url)
        assert response.status_code == 200
    assert connection.vendor == "postgresql"


def test_staff_invite_creates_the_portal_user_and_mails_a_link(account_a: Account, admin_client: Client) -> None:
    from django.core import mail

    customer = account_a.customer
    customer.email = "Billing@Alpha.example"
    customer.save()
    response = admin_client.post(
        reverse("admin:customers_customer_changelist"),
        {"action": "invite_to_portal", "_selected_action": [customer.pk]},
        follow=True,
    )
    assert "Sent 1 portal invitation" in response.content.decode()
    assert PortalUser.objects.get(email="billing@alpha.example").customer == customer
    assert "/portal/login/" in mail.outbox[0].body and "72 hours" in mail.outbox[0].body
    assert admin_client.get(reverse("admin:customers_customer_change", args=[customer.pk])).status_code == 200
