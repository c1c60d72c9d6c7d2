"""The portal's Stripe pages in headless Chromium, with Stripe.js replaced by a local stand-in
(tests/portal/stripe_standin.js, served at Stripe.js's URL) and Stripe's API answered by the local fake: a card is
added through the card page (SetupIntent confirmed in the browser, saved from the server's read of it), then a
SEPA mandate through the SEPA page (a bad IBAN first). Screenshots of both pages go to the test's tmp folder
(docs/screenshots/portal-stripe-*.png were taken from this test)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from playwright.sync_api import Page, Route, expect

from customers.portal import SESSION_USER_KEY
from payments.models import MethodType, PaymentMethod
from tests.payments.stripe_fake import serve_fake_stripe
from tests.portal.conftest import Account

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]
STANDIN = Path(__file__).with_name("stripe_standin.js")


def test_adding_a_card_and_a_sepa_mandate_in_the_browser(
    live_server: Any, page: Page, account_a: Account, settings: Any, tmp_path: Path
) -> None:
    with serve_fake_stripe() as fake:
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_API_KEY = "sk_test_fake"
        settings.STRIPE_PUBLISHABLE_KEY = "pk_test_fake"
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        settings.PAYMENTS_DEFAULT_GATEWAY = "stripe"
        settings.PORTAL_BASE_URL = live_server.url

        def to_fake(route: Route) -> None:
            request = route.request
            path = request.url.split("https://api.stripe.com", 1)[1]
            forwarded = urllib.request.Request(  # noqa: S310 - the loopback fake
                fake.url + path, data=request.post_data_buffer, method=request.method, headers={}
            )
            try:
                with urllib.request.urlopen(forwarded, timeout=10) as answer:  # noqa: S310 - the loopback fake
                    route.fulfill(status=answer.status, body=answer.read(), content_type="application/json")
            except urllib.error.HTTPError as error:
                route.fulfill(status=error.code, body=error.read(), content_type="application/json")

        page.route("https://js.stripe.com/v3/", lambda route: route.fulfill(path=STANDIN))
        page.route("https://api.stripe.com/**", to_fake)
        client = Client()
        session = client.session
        session[SESSION_USER_KEY] = account_a.portal_user.pk
        session.save()
        page.context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
        )

        page.goto(f"{live_server.url}/portal/payment-methods/")
        page.get_by_role("link", name="Add a card").click()
        expect(page.get_by_role("heading", name="Add a card")).to_be_visible()
        expect(page.get_by_label("Card number")).to_be_visible()  # the stand-in mounted where the Element goes
        page.screenshot(path=str(tmp_path / "portal-stripe-card.png"), full_page=True)
        page.get_by_role("button", name="Save card").click()
        expect(page.get_by_text("Saved visa •••• 4242 (12/34) as your default payment method.")).to_be_visible()
        card = PaymentMethod.objects.get(type=MethodType.CARD, gateway="stripe")
        assert card.is_default and (card.brand, card.last4) == ("visa", "4242")
        [confirm] = fake.calls("POST", "/v1/setup_intents/")  # sent by the stand-in, as Stripe.js would
        assert confirm["path"].endswith("/confirm")

        page.get_by_role("link", name="Set up SEPA Direct Debit").click()
        page.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
        page.screenshot(path=str(tmp_path / "portal-stripe-sepa.png"), full_page=True)
        calls_before = len(fake.requests)
        page.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 01")
        page.get_by_role("button", name="Accept the mandate").click()
        expect(page.get_by_text("This IBAN is not valid.")).to_be_visible()
        assert len(fake.requests) == calls_before  # refused before Stripe is called
        page.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
        page.get_by_role("button", name="Accept the mandate").click()
        sepa = PaymentMethod.objects.get(type=MethodType.SEPA_DEBIT)
        expect(page.get_by_text(f"Mandate reference: {sepa.mandate_reference}")).to_be_visible()
        page.screenshot(path=str(tmp_path / "portal-stripe-methods.png"), full_page=True)
        card.refresh_from_db()
        assert sepa.is_default and not card.is_default
