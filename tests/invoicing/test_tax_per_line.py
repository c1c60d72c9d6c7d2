"""Tax per line (issue 21 part 1): each line's VAT category is resolved against the customer, and the invoice
keeps one summary row per category and rate. Exact amounts; the seller is the German GmbH of tests/conftest.py."""

from __future__ import annotations

import datetime as dt
import importlib
import io
from decimal import Decimal as D

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from djmoney.money import Money
from pypdf import PdfReader

from core.tax_categories import TaxCategory, en16931_code
from invoicing import documents
from invoicing.billing_run import billing_run
from invoicing.delivery import invoice_email_context
from invoicing.models import Invoice, InvoiceLine, TaxTreatment
from invoicing.services import (
    CreditNoteLineSpec,
    InvoiceError,
    InvoiceLineSpec,
    credit_note_issue,
    invoice_create_draft,
    invoice_finalize,
)
from invoicing.taxes import TaxRateMissing, resolve_tax, tax_rates_load
from reporting.reports import ReportFilters, tax_report
from subscriptions.models import Product
from subscriptions.services import ItemSpec, discount_create
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory, TaxRateFactory
from tests.factories.subscriptions import CouponFactory, ProductFactory

JAN_1 = dt.date(2026, 1, 1)
EXEMPT_REASON = "Steuerfreie Bildungsleistung nach §4 Nr. 21 UStG"


def _text(pdf: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())


def _rows(summary: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(row["category"], row["percentage"], row["taxable_amount"], row["tax_amount"]) for row in summary]


@pytest.fixture
def rates_de(series):
    return {
        "standard": TaxRateFactory(country="DE", percentage=D("19"), name="VAT 19 %"),
        "reduced": TaxRateFactory(country="DE", percentage=D("7"), name="VAT 7 %", category=TaxCategory.REDUCED),
    }


def _mixed_subscription(customer, *, coupon_amount: str | None = "10.00"):
    plan = PriceFactory(product=ProductFactory(name="Cloud plan"), unit_amount=Money(D("100.00"), "EUR"))
    ebook = PriceFactory(
        product=ProductFactory(name="Handbook (e-book)", tax_category=TaxCategory.REDUCED),
        unit_amount=Money(D("24.99"), "EUR"),
    )
    subscription = SubscriptionFactory(
        customer=customer, items=[ItemSpec(price=plan, quantity=1), ItemSpec(price=ebook, quantity=1)], price=plan
    )
    if coupon_amount:
        coupon = CouponFactory(amount=True, amount_off=Money(D(coupon_amount), "EUR"), code="WELCOME10")
        discount_create(coupon=coupon, as_of=JAN_1, subscription=subscription)
    return subscription


@pytest.fixture
def mixed_invoice(rates_de) -> Invoice:
    customer = CustomerFactory(name="Buchladen GmbH", country="DE", tax_id="DE136695976", language="en")
    _mixed_subscription(customer)
    billing_run(as_of=JAN_1)
    return Invoice.objects.get(customer=customer)


# --- the billing run: 19 % + 7 % with a coupon -------------------------------------------------------------


def test_german_b2b_19_and_7_percent_lines_with_a_coupon_give_two_summary_rows(mixed_invoice):
    # The 10.00 coupon is spread over the lines in proportion to their amounts (largest remainder): 8.00 off the
    # plan, 2.00 off the e-book; each line is then taxed at its own rate and rounded on its own.
    lines = {line.description.split(" ")[0]: line for line in mixed_invoice.lines.all()}
    plan, ebook = lines["Cloud"], lines["Handbook"]
    assert (plan.tax_category, plan.tax_percentage, plan.discount_amount, plan.net_amount, plan.tax_amount) == (
        "S", D("19"), D("8.00"), D("92.00"), D("17.48")
    )  # fmt: skip
    assert (ebook.tax_category, ebook.tax_percentage, ebook.discount_amount, ebook.net_amount, ebook.tax_amount) == (
        "AA", D("7"), D("2.00"), D("22.99"), D("1.61")
    )  # fmt: skip
    assert _rows(mixed_invoice.tax_summary) == [("S", "19", "92.00", "17.48"), ("AA", "7", "22.99", "1.61")]
    assert (mixed_invoice.subtotal, mixed_invoice.discount_total, mixed_invoice.tax_total, mixed_invoice.total) == (
        D("124.99"), D("10.00"), D("19.09"), D("134.08")
    )  # fmt: skip
    assert mixed_invoice.tax_treatment == TaxTreatment.STANDARD
    assert mixed_invoice.tax_note == ""
    assert [en16931_code(row["category"]) for row in mixed_invoice.tax_summary] == ["S", "S"]


