import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from customers.models import Customer, TaxStatus
from customers.services import CustomerImportError, customers_import_csv
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

GOOD = (
    "external_id,name,email,cc_emails,country,currency,tax_id,tax_status,payment_terms_days,language,city\n"
    "CRM-1,Müller & Söhne GmbH,billing@mueller.example,ap@mueller.example; boss@mueller.example,DE,EUR,"
    "DE 136 695 976,taxable,30,de,München\n"
    "CRM-2,Łódź Tańce Sp. z o.o.,biuro@lodz.example,,PL,PLN,PL5260250274,reverse_charge,14,en,Łódź\n"
    "CRM-3,株式会社さくら,info@sakura.example,,JP,JPY,,exempt,,,東京\n"
    ",Ελληνική Φιλοξενία,hello@greek.example,,GR,EUR,,,,,Αθήνα\n"
)


def _import(text: str, **kwargs):
    return customers_import_csv(stream=io.BytesIO(text.encode("utf-8")), **kwargs)


def test_good_file_creates_every_customer_with_normalised_values():
    report = _import(GOOD)
    assert (report.created, report.updated, report.unchanged) == (4, 0, 0)
    mueller = Customer.objects.get(external_id="CRM-1")
    assert mueller.name == "Müller & Söhne GmbH"
    assert mueller.tax_id == "DE136695976"  # compact form
    assert mueller.cc_email_list == ["ap@mueller.example", "boss@mueller.example"]
    assert mueller.payment_terms_days == 30
    assert mueller.language == "de"
    lodz = Customer.objects.get(external_id="CRM-2")
    assert (lodz.currency, lodz.tax_status, lodz.city) == ("PLN", TaxStatus.REVERSE_CHARGE, "Łódź")
    sakura = Customer.objects.get(external_id="CRM-3")
    assert (sakura.name, sakura.currency, sakura.payment_terms_days) == ("株式会社さくら", "JPY", 14)
    greek = Customer.objects.get(email="hello@greek.example")
    assert (greek.name, greek.city, str(greek.country), greek.tax_status) == (
        "Ελληνική Φιλοξενία",
        "Αθήνα",
        "GR",
        TaxStatus.TAXABLE,
    )


def test_same_file_twice_updates_the_same_customers_and_creates_no_duplicates():
    _import(GOOD)
    report = _import(GOOD)
    assert (report.created, report.updated, report.unchanged) == (0, 0, 4)
    assert Customer.objects.count() == 4


def test_changed_row_updates_the_customer_matched_by_external_id_else_email():
    _import(GOOD)
    changed = GOOD.replace("Müller & Söhne GmbH", "Müller & Töchter GmbH").replace(
        ",Ελληνική Φιλοξενία,", ",Ελληνική Φιλοξενία ΑΕ,"
    )
    report = _import(changed)
    assert (report.created, report.updated, report.unchanged) == (0, 2, 2)
    assert Customer.objects.get(external_id="CRM-1").name == "Müller & Töchter GmbH"
    assert Customer.objects.get(email="hello@greek.example").name == "Ελληνική Φιλοξενία ΑΕ"
    assert Customer.objects.count() == 4


def test_email_match_is_case_insensitive():
    existing = CustomerFactory(email="Hello@Greek.example", name="Old", country="GR")
    _import("name,email,country\nNew name,hello@greek.example,GR\n")
    existing.refresh_from_db()
    assert existing.name == "New name"
    assert Customer.objects.count() == 1


def test_bad_file_reports_row_column_and_problem_and_writes_nothing():
    CustomerFactory(external_id="CRM-1", name="Untouched")
    bad = (
        "external_id,name,email,country,currency,tax_id,tax_status,payment_terms_days\n"
        "CRM-1,Changed name,ok@example.com,DE,EUR,,taxable,14\n"
        "CRM-2,Bad mail,not-an-email,DE,EUR,,taxable,14\n"
        "CRM-3,Bad country,c@example.com,XX,EUR,,taxable,14\n"
        "CRM-4,Bad VAT,d@example.com,DE,EUR,DE123,taxable,14\n"
        "CRM-5,RC without id,e@example.com,AT,EUR,,reverse_charge,14\n"
        "CRM-6,Bad terms,f@example.com,DE,EUR,,taxable,-3\n"
        "CRM-7,Bad currency,g@example.com,DE,XYZ,,taxable,14\n"
        "CRM-2,Duplicate key,h@example.com,DE,EUR,,taxable,14\n"
        ",,i@example.com,DE,EUR,,taxable,14\n"
    )
    with pytest.raises(CustomerImportError) as excinfo:
        _import(bad)
    errors = {(e.row, e.column) for e in excinfo.value.report.errors}
    assert (3, "email") in errors
    assert (4, "country") in errors
    assert (5, "tax_id") in errors
    assert (6, "tax_id") in errors
    assert (7, "payment_terms_days") in errors
    assert (8, "currency") in errors
    assert (9, "external_id") in errors
    assert (10, "name") in errors
    assert (2, "name") not in errors
    messages = [str(e) for e in excinfo.value.report.errors]
    assert "row 4, column 'country': Select a valid choice. XX is not one of the available choices." in messages
    assert any("row 9, column 'external_id': duplicate of row 3" in m for m in messages)
    # nothing written: the valid first row did not update the existing customer either
    assert list(Customer.objects.values_list("name", flat=True)) == ["Untouched"]


def test_missing_required_column_and_unknown_column_are_reported():
    with pytest.raises(CustomerImportError) as excinfo:
        _import("name,mail,country\nX,x@example.com,DE\n")
    messages = [str(e) for e in excinfo.value.report.errors]
    assert "row 1, column 'mail': unknown column" in messages
    assert "row 1, column 'email': required column is missing" in messages
    assert Customer.objects.count() == 0


def test_non_utf8_file_is_refused_with_a_clear_error():
    with pytest.raises(CustomerImportError) as excinfo:
        customers_import_csv(stream=io.BytesIO("name,email,country\nMüller,m@x.de,DE\n".encode("latin-1")))
    assert "not UTF-8" in str(excinfo.value.report.errors[0])


def test_semicolon_separated_file_with_bom_is_understood():
    report = _import("\ufeffname;email;country\nSchröder;s@example.de;DE\n")
    assert report.created == 1
    assert Customer.objects.get().name == "Schröder"


def test_dry_run_validates_but_writes_nothing():
    report = _import(GOOD, dry_run=True)
    assert report.created == 4
    assert report.summary() == "Dry run: would create 4, update 0, unchanged 0."
    assert Customer.objects.count() == 0


def test_command_imports_and_prints_summary(tmp_path: Path, capsys):
    path = tmp_path / "customers.csv"
    path.write_text(GOOD, encoding="utf-8")
    call_command("import_customers", str(path))
    assert "Created 4, updated 0, unchanged 0." in capsys.readouterr().out
    call_command("import_customers", str(path), "--json")
    assert json.loads(capsys.readouterr().out) == {
        "ok": True,
        "dry_run": False,
        "summary": "Created 0, updated 0, unchanged 4.",
        "rows": 4,
        "counts": {"created": 0, "updated": 0, "unchanged": 4},
        "errors": [],
        "details": {},
    }


def test_command_fails_on_bad_file_naming_the_row(tmp_path: Path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("name,email,country\nA,a@example.com,DE\nB,broken,DE\n", encoding="utf-8")
    with pytest.raises(CommandError, match="1 error"):
        call_command("import_customers", str(path))
    assert "row 3, column 'email': Enter a valid email address." in capsys.readouterr().err
    assert Customer.objects.count() == 0
