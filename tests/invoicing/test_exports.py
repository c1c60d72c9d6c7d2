"""Accounting export: exact file contents for a small period, a journal that balances per document, formula
injection neutralised, the command and the admin screen with its permission."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from billing_project.staff_groups import AUDITOR, BILLING_CLERK
from invoicing.services import credit_note_issue, invoice_void
from reporting.exports import XERO_HEADER, accounting_export_write
from tests.factories import CustomerFactory, InvoiceFactory, PriceFactory, StaffUserFactory, record_payment

pytestmark = pytest.mark.django_db
D = Decimal
MARCH_1, MARCH_31 = dt.date(2026, 3, 1), dt.date(2026, 3, 31)
EXPORT_URL = "admin:invoicing_invoice_accounting_export"
ALPHA = '"\'=HYPERLINK(""http://x"")"'  # the customer name as a neutralised, quoted CSV cell


@pytest.fixture
def march(series, vat_de, settings):
    """Two invoices (one with a catalog price mapped to its own revenue account), a credit note on the first and
    a payment that settles the second and leaves 10.50 as customer credit; plus what must not be exported."""
    settings.ACCOUNTING_ACCOUNTS = {"revenue_by_product": {"Gym membership": "4100"}}
    price = PriceFactory(product__name="Gym membership")
    alpha = CustomerFactory(name='=HYPERLINK("http://x")', email="alpha@customer.example")
    beta = CustomerFactory(name="Beta GmbH", email="beta@customer.example", tax_id="DE123456789")
    first = InvoiceFactory(
        customer=alpha,
        lines=[
            {"description": "Gym membership March", "unit_amount": D("100.00"), "amount": D("100.00"), "price": price},
            {"description": "Towel", "quantity": D(3), "unit_amount": D("3.335")},
        ],
        finalized=dt.date(2026, 3, 2),
    )
    second = InvoiceFactory(
        customer=beta, lines=[{"description": "Consulting", "unit_amount": D("50.00")}], finalized=dt.date(2026, 3, 5)
    )
    credit_note = credit_note_issue(invoice=first, reason="Goodwill", amount=D("23.80"), issue_date=dt.date(2026, 3, 6))
    payment = record_payment(customer=beta, amount="70.00", received_on=dt.date(2026, 3, 10))
    InvoiceFactory(customer=beta)  # a draft
    InvoiceFactory(customer=beta, finalized=dt.date(2026, 4, 1))  # next period
    return {"first": first, "second": second, "credit_note": credit_note, "payment": payment}


def _export(export_format: str, date_from: dt.date = MARCH_1, date_to: dt.date = MARCH_31) -> tuple[str, object]:
    out = io.StringIO()
    summary = accounting_export_write(out=out, export_format=export_format, date_from=date_from, date_to=date_to)
    return out.getvalue(), summary


def test_plain_csv_has_one_row_per_document_line(march):
    payment = f"PAY-{march['payment'].pk}"
    text, summary = _export("csv")
    assert text.splitlines() == [
        "document_type,document_number,status,date,due_date,customer,customer_email,customer_tax_id,currency,line,"
        "description,quantity,unit_amount,net_amount,tax_category,tax_name,tax_percentage,tax_amount,line_total,document_total,"
        "reference",
        f"invoice,INV-2026-000001,open,2026-03-02,2026-03-16,{ALPHA},alpha@customer.example,,EUR,1,"
        "Gym membership March,1,100.00,100.00,S,VAT 19 %,19,19.00,119.00,130.91,",
        f"invoice,INV-2026-000001,open,2026-03-02,2026-03-16,{ALPHA},alpha@customer.example,,EUR,2,"
        "Towel,3,3.335,10.01,S,VAT 19 %,19,1.90,11.91,130.91,",
        "invoice,INV-2026-000002,paid,2026-03-05,2026-03-19,Beta GmbH,beta@customer.example,DE123456789,EUR,1,"
        "Consulting,1,50.00,50.00,S,VAT 19 %,19,9.50,59.50,59.50,",
        f"credit_note,CN-2026-000001,issued,2026-03-06,,{ALPHA},alpha@customer.example,,EUR,1,"
        "Credit: Goodwill,,,20.00,S,VAT 19 %,19,3.80,23.80,23.80,INV-2026-000001",
        f"payment,{payment},succeeded,2026-03-10,,Beta GmbH,beta@customer.example,DE123456789,EUR,1,"
        "Allocated to INV-2026-000002,,,59.50,,,,,59.50,70.00,INV-2026-000002",
        f"payment,{payment},succeeded,2026-03-10,,Beta GmbH,beta@customer.example,DE123456789,EUR,2,"
        "To customer credit,,,10.50,,,,,10.50,70.00,",
    ]
    assert str(summary) == "csv: 2 invoice(s), 1 credit note(s), 1 payment(s), 6 row(s) for 2026-03-01..2026-03-31"


def test_journal_lines_are_exact_and_balance_per_document(march):
    payment = f"PAY-{march['payment'].pk}"
    text, _ = _export("journal")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["document_number"], r["account"], r["description"], r["debit"], r["credit"]) for r in rows] == [
        ("INV-2026-000001", "1200", "Invoice INV-2026-000001", "130.91", ""),
        ("INV-2026-000001", "4100", "Revenue", "", "100.00"),
        ("INV-2026-000001", "2200", "VAT 19 %", "", "20.90"),
        ("INV-2026-000001", "4000", "Revenue", "", "10.01"),
        ("INV-2026-000002", "1200", "Invoice INV-2026-000002", "59.50", ""),
        ("INV-2026-000002", "4000", "Revenue", "", "50.00"),
        ("INV-2026-000002", "2200", "VAT 19 %", "", "9.50"),
        ("CN-2026-000001", "4000", "Revenue", "20.00", ""),
        ("CN-2026-000001", "2200", "VAT 19 %", "3.80", ""),
        ("CN-2026-000001", "1200", "Invoice INV-2026-000001", "", "23.80"),
        (payment, "1000", f"Payment {payment}", "70.00", ""),
        (payment, "1200", "Invoice INV-2026-000002", "", "59.50"),
        (payment, "2300", "Customer credit (overpayment)", "", "10.50"),
    ]
    assert {r["currency"] for r in rows} == {"EUR"}
    assert rows[0]["date"] == "2026-03-02" and rows[0]["customer"] == '\'=HYPERLINK("http://x")'
    balance: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        balance[row["document_number"]] += D(row["debit"] or 0) - D(row["credit"] or 0)
    assert balance == {"INV-2026-000001": 0, "INV-2026-000002": 0, "CN-2026-000001": 0, payment: 0}


def test_credit_note_on_a_paid_invoice_goes_to_customer_credit_and_balances(series, vat_de):
    invoice = InvoiceFactory(finalized=dt.date(2026, 3, 2))
    record_payment(customer=invoice.customer, amount="119.00", received_on=dt.date(2026, 3, 3))
    credit_note_issue(invoice=invoice, reason="Cancelled", issue_date=dt.date(2026, 3, 4))
    rows = list(csv.DictReader(io.StringIO(_export("journal")[0])))
    credit_note_rows = [(r["account"], r["debit"], r["credit"]) for r in rows if r["document_type"] == "credit_note"]
    assert credit_note_rows == [("4000", "100.00", ""), ("2200", "19.00", ""), ("2300", "", "119.00")]


def test_xero_file_uses_the_template_columns_and_negative_credit_notes(march):
    text, summary = _export("xero")
    lines = text.splitlines()
    assert lines[0] == ",".join(XERO_HEADER)
    assert lines[0].startswith("*ContactName,EmailAddress,POAddressLine1,POAddressLine2,POAddressLine3,")
    assert ",*InvoiceNumber,Reference,*InvoiceDate,*DueDate,InventoryItemCode,*Description,*Quantity," in lines[0]
    assert lines[0].endswith(
        ",*UnitAmount,Discount,*AccountCode,*TaxType,TrackingName1,TrackingOption1,"
        "TrackingName2,TrackingOption2,Currency,BrandingTheme"
    )
    address = "Hauptstraße 1,,,,Berlin,,10115,DE"
    assert lines[1:] == [
        f"{ALPHA},alpha@customer.example,{address},INV-2026-000001,,02/03/2026,16/03/2026,,"
        "Gym membership March,1,100.00,,4100,VAT 19 %,,,,,EUR,",
        # 3 × 3.335 is 10.005, not the line's 10.01: one unit of the net amount keeps Xero's total equal to ours
        f"{ALPHA},alpha@customer.example,{address},INV-2026-000001,,02/03/2026,16/03/2026,,"
        "Towel,1,10.01,,4000,VAT 19 %,,,,,EUR,",
        f"Beta GmbH,beta@customer.example,{address},INV-2026-000002,,05/03/2026,19/03/2026,,"
        "Consulting,1,50.00,,4000,VAT 19 %,,,,,EUR,",
        f"{ALPHA},alpha@customer.example,{address},CN-2026-000001,INV-2026-000001,06/03/2026,06/03/2026,,"
        "Credit: Goodwill,1,-20.00,,4000,VAT 19 %,,,,,EUR,",
    ]
    assert (summary.invoices, summary.credit_notes, summary.payments) == (2, 1, 0)


@pytest.mark.parametrize("export_format", ["csv", "journal", "xero"])
def test_cells_that_a_spreadsheet_would_run_are_neutralised(series, vat_de, export_format):
    customer = CustomerFactory(name="@SUM(A1:A9)", address_line1="+49 30 1234", city="\tBerlin")
    InvoiceFactory(
        customer=customer, lines=[{"description": "-2+3", "unit_amount": D("10.00")}], finalized=dt.date(2026, 3, 2)
    )
    rows = list(csv.reader(io.StringIO(_export(export_format)[0])))[1:]
    cells = [cell for row in rows for cell in row]
    assert "'@SUM(A1:A9)" in cells
    assert not any(cell[:1] in ("=", "+", "@", "\t") for cell in cells)
    assert not any(cell.startswith("-") and not cell[1:2].isdigit() for cell in cells)
    if export_format != "journal":
        assert "'-2+3" in cells
    if export_format == "xero":
        assert "'+49 30 1234" in cells and "'\tBerlin" in cells


def test_void_invoice_is_listed_in_the_csv_and_left_out_of_journal_and_xero(series, vat_de):
    kept = InvoiceFactory(finalized=dt.date(2026, 3, 2))
    voided = InvoiceFactory(finalized=dt.date(2026, 3, 3))
    invoice_void(invoice=voided, reason="wrong customer")
    plain, _ = _export("csv")
    assert f"invoice,{voided.number},void," in plain
    for export_format in ("journal", "xero"):
        text, summary = _export(export_format)
        assert voided.number not in text and kept.number in text
        assert summary.skipped_void == 1
        assert str(summary).endswith(", 1 void invoice(s) left out")


def test_amounts_use_the_currency_minor_unit(series, vat_de):
    from accounting.models import ExchangeRate

    ExchangeRate.objects.create(date=MARCH_1, currency="JPY", rate=D("160"))
    customer = CustomerFactory(currency="JPY")
    InvoiceFactory(customer=customer, lines=[{"description": "Plan", "unit_amount": D("1000")}], finalized=MARCH_1)
    rows = list(csv.DictReader(io.StringIO(_export("journal")[0])))
    # the company-currency amounts at 1 EUR = 160 JPY, to the cent: 7.4375 → 7.44, 6.25, 1.1875 → 1.19
    assert [(r["debit"], r["credit"], r["currency"], r["base_debit"], r["base_credit"]) for r in rows] == [
        ("1190", "", "JPY", "7.44", ""),
        ("", "1000", "JPY", "", "6.25"),
        ("", "190", "JPY", "", "1.19"),
    ]


def test_command_writes_the_file_and_prints_a_one_line_summary(march, tmp_path):
    target = tmp_path / "journal.csv"
    out = io.StringIO()
    call_command(
        "export_accounting", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "journal",
        "--output", str(target), stdout=out,
    )  # fmt: skip
    assert target.read_bytes().decode("utf-8") == _export("journal")[0]  # CRLF rows, as RFC 4180
    assert out.getvalue().splitlines() == [
        f"Exported journal: 2 invoice(s), 1 credit note(s), 1 payment(s), 13 row(s) for 2026-03-01..2026-03-31 "
        f"to {target}."
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["journal.csv"]


def test_command_without_output_writes_to_stdout(march):
    out, err = io.StringIO(), io.StringIO()
    call_command("export_accounting", "--from", "2026-03-01", "--to", "2026-03-31", stdout=out, stderr=err)
    assert out.getvalue() == _export("csv")[0]
    assert err.getvalue().startswith("Exported csv: 2 invoice(s)")


def test_command_refuses_a_bad_period(db):
    with pytest.raises(CommandError, match="not a date"):
        call_command("export_accounting", "--from", "2026-13-01", "--to", "2026-03-31")
    with pytest.raises(CommandError, match="ends"):
        call_command("export_accounting", "--from", "2026-03-31", "--to", "2026-03-01", stdout=io.StringIO())


@pytest.mark.parametrize("role", [AUDITOR, BILLING_CLERK])
def test_admin_screen_downloads_the_export_for_staff_who_see_billing_data(client, march, role):
    client.force_login(StaffUserFactory(group=role))
    changelist = client.get(reverse("admin:invoicing_invoice_changelist"))
    assert reverse(EXPORT_URL).encode() in changelist.content
    assert client.get(reverse(EXPORT_URL)).status_code == 200
    response = client.post(reverse(EXPORT_URL), {"date_from": "2026-03-01", "date_to": "2026-03-31", "format": "xero"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="accounting-xero-2026-03-01-2026-03-31.csv"'
    assert response.content.decode() == _export("xero")[0]


def test_admin_screen_refuses_staff_without_permission(client, march):
    user = StaffUserFactory()
    user.save()  # the factory saves the password only with a group; force_login checks its hash
    client.force_login(user)
    assert client.get(reverse("admin:index")).status_code == 200
    response = client.post(reverse(EXPORT_URL), {"date_from": "2026-03-01", "date_to": "2026-03-31", "format": "csv"})
    assert response.status_code == 403
    assert client.get(reverse(EXPORT_URL)).status_code == 403
    assert reverse(EXPORT_URL).encode() not in client.get(reverse("admin:invoicing_invoice_changelist")).content


def test_admin_screen_shows_form_errors_for_a_reversed_period(admin_client, db):
    response = admin_client.post(
        reverse(EXPORT_URL), {"date_from": "2026-03-31", "date_to": "2026-03-01", "format": "csv"}
    )
    assert response.status_code == 200
    assert b"The period ends before it starts." in response.content


def test_export_reads_a_bounded_number_of_queries(series, vat_de, django_assert_max_num_queries):
    for day in range(1, 21):
        invoice = InvoiceFactory(
            lines=[{"description": "A"}, {"description": "B", "unit_amount": D("5.00")}],
            finalized=dt.date(2026, 3, day),
        )
        record_payment(customer=invoice.customer, amount="130.00", received_on=dt.date(2026, 3, day))
    for export_format in ("csv", "journal", "xero"):
        with django_assert_max_num_queries(8):
            _, summary = _export(export_format)
        assert summary.invoices == 20


def test_journal_books_refunds_credit_applied_and_manual_adjustments_balanced(march):
    import time_machine

    from payments.services import customer_credit_adjust, customer_credit_apply, payment_refund

    beta = march["payment"].customer
    with time_machine.travel(dt.datetime(2026, 3, 20, 12, tzinfo=dt.UTC), tick=False):
        extra = InvoiceFactory(
            customer=beta, lines=[{"description": "Extra", "unit_amount": D("5.00")}], finalized=dt.date(2026, 3, 20)
        )
        assert customer_credit_apply(invoice=extra) == D("5.95")  # of the 10.50 the payment left
        refund = payment_refund(payment=march["payment"], amount=D("2.00"), reason="Returned overpayment")
        adjustment = customer_credit_adjust(
            customer=march["first"].customer, amount=D("5.00"), currency="EUR", reason="Goodwill for the outage"
        )
    text, summary = _export("journal")
    rows = list(csv.DictReader(io.StringIO(text)))
    by_document: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    for r in rows:
        by_document[r["document_number"]].append((r["account"], r["description"], r["debit"], r["credit"]))
    applied = next(
        n for n in by_document if n.startswith("CR-") and any("applied" in d for _, d, _, _ in by_document[n])
    )
    assert by_document[applied] == [
        ("2300", "Customer credit applied", "5.95", ""),
        ("1200", f"Invoice {extra.number}", "", "5.95"),
    ]
    assert by_document[f"REF-{refund.pk}"] == [
        ("1000", f"Refund REF-{refund.pk}", "", "2.00"),
        ("2300", "Customer credit", "2.00", ""),
    ]
    assert by_document[f"CR-{adjustment.pk}"] == [
        ("6900", "Goodwill for the outage", "5.00", ""),
        ("2300", "Customer credit", "", "5.00"),
    ]
    for lines in by_document.values():  # every document balances
        debit = sum((D(d) for _, _, d, _ in lines if d), D(0))
        credit = sum((D(c) for _, _, _, c in lines if c), D(0))
        assert debit == credit
    assert "1 refund(s), 2 customer credit movement(s)" in str(summary)