def test_mixed_invoice_pdf_and_email_print_one_row_per_rate(mixed_invoice):
    text = _text(documents.render_invoice_pdf(invoice=mixed_invoice))
    assert "VAT 19 % on €92.00 €17.48" in text
    assert "VAT 7 % on €22.99 €1.61" in text
    assert "€134.08" in text
    context = invoice_email_context(mixed_invoice)
    assert [(row["label"], row["amount"]) for row in context["tax_rows"]] == [
        ("VAT 19 % on €92.00", "€17.48"),
        ("VAT 7 % on €22.99", "€1.61"),
    ]


def test_tax_report_has_a_row_per_category_and_rate(mixed_invoice):
    rows = tax_report(filters=ReportFilters(date_from=JAN_1, date_to=dt.date(2026, 1, 31)))
    assert [(r["tax_category"], r["tax_percentage"], r["taxable"], r["tax"]) for r in rows] == [
        ("AA", "7", D("22.99"), D("1.61")),
        ("S", "19", D("92.00"), D("17.48")),
    ]


def test_credit_note_of_the_mixed_invoice_mirrors_its_rows(mixed_invoice):
    full = credit_note_issue(invoice=mixed_invoice, reason="Cancelled order", issue_date=dt.date(2026, 1, 5))
    assert full.tax_summary == mixed_invoice.tax_summary
    assert (full.net_total, full.tax_total, full.total) == (D("114.99"), D("19.09"), D("134.08"))
    assert sorted(full.lines.values_list("tax_category", flat=True)) == ["AA", "S"]
    text = _text(documents.render_credit_note_pdf(credit_note=full))
    assert "VAT 19 % on €92.00 €17.48" in text and "VAT 7 % on €22.99 €1.61" in text


def test_credit_note_by_amount_splits_over_the_categories(rates_de):
    customer = CustomerFactory(country="DE", tax_id="DE136695976")
    _mixed_subscription(customer)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    note = credit_note_issue(invoice=invoice, reason="Goodwill", amount=D("50.00"), issue_date=dt.date(2026, 1, 5))
    # 50.00 over the gross totals 109.48 (S) and 24.60 (AA): 40.83 and 9.17, tax taken out as inclusive tax.
    assert _rows(note.tax_summary) == [("S", "19", "34.31", "6.52"), ("AA", "7", "8.57", "0.60")]
    assert note.total == D("50.00")


# --- exempt lines -------------------------------------------------------------------------------------------


def test_exempt_lines_carry_their_reason_printed_once_on_the_pdf(rates_de):
    customer = CustomerFactory(country="DE", language="en")
    draft = invoice_create_draft(
        customer=customer,
        lines=[
            InvoiceLineSpec(description="Consulting", quantity=D(2), unit_amount=D("150.00")),
            *[
                InvoiceLineSpec(
                    description=f"Workshop day {n}",
                    unit_amount=D("480.00"),
                    tax_category=TaxCategory.EXEMPT,
                    tax_exemption_reason_code="VATEX-EU-132-1I",
                    tax_exemption_reason=EXEMPT_REASON,
                )
                for n in (1, 2)
            ],
        ],
    )
    invoice = invoice_finalize(invoice=draft, issue_date=JAN_1)
    assert _rows(invoice.tax_summary) == [("S", "19", "300.00", "57.00"), ("E", "0", "960.00", "0.00")]
    exempt_row = invoice.tax_summary[1]
    assert (exempt_row["exemption_reason_code"], exempt_row["exemption_reason"]) == ("VATEX-EU-132-1I", EXEMPT_REASON)
    assert (invoice.tax_total, invoice.total) == (D("57.00"), D("1317.00"))
    assert invoice.tax_treatment == TaxTreatment.STANDARD
    text = _text(documents.render_invoice_pdf(invoice=invoice))
    assert text.count(EXEMPT_REASON) == 1
    assert "VAT 0 % (Tax exempt) on €960.00 €0.00" in text


