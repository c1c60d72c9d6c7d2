"""Malformed CSV files (issue 10, bad input): every bad file is refused with an error naming its row and column
and the problem, and NOTHING is written — through the services, the management commands and the admin upload
screens of the customer import and the bank-statement import.

Decisions pinned here (core/csvfile.py):
- UTF-8 only (a byte-order mark is accepted); Latin-1, UTF-16/32 and NUL characters are refused with the line.
- Comma, semicolon and tab are all accepted, in both imports alike: the header line decides the delimiter.
- Rows are numbered as a spreadsheet shows them (header = row 1); quoted line breaks and blank lines do not
  shift the numbers.
- A file over IMPORT_MAX_BYTES or with more than IMPORT_MAX_ROWS data rows is refused before any row is validated.
"""

from __future__ import annotations

import io
import json
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core import csvfile
from customers import services as customer_services
from customers.models import Customer
from customers.services import CustomerImportError, customers_import_csv
from invoicing.models import InvoiceStatus
from payments import bank_import
from payments.bank_import import BankImportError, bank_statement_import
from payments.models import BankStatement, BankTransaction, CreditLedgerEntry, Payment
from tests.factories import CustomerFactory, InvoiceFactory, NumberSeriesFactory

pytestmark = pytest.mark.django_db

HEADER = "name,email,country"


# --- helpers --------------------------------------------------------------------------------------------


def _customers_state() -> list[tuple[Any, ...]]:
    return list(Customer.objects.order_by("pk").values_list("pk", "name", "email", "country", "currency", "notes"))


@pytest.fixture
def existing_customer() -> Customer:
    return CustomerFactory(name="Untouched", email="keep@example.com", country="DE", external_id="KEEP-1")


def _customer_errors(data: bytes | str) -> list[tuple[int, str, str]]:
    stream = io.BytesIO(data.encode() if isinstance(data, str) else data)
    with pytest.raises(CustomerImportError) as caught:
        customers_import_csv(stream=stream)
    report = caught.value.report
    assert report.summary().endswith("nothing was written.")
    return [(error.row, error.column, error.message) for error in report.errors]


def _assert_one_error(errors: list[tuple[int, str, str]], row: int, column: str, fragment: str) -> None:
    assert any(r == row and c == column and fragment in m for r, c, m in errors), errors


@pytest.fixture
def open_invoice(db: Any) -> Any:
    """A finalized EUR invoice of 100.00 (tax exempt): what a bank transfer could pay."""
    NumberSeriesFactory(default_invoices=True)
    customer = CustomerFactory(exempt=True, currency="EUR")
    return InvoiceFactory(
        customer=customer, lines=[{"description": "Service", "unit_amount": Decimal("100.00")}], finalized=True
    )


BANK_HEADER = "Transaction ID;Booking date;Amount;Currency;Counterparty;IBAN;Remittance information"


def _bank_state() -> tuple[int, int, int, int]:
    return (
        BankStatement.objects.count(),
        BankTransaction.objects.count(),
        Payment.objects.count(),
        CreditLedgerEntry.objects.count(),
    )


def _bank_errors(data: bytes | str, **kwargs: Any) -> list[tuple[int, str, str]]:
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(BankImportError) as caught:
        bank_statement_import(data=raw, format="csv", **kwargs)
    report = caught.value.report
    assert report.summary().endswith("nothing was written.")
    return [(problem.row, problem.column, problem.message) for problem in report.errors]


# --- customer import: malformed files -------------------------------------------------------------------

