"""Wallets in the API, the admin and the portal: one balance, the same services (docs/decisions/wallets.md)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse

from invoicing.models import Invoice
from payments.models import GrantStatus, Wallet, WalletGrant
from payments.wallets import wallet_configure, wallet_consume, wallet_grant_free
from tests.factories import CustomerFactory, InvoiceFactory, PortalUserFactory
from tests.portal.conftest import signed_in_client

D = Decimal
pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(series, vat_de):
    return CustomerFactory(exempt=True)


def _consumed(customer, amount: str) -> None:
    invoice = InvoiceFactory(
        customer=customer, lines=[{"description": "Usage", "unit_amount": D(amount)}], finalized=dt.date(2026, 3, 2)
    )
    wallet_consume(invoice=invoice)


def test_the_api_the_admin_and_the_portal_show_the_same_balance(
    api, admin_client, customer, django_assert_max_num_queries
):
    wallet_grant_free(customer=customer, amount=D("40.00"), reason="promo", as_of=dt.date(2026, 3, 1))
    _consumed(customer, "15.00")

    body = api.get(f"/api/v1/customers/{customer.pk}/wallet").json()
    assert [(w["currency"], w["balance"], w["free"], w["paid"], w["pending"]) for w in body["data"]] == [
        ("EUR", "25.00", "25.00", "0.00", "0.00")
    ]
    wallet = Wallet.objects.get(customer=customer)
    page = admin_client.get(reverse("admin:payments_wallet_change", args=[wallet.pk])).content.decode()
    assert '<span data-testid="wallet-balance">€25.00</span>' in page
    portal = signed_in_client(PortalUserFactory(customer=customer))
    with django_assert_max_num_queries(20):
        response = portal.get(reverse("portal:wallet"))
    assert '<span class="num" data-testid="wallet-balance">€25.00</span>' in response.content.decode()

    ledger = api.get(f"/api/v1/customers/{customer.pk}/wallet/ledger").json()["data"]
    assert [(row["kind"], row["amount"], row["balance_after"]) for row in ledger] == [
        ("consumption", "-15.00", "25.00"),
        ("grant", "40.00", "40.00"),
    ]


def test_api_grants_free_credits_and_issues_top_ups_with_the_write_scope(api, reader, customer):
    path = f"/api/v1/customers/{customer.pk}/wallet"
    assert reader.post(f"{path}/grants", {"amount": "10.00", "reason": "promo"}).status_code == 403
    grant = api.post(f"{path}/grants", {"amount": "10.00", "reason": "promo", "expires_on": "2099-12-31"})
    assert grant.status_code == 201, grant.content
    assert (grant.json()["kind"], grant.json()["status"], grant.json()["remaining"]) == ("free", "active", "10.00")
    top_up = api.post(f"{path}/top_ups", {"amount": "30.00"})
    assert top_up.status_code == 201, top_up.content
    invoice = Invoice.objects.get(pk=top_up.json()["invoice"])
    assert (top_up.json()["status"], invoice.status, invoice.total) == ("pending", "open", D("30.00"))
    refused = api.post(f"{path}/grants", {"amount": "10.001", "reason": "promo"})
    assert refused.status_code == 400
    body = api.get(path).json()["data"][0]
    assert (body["balance"], body["pending"]) == ("10.00", "30.00")


def test_admin_grant_button_grants_free_credits(admin_client, customer):
    grant = wallet_grant_free(customer=customer, amount=D("5.00"), reason="welcome", as_of=dt.date(2026, 3, 1))
    url = reverse("admin:payments_wallet_grant", args=[grant.wallet_id])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"amount": "20.00", "reason": "webinar", "expires_on": ""})
    assert response.status_code == 302
    assert WalletGrant.objects.filter(wallet_id=grant.wallet_id, reason="webinar", amount=D("20.00")).exists()
    wallet_configure(customer=customer, auto_top_up_threshold=D("20"), auto_top_up_amount=D("50"))
    page = admin_client.get(reverse("admin:payments_wallet_change", args=[grant.wallet_id])).content.decode()
    # the form shows the currency's cents (20.00), not the column's 20.000 (twenty thousand to a German reader)
    assert 'name="auto_top_up_threshold" value="20.00"' in page and 'name="auto_top_up_amount" value="50.00"' in page


def test_portal_buy_credits_issues_one_top_up_invoice_to_pay(customer):
    portal = signed_in_client(PortalUserFactory(customer=customer))
    response = portal.post(reverse("portal:wallet"), {"amount": "50.00"})
    grant = WalletGrant.objects.get(wallet__customer=customer)
    assert grant.status == GrantStatus.PENDING
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:invoice_pay", kwargs={"number": grant.invoice.number})
    again = portal.post(reverse("portal:wallet"), {"amount": "50.00"})
    assert again.status_code == 409  # one unpaid top-up at a time
    assert WalletGrant.objects.filter(wallet__customer=customer).count() == 1