def test_an_exempt_line_without_a_reason_is_refused_naming_the_field(rates_de):
    with pytest.raises(InvoiceError, match="tax_exemption_reason"):
        invoice_create_draft(
            customer=CustomerFactory(),
            lines=[InvoiceLineSpec(description="Course", unit_amount=D("10"), tax_category=TaxCategory.EXEMPT)],
        )
    assert not Invoice.objects.exists()


# --- reverse charge, intra-community supply, export -----------------------------------------------------------


def test_reverse_charge_invoice_for_an_eu_business_with_a_vat_id(rates_de):
    customer = CustomerFactory(name="Wiener Verlag GmbH", country="AT", tax_id="ATU13585627", language="en")
    _mixed_subscription(customer, coupon_amount=None)
    TaxRateFactory(country="AT", percentage=D("20"))
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    assert set(invoice.lines.values_list("tax_category", "tax_percentage", "tax_amount")) == {("AE", D(0), D("0.00"))}
    assert _rows(invoice.tax_summary) == [("AE", "0", "124.99", "0.00")]
    assert (invoice.tax_total, invoice.total, invoice.tax_treatment) == (D(0), D("124.99"), TaxTreatment.REVERSE_CHARGE)
    assert "ATU13585627" in invoice.tax_note
    text = _text(documents.render_invoice_pdf(invoice=invoice))
    assert "Reverse charge: the recipient is liable for the VAT (Article 196" in text


def test_intra_community_supply_of_goods_to_an_eu_business_and_the_same_goods_at_home(rates_de):
    token = PriceFactory(
        per_unit=True,
        product=ProductFactory(name="Hardware token", tax_category=TaxCategory.INTRA_COMMUNITY),
        unit_amount=Money(D("49.00"), "EUR"),
    )
    french = CustomerFactory(name="Société Exemple SARL", country="FR", tax_id="FR40303265045", language="en")
    german = CustomerFactory(name="Heim GmbH", country="DE")
    SubscriptionFactory(customer=french, price=token, quantity=2)
    SubscriptionFactory(customer=german, price=token, quantity=2)
    billing_run(as_of=JAN_1)
    abroad, home = Invoice.objects.get(customer=french), Invoice.objects.get(customer=german)
    assert _rows(abroad.tax_summary) == [("K", "0", "98.00", "0.00")]
    assert (abroad.total, abroad.tax_treatment) == (D("98.00"), TaxTreatment.REVERSE_CHARGE)
    assert "Article 138" in abroad.tax_note and "FR40303265045" in abroad.tax_note
    assert "Tax-free intra-community supply (Article 138" in _text(documents.render_invoice_pdf(invoice=abroad))
    # Without a VAT id in another member state it is a domestic sale at the standard rate.
    assert _rows(home.tax_summary) == [("S", "19", "98.00", "18.62")]
    assert home.total == D("116.62")


def test_jpy_export_invoice_outside_the_eu(series):
    kit = PriceFactory(
        product=ProductFactory(name="Sensor kit", tax_category=TaxCategory.EXPORT),
        unit_amount=Money(D("12000"), "JPY"),
    )
    support = PriceFactory(
        per_unit=True, product=ProductFactory(name="Support seats"), unit_amount=Money(D("3333.5"), "JPY")
    )
    customer = CustomerFactory(name="Tanaka KK", country="JP", currency="JPY", language="en")
    SubscriptionFactory(
        customer=customer, items=[ItemSpec(price=kit, quantity=1), ItemSpec(price=support, quantity=3)], price=kit
    )
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(customer=customer)
    # The goods are an export (G); the service has its place of supply in Japan: outside the scope (O). JPY has
    # no minor unit: 3 × 3,333.5 = 10,000.5 → 10,001.
    assert _rows(invoice.tax_summary) == [("G", "0", "12000", "0"), ("O", "0", "10001", "0")]
    assert (invoice.currency, invoice.tax_total, invoice.total) == ("JPY", D(0), D("22001"))
    text = _text(documents.render_invoice_pdf(invoice=invoice))
    assert "Tax-free export outside the EU (Article 146" in text
    assert "Not subject to VAT in Germany" in text
    assert "VAT 0 % (Export) on ¥12,000 ¥0" in text