CUSTOMER_BAD_FILES = [
    pytest.param(f"{HEADER},colour\nA,a@example.com,DE,red\n", 1, "colour", "unknown column", id="unknown-column"),
    pytest.param("name,email\nA,a@example.com\n", 1, "country", "required column is missing", id="missing-column"),
    pytest.param(
        f"{HEADER},name\nA,a@example.com,DE,B\n", 1, "name", "the column appears more than once", id="duplicate-column"
    ),
    pytest.param(
        f"{HEADER}\nMüller,m@example.com,DE\n".encode("latin-1"),
        1,
        "(file)",
        "not UTF-8 text: line 2 has the byte 0xFC",
        id="latin-1",
    ),
    pytest.param(f"{HEADER}\nA,a@example.com,DE\n".encode("utf-16"), 1, "(file)", "UTF-16", id="utf-16-with-bom"),
    pytest.param(
        f"{HEADER}\nA,a@example.com,DE\n".encode("utf-16-le"), 1, "(file)", "NUL character", id="utf-16-without-bom"
    ),
    pytest.param(f"{HEADER}\nA,a@example.com,DE\n".encode("utf-32"), 1, "(file)", "UTF-32", id="utf-32"),
    pytest.param(
        f"{HEADER}\nA,a@example.com,DE\nB\xc3(,b@example.com,DE\n".encode("latin-1"),
        1,
        "(file)",
        "line 3 has the byte 0xC3",
        id="invalid-utf-8-sequence",
    ),
    pytest.param(f"{HEADER}\nA\x00B,a@example.com,DE\n", 1, "(file)", "line 2 contains a NUL character", id="nul"),
    pytest.param(b"", 1, "(file)", "the file is empty", id="empty"),
    pytest.param(b"\r\n\r\n  \n", 1, "(file)", "the file is empty", id="blank-lines-only"),
    pytest.param(f"{HEADER}\n", 2, "(file)", "the file has no data rows", id="header-only"),
    pytest.param(
        f"{HEADER}\nA,a@example.com,DE\nB,b@example.com\n",
        3,
        "(row)",
        "2 cells, but the header has 3 (a missing delimiter?)",
        id="ragged-short-row",
    ),
    pytest.param(
        f"{HEADER}\nA,a@example.com,DE,oops\n",
        2,
        "(row)",
        "4 cells, but the header has 3 (an unquoted delimiter?)",
        id="ragged-long-row",
    ),
    pytest.param(
        f'{HEADER}\nA,a@example.com,DE\n"B,b@example.com,DE\nC,c@example.com,DE\n',
        3,
        "(file)",
        "a quoted value is never closed",
        id="unclosed-quote",
    ),
    pytest.param(f"{HEADER},currency\nA,a@example.com,DE,XYZ\n", 2, "currency", "XYZ is not one of", id="currency"),
    pytest.param(f"{HEADER},currency\nA,a@example.com,DE,€\n", 2, "currency", "is not one of", id="currency-sign"),
    pytest.param(f"{HEADER}\nA,a@example.com,XX\n", 2, "country", "XX is not one of", id="country"),
    pytest.param(
        f"{HEADER},payment_terms_days\nA,a@example.com,DE,99999999999999\n",
        2,
        "payment_terms_days",
        "less than or equal to 365",
        id="absurd-terms",
    ),
    pytest.param(
        f"{HEADER},payment_terms_days\nA,a@example.com,DE,-5\n",
        2,
        "payment_terms_days",
        "greater than or equal to 0",
        id="negative-terms",
    ),
    pytest.param(f"{HEADER}\n{'N' * 201},a@example.com,DE\n", 2, "name", "at most 200 characters", id="long-name"),
    pytest.param(f"{HEADER}\n,a@example.com,DE\n", 2, "name", "required", id="empty-name"),
    pytest.param(f"{HEADER}\nA,not-an-email,DE\n", 2, "email", "valid email", id="bad-email"),
]


@pytest.mark.parametrize(("data", "row", "column", "fragment"), CUSTOMER_BAD_FILES)
def test_bad_customer_file_names_row_column_and_problem_and_writes_nothing(
    existing_customer: Customer, data: Any, row: int, column: str, fragment: str
) -> None:
    before = _customers_state()
    errors = _customer_errors(data)
    _assert_one_error(errors, row, column, fragment)
    assert _customers_state() == before


def test_one_bad_row_among_good_ones_rejects_the_whole_customer_file(existing_customer: Customer) -> None:
    before = _customers_state()
    good = "\n".join(f"Good {n},good{n}@example.com,DE" for n in range(1, 40))
    errors = _customer_errors(f"{HEADER},external_id\n{good.replace(',DE', ',DE,')}\nBad,bad@example.com,ZZ,\n")
    assert errors == [(41, "country", "Select a valid choice. ZZ is not one of the available choices.")]
    assert _customers_state() == before


