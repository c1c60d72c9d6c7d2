"""Bad values (issue 10): absurd or negative amounts and quantities, amounts beyond the columns' precision,
mismatched and unknown currencies, impossible dates, HTML, emoji, right-to-left text and NUL characters — through
the services, the admin forms (test client), the portal and the management commands. Every bad value is a clean
validation error naming the field (never a 500 or a DataError) and nothing is written; good unusual text is
stored and shown exactly, escaped wherever it is rendered.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from djmoney.money import Money
from pypdf import PdfReader

from core.money import CurrencyMismatch
from customers.models import Customer
from customers.portal import SESSION_USER_KEY
from customers.services import CustomerImportError, customers_import_csv
from invoicing import documents
from invoicing.models import Invoice, InvoiceLine, InvoiceStatus
from invoicing.services import InvoiceError, InvoiceLineSpec, invoice_create_draft, invoice_finalize
from payments.models import CreditLedgerEntry, Payment, PaymentAllocation
from payments.services import PaymentError, customer_credit_adjust, customer_credit_apply, payment_record
from subscriptions.models import PendingInvoiceItem, Price, Subscription, SubscriptionItem
from subscriptions.services import ItemSpec, SubscriptionError, subscription_change, subscription_create
from tests.factories import (
    CustomerFactory,
    InvoiceFactory,
    NumberSeriesFactory,
    PortalUserFactory,
    PriceFactory,
)

pytestmark = pytest.mark.django_db

START = dt.date(2026, 3, 1)


# --- helpers --------------------------------------------------------------------------------------------


class _FormFields(HTMLParser):
    """What a browser would submit for the first form of an admin page: every named input, select and textarea
    with its current value (inline management forms included), so a test changes only the field it is about."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    self.data[name] = a.get("value") or "on"
            else:
                self.data[name] = a.get("value") or ""
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select] = a.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            if self._textarea:
                self.data[self._textarea] = self.data[self._textarea].removeprefix("\n")
            self._textarea = None


def _form_data(client: Client, url: str) -> dict[str, Any]:
    response = client.get(url)
    assert response.status_code == 200
    parser = _FormFields()
    parser.feed(response.content.decode())
    parser.data.pop("csrfmiddlewaretoken", None)
    return parser.data


def _errors_of(response: Any) -> str:
    """The admin's error lists, as text (the field errors and the form-wide ones)."""
    html = response.content.decode()
    assert response.status_code == 200, html[:3000]
    assert "errorlist" in html or "errornote" in html, "the page shows no error"
    return html


def _table_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (
            Customer,
            Price,
            Subscription,
            SubscriptionItem,
            PendingInvoiceItem,
            Invoice,
            InvoiceLine,
            Payment,
            PaymentAllocation,
            CreditLedgerEntry,
        )
    }


@pytest.fixture
def series(db: Any) -> Any:
    return NumberSeriesFactory(default_invoices=True)


@pytest.fixture
def eur_customer(series: Any) -> Customer:
    return CustomerFactory(exempt=True, currency="EUR", name="Euro Kunde")


def _price(amount: str, currency: str = "EUR") -> Price:
    """A monthly per-seat price (quantity × unit amount)."""
    return PriceFactory(unit_amount=Money(Decimal(amount), currency), per_unit=True)


def _open_invoice(customer: Customer, amount: str = "100.00") -> Invoice:
    return InvoiceFactory(
        customer=customer, lines=[{"description": "Service", "unit_amount": Decimal(amount)}], finalized=START
    )


# --- quantities and prices ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        (-1, "the quantity must be at least 1"),
        (0, "the quantity must be at least 1"),
        (10**10, "the quantity must be at most 1,000,000"),
        (2**31, "the quantity must be at most 1,000,000"),
    ],
)
def test_subscription_item_quantity_out_of_range_is_refused_and_nothing_written(
    eur_customer: Customer, quantity: int, message: str
) -> None:
    price = _price("10.00", "EUR")
    before = _table_counts()
    with pytest.raises(SubscriptionError, match=message):
        subscription_create(customer=eur_customer, items=[ItemSpec(price=price, quantity=quantity)], start_date=START)
    assert _table_counts() == before