# --- resolution rules ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_reduced_line_without_a_reduced_rate_is_a_configuration_error_naming_it(series):
    TaxRateFactory(country="DE", percentage=D("19"))
    customer = CustomerFactory(country="DE")
    rates = tax_rates_load()
    assert resolve_tax(customer=customer, tax_rates_by_country=rates).percentage == D("19")
    with pytest.raises(TaxRateMissing, match="no active reduced rate tax rate for DE"):
        resolve_tax(customer=customer, tax_rates_by_country=rates, category=TaxCategory.REDUCED)


@pytest.mark.django_db
def test_customer_status_wins_over_the_line_category_except_a_line_exemption(series):
    TaxRateFactory(country="DE", percentage=D("7"), category=TaxCategory.REDUCED)
    rates = tax_rates_load()
    exempt_customer = CustomerFactory(exempt=True)
    assert resolve_tax(customer=exempt_customer, tax_rates_by_country=rates, category="AA").category == "E"
    line_exempt = resolve_tax(
        customer=exempt_customer, tax_rates_by_country=rates, category="E", exemption_reason=EXEMPT_REASON
    )
    assert (line_exempt.category, line_exempt.exemption_reason) == ("E", EXEMPT_REASON)
    uk = CustomerFactory(country="GB", tax_id="GB980780684", tax_status="reverse_charge")
    assert resolve_tax(customer=uk, tax_rates_by_country=rates, category="AA").category == "AE"
    us = CustomerFactory(country="US")
    assert resolve_tax(customer=us, tax_rates_by_country=rates, category="G").category == "G"
    assert resolve_tax(customer=us, tax_rates_by_country=rates, category="Z").category == "Z"
    assert resolve_tax(customer=us, tax_rates_by_country=rates, category="S").category == "O"


def test_a_price_without_a_category_takes_its_products(rates_de):
    product = ProductFactory(tax_category=TaxCategory.REDUCED)
    assert PriceFactory(product=product).tax_category_effective == ("AA", "", "")
    assert PriceFactory(product=product, tax_category="S").tax_category_effective == ("S", "", "")


# --- existing documents ------------------------------------------------------------------------------------


def test_migration_gives_issued_documents_their_category_and_never_changes_an_amount(rates_de):
    """Issued before categories existed: one treatment per invoice, summary rows without a category."""
    domestic = invoice_finalize(
        invoice=invoice_create_draft(
            customer=CustomerFactory(country="DE"),
            lines=[InvoiceLineSpec(description="Plan", quantity=D(3), unit_amount=D("3.335"))],
        ),
        issue_date=JAN_1,
    )
    reverse = invoice_finalize(
        invoice=invoice_create_draft(
            customer=CustomerFactory(reverse_charge=True),
            lines=[InvoiceLineSpec(description="Plan", unit_amount=D("80.00"))],
        ),
        issue_date=JAN_1,
    )
    credit_note_issue(invoice=reverse, reason="Partial", amount=D("20.00"), issue_date=JAN_1)
    amount_columns = ("subtotal", "discount_total", "tax_total", "total", "amount_due", "amount_credited")
    line_columns = ("amount", "discount_amount", "net_amount", "tax_name", "tax_percentage", "tax_amount")

    def snapshot() -> list:
        return [
            list(Invoice.objects.order_by("pk").values_list(*amount_columns)),
            list(InvoiceLine.objects.order_by("pk").values_list(*line_columns)),
            [
                {k: row[k] for k in ("name", "percentage", "taxable_amount", "tax_amount")}
                for invoice in Invoice.objects.order_by("pk")
                for row in invoice.tax_summary
            ],
        ]

    before = snapshot()
    with connection.cursor() as cursor:  # as the schema migration left them: defaults, no category in the JSON
        cursor.execute("UPDATE invoicing_invoiceline SET tax_category = 'S', supply_tax_category = 'S'")
        cursor.execute("UPDATE invoicing_creditnoteline SET tax_category = 'S'")
        cursor.execute(
            "UPDATE invoicing_invoice SET tax_summary = (SELECT jsonb_agg(row - 'category' - 'exemption_reason' "
            "- 'exemption_reason_code') FROM jsonb_array_elements(tax_summary) row) WHERE tax_summary <> '[]'"
        )
    name = "0015_tax_categories_of_existing_documents"
    migration = importlib.import_module(f"invoicing.migrations.{name}")
    historical = MigrationExecutor(connection).loader.project_state(("invoicing", name)).apps
    migration.forwards(historical, None)

    assert snapshot() == before
    domestic.refresh_from_db()
    reverse.refresh_from_db()
    assert [row["category"] for row in domestic.tax_summary] == ["S"]
    assert [row["category"] for row in reverse.tax_summary] == ["AE"]
    assert list(reverse.lines.values_list("tax_category", flat=True)) == ["AE"]
    assert list(reverse.credit_notes.get().lines.values_list("tax_category", flat=True)) == ["AE"]
    assert (domestic.total, domestic.tax_total) == (D("11.91"), D("1.90"))