def test_utf8_bom_semicolons_and_tabs_are_all_understood() -> None:
    for delimiter, name in ((",", "Comma GmbH"), (";", "Semikolon GmbH"), ("\t", "Tab GmbH")):
        text = "\ufeff" + delimiter.join(("name", "email", "country", "cc_emails")) + "\n"
        text += delimiter.join((name, f"{name.split()[0].lower()}@example.com", "DE", "")) + "\n"
        report = customers_import_csv(stream=io.BytesIO(text.encode("utf-8")))
        assert report.created == 1, (delimiter, report.errors)
        assert Customer.objects.filter(name=name, country="DE").exists()
    assert Customer.objects.count() == 3


def test_the_header_decides_the_delimiter_even_when_values_are_full_of_other_separators() -> None:
    # A comma file whose unquoted values contain semicolons and tabs: a guess from the data would split it wrongly.
    text = "name,email,country,cc_emails,notes\nA; B\tC,abc@example.com,DE,x@example.com; y@example.com,a;b;c;d;e\n"
    report = customers_import_csv(stream=io.BytesIO(text.encode()))
    assert report.created == 1
    customer = Customer.objects.get(email="abc@example.com")
    assert (customer.name, customer.notes) == ("A; B\tC", "a;b;c;d;e")
    assert customer.cc_email_list == ["x@example.com", "y@example.com"]


def test_quoted_line_breaks_are_kept_and_do_not_shift_the_row_numbers(existing_customer: Customer) -> None:
    text = (
        f"{HEADER},notes\n"
        'Multi,multi@example.com,DE,"first line\nsecond line, with a comma\nthird ""quoted"" line"\n'
        "Blank line follows,blank@example.com,DE,\n"
        "\n"
        "Bad,bad@example.com,QQ,\n"
    )
    before = _customers_state()
    # Record 4 is a blank line (skipped); the bad record is row 5 as a spreadsheet shows it (physical line 7).
    assert _customer_errors(text) == [(5, "country", "Select a valid choice. QQ is not one of the available choices.")]
    assert _customers_state() == before

    report = customers_import_csv(stream=io.BytesIO(text.replace("QQ", "AT").encode()))
    assert report.created == 3
    assert Customer.objects.get(email="multi@example.com").notes == (
        'first line\nsecond line, with a comma\nthird "quoted" line'
    )


def test_codes_in_lower_case_are_accepted_and_an_empty_currency_is_the_default() -> None:
    data = b"name,email,country,currency\nLower,lower@example.com,at,chf\nEmpty,empty@example.com,de,\n"
    report = customers_import_csv(stream=io.BytesIO(data))
    assert report.created == 2
    assert Customer.objects.filter(email="lower@example.com").values_list("country", "currency").get() == ("AT", "CHF")
    assert Customer.objects.filter(email="empty@example.com").values_list("country", "currency").get() == ("DE", "EUR")


def test_command_refuses_a_bad_customer_file_naming_the_row(tmp_path: Path, capsys: Any, existing_customer: Any):
    path = tmp_path / "customers.csv"
    path.write_bytes(f"{HEADER}\nA,a@example.com,DE\nB,b@example.com\n".encode())
    before = _customers_state()
    with pytest.raises(CommandError, match=r"1 error\(s\); nothing was written"):
        call_command("import_customers", str(path))
    assert "row 3, column '(row)': 2 cells, but the header has 3" in capsys.readouterr().err
    path.write_bytes(f"{HEADER}\nA,a@example.com,DE\n".encode("utf-16"))
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_customers", str(path), "--json", stdout=out)
    assert json.loads(out.getvalue())["errors"][0]["message"].startswith("the file is UTF-16 text")
    assert _customers_state() == before


def test_admin_customer_upload_of_a_bad_file_lists_the_problems_and_writes_nothing(
    admin_client: Any, existing_customer: Any
) -> None:
    before = _customers_state()
    data = f"{HEADER}\nA,a@example.com,DE\nB,b@example.com,DE,extra\n".encode()
    response = admin_client.post(
        reverse("admin:customers_customer_import"), {"file": SimpleUploadedFile("customers.csv", data)}
    )
    assert response.status_code == 200
    assert b"<td>3</td><td>(row)</td><td>4 cells, but the header has 3 (an unquoted delimiter?)</td>" in (
        response.content
    )
    assert _customers_state() == before


