"""In headless Chromium: a customer changes seats in the portal — the plan page, the preview, the confirmation —
on a laptop and on a 375 px phone (no sideways scrolling), and the invoice issued shows the total the preview
showed. Screenshots go to the test's tmp folder (``--basetemp`` to keep them; docs/screenshots/portal-plan-*.png
were taken this way)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from djmoney.money import Money
from playwright.sync_api import Browser, Page, expect

from core import formatting as fmt
from core.dates import billing_today
from invoicing.billing_run import billing_run
from invoicing.models import Invoice
from subscriptions.services import ItemSpec, subscription_create
from tests.factories import CustomerFactory
from tests.factories.portal import PortalUserFactory
from tests.factories.subscriptions import PriceFactory
from tests.portal.conftest import signed_in_client

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways on a phone ({width}px)"


def test_a_customer_changes_seats_on_a_laptop_and_on_a_phone(
    live_server: Any, page: Page, browser: Browser, billing: Any, tmp_path: Path
) -> None:
    pro = PriceFactory(per_unit=True, unit_amount=Money("29.99", "EUR"), product__name="Pro", self_service=True)
    PriceFactory(per_unit=True, unit_amount=Money("49.00", "EUR"), product__name="Team", self_service=True)
    customer = CustomerFactory(name="Seats GmbH")
    portal_user = PortalUserFactory(customer=customer, email="seats@portal.example")
    start = billing_today() - dt.timedelta(days=13)  # mid-period today, whatever today is
    subscription = subscription_create(customer=customer, items=[ItemSpec(price=pro, quantity=5)], start_date=start)
    billing_run(as_of=start)
    cookie = signed_in_client(portal_user).cookies[django_settings.SESSION_COOKIE_NAME].value
    session = {"name": django_settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}

    page.set_viewport_size({"width": 1280, "height": 900})
    page.context.add_cookies([session])  # type: ignore[list-item]
    page.goto(f"{live_server.url}/portal/subscriptions/")
    page.get_by_role("link", name="Change plan or seats").click()
    expect(page.get_by_role("heading", name="Change plan or seats")).to_be_visible()
    page.get_by_label("Seats").fill("8")
    page.get_by_role("button", name="Show what it costs").click()
    expect(page.get_by_role("heading", name="What this change costs")).to_be_visible()
    shown_total = page.locator(".preview tr.strong td").inner_text()
    page.screenshot(path=str(tmp_path / "portal-plan-change-preview.png"), full_page=True)

    phone = browser.new_context(viewport={"width": 375, "height": 812}, device_scale_factor=1)
    phone.add_cookies([session])  # type: ignore[list-item]
    phone_page = phone.new_page()
    phone_page.goto(f"{live_server.url}/portal/subscriptions/{subscription.pk}/change/")
    phone_page.get_by_label("Seats").fill("8")
    phone_page.get_by_role("button", name="Show what it costs").click()
    expect(phone_page.locator(".preview tr.strong td")).to_have_text(shown_total)
    _no_sideways_scroll(phone_page)
    phone_page.screenshot(path=str(tmp_path / "portal-plan-change-phone.png"), full_page=True)
    phone.close()

    page.get_by_role("button", name="Confirm the change").click()
    expect(page.get_by_text("Your plan was changed.")).to_be_visible()
    issued = Invoice.objects.filter(subscription=subscription).order_by("pk").last()
    assert issued is not None and issued.issue_date == billing_today()
    assert fmt.money(issued.total, "EUR", "en") == shown_total  # what was shown is what is invoiced
    page.screenshot(path=str(tmp_path / "portal-plan-changed.png"), full_page=True)