def test_credit_note_lines_by_line_keep_the_category(mixed_invoice):
    plan_line = mixed_invoice.lines.get(tax_category="S")
    note = credit_note_issue(
        invoice=mixed_invoice,
        reason="Plan refund",
        lines=[CreditNoteLineSpec(invoice_line_id=plan_line.pk)],
        issue_date=dt.date(2026, 1, 5),
    )
    assert _rows(note.tax_summary) == [("S", "19", "92.00", "17.48")]


# --- admin ---------------------------------------------------------------------------------------------------


def test_invoice_page_shows_the_summary_per_category_and_rate(mixed_invoice, admin_client):
    page = admin_client.get(f"/admin/invoicing/invoice/{mixed_invoice.pk}/change/").content.decode()
    assert "S Standard rate · VAT 19 % (19 %): taxable €92.00, tax €17.48" in page
    assert "AA Reduced rate · VAT 7 % (7 %): taxable €22.99, tax €1.61" in page


def test_product_form_takes_the_tax_category_and_refuses_exempt_without_a_reason(admin_client, series):
    data = {
        "name": "Course",
        "statement_descriptor": "",
        "description": "",
        "tax_category": "E",
        "tax_exemption_reason_code": "VATEX-EU-132-1I",
        "tax_exemption_reason": "",
        "active": "on",
        "prices-TOTAL_FORMS": "0",
        "prices-INITIAL_FORMS": "0",
    }
    response = admin_client.post("/admin/subscriptions/product/add/", data)
    assert response.status_code == 200
    assert "An exempt product needs the exemption reason printed on the invoice." in response.content.decode()
    response = admin_client.post("/admin/subscriptions/product/add/", {**data, "tax_exemption_reason": EXEMPT_REASON})
    assert response.status_code == 302
    product = Product.objects.get(name="Course")
    assert (product.tax_category, product.tax_exemption_reason) == ("E", EXEMPT_REASON)


def test_an_exempt_line_keeps_its_reason_through_a_provisional_draft(series):
    """No rate for Germany yet: the billing run holds an untaxed draft; the exempt line's reason survives it."""
    course = PriceFactory(
        product=ProductFactory(name="Course", tax_category=TaxCategory.EXEMPT, tax_exemption_reason=EXEMPT_REASON),
        unit_amount=Money(D("100.00"), "EUR"),
    )
    plan = PriceFactory(product=ProductFactory(name="Plan"), unit_amount=Money(D("10.00"), "EUR"))
    customer = CustomerFactory(country="DE")
    SubscriptionFactory(
        customer=customer, items=[ItemSpec(price=course, quantity=1), ItemSpec(price=plan, quantity=1)], price=plan
    )
    billing_run(as_of=JAN_1)
    draft = Invoice.objects.get(customer=customer)
    assert draft.status == "draft" and draft.tax_total == 0
    assert set(draft.lines.values_list("supply_tax_category", "tax_exemption_reason")) == {
        ("E", EXEMPT_REASON),
        ("S", ""),
    }
    TaxRateFactory(country="DE", percentage=D("19"))
    invoice = invoice_finalize(invoice=draft, issue_date=JAN_1)
    assert _rows(invoice.tax_summary) == [("S", "19", "10.00", "1.90"), ("E", "0", "100.00", "0.00")]
    assert invoice.tax_summary[1]["exemption_reason"] == EXEMPT_REASON