def test_admin_customer_upload_over_the_size_limit_is_refused_before_reading(
    admin_client: Any, settings: Any, existing_customer: Any
) -> None:
    settings.IMPORT_MAX_BYTES = 4096
    rows = "".join(f"Customer {n},c{n}@example.com,DE\n" for n in range(200))  # valid rows, ~6 KB
    before = _customers_state()
    response = admin_client.post(
        reverse("admin:customers_customer_import"),
        {"file": SimpleUploadedFile("big.csv", f"{HEADER}\n{rows}".encode())},
    )
    assert response.status_code == 200
    assert "The file is 6 KB; the limit is 4 KB. Split it into smaller files." in response.content.decode()
    assert _customers_state() == before
    # The same limit holds for the command (which reads at most one byte past it).
    errors = _customer_errors(f"{HEADER}\n{rows}")
    assert errors == [(1, "(file)", "the file is larger than the limit of 4 KB; split it")]
    assert _customers_state() == before


# --- bank-statement import: malformed files -------------------------------------------------------------


def _statement(*rows: str, header: str = BANK_HEADER) -> str:
    return header + "\n" + "".join(row + "\n" for row in rows)


GOOD_ROW = "TX-1;2026-03-12;100,00;EUR;Kunde GmbH;;{number}"

BANK_BAD_FILES = [
    pytest.param(
        _statement("TX-1;2026-03-12;EUR;Kunde;;x", header=BANK_HEADER.replace("Amount;", "")),
        1,
        "Amount",
        "column for 'amount' not in the header",
        id="missing-column",
    ),
    pytest.param(
        _statement("TX-1;2026-03-12;100,00;EUR;Kunde;;x;200,00", header=BANK_HEADER + ";Amount"),
        1,
        "Amount",
        "the column appears more than once",
        id="duplicate-column",
    ),
    pytest.param(
        _statement("TX-1;2026-03-12;100,00;EUR;Müller;;x").encode("latin-1"),
        0,
        "",
        "line 2 has the byte 0xFC",
        id="latin-1",
    ),
    pytest.param(_statement("TX-1;2026-03-12;100,00;EUR;K;;x").encode("utf-16"), 0, "", "UTF-16", id="utf-16"),
    pytest.param(
        _statement("TX-1;2026-03-12;100,00;EUR;K;;x").encode("utf-16-be"), 0, "", "NUL character", id="utf-16-be"
    ),
    pytest.param(
        _statement("TX-1;2026-03-12;100,00;EUR;K;;x").encode() + b"\xed\xa0\x80",
        0,
        "",
        "line 3 has the byte 0xED",
        id="utf-8-surrogate",
    ),
    pytest.param(_statement("TX-1;2026-03-12;100,00;EUR;K;;in\x00valid"), 0, "", "NUL character", id="nul"),
    pytest.param(b"", 0, "", "the file is empty", id="empty"),
    pytest.param(_statement(), 0, "", "the file has no transactions", id="header-only"),
    pytest.param(
        _statement("TX-1;2026-03-12;100,00;EUR;K;;x", "TX-2;2026-03-12;5,00"),
        3,
        "(row)",
        "3 cells, but the header has 7",
        id="ragged-short-row",
    ),
    pytest.param(
        _statement("TX-1;2026-03-12;100,00;EUR;K;;x;surplus"),
        2,
        "(row)",
        "8 cells, but the header has 7",
        id="ragged-long-row",
    ),
    pytest.param(
        _statement('TX-1;2026-03-12;100,00;EUR;K;;"unclosed', "TX-2;2026-03-12;5,00;EUR;K;;x"),
        2,
        "(file)",
        "a quoted value is never closed",
        id="unclosed-quote",
    ),
    pytest.param(_statement("TX-1;2026-02-30;100,00;EUR;K;;x"), 2, "Booking date", "not a date", id="feb-30"),
    pytest.param(_statement("TX-1;2026-13-01;100,00;EUR;K;;x"), 2, "Booking date", "not a date", id="month-13"),
    pytest.param(_statement("TX-1;30.02.2026;100,00;EUR;K;;x"), 2, "Booking date", "not a date", id="30.02."),
    pytest.param(_statement("TX-1;;100,00;EUR;K;;x"), 2, "Booking date", "not a date", id="no-date"),
    pytest.param(_statement("TX-1;2026-03-12;1e5;EUR;K;;x"), 2, "Amount", "'1e5' is not an amount", id="exponent"),
    pytest.param(_statement("TX-1;2026-03-12;NaN;EUR;K;;x"), 2, "Amount", "is not an amount", id="nan"),
    pytest.param(_statement("TX-1;2026-03-12;1e999999;EUR;K;;x"), 2, "Amount", "not an amount", id="huge-exponent"),
    pytest.param(_statement("TX-1;2026-03-12;12.34.56;EUR;K;;x"), 2, "Amount", "not an amount", id="two-points"),
    pytest.param(_statement("TX-1;2026-03-12;;EUR;K;;x"), 2, "Amount", "empty", id="no-amount"),
    pytest.param(
        _statement("TX-1;2026-03-12;100,001;EUR;K;;x"), 2, "Currency", "more decimals than EUR allows", id="decimals"
    ),
    pytest.param(
        _statement("TX-1;2026-03-12;10,5;JPY;K;;x"), 2, "Currency", "more decimals than JPY allows", id="jpy-decimals"
    ),
    pytest.param(
        _statement("TX-1;2026-03-12;12345678901234567890,00;EUR;K;;x"),
        2,
        "Currency",
        "is too large (the limit is 999,999,999,999.999)",
        id="beyond-column-precision",
    ),
    pytest.param(
        _statement("TX-1;2026-03-12;100,00;XYZ;K;;x"), 2, "Currency", "'XYZ' is not one of the billing", id="xyz"
    ),
    pytest.param(
        _statement("TX-1;2026-03-12;100,00;;K;;x"), 2, "Currency", "'' is not one of the billing", id="no-currency"
    ),
    pytest.param(
        _statement("TX-1;2026-03-12;100,00;EUR;K;;x", "TX-1;2026-03-13;5,00;EUR;K;;y"),
        3,
        "Transaction ID",
        "'TX-1' is repeated",
        id="duplicate-id",
    ),
    pytest.param(_statement(";2026-03-12;100,00;EUR;K;;x"), 2, "Transaction ID", "empty transaction id", id="empty-id"),
]