def test_quantity_times_price_beyond_what_an_invoice_line_can_hold_is_refused(eur_customer: Customer) -> None:
    price = _price("9999999999999.99", "EUR")  # fits the price column
    before = _table_counts()
    with pytest.raises(SubscriptionError, match=r"too large \(the limit is 999,999,999,999.999\)"):
        subscription_create(customer=eur_customer, items=[ItemSpec(price=price, quantity=1000)], start_date=START)
    assert _table_counts() == before


def test_plan_change_to_an_absurd_quantity_is_refused_and_changes_nothing(eur_customer: Customer) -> None:
    price = _price("10.00", "EUR")
    subscription = subscription_create(customer=eur_customer, items=[ItemSpec(price=price)], start_date=START)
    Subscription.objects.filter(pk=subscription.pk).update(next_billing_date=dt.date(2026, 4, 1))  # first billed
    before = _table_counts()
    with pytest.raises(SubscriptionError, match="at most 1,000,000"):
        subscription_change(
            subscription=subscription, items=[ItemSpec(price=price, quantity=5_000_000)], as_of=dt.date(2026, 3, 10)
        )
    assert _table_counts() == before
    assert subscription.items.get().quantity == 1


def test_admin_change_plan_form_refuses_bad_quantities_and_dates_without_a_500(
    admin_client: Client, eur_customer: Customer
) -> None:
    price = _price("10.00", "EUR")
    subscription = subscription_create(customer=eur_customer, items=[ItemSpec(price=price)], start_date=START)
    url = reverse("admin:subscriptions_subscription_change_plan", args=[subscription.pk])
    before = _table_counts()
    cases = [
        ({"quantity": "99999999999"}, "Ensure this value is less than or equal to 1000000."),
        ({"quantity": "-3"}, "Ensure this value is greater than or equal to 0."),
        ({"quantity": "1.5"}, "Enter a whole number."),
        ({"as_of": "2026-02-30"}, "Enter a valid date."),
        ({"as_of": "2026-13-01"}, "Enter a valid date."),
        ({"as_of": "2026-03-10\x00"}, "Enter a valid date."),
    ]
    for change, message in cases:
        data = {"quantity": "2", "as_of": "2026-03-10", "proration_behavior": "create_prorations"}
        data.update(change)
        items = {"items-TOTAL_FORMS": "1", "items-INITIAL_FORMS": "1", "items-0-price": price.pk}
        items["items-0-quantity"] = data.pop("quantity")
        response = admin_client.post(url, {**data, **items, "_apply": "Apply this change"})
        assert message in _errors_of(response), change
    assert _table_counts() == before


def test_price_admin_refuses_negative_absurd_and_over_precise_amounts(admin_client: Client) -> None:
    product = PriceFactory().product
    before = _table_counts()
    url = reverse("admin:subscriptions_price_add")
    for amount, message in [
        ("-5.00", "price_unit_amount_non_negative"),
        ("12345678901234567890", "Ensure that there are no more than 19 digits in total."),
        ("1.1234567", "Ensure that there are no more than 6 decimal places."),
        ("1e400", "Ensure that there are no more than 19 digits in total."),
        ("NaN", "Enter a number."),
    ]:
        data = _form_data(admin_client, url)
        data.update({"product": product.pk, "unit_amount_0": amount, "unit_amount_1": "EUR"})
        assert message in _errors_of(admin_client.post(url, data)), amount
    data = _form_data(admin_client, url)
    data.update({"product": product.pk, "unit_amount_0": "10", "unit_amount_1": "XYZ"})
    assert "Select a valid choice. XYZ is not one of the available choices." in _errors_of(admin_client.post(url, data))
    assert _table_counts() == before


# --- manual invoice lines -------------------------------------------------------------------------------


def test_manual_invoice_lines_beyond_the_columns_are_a_validation_error(eur_customer: Customer) -> None:
    before = _table_counts()
    for spec in [
        InvoiceLineSpec(description="Huge", quantity=Decimal("999999999999"), unit_amount=Decimal("99999999999999")),
        InvoiceLineSpec(description="Huge unit", unit_amount=Decimal("1000000000000")),
        InvoiceLineSpec(description="NaN", unit_amount=Decimal("NaN")),
        InvoiceLineSpec(description="Infinite", unit_amount=Decimal("Infinity")),
    ]:
        with pytest.raises(InvoiceError):
            invoice_create_draft(customer=eur_customer, lines=[spec])
    with pytest.raises(InvoiceError, match="XYZ is not one of the billing currencies"):
        invoice_create_draft(customer=eur_customer, currency="XYZ", lines=[])
    with pytest.raises(InvoiceError, match="eur is not one of the billing currencies"):
        invoice_create_draft(customer=eur_customer, currency="eur", lines=[])
    assert _table_counts() == before


