"""Staff read amounts as money (core.admin_lists.FormattedNumbersMixin): "€874.06", "¥3,040", "BHD12.346" —
never the stored "874.060", "650.000000" or "1.0000" — on the changelists, the read-only fields and the view-only
inlines of invoices, credit notes, payments, the credit ledger, prices, coupons, tax rates and subscriptions."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal as D

import pytest
from django.urls import reverse
from djmoney.money import Money

from invoicing.services import credit_note_issue
from payments.services import customer_credit_adjust
from subscriptions.services import ItemSpec
from tests.factories import CustomerFactory, InvoiceFactory, PriceFactory, SubscriptionFactory, record_payment
from tests.factories.subscriptions import CouponFactory

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


def _page(admin_client, name, *args, **params) -> str:
    """The page's HTML without the whitespace between tags (inline cells are indented over several lines)."""
    response = admin_client.get(reverse(name, args=args), params)
    assert response.status_code == 200
    return re.sub(r">\s+<", "><", response.content.decode())


def test_invoice_changelist_and_page_show_money_not_stored_decimals(admin_client, series, vat_de):
    invoice = InvoiceFactory(lines=[{"description": "Consulting", "unit_amount": D("734.50")}], finalized=ISSUE)
    assert (invoice.total, str(invoice.total)) == (D("874.06"), "874.060")  # stored with three decimals

    listing = _page(admin_client, "admin:invoicing_invoice_changelist")
    assert '<td class="field-total_display">€874.06</td>' in listing
    assert '<td class="field-amount_due_display">€874.06</td>' in listing
    assert "874.060" not in listing and "874.06 EUR" not in listing

    page = _page(admin_client, "admin:invoicing_invoice_change", invoice.pk)
    assert '<div class="readonly">€874.06</div>' in page  # total and amount due
    assert '<div class="readonly">€139.56</div>' in page  # tax total
    assert "874.060" not in page and "139.560" not in page
    assert '<td class="field-quantity"><p>1</p></td>' in page  # the line's quantity, not "1.0000"
    assert '<td class="field-unit_amount"><p>€734.50</p></td>' in page  # not "734.500000"
    assert "1.0000" not in page and "734.500000" not in page
    assert "(19 %)" in page  # the tax summary's rate


def test_amounts_follow_the_currencys_minor_units(admin_client, series):
    yen = InvoiceFactory(
        customer=CustomerFactory(currency="JPY", exempt=True),
        lines=[{"description": "Plan", "unit_amount": D("3040"), "quantity": D("2")}],
        finalized=ISSUE,
    )
    dinar = InvoiceFactory(
        customer=CustomerFactory(currency="BHD", exempt=True),
        lines=[{"description": "Plan", "unit_amount": D("12.3456")}],
        finalized=ISSUE,
    )
    listing = _page(admin_client, "admin:invoicing_invoice_changelist")
    assert "¥6,080</td>" in listing and "BHD12.346</td>" in listing
    page = _page(admin_client, "admin:invoicing_invoice_change", yen.pk)
    assert '<td class="field-unit_amount"><p>¥3,040</p></td>' in page  # was "¥3,040.00" / "3040.000000"
    assert '<td class="field-quantity"><p>2</p></td>' in page
    assert "BHD12.346" in _page(admin_client, "admin:invoicing_invoice_change", dinar.pk)


def test_credit_notes_payments_and_the_credit_ledger_show_money(admin_client, series, vat_de):
    customer = CustomerFactory()
    invoice = InvoiceFactory(customer=customer, lines=[{"unit_amount": D("100.00")}], finalized=ISSUE)
    credit_note = credit_note_issue(invoice=invoice, reason="Goodwill", amount=D("11.90"))
    payment = record_payment(customer=customer, amount="650", invoice=invoice)
    customer_credit_adjust(customer=customer, amount=D("25"), currency="EUR", reason="Goodwill credit")

    assert "€11.90</td>" in _page(admin_client, "admin:invoicing_creditnote_changelist")
    note = _page(admin_client, "admin:invoicing_creditnote_change", credit_note.pk)
    assert '<div class="readonly">€11.90</div>' in note and "11.900" not in note
    assert '<div class="readonly">€10.00</div>' in note  # net total

    payments = _page(admin_client, "admin:payments_payment_changelist")
    assert '<td class="field-amount_display">€650.00</td>' in payments and "650.000" not in payments
    detail = _page(admin_client, "admin:payments_payment_change", payment.pk)
    assert '<div class="readonly">€650.00</div>' in detail
    assert "<p>€107.10</p>" in detail  # the allocation to the invoice (119.00 less the credit note), view-only inline

    ledger = _page(admin_client, "admin:payments_creditledgerentry_changelist", customer__id__exact=customer.pk)
    assert '<td class="field-amount">€25.00</td>' in ledger and "25.000" not in ledger


def test_catalog_tax_rates_and_subscriptions_show_money_quantities_and_percentages(admin_client, vat_de):
    price = PriceFactory(unit_amount=Money(D("0.0125"), "EUR"), per_unit=True)
    coupon = CouponFactory(percent_off=D("7.50"))
    subscription = SubscriptionFactory(items=[ItemSpec(price=price, quantity=3)], start_date=ISSUE)

    prices = _page(admin_client, "admin:subscriptions_price_changelist")
    assert "€0.0125 / " in prices  # the price's name: a sub-cent unit price keeps its digits
    coupons = _page(admin_client, "admin:subscriptions_coupon_changelist")
    assert '<td class="field-percent_off">7.5 %</td>' in coupons and "7.50" not in coupons
    assert f"{coupon.code} (7.5 % off" in str(coupon)
    rates = _page(admin_client, "admin:invoicing_taxrate_changelist")
    assert '<td class="field-percentage">19 %</td>' in rates and "19.0000" not in rates
    page = _page(admin_client, "admin:subscriptions_subscription_change", subscription.pk)
    assert '<td class="field-quantity"><p>3</p></td>' in page and "3.0000" not in page