@pytest.mark.parametrize(("data", "row", "column", "fragment"), BANK_BAD_FILES)
def test_bad_bank_statement_names_row_column_and_problem_and_writes_nothing(
    open_invoice: Any, data: Any, row: int, column: str, fragment: str
) -> None:
    if isinstance(data, str):
        data = data.replace("{number}", open_invoice.number)
    errors = _bank_errors(data)
    _assert_one_error(errors, row, column, fragment)
    assert _bank_state() == (0, 0, 0, 0)
    open_invoice.refresh_from_db()
    assert (open_invoice.status, open_invoice.amount_due) == (InvoiceStatus.OPEN, Decimal("100.00"))


def test_one_bad_row_rejects_the_whole_statement_even_after_good_matching_rows(open_invoice: Any) -> None:
    data = _statement(
        GOOD_ROW.format(number=open_invoice.number),
        "TX-2;2026-03-12;50,00;EUR;Other;;membership",
        "TX-3;2026-02-29;10,00;EUR;Other;;leap day of a common year",
    )
    assert _bank_errors(data) == [(4, "Booking date", "'2026-02-29' is not a date (YYYY-MM-DD or DD.MM.YYYY)")]
    assert _bank_state() == (0, 0, 0, 0)
    open_invoice.refresh_from_db()
    assert open_invoice.amount_due == Decimal("100.00")