def test_a_draft_whose_lines_add_up_below_zero_cannot_be_finalized(eur_customer: Customer) -> None:
    draft = invoice_create_draft(
        customer=eur_customer,
        lines=[
            InvoiceLineSpec(description="Service", unit_amount=Decimal("10.00")),
            InvoiceLineSpec(description="Goodwill", quantity=Decimal("-1"), unit_amount=Decimal("25.00")),
        ],
    )
    with pytest.raises(InvoiceError, match=r"the total -15\.00 is negative; issue a credit note instead"):
        invoice_finalize(invoice=draft)
    draft.refresh_from_db()
    assert (draft.status, draft.number, draft.total) == (InvoiceStatus.DRAFT, "", Decimal("-15.00"))


def test_admin_invoice_lines_beyond_the_columns_are_form_errors_not_a_500(
    admin_client: Client, eur_customer: Customer
) -> None:
    draft = invoice_create_draft(
        customer=eur_customer, lines=[InvoiceLineSpec(description="Service", unit_amount=Decimal("10.00"))]
    )
    url = reverse("admin:invoicing_invoice_change", args=[draft.pk])
    before = _table_counts()
    for change, message in [
        ({"lines-0-quantity": "999999999999", "lines-0-unit_amount": "99999999999999"}, "too large"),
        ({"lines-0-unit_amount": "1e400"}, "Ensure that there are no more than 20 digits in total."),
        ({"lines-0-quantity": "1.12345"}, "Ensure that there are no more than 4 decimal places."),
        ({"lines-0-discount_amount": "-1"}, "invoice_line_discount_non_negative"),
        ({"lines-0-description": "a\x00b"}, "Null characters are not allowed."),
        ({"period_start": "2026-02-30"}, "Enter a valid date."),
        ({"lines-0-period_end": "2026-13-01"}, "Enter a valid date."),
        ({"currency": "XYZ"}, "Select a valid choice."),
    ]:
        data = _form_data(admin_client, url)
        data.update(change)
        assert message in _errors_of(admin_client.post(url, data)), change
    assert _table_counts() == before
    draft.refresh_from_db()
    assert draft.total == Decimal("10.00")


# --- payments and credit --------------------------------------------------------------------------------


def test_payment_amounts_that_are_negative_absurd_or_over_precise_are_refused(eur_customer: Customer) -> None:
    invoice = _open_invoice(eur_customer)
    before = _table_counts()
    for amount, message in [
        (Decimal("-10.00"), "must be positive"),
        (Decimal(0), "must be positive"),
        (Decimal("10.001"), "more decimals than EUR allows"),
        (Decimal("NaN"), "NaN is not an amount"),
        (Decimal("1E+20"), "too large"),
    ]:
        with pytest.raises(PaymentError, match=message):
            payment_record(customer=eur_customer, amount=amount, received_on=START, invoice=invoice)
    with pytest.raises(TypeError, match="must be a Decimal, not float"):
        payment_record(customer=eur_customer, amount=10.0, received_on=START)  # type: ignore[arg-type]
    assert _table_counts() == before
    invoice.refresh_from_db()
    assert invoice.amount_due == Decimal("100.00")


def test_payment_in_another_currency_than_the_invoice_is_refused(eur_customer: Customer) -> None:
    invoice = _open_invoice(eur_customer)
    before = _table_counts()
    with pytest.raises(CurrencyMismatch, match=f"invoice {invoice.number} is in EUR, the payment in USD"):
        payment_record(
            customer=eur_customer, amount=Decimal("100.00"), currency="USD", received_on=START, invoice=invoice
        )
    for currency, message in [("XYZ", "XYZ is not one of"), ("eur", "eur is not one of"), ("", None)]:
        if message is None:  # empty means "the customer's currency": accepted
            continue
        with pytest.raises(PaymentError, match=message):
            payment_record(customer=eur_customer, amount=Decimal("1.00"), currency=currency, received_on=START)
    assert _table_counts() == before
    # A USD payment without a named invoice pays no EUR invoice: it becomes USD credit.
    payment = payment_record(customer=eur_customer, amount=Decimal("100.00"), currency="USD", received_on=START)
    invoice.refresh_from_db()
    assert invoice.amount_due == Decimal("100.00")
    assert list(CreditLedgerEntry.objects.filter(customer=eur_customer).values_list("currency", "amount")) == [
        ("USD", Decimal("100.00"))
    ]
    assert not PaymentAllocation.objects.filter(payment=payment).exists()


