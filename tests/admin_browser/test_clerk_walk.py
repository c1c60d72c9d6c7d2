"""Issue 18's walk, in headless Chromium against a live server at 1440×900, as a billing clerk would do it: create a
customer, create a subscription with two items and a coupon after checking its preview, bill now, record a
partial payment from the invoice page, upgrade mid-cycle with "always invoice" (an invoice is issued and
e-mailed), pause and resume, cancel with prorated credit — then an auditor finds every step in the customer's
timeline and no button anywhere. Screenshots go to the test's tmp folder (``--basetemp`` to keep them)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core import mail
from djmoney.money import Money
from playwright.sync_api import Browser, Page, expect

from core import formatting as fmt
from customers.models import Customer
from invoicing.models import CreditNote, Invoice, InvoiceStatus
from notifications.models import OutboundEmail
from subscriptions.models import Subscription, SubscriptionStatus
from tests.factories import StaffUserFactory
from tests.factories.subscriptions import CouponFactory, PriceFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
NOW = dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC)


def _shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"clerk-{name}.png"), full_page=True)


def _sign_in(browser: Browser, base: str, username: str) -> Page:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(f"{base}/admin/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_be_visible()
    page.on("console", lambda message: None)
    return page


def _tool(page: Page, name: str) -> None:
    """An object tool (a button on the change page)."""
    page.locator(".object-tools").get_by_role("link", name=name, exact=True).click()


def test_a_clerk_runs_a_customer_through_its_lifecycle_and_an_auditor_sees_every_step(
    live_server: Any, browser: Browser, series: Any, vat_de: Any, settings: Any, tmp_path: Path
) -> None:
    settings.PORTAL_BASE_URL = live_server.url
    pro = PriceFactory(per_unit=True, unit_amount=Money("29.99", "EUR"), product__name="Pro seats")
    support = PriceFactory(unit_amount=Money("49.00", "EUR"), product__name="Support")
    CouponFactory(code="SPRING")
    StaffUserFactory(username="clerk", group="Billing clerk")
    StaffUserFactory(username="auditor", group="Auditor (read-only)")
    base = live_server.url

    with time_machine.travel(NOW, tick=True):
        page = _sign_in(browser, base, "clerk")

        # 1. a new customer
        page.goto(f"{base}/admin/customers/customer/add/")
        page.locator("input[name=name]").fill("Brightline Analytics GmbH")
        page.locator("input[name=email]").fill("ap@brightline.example")
        page.locator("select[name=country]").select_option("DE")
        page.locator("select[name=currency]").select_option("EUR")
        page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".messagelist")).to_contain_text("was added successfully")
        customer = Customer.objects.get(email="ap@brightline.example")

        # 2. a subscription with two items and a coupon, previewed first
        page.goto(f"{base}/admin/subscriptions/subscription/add/?customer={customer.pk}")
        page.locator("select[name=items-0-price]").select_option(str(pro.pk))
        page.locator("input[name=items-0-quantity]").fill("5")
        page.locator("select[name=items-1-price]").select_option(str(support.pk))
        page.locator("input[name=items-1-quantity]").fill("1")
        page.locator("[name=coupon]").fill("SPRING")
        page.locator("input[name=start_date]").fill("2026-03-10")
        page.get_by_label("Send invoice").check()
        _shot(page, tmp_path, "1-create")
        page.get_by_role("button", name="Preview", exact=True).click()
        preview = page.locator("body")
        expect(preview).to_contain_text("Pro seats")
        expect(preview).to_contain_text("Support")
        expect(preview).to_contain_text("Next renewal")
        preview_text = page.locator("#content").inner_text()
        _shot(page, tmp_path, "2-preview")
        page.get_by_role("button", name="Create subscription").click()
        subscription = Subscription.objects.get(customer=customer)
        assert subscription.items.count() == 2 and subscription.discounts.count() == 1

        # 3. bill now: a dry run, then the invoice
        page.goto(f"{base}/admin/subscriptions/subscription/{subscription.pk}/change/")
        _tool(page, "Bill now")
        page.get_by_role("button", name="Preview (dry run)").click()
        expect(page.locator("body")).to_contain_text("Will issue an invoice of")
        page.get_by_role("button", name="Bill now").click()
        invoice = Invoice.objects.get(subscription=subscription)
        assert invoice.status == InvoiceStatus.OPEN and invoice.discount_total > 0
        assert fmt.money(invoice.total, "EUR", "en") in preview_text  # the preview's total, to the cent
        page.locator(".messagelist").get_by_role("link", name=invoice.number).first.click()

        # 4. a partial payment recorded from the invoice's page, its allocation shown first
        _tool(page, "Record payment")
        page.locator("input[name=amount]").fill("50.00")
        page.locator("input[name=reference]").fill("Bank 4711")
        page.get_by_role("button", name="Preview allocation").click()
        expect(page.get_by_test_id("preview")).to_contain_text(invoice.number)
        _shot(page, tmp_path, "3-payment-preview")
        page.get_by_role("button", name="Record payment").click()
        invoice.refresh_from_db()
        assert invoice.amount_paid == Decimal("50.00") and invoice.amount_due == invoice.total - Decimal("50.00")

        # 5. upgrade mid-cycle, invoiced now
        mail.outbox.clear()
        page.goto(f"{base}/admin/subscriptions/subscription/{subscription.pk}/change/")
        _tool(page, "Change items")
        pro_row = page.locator("select[name$=-price]").nth(0)
        assert pro_row.input_value() == str(pro.pk)
        page.locator("input[name=items-0-quantity]").fill("8")
        page.locator("input[name=as_of]").fill("2026-03-20")
        page.locator("input[name=proration_behavior][value=always_invoice]").check()
        page.get_by_role("button", name="Preview", exact=True).click()
        expect(page.locator("body")).to_contain_text("Pro seats")
        _shot(page, tmp_path, "4-upgrade-preview")
        page.get_by_role("button", name="Apply this change").click()
        upgrade = Invoice.objects.filter(subscription=subscription).exclude(pk=invoice.pk).get()
        assert upgrade.status != InvoiceStatus.DRAFT and upgrade.total > 0
        assert OutboundEmail.objects.filter(invoice=upgrade).exists()
        assert subscription.items.get(price=pro).quantity == 8 and subscription.items.filter(price=support).exists()

        # 6. pause, then resume
        page.goto(f"{base}/admin/subscriptions/subscription/{subscription.pk}/change/")
        _tool(page, "Pause")
        page.locator("input[name=as_of]").fill("2026-03-21")
        page.get_by_role("button", name="Pause", exact=True).click()
        assert Subscription.objects.get(pk=subscription.pk).status == SubscriptionStatus.PAUSED
        _tool(page, "Resume")
        page.locator("input[name=as_of]").fill("2026-03-22")
        page.get_by_role("button", name="Resume", exact=True).click()
        assert Subscription.objects.get(pk=subscription.pk).status == SubscriptionStatus.ACTIVE

        # 7. cancel now with a prorated credit
        _tool(page, "Cancel now")
        page.locator("input[name=as_of]").fill("2026-03-25")
        page.locator("input[name=settlement][value=credit]").check()
        page.get_by_role("button", name="Preview", exact=True).click()
        page.get_by_role("button", name="Cancel now").click()
        assert Subscription.objects.get(pk=subscription.pk).status == SubscriptionStatus.CANCELED
        assert CreditNote.objects.filter(invoice__subscription=subscription).exists()
        page.context.close()

        # 8. the auditor: every step on the customer's timeline, no button anywhere
        auditor = _sign_in(browser, base, "auditor")
        auditor.goto(f"{base}/admin/customers/customer/{customer.pk}/change/")
        timeline = auditor.locator("body")
        for number in (invoice.number, upgrade.number):
            expect(timeline).to_contain_text(number)
        for step in (re.compile("paused", re.I), re.compile("resumed|active", re.I), re.compile("cancel", re.I)):
            expect(timeline).to_contain_text(step)
        expect(timeline).to_contain_text("50.00")
        assert auditor.locator(".object-tools a").all_inner_texts() == ["SIMULATE", "HISTORY"]  # both read-only
        _shot(auditor, tmp_path, "5-auditor-customer")
        auditor.goto(f"{base}/admin/invoicing/invoice/{invoice.pk}/change/")
        for name in ("Record payment", "Void", "Create credit note", "Finalize"):
            assert auditor.locator(".object-tools").get_by_role("link", name=name, exact=True).count() == 0
        auditor.goto(f"{base}/admin/subscriptions/subscription/{subscription.pk}/change/")
        for name in ("Bill now", "Change items", "Cancel now", "Pause", "Resume"):
            assert auditor.locator(".object-tools").get_by_role("link", name=name, exact=True).count() == 0
        auditor.context.close()
