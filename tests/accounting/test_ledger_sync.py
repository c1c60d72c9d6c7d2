"""Ledger sync against local fakes of Xero and QuickBooks Online (tests/accounting/fake_ledger.py): a full sync, a
run interrupted after the Nth record and once between the provider's answer and our commit — resumed, nothing
created twice — a 429 with Retry-After continued by a Celery countdown, a credit note after sync, Retry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal as D
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounting.ledger import sync as sync_module
from accounting.ledger.crypto import token_encrypt
from accounting.ledger.models import LedgerConnection, SyncRecord, SyncStatus
from accounting.ledger.sync import ledger_retry, ledger_sync
from accounting.tasks import sync_ledger
from invoicing.services import credit_note_issue
from tests.accounting.fake_ledger import FakeLedger
from tests.factories import CustomerFactory, InvoiceFactory
from tests.factories.payments import record_payment

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)
PROVIDERS = ("xero", "quickbooks")


@pytest.fixture
def fake(settings: Any) -> Iterator[FakeLedger]:
    ledger = FakeLedger().start()
    settings.LEDGER_PROVIDERS = ledger.settings()
    yield ledger
    ledger.stop()


def _connect(fake: FakeLedger, provider: str) -> LedgerConnection:
    tokens = fake.issue_tokens()
    return LedgerConnection.objects.create(
        provider=provider,
        tenant_id="tenant-1" if provider == "xero" else "realm-9",
        access_token_encrypted=token_encrypt(tokens["access_token"]),
        refresh_token_encrypted=token_encrypt(tokens["refresh_token"]),
        access_token_expires_at=timezone.now() + dt.timedelta(minutes=30),
        connected_at=timezone.now(),
    )


@pytest.fixture
def books(series: Any, vat_de: Any) -> dict[str, Any]:
    """Two customers, three invoices (19 % VAT), one of them paid in full."""
    acme, globex = CustomerFactory(name="Acme GmbH"), CustomerFactory(name="Globex AG")
    first = InvoiceFactory(
        customer=acme,
        lines=[
            {"description": "Pro plan", "quantity": D("3"), "unit_amount": D("33.35")},  # 100.05
            {"description": "Setup", "unit_amount": D("49.99")},
        ],
        finalized=ISSUE,
    )
    second = InvoiceFactory(customer=acme, lines=[{"description": "Seats", "unit_amount": D("10.00")}], finalized=ISSUE)
    third = InvoiceFactory(
        customer=globex, lines=[{"description": "Support", "unit_amount": D("250.00")}], finalized=ISSUE
    )
    payment = record_payment(customer=globex, amount=third.total, invoice=third, received_on=dt.date(2026, 3, 10))
    return {"acme": acme, "globex": globex, "invoices": [first, second, third], "payment": payment}


def _ledger_counts(fake: FakeLedger, provider: str) -> dict[str, int]:
    if provider == "xero":
        return {name: len(items) for name, items in fake.xero.items()}
    return {name: len(items) for name, items in fake.qbo.items()}


def _invoices_in_ledger(fake: FakeLedger, provider: str) -> dict[str, D]:
    if provider == "xero":
        return {item["InvoiceNumber"]: item["Total"] for item in fake.xero["Invoices"]}
    return {item["DocNumber"]: item["TotalAmt"] for item in fake.qbo["Invoice"]}


FULL = {
    "xero": {"Contacts": 2, "Invoices": 3, "CreditNotes": 0, "Payments": 1},
    "quickbooks": {"Customer": 2, "Invoice": 3, "CreditMemo": 0, "Payment": 1},
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_full_sync_pushes_customers_invoices_and_payments_with_exact_amounts(fake, books, provider):
    connection = _connect(fake, provider)
    outcome = ledger_sync(connection=connection)
    assert (outcome.created, outcome.linked, outcome.failed, outcome.stopped) == (6, 0, 0, "")
    assert _ledger_counts(fake, provider) == FULL[provider]
    first, second, third = books["invoices"]
    # 3 × 33.35 = 100.05 + 49.99 = 150.04, VAT 19 % per line 19.01 + 9.50 → 178.55
    assert first.total == D("178.55")
    assert _invoices_in_ledger(fake, provider) == {
        first.number: D("178.55"),
        second.number: D("11.90"),
        third.number: D("297.50"),
    }
    assert SyncRecord.objects.filter(connection=connection, status=SyncStatus.SYNCED).count() == 6
    if provider == "xero":
        invoice = next(item for item in fake.xero["Invoices"] if item["InvoiceNumber"] == first.number)
        assert invoice["Type"] == "ACCREC" and invoice["Status"] == "AUTHORISED"
        assert [(line["Quantity"], line["UnitAmount"], line["TaxAmount"]) for line in invoice["LineItems"]] == [
            (D("3"), D("33.35"), D("19.01")),
            (D("1"), D("49.99"), D("9.50")),
        ]
        contact_ids = {item["ContactNumber"]: item["ContactID"] for item in fake.xero["Contacts"]}
        assert invoice["Contact"]["ContactID"] == contact_ids[f"CB-C{books['acme'].pk}"]
        (payment,) = fake.xero["Payments"]
        assert (payment["Amount"], payment["Date"], payment["Account"]["Code"]) == (D("297.50"), "2026-03-10", "090")
    else:
        (payment,) = fake.qbo["Payment"]
        linked = payment["Line"][0]["LinkedTxn"][0]
        invoice_id = next(item["Id"] for item in fake.qbo["Invoice"] if item["DocNumber"] == third.number)
        assert (payment["TotalAmt"], linked) == (D("297.50"), {"TxnId": invoice_id, "TxnType": "Invoice"})
    # a second run sends nothing: every record is known by its external id
    calls = len(fake.requests)
    again = ledger_sync(connection=connection)
    assert (again.created, again.linked, len(fake.requests)) == (0, 0, calls)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_run_interrupted_after_the_nth_record_resumes_and_creates_nothing_twice(fake, books, provider, monkeypatch):
    connection = _connect(fake, provider)
    written = sync_module._record_write
    calls = {"n": 0}

    def crash_after_third(**kwargs: Any) -> SyncRecord:
        record = written(**kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("worker killed")  # nothing the engine handles: the run ends here
        return record

    monkeypatch.setattr(sync_module, "_record_write", crash_after_third)
    with pytest.raises(SystemExit):
        ledger_sync(connection=connection)
    assert SyncRecord.objects.filter(connection=connection).count() == 3
    monkeypatch.setattr(sync_module, "_record_write", written)
    outcome = ledger_sync(connection=connection)
    assert (outcome.created, outcome.linked, outcome.failed) == (3, 0, 0)
    assert _ledger_counts(fake, provider) == FULL[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_crash_between_the_providers_answer_and_our_commit_links_instead_of_creating_again(
    fake, books, provider, monkeypatch
):
    connection = _connect(fake, provider)
    written = sync_module._record_write
    allocation = books["payment"].allocations.get()
    # the ledger answered 200 for these, then the worker died before our row was written (once each)
    lose = {("invoice", books["invoices"][0].pk), ("payment", allocation.pk)}

    def lose_the_commit(**kwargs: Any) -> SyncRecord:
        key = (kwargs["object_type"], kwargs["local_id"])
        if key in lose:
            lose.discard(key)
            raise SystemExit("worker killed before the commit")
        return written(**kwargs)

    monkeypatch.setattr(sync_module, "_record_write", lose_the_commit)
    with pytest.raises(SystemExit):
        ledger_sync(connection=connection)  # stops at the first invoice: created in the ledger, unknown here
    with pytest.raises(SystemExit):
        ledger_sync(connection=connection)  # links it by its number, goes on, stops at the payment
    final = ledger_sync(connection=connection)
    # Xero finds the payment by its Reference; QuickBooks answers the repeated requestid with the first payment
    assert final.created + final.linked == 1 and final.failed == 0
    assert _ledger_counts(fake, provider) == FULL[provider]
    assert SyncRecord.objects.filter(connection=connection, status=SyncStatus.SYNCED).count() == 6
    payments = fake.xero["Payments"] if provider == "xero" else fake.qbo["Payment"]
    record = SyncRecord.objects.get(object_type="payment")
    assert record.external_id == payments[0]["PaymentID" if provider == "xero" else "Id"]
    invoice_record = SyncRecord.objects.get(object_type="invoice", local_id=books["invoices"][0].pk)
    invoices = fake.xero["Invoices"] if provider == "xero" else fake.qbo["Invoice"]
    assert invoice_record.external_id == invoices[0]["InvoiceID" if provider == "xero" else "Id"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_http_429_stops_the_run_and_the_task_continues_after_retry_after(fake, books, provider, monkeypatch):
    connection = _connect(fake, provider)
    fake.throttle(1, retry_after="7")
    scheduled: list[dict[str, Any]] = []
    monkeypatch.setattr(sync_ledger, "apply_async", lambda **kwargs: scheduled.append(kwargs))
    summaries = sync_ledger(provider=provider)
    assert scheduled == [{"kwargs": {"provider": provider, "since": None}, "countdown": 7}]
    assert "rate limit (HTTP 429)" in summaries[0] and SyncRecord.objects.count() == 0
    connection.refresh_from_db()
    assert connection.sync_claimed_at is None and "continues in 7 s" in connection.last_sync_summary
    sync_ledger(**scheduled[0]["kwargs"])  # what the worker runs 7 s later
    assert len(scheduled) == 1 and _ledger_counts(fake, provider) == FULL[provider]


def test_the_beat_job_does_nothing_unless_enabled(fake, books, settings):
    _connect(fake, "xero")
    settings.LEDGER_SYNC_ENABLED = False
    assert sync_ledger() == [] and fake.requests == []
    settings.LEDGER_SYNC_ENABLED = True
    assert sync_ledger() == ["xero: 6 created, 0 linked, 0 failed"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_credit_note_after_sync_is_pushed_as_a_credit_note_and_the_invoice_is_not_edited(fake, books, provider):
    connection = _connect(fake, provider)
    ledger_sync(connection=connection)
    before = [dict(item) for item in (fake.xero["Invoices"] if provider == "xero" else fake.qbo["Invoice"])]
    first = books["invoices"][0]
    note = credit_note_issue(invoice=first, reason="Goodwill", amount=D("59.50"), issue_date=dt.date(2026, 3, 20))
    calls = len(fake.requests)
    outcome = ledger_sync(connection=connection)
    assert (outcome.created, outcome.failed) == (1, 0)
    sent = fake.requests[calls:]
    assert [call for call in sent if call[0] in ("PUT", "POST")] == [
        ("PUT", "/xero/api.xro/2.0/CreditNotes")
        if provider == "xero"
        else ("POST", "/qbo/v3/company/realm-9/creditmemo")
    ]
    if provider == "xero":
        (credit,) = fake.xero["CreditNotes"]
        assert (credit["Type"], credit["CreditNoteNumber"], credit["Total"]) == (
            "ACCRECCREDIT",
            note.number,
            D("59.50"),
        )
        assert fake.xero["Invoices"] == before
    else:
        (credit,) = fake.qbo["CreditMemo"]
        assert (credit["DocNumber"], credit["TotalAmt"]) == (note.number, D("59.50"))
        assert fake.qbo["Invoice"] == before


def test_a_refused_record_is_logged_failed_the_run_goes_on_and_retry_pushes_it(fake, books):
    connection = _connect(fake, "xero")
    second = books["invoices"][1]
    fake.refuse[second.number] = "Account code '200' is not a valid code for this document."
    outcome = ledger_sync(connection=connection)
    assert (outcome.created, outcome.failed) == (5, 1)
    record = SyncRecord.objects.get(object_type="invoice", local_id=second.pk)
    assert record.status == SyncStatus.FAILED and "Account code '200' is not a valid code" in record.last_error
    assert ledger_sync(connection=connection).created == 0  # failed records wait for staff
    fake.refuse.clear()  # the accountant added the account in Xero
    (retried,) = ledger_retry(records=[record])
    assert (retried.created, retried.failed) == (1, 0)
    record.refresh_from_db()
    assert record.status == SyncStatus.SYNCED and record.attempts == 2 and record.last_error == ""
    assert _ledger_counts(fake, "xero")["Invoices"] == 3


def test_the_command_syncs_and_reports(fake, books, capsys):
    _connect(fake, "quickbooks")
    call_command("sync_ledger", "--provider", "quickbooks", "--since", "2026-03-01")
    assert "QuickBooks Online: 6 created, 0 linked, 0 failed." in capsys.readouterr().out
    call_command("sync_ledger", "--provider", "quickbooks", "--since", "2026-03-01")
    assert "0 created" in capsys.readouterr().out
    assert _ledger_counts(fake, "quickbooks") == FULL["quickbooks"]


def test_since_leaves_older_documents_out(fake, books):
    connection = _connect(fake, "xero")
    outcome = ledger_sync(connection=connection, since=dt.date(2026, 3, 5))
    # the invoices are of 2 March: only the payment of 10 March, with its invoice and contact as dependencies
    assert outcome.created == 3
    assert _ledger_counts(fake, "xero") == {"Contacts": 1, "Invoices": 1, "CreditNotes": 0, "Payments": 1}


def test_a_retry_tries_a_refused_contact_once_however_many_records_need_it(fake, books):
    connection = _connect(fake, "xero")
    acme_reference = f"CB-C{books['acme'].pk}"
    fake.refuse[acme_reference] = "The contact name is already assigned."
    ledger_sync(connection=connection)
    failed = list(SyncRecord.objects.filter(status=SyncStatus.FAILED).order_by("pk"))
    # the contact, and its two invoices, failed with it
    assert (failed[0].object_type, failed[0].reference) == ("customer", acme_reference)
    assert len(failed) == 3 and "contact name is already assigned" in failed[2].last_error
    contact_puts = fake.requests.count(("PUT", "/xero/api.xro/2.0/Contacts"))
    (outcome,) = ledger_retry(records=failed[1:])  # the two invoices only: their contact comes along, once
    assert outcome.failed == 3 and fake.requests.count(("PUT", "/xero/api.xro/2.0/Contacts")) == contact_puts + 1