def test_bom_semicolons_commas_and_quoted_line_breaks_are_understood_in_statements(open_invoice: Any) -> None:
    semicolon = "\ufeff" + _statement(GOOD_ROW.format(number=open_invoice.number))
    report = bank_statement_import(data=semicolon.encode(), format="csv")
    assert (report.new, report.matched) == (1, 1)
    open_invoice.refresh_from_db()
    assert open_invoice.status == InvoiceStatus.PAID

    comma = _statement(
        'TX-2,2026-03-13,"1,234.56",eur,"Kunde, GmbH",,"two\nlines"', header=BANK_HEADER.replace(";", ",")
    )
    report = bank_statement_import(data=comma.encode(), format="csv")
    assert (report.new, report.queued) == (1, 1)
    row = BankTransaction.objects.get(transaction_id="TX-2")
    assert (row.amount, row.currency, row.counterparty_name, row.remittance) == (
        Decimal("1234.56"),
        "EUR",
        "Kunde, GmbH",
        "two\nlines",
    )


def test_command_refuses_a_bad_statement_and_writes_nothing(tmp_path: Path, open_invoice: Any, capsys: Any) -> None:
    # The problems go to stderr, the summary into the CommandError, as for every import (core.imports).
    path = tmp_path / "statement.csv"
    path.write_text(_statement(GOOD_ROW.format(number=open_invoice.number), "TX-2;2026-04-31;5,00;EUR;K;;x"))
    with pytest.raises(CommandError, match=r"1 error\(s\); nothing was written"):
        call_command("import_bank_statement", str(path))
    assert f"{path}: row 3, Booking date: '2026-04-31' is not a date" in capsys.readouterr().err
    path.write_bytes(b"")
    with pytest.raises(CommandError, match=r"1 error\(s\); nothing was written"):
        call_command("import_bank_statement", str(path))
    assert f"{path}: file: the file is empty" in capsys.readouterr().err
    assert _bank_state() == (0, 0, 0, 0)


def test_admin_statement_upload_of_bad_and_oversized_files_writes_nothing(
    admin_client: Any, settings: Any, open_invoice: Any
) -> None:
    url = reverse("admin:payments_bankstatement_import")
    bad = _statement(GOOD_ROW.format(number=open_invoice.number), "TX-2;2026-03-12;5,00;EUR;K;;x;extra").encode()
    response = admin_client.post(url, {"file": SimpleUploadedFile("bad.csv", bad)})
    assert response.status_code == 200
    assert "8 cells, but the header has 7" in response.content.decode()

    settings.IMPORT_MAX_BYTES = 2048
    rows = [f"TX-{n};2026-03-12;1,00;EUR;K;;x" for n in range(100)]  # ~3 KB
    big = _statement(*rows).encode()
    response = admin_client.post(url, {"file": SimpleUploadedFile("big.csv", big)})
    assert response.status_code == 200
    assert "The file is 3 KB; the limit is 2 KB. Split it into smaller files." in response.content.decode()
    with pytest.raises(BankImportError, match="larger than the limit of 2 KB"):
        bank_statement_import(data=big, format="csv")
    with pytest.raises(BankImportError, match="larger than the limit of 2 KB"):
        bank_statement_import(data=b"<Document>" + b" " * 3000 + b"</Document>", format="camt053")
    assert _bank_state() == (0, 0, 0, 0)
    open_invoice.refresh_from_db()
    assert open_invoice.amount_due == Decimal("100.00")


# --- a million rows -------------------------------------------------------------------------------------
# Bounded work is asserted as counts (rows parsed, forms built, queries), never as seconds: the rates behind the
# documented limits are measured in bench/imports.py and written down in docs/PERFORMANCE.md.


def _peak_memory(call: Any) -> tuple[Any, int]:
    """(the exception ``call`` raised, peak bytes allocated by Python meanwhile)."""
    tracemalloc.start()
    try:
        call()
    except Exception as exc:
        raised: Any = exc
    else:
        raised = None
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return raised, peak


