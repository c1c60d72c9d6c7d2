"""A service's refusal in the portal (customers.portal.PortalView): a page with the message and the error's status
(400/404/409), never a 500; a failure of ours (Unavailable) without its internal details."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from invoicing.models import InvoiceStatus
from invoicing.services import InvoiceStateError
from payments.gateways import GatewayUnavailable
from tests.portal.conftest import Account

pytestmark = pytest.mark.django_db


def test_a_refused_pay_now_shows_the_message_with_status_409(
    client_a: Client, account_a: Account, monkeypatch: Any
) -> None:
    invoice = account_a.open_invoice

    def refuse(*, invoice: Any, **kwargs: Any) -> Any:
        raise InvoiceStateError(f"invoice {invoice.number} changed concurrently (no longer open)")

    monkeypatch.setattr("payments.portal.invoice_charge_now", refuse)
    response = client_a.post(reverse("portal:invoice_pay", args=[invoice.number]), {"method": "sandbox:pm_card_amex"})
    assert response.status_code == 409
    page = response.content.decode()
    assert f"invoice {invoice.number} changed concurrently (no longer open)" in page
    assert "Traceback" not in page and account_a.customer.display_legal_name in page  # the portal's own layout
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN


def test_an_unavailable_gateway_is_a_503_without_its_internal_details(
    client_a: Client, account_a: Account, monkeypatch: Any
) -> None:
    def fail(**kwargs: Any) -> Any:
        raise GatewayUnavailable("Request req_8f2a: connection reset by api.stripe.com")

    monkeypatch.setattr("payments.portal.invoice_charge_now", fail)
    response = client_a.post(
        reverse("portal:invoice_pay", args=[account_a.open_invoice.number]), {"method": "sandbox:pm_card_amex"}
    )
    assert response.status_code == 503
    page = response.content.decode()
    assert "please try again later" in page
    assert "req_8f2a" not in page and "stripe.com" not in page