def test_credit_in_another_currency_is_never_applied_to_an_invoice(eur_customer: Customer) -> None:
    customer_credit_adjust(customer=eur_customer, amount=Decimal("50.00"), currency="USD", reason="goodwill")
    invoice = _open_invoice(eur_customer, "80.00")
    customer_credit_apply(invoice=invoice)
    invoice.refresh_from_db()
    assert (invoice.amount_due, invoice.status) == (Decimal("80.00"), InvoiceStatus.OPEN)
    assert CreditLedgerEntry.objects.filter(customer=eur_customer, currency="EUR").count() == 0
    with pytest.raises(PaymentError, match="XYZ is not one of"):
        customer_credit_adjust(customer=eur_customer, amount=Decimal("5.00"), currency="XYZ", reason="x")


def test_admin_record_payment_form_refuses_bad_amounts_currencies_and_dates(
    admin_client: Client, eur_customer: Customer
) -> None:
    invoice = _open_invoice(eur_customer)
    url = reverse("admin:payments_payment_add")
    before = _table_counts()
    base = {
        "customer": eur_customer.pk,
        "amount": "100.00",
        "currency": "",
        "method": "bank_transfer",
        "received_on": "2026-03-05",
        "reference": "",
        "notes": "",
        "allocations-TOTAL_FORMS": "1",
        "allocations-INITIAL_FORMS": "0",
        "allocations-MIN_NUM_FORMS": "0",
        "allocations-MAX_NUM_FORMS": "1000",
        "allocations-0-invoice": invoice.number,
        "allocations-0-amount": "100.00",
    }
    for change, message in [
        ({"amount": "-5"}, "Ensure this value is greater than or equal to 0.001."),
        ({"amount": "9999999999999999999"}, "Ensure that there are no more than 18 digits in total."),
        ({"amount": "1000000000000"}, "too large"),
        ({"amount": "10.005"}, "more decimals than EUR allows"),
        ({"amount": "1e400"}, "Ensure that there are no more than 18 digits in total."),
        ({"amount": "NaN"}, "Enter a number."),
        ({"currency": "XYZ"}, "Select a valid choice."),
        ({"currency": "USD"}, "is in EUR, the payment in USD"),
        ({"received_on": "2026-02-30"}, "Enter a valid date."),
        ({"reference": "ref\x00"}, "Null characters are not allowed."),
    ]:
        response = admin_client.post(url, {**base, **change})
        assert message in _errors_of(response), change
    assert _table_counts() == before
    invoice.refresh_from_db()
    assert invoice.amount_due == Decimal("100.00")


def test_bank_transfer_in_another_currency_than_the_named_invoice_waits_for_staff(eur_customer: Customer) -> None:
    from payments.bank_import import bank_statement_import
    from payments.models import BankTransaction, BankTransactionStatus

    invoice = _open_invoice(eur_customer)
    data = (
        "Transaction ID;Booking date;Amount;Currency;Counterparty;IBAN;Remittance information\n"
        f"TX-1;2026-03-12;100,00;USD;Kunde;;{invoice.number}\n"
    ).encode()
    report = bank_statement_import(data=data, format="csv")
    assert (report.matched, report.queued) == (0, 1)
    row = BankTransaction.objects.get()
    assert row.status == BankTransactionStatus.AMBIGUOUS and f"{invoice.number} not in USD" in row.match_note
    assert not Payment.objects.exists()
    invoice.refresh_from_db()
    assert invoice.amount_due == Decimal("100.00")


# --- subscriptions mixing currencies --------------------------------------------------------------------


