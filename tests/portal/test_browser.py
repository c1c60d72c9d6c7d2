"""End to end in headless Chromium against a live server: ask for a sign-in link, read it from the outbox, sign
in, open an invoice, download its PDF, pay it with the sandbox card and see it paid. Screenshots of each page
go to the test's tmp folder (``--basetemp`` to keep them)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from playwright.sync_api import Browser, Page, expect

from invoicing.models import Invoice, InvoiceStatus
from tests.portal.conftest import Account

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"portal-{name}.png"), full_page=True)


def test_sign_in_open_download_and_pay_an_invoice(
    live_server: Any, page: Page, browser: Browser, account_a: Account, settings: Any, tmp_path: Path
) -> None:
    settings.PORTAL_BASE_URL = live_server.url
    invoice = account_a.open_invoice
    mail.outbox.clear()  # the invoice e-mails sent at finalize

    page.goto(f"{live_server.url}/portal/")
    expect(page.get_by_role("heading", name="Sign in to your billing portal")).to_be_visible()
    _shot(page, tmp_path, "1-login")
    page.get_by_label("E-mail address").fill(account_a.portal_user.email)
    page.get_by_role("button", name="E-mail me a sign-in link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()

    assert len(mail.outbox) == 1
    link = re.search(r"http://\S+/portal/login/\S+/", mail.outbox[0].body)
    assert link is not None
    page.goto(link.group(0))
    page.get_by_role("button", name="Continue to the portal").click()
    expect(page.get_by_role("heading", name="Hello, Alpha")).to_be_visible()
    _shot(page, tmp_path, "2-overview")

    page.get_by_role("navigation", name="Portal").get_by_role("link", name="Invoices").click()
    expect(page.get_by_role("heading", name="Invoices")).to_be_visible()
    _shot(page, tmp_path, "3-invoices")
    page.get_by_role("link", name=invoice.number, exact=True).click()
    expect(page.get_by_test_id("invoice-status")).to_have_text("Open")
    _shot(page, tmp_path, "4-invoice")

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download PDF").click()
    download = download_info.value
    assert download.suggested_filename == f"{invoice.number}.pdf"
    assert Path(download.path()).read_bytes().startswith(b"%PDF")

    page.get_by_role("link", name=re.compile(r"^Pay .* now$")).click()
    page.get_by_label("Visa •••• 4242 — succeeds").check()
    _shot(page, tmp_path, "5-pay")
    page.get_by_role("button", name=re.compile(r"^Pay ")).click()
    expect(page.get_by_text("Thank you! Your payment was successful.")).to_be_visible()
    expect(page.get_by_test_id("invoice-status")).to_have_text("Paid")
    _shot(page, tmp_path, "6-paid")
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.PAID

    # The same invoice on a phone.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    phone.add_cookies(page.context.cookies())
    phone_page = phone.new_page()
    phone_page.goto(f"{live_server.url}/portal/invoices/{invoice.number}/")
    expect(phone_page.get_by_test_id("invoice-status")).to_have_text("Paid")
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"
    _shot(phone_page, tmp_path, "7-phone-invoice")
    # The invoice list on a phone: each row a card, its total and buttons in view — nothing scrolls sideways.
    phone_page.goto(f"{live_server.url}/portal/invoices/")
    table = phone_page.locator("table.table-cards")
    overflow = table.evaluate("t => t.closest('.table-wrap').scrollWidth - t.closest('.table-wrap').clientWidth")
    assert overflow <= 0, f"the invoice list scrolls sideways on a phone ({overflow}px hidden)"
    row = table.locator("tbody tr", has_text=invoice.number)
    expect(row.locator(".cell-amount")).to_be_in_viewport()
    expect(row.get_by_role("link", name=f"PDF {invoice.number}")).to_be_in_viewport()
    _shot(phone_page, tmp_path, "8-phone-invoice-list")
    phone.close()
