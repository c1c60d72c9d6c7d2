"""One import framework (core/imports.py): the three importers — customers, usage, bank statements — through the
same command shape (FILE, --dry-run, --json: identical keys, exit status, problems on stderr) and the same admin
upload screen (a file, a dry-run box, the report with its row numbers)."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from djmoney.money import Money

from customers.models import Customer
from payments.models import BankStatement, BankTransaction, Payment
from subscriptions.models import UsageEvent
from subscriptions.services import usage_import_csv
from tests.factories import CustomerFactory, InvoiceFactory, NumberSeriesFactory
from tests.factories.subscriptions import PriceFactory, SubscriptionFactory
from tests.subscriptions.conftest import bill

pytestmark = pytest.mark.django_db

JSON_KEYS = {"ok", "dry_run", "summary", "rows", "counts", "errors", "details"}
ERROR_KEYS = {"row", "column", "message"}


@pytest.fixture
def usage_item() -> Any:
    price = PriceFactory(metered=True, unit_amount=Money("0.0125", "EUR"), product__name="API calls")
    subscription = SubscriptionFactory(price=price, quantity=0, start_date=dt.date(2026, 3, 1))
    bill(subscription, dt.date(2026, 3, 1))
    return subscription.items.get()


@pytest.fixture
def open_invoice() -> Any:
    NumberSeriesFactory(default_invoices=True)
    return InvoiceFactory(
        customer=CustomerFactory(exempt=True, currency="EUR"),
        lines=[{"description": "Service", "unit_amount": Decimal("100.00")}],
        finalized=True,
    )


def _files(usage_item: Any, open_invoice: Any) -> dict[str, tuple[str, str, str, str]]:
    """importer → (command, file name, a good file, a file whose row 3 is bad)."""
    usage_header = "subscription_item_id,quantity,timestamp,idempotency_key\n"
    bank_header = "Transaction ID;Booking date;Amount;Currency;Counterparty;IBAN;Remittance information\n"
    return {
        "customers": (
            "import_customers",
            "customers.csv",
            "name,email,country\nA,a@example.com,DE\nB,b@example.com,AT\n",
            "name,email,country\nA,a@example.com,DE\nB,b@example.com,ZZ\n",
        ),
        "usage": (
            "import_usage",
            "usage.csv",
            f"{usage_header}{usage_item.pk},10,2026-03-05T10:00:00,r1\n{usage_item.pk},5,2026-03-06T10:00:00,r2\n",
            f"{usage_header}{usage_item.pk},10,2026-03-05T10:00:00,r1\n{usage_item.pk},-5,2026-03-06T10:00:00,r2\n",
        ),
        "bank": (
            "import_bank_statement",
            "statement.csv",
            f"{bank_header}TX-1;2026-03-12;100,00;EUR;K;;{open_invoice.number}\nTX-2;2026-03-12;7,00;EUR;K;;x\n",
            f"{bank_header}TX-1;2026-03-12;100,00;EUR;K;;{open_invoice.number}\nTX-2;2026-02-30;7,00;EUR;K;;x\n",
        ),
    }


def _state() -> tuple[int, ...]:
    return (
        Customer.objects.count(),
        UsageEvent.objects.count(),
        BankStatement.objects.count(),
        BankTransaction.objects.count(),
        Payment.objects.count(),
    )


def _json_of(command: str, path: Path, *args: str) -> tuple[dict[str, Any], bool]:
    out = io.StringIO()
    try:
        call_command(command, str(path), "--json", *args, stdout=out, stderr=io.StringIO())
    except CommandError:
        return json.loads(out.getvalue()), False
    return json.loads(out.getvalue()), True


def test_the_three_commands_report_the_same_json_keys_dry_run_success_and_refusal(
    tmp_path: Path, usage_item: Any, open_invoice: Any
) -> None:
    reports: dict[str, dict[str, dict[str, Any]]] = {}
    for importer, (command, name, good, bad) in _files(usage_item, open_invoice).items():
        path = tmp_path / name
        path.write_text(bad)
        before = _state()
        refused, succeeded = _json_of(command, path)
        assert not succeeded and _state() == before, importer
        path.write_text(good)
        dry, succeeded = _json_of(command, path, "--dry-run")
        assert succeeded and _state() == before, importer
        done, succeeded = _json_of(command, path)
        assert succeeded and _state() != before, importer
        reports[importer] = {"refused": refused, "dry": dry, "done": done}

    for importer, by_outcome in reports.items():
        for outcome, report in by_outcome.items():
            assert set(report) == JSON_KEYS, (importer, outcome)
            assert all(set(error) == ERROR_KEYS for error in report["errors"]), (importer, outcome)
        refused, dry, done = by_outcome["refused"], by_outcome["dry"], by_outcome["done"]
        assert (refused["ok"], refused["summary"]) == (False, "1 error(s); nothing was written.")
        assert [error["row"] for error in refused["errors"]] == [3], importer
        assert (dry["ok"], dry["dry_run"], dry["rows"], dry["errors"]) == (True, True, 2, []), importer
        assert (done["ok"], done["dry_run"], done["rows"]) == (True, False, 2), importer
        assert dry["counts"] == done["counts"], importer  # a dry run reports what the import then does

    assert reports["customers"]["done"]["counts"] == {"created": 2, "updated": 0, "unchanged": 0}
    assert reports["usage"]["done"]["counts"] == {"created": 2, "duplicates": 0}
    assert reports["bank"]["done"]["counts"] == {"new": 2, "duplicate": 0, "skipped": 0, "matched": 1, "queued": 1}
    assert reports["bank"]["done"]["details"]["filename"] == "statement.csv"
    assert reports["bank"]["refused"]["errors"] == [
        {"row": 3, "column": "Booking date", "message": "'2026-02-30' is not a date (YYYY-MM-DD or DD.MM.YYYY)"}
    ]


def test_the_three_commands_refuse_a_bad_file_the_same_way(
    tmp_path: Path, usage_item: Any, open_invoice: Any, capsys: Any
) -> None:
    """Problems on stderr, each with the file's name and its row; CommandError with the summary (exit status 1)."""
    for importer, (command, name, _good, bad) in _files(usage_item, open_invoice).items():
        path = tmp_path / name
        path.write_text(bad)
        with pytest.raises(CommandError) as caught:
            call_command(command, str(path))
        assert str(caught.value) == "1 error(s); nothing was written.", importer
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"{path}: row 3, "), (importer, line)
        with pytest.raises(CommandError, match="no such file"):
            call_command(command, str(tmp_path / "missing.csv"))