def test_subscription_items_in_different_currencies_are_refused(eur_customer: Customer) -> None:
    eur = _price("10.00", "EUR")
    usd = _price("10.00", "USD")
    before = _table_counts()
    with pytest.raises(CurrencyMismatch, match="all items of a subscription share one currency"):
        subscription_create(customer=eur_customer, items=[ItemSpec(price=eur), ItemSpec(price=usd)], start_date=START)
    with pytest.raises(CurrencyMismatch, match="is billed in EUR, the prices are in USD"):
        subscription_create(customer=eur_customer, items=[ItemSpec(price=usd)], start_date=START)
    subscription = subscription_create(customer=eur_customer, items=[ItemSpec(price=eur)], start_date=START)
    after_create = _table_counts()
    with pytest.raises(CurrencyMismatch, match="the subscription is billed in EUR, the new prices in USD"):
        subscription_change(subscription=subscription, items=[ItemSpec(price=usd)], as_of=dt.date(2026, 3, 10))
    assert _table_counts() == after_create
    assert after_create["Subscription"] == before["Subscription"] + 1


# --- commands -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("billing_run", ["--as-of", "2026-02-30"], "--as-of: '2026-02-30' is not a date in the form YYYY-MM-DD"),
        ("billing_run", ["--as-of", "2026-13-01"], "is not a date in the form YYYY-MM-DD"),
        ("billing_run", ["--as-of", "tomorrow"], "is not a date in the form YYYY-MM-DD"),
        ("billing_run", ["--as-of", "2026-03-01\x00"], "is not a date in the form YYYY-MM-DD"),
        ("billing_run", ["--chunk-size", "0"], "--chunk-size must be at least 1"),
        ("billing_run", ["--customer", "999999"], "--customer: no customer with id 999999"),
        ("send_reminders", ["--as-of", "2026-02-29"], "is not a date in the form YYYY-MM-DD"),
        ("retry_payments", ["--as-of", "31.12.2026"], "is not a date in the form YYYY-MM-DD"),
        ("export_accounting", ["--from", "2026-04-31", "--to", "2026-05-01"], "'2026-04-31' is not a date"),
        ("export_accounting", ["--from", "2026-05-01", "--to", "2026-04-01"], "before"),
    ],
)
def test_commands_refuse_impossible_dates_and_arguments_before_doing_anything(
    eur_customer: Customer, command: str, args: list[str], message: str
) -> None:
    price = _price("10.00", "EUR")
    subscription_create(customer=eur_customer, items=[ItemSpec(price=price)], start_date=START)
    before = _table_counts()
    with pytest.raises(CommandError) as caught:
        call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert message in str(caught.value)
    assert _table_counts() == before


# --- text: HTML, emoji, right-to-left, NUL --------------------------------------------------------------

HOSTILE = '<script>alert("x")</script><b>Bold</b> & Söhne'
EMOJI = "Café 🎉 Ünïcødé 👩🏽‍💻"
RTL = "شركة الاختبار المحدودة"
HEBREW = "חברת בדיקה בע״מ"


def test_html_in_names_and_descriptions_is_escaped_in_admin_portal_and_pdf(series: Any) -> None:
    customer = CustomerFactory(exempt=True, name=HOSTILE, address_line1="<img src=x onerror=alert(1)>", city="Köln")
    invoice = InvoiceFactory(
        customer=customer,
        lines=[{"description": "<i>Consulting</i> <script>steal()</script>", "unit_amount": Decimal("10.00")}],
        finalized=START,
    )
    escaped_name = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;Bold&lt;/b&gt; &amp; Söhne"
    from tests.factories import StaffUserFactory

    staff = Client()
    staff.force_login(StaffUserFactory(group="Billing admin"))
    pages = [
        staff.get(reverse("admin:customers_customer_changelist")),
        staff.get(reverse("admin:customers_customer_change", args=[customer.pk])),
        staff.get(reverse("admin:invoicing_invoice_changelist")),
        staff.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])),
        staff.get(reverse("admin:invoicing_invoice_preview", args=[invoice.pk])),
    ]
    portal = Client()
    session = portal.session
    session[SESSION_USER_KEY] = PortalUserFactory(customer=customer).pk
    session.save()
    pages += [
        portal.get(reverse("portal:invoice_detail", args=[invoice.number])),
        portal.get(reverse("portal:invoices")),
    ]
    for response in pages:
        html = response.content.decode()
        assert response.status_code == 200, response.request["PATH_INFO"]
        assert "<script>alert" not in html and "<script>steal" not in html and "<img src=x" not in html
        assert "<i>Consulting</i>" not in html
    for response in pages[:2] + pages[3:]:
        html = response.content.decode()
        assert (
            escaped_name in html or escaped_name.replace("&quot;", "&#x27;") in html or ("&lt;script&gt;alert(" in html)
        ), response.request["PATH_INFO"]
    detail = pages[-2].content.decode()
    assert "&lt;i&gt;Consulting&lt;/i&gt; &lt;script&gt;steal()&lt;/script&gt;" in detail
    text = "\n".join(
        page.extract_text() for page in PdfReader(io.BytesIO(documents.render_invoice_pdf(invoice=invoice))).pages
    )
    assert '<script>alert("x")</script><b>Bold</b> & Söhne' in text
    assert "<i>Consulting</i> <script>steal()</script>" in text
    assert "<img src=x onerror=alert(1)>" in text