@pytest.mark.slow
def test_a_million_row_customer_file_is_refused_up_front_in_bounded_memory_without_validating_a_row(
    existing_customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12 MB (under the 20 MB size limit) of one million rows: refused at row 10,002 without validating a row."""
    data = (f"{HEADER}\n" + "A,a@example.com,DE\n" * 1_000_000).encode()
    assert len(data) < 20 * 1024 * 1024
    forms_built = []
    real_init = customer_services.CustomerImportForm.__init__
    monkeypatch.setattr(
        customer_services.CustomerImportForm,
        "__init__",
        lambda self, *a, **kw: forms_built.append(1) or real_init(self, *a, **kw),
    )
    before = _customers_state()
    with CaptureQueriesContext(connection) as queries:
        raised, peak = _peak_memory(lambda: customers_import_csv(stream=io.BytesIO(data)))
    assert isinstance(raised, CustomerImportError)
    assert [(e.row, e.message) for e in raised.report.errors] == [
        (10_002, "the file has more than 10,000 data rows, the limit per import; split it")
    ]
    assert forms_built == [] and len(queries) <= 2  # no row validated, no customer looked up
    assert _customers_state() == before
    assert peak < 200 * 2**20


@pytest.mark.slow
def test_a_million_row_statement_is_refused_up_front_and_a_bigger_one_by_its_size(
    open_invoice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    header = "Booking date,Amount,Remittance information"
    mapping = {"currency_default": "EUR"}
    small_rows = (header + "\n" + "2026-03-12,1.00,x\n" * 1_000_000).encode()  # 18 MB
    amounts_parsed = []
    real_parse_amount = bank_import.parse_amount
    monkeypatch.setattr(bank_import, "parse_amount", lambda text: amounts_parsed.append(1) or real_parse_amount(text))
    raised, peak = _peak_memory(lambda: bank_statement_import(data=small_rows, format="csv", mapping=mapping))
    assert isinstance(raised, BankImportError)
    assert [str(p) for p in raised.report.errors] == [
        "row 10002, (file): the file has more than 10,000 data rows, the limit per import; split it"
    ]
    assert amounts_parsed == [] and peak < 200 * 2**20

    # 40 MB: refused by its size before a single line is split into cells
    long_rows = (header + "\n" + "2026-03-12,1.00,a longer remittance text\n" * 1_000_000).encode()
    lines_read = []
    real_reader = csvfile.csv.reader
    monkeypatch.setattr(csvfile.csv, "reader", lambda *a, **kw: lines_read.append(1) or real_reader(*a, **kw))
    with pytest.raises(BankImportError, match="larger than the limit of 20 MB"):
        bank_statement_import(data=long_rows, format="csv", mapping=mapping)
    assert lines_read == []
    assert _bank_state() == (0, 0, 0, 0)


def _import_queries(call: Any) -> int:
    with CaptureQueriesContext(connection) as queries:
        call()
    return len(queries)


@pytest.mark.slow
def test_imports_cost_a_bounded_number_of_queries_per_row(open_invoice: Any) -> None:
    """1,000 customers (each validated like the admin form, one transaction) and 1,000 bank transactions (each
    matched against the open invoices): the work per row does not grow with the file, so the queries of a
    1,000-row file are at most 10 x those of a 100-row file plus a constant. Rates: bench/imports.py."""

    def customers(count: int, offset: int) -> Any:
        rows = "".join(f"Customer {n},c{n}@example.com,DE,EUR\n" for n in range(offset, offset + count))
        return lambda: customers_import_csv(stream=io.BytesIO(f"{HEADER},currency\n{rows}".encode()))

    small, large = _import_queries(customers(100, 0)), _import_queries(customers(1_000, 100))
    assert Customer.objects.count() == 1_101
    assert large <= 10 * small + 10, (small, large)

    def statement(count: int, offset: int) -> Any:
        text = _statement(
            *(
                f"TX-{n};2026-03-12;{n % 500 + 1},00;EUR;Payer {n};;membership {n}"
                for n in range(offset, offset + count)
            )
        )
        return lambda: bank_statement_import(data=text.encode(), format="csv")

    small, large = _import_queries(statement(100, 0)), _import_queries(statement(1_000, 100))
    assert BankTransaction.objects.count() == 1_100
    assert BankTransaction.objects.get(transaction_id="TX-99").suggested_invoice == open_invoice  # 100.00 fits
    assert large <= 10 * small + 10, (small, large)