def test_a_second_import_of_the_same_file_creates_nothing_in_any_importer(
    tmp_path: Path, usage_item: Any, open_invoice: Any
) -> None:
    """customers: updates (here: unchanged); usage: duplicates ignored; bank: transactions already imported."""
    for _importer, (command, name, good, _bad) in _files(usage_item, open_invoice).items():
        path = tmp_path / name
        path.write_text(good)
        call_command(command, str(path), stdout=io.StringIO())
    counts = (Customer.objects.count(), UsageEvent.objects.count(), BankTransaction.objects.count())
    again = {}
    for importer, (command, name, _good, _bad) in _files(usage_item, open_invoice).items():
        again[importer], succeeded = _json_of(command, tmp_path / name)
        assert succeeded
    assert (Customer.objects.count(), UsageEvent.objects.count(), BankTransaction.objects.count()) == counts
    assert again["customers"]["counts"] == {"created": 0, "updated": 0, "unchanged": 2}
    assert again["usage"]["counts"] == {"created": 0, "duplicates": 2}
    assert again["bank"]["counts"]["new"] == 0 and again["bank"]["counts"]["duplicate"] == 2


ADMIN_SCREENS = {
    "customers": ("admin:customers_customer_import", "admin:customers_customer_changelist"),
    "usage": ("admin:subscriptions_usageevent_import", "admin:subscriptions_usageevent_changelist"),
    "bank": ("admin:payments_bankstatement_import", "admin:payments_banktransaction_changelist"),
}