def test_emoji_and_right_to_left_text_survive_import_storage_pages_and_reimport(series: Any) -> None:
    text = (
        "external_id,name,email,country,address_line1,city,notes\n"
        f'E-1,{EMOJI},emoji@example.com,FR,"1 Rue 🎉",Paris,"{RTL}\n{HEBREW}"\n'
        f"R-1,{RTL},rtl@example.com,AE,{HEBREW},دبي,\u200f\u200emarks\u202e\n"
    ).encode()
    report = customers_import_csv(stream=io.BytesIO(text))
    assert report.created == 2
    emoji = Customer.objects.get(external_id="E-1")
    rtl = Customer.objects.get(external_id="R-1")
    assert (emoji.name, emoji.address_line1, emoji.notes) == (EMOJI, "1 Rue 🎉", f"{RTL}\n{HEBREW}")
    assert (rtl.name, rtl.address_line1, rtl.city, rtl.notes) == (RTL, HEBREW, "دبي", "\u200f\u200emarks\u202e")
    again = customers_import_csv(stream=io.BytesIO(text))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)

    invoice = InvoiceFactory(
        customer=rtl, lines=[{"description": f"{EMOJI} / {RTL}", "unit_amount": Decimal("1.00")}], finalized=START
    )
    assert invoice.customer_snapshot["name"] == RTL
    portal = Client()
    session = portal.session
    session[SESSION_USER_KEY] = PortalUserFactory(customer=rtl).pk
    session.save()
    html = portal.get(reverse("portal:invoice_detail", args=[invoice.number])).content.decode()
    assert RTL in html and EMOJI in html


def test_nul_characters_are_validation_errors_everywhere_not_database_errors(admin_client: Client, series: Any) -> None:
    customer = CustomerFactory(exempt=True, name="Clean")
    before = _table_counts()
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    for field, value, message in [
        ("name", "Evil\x00Corp", "Null characters are not allowed."),
        ("notes", "a\x00b", "Null characters are not allowed."),
        ("metadata", '{"note": "a\\u0000b"}', "NUL"),
        ("metadata", '{"a\\u0000": 1}', "NUL"),
    ]:
        data = _form_data(admin_client, url)
        data[field] = value
        assert message in _errors_of(admin_client.post(url, data)), field
    # The import refuses the file (csvfile) and the portal's billing details form refuses the field.
    with pytest.raises(CustomerImportError) as caught:
        customers_import_csv(stream=io.BytesIO(b"name,email,country\nA\x00,a@example.com,DE\n"))
    assert "line 2 contains a NUL character" in caught.value.report.errors[0].message
    portal = Client()
    session = portal.session
    session[SESSION_USER_KEY] = PortalUserFactory(customer=customer).pk
    session.save()
    response = portal.post(
        reverse("portal:billing_details"), {"email": "a@example.com", "country": "DE", "city": "Ber\x00lin"}
    )
    assert response.status_code == 400 and "Null characters are not allowed." in response.content.decode()
    # Search boxes: a NUL in the query is a normal (empty) search, not a 500.
    for changelist in ("customers_customer", "invoicing_invoice", "payments_payment", "subscriptions_subscription"):
        response = admin_client.get(reverse(f"admin:{changelist}_changelist"), {"q": "abc\x00def"})
        assert response.status_code == 200, changelist
    assert _table_counts() == before
    customer.refresh_from_db()
    assert (customer.name, customer.metadata, customer.city) == ("Clean", customer.metadata, customer.city)