def test_the_three_admin_upload_screens_show_the_report_with_row_numbers(
    admin_client: Any, usage_item: Any, open_invoice: Any
) -> None:
    expected_row = {
        "customers": "<td>3</td><td>country</td><td>Select a valid choice. ZZ is not one of the available "
        "choices.</td>",
        "usage": "<td>3</td><td>quantity</td><td>not a non-negative number</td>",
        "bank": "<td>3</td><td>Booking date</td><td>&#x27;2026-02-30&#x27; is not a date (YYYY-MM-DD or "
        "DD.MM.YYYY)</td>",
    }
    before = _state()
    for importer, (_command, name, _good, bad) in _files(usage_item, open_invoice).items():
        url = reverse(ADMIN_SCREENS[importer][0])
        page = admin_client.get(url).content.decode()
        assert 'type="file"' in page and 'name="dry_run"' in page, importer
        response = admin_client.post(url, {"file": SimpleUploadedFile(name, bad.encode())})
        assert response.status_code == 200, importer
        page = response.content.decode()
        assert "<th>Row</th><th>Column</th><th>Problem</th>" in page, importer
        assert expected_row[importer] in page, importer
        assert "1 error(s); nothing was written." in page, importer
    assert _state() == before


def test_the_three_admin_upload_screens_dry_run_then_import(
    admin_client: Any, usage_item: Any, open_invoice: Any
) -> None:
    expected_dry_run = {
        "customers": "Dry run: would create 2, update 0, unchanged 0.",
        "usage": "Dry run: would record 2 usage record(s); ignored 0 already recorded.",
        "bank": "Dry run: would import 2 transaction(s): 1 matched, 1 to the reconciliation queue",
    }
    for importer, (_command, name, good, _bad) in _files(usage_item, open_invoice).items():
        url, done_url = (reverse(name_) for name_ in ADMIN_SCREENS[importer])
        before = _state()
        response = admin_client.post(url, {"file": SimpleUploadedFile(name, good.encode()), "dry_run": "on"})
        assert response.status_code == 200 and expected_dry_run[importer] in response.content.decode(), importer
        assert _state() == before, importer
        response = admin_client.post(url, {"file": SimpleUploadedFile(name, good.encode())})
        assert (response.status_code, response["Location"]) == (302, done_url), importer
        assert _state() != before, importer
    assert UsageEvent.objects.count() == 2


def test_the_usage_changelist_links_to_its_upload_screen(admin_client: Any) -> None:
    page = admin_client.get(reverse("admin:subscriptions_usageevent_changelist")).content.decode()
    assert reverse("admin:subscriptions_usageevent_import") in page


def test_usage_rows_are_numbered_as_a_spreadsheet_shows_them(usage_item: Any) -> None:
    """A blank line keeps its number (csvfile's rule, now also the usage import's)."""
    text = (
        "subscription_item_id,quantity,timestamp,idempotency_key\n"
        f"{usage_item.pk},1,2026-03-05T10:00:00,r1\n"
        "\n"
        f"{usage_item.pk},x,2026-03-05T10:00:00,r2\n"
    )
    from subscriptions.services import UsageImportError

    with pytest.raises(UsageImportError) as caught:
        usage_import_csv(stream=io.BytesIO(text.encode()))
    assert [(e.row, e.column) for e in caught.value.report.errors] == [(4, "quantity")]


def test_a_bad_column_mapping_is_shown_on_its_field(admin_client: Any) -> None:
    response = admin_client.post(
        reverse("admin:payments_bankstatement_import"),
        {"file": SimpleUploadedFile("s.csv", b"Datum;Betrag\n"), "mapping": "nonsense=Col"},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["mapping"][0].startswith("mapping 'nonsense=Col': expected field=Column")
