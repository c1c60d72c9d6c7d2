from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from invoicing.models import InvoiceStatus
from payments.bank_import import (
    BankImportError,
    bank_statement_import,
    bank_transaction_assign,
    bank_transaction_ignore,
)
from payments.models import BankStatement, BankTransaction, BankTransactionStatus, Payment
from payments.selectors import reconciliation_queue
from tests.factories import CustomerFactory
from tests.payments.conftest import make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoices(customer):
    return make_invoice(customer, "100.00"), make_invoice(customer, "250.00")


def _csv(rows):
    header = "Transaction ID;Booking date;Amount;Currency;Counterparty;IBAN;Remittance information\n"
    return (header + "\n".join(";".join(row) for row in rows) + "\n").encode()


def test_csv_import_matches_by_invoice_number_and_amount_and_queues_the_rest(invoices, customer):
    a, b = invoices
    data = _csv(
        [
            ("TX-1", "12.03.2026", "100,00", "EUR", "Kunde GmbH", "DE89 3704", f"Rechnung {a.number} danke"),
            ("TX-2", "2026-03-12", "200.00", "EUR", "Kunde GmbH", "", f"{b.number}"),  # not the amount due
            ("TX-3", "2026-03-13", "42.00", "EUR", "Unknown", "", "membership"),  # no number
            ("TX-4", "2026-03-13", "-15.00", "EUR", "Bank", "", "fees"),  # a debit: skipped
        ]
    )
    report = bank_statement_import(data=data, format="csv", filename="march.csv")
    assert (report.new, report.matched, report.queued, report.skipped, report.duplicate) == (3, 1, 2, 1, 0)
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.status == InvoiceStatus.PAID
    assert b.amount_due == Decimal("250.00")
    matched = BankTransaction.objects.get(transaction_id="TX-1")
    assert matched.status == BankTransactionStatus.MATCHED and matched.payment.gateway_reference == "TX-1"
    assert matched.counterparty_iban == "DE893704"
    ambiguous = BankTransaction.objects.get(transaction_id="TX-2")
    assert ambiguous.status == BankTransactionStatus.AMBIGUOUS and ambiguous.suggested_invoice == b
    assert "differs from the amount due" in ambiguous.match_note
    assert BankTransaction.objects.get(transaction_id="TX-3").status == BankTransactionStatus.UNMATCHED
    assert list(reconciliation_queue().values_list("transaction_id", flat=True)) == ["TX-2", "TX-3"]

    again = bank_statement_import(data=data, format="csv", filename="march.csv")
    assert (again.new, again.duplicate, again.matched) == (0, 3, 0)
    assert BankTransaction.objects.count() == 3 and Payment.objects.count() == 1

    # Staff assign the queued ones.
    payment = bank_transaction_assign(bank_transaction=ambiguous, customer=customer, invoice=b)
    b.refresh_from_db()
    assert b.amount_due == Decimal("50.00") and payment.amount == Decimal("200.00")
    bank_transaction_ignore(bank_transaction=BankTransaction.objects.get(transaction_id="TX-3"), note="not ours")
    assert not reconciliation_queue().exists()


def test_one_transfer_paying_two_invoices_is_matched_to_both(invoices):
    a, b = invoices
    data = _csv([("TX-9", "2026-03-12", "350.00", "EUR", "Kunde", "", f"{a.number}, {b.number}")])
    report = bank_statement_import(data=data, format="csv")
    assert report.matched == 1
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.status == b.status == InvoiceStatus.PAID


def test_a_bad_csv_is_rejected_with_row_and_column_and_writes_nothing(invoices):
    a, _ = invoices
    data = _csv(
        [
            ("TX-1", "2026-03-12", "100.00", "EUR", "x", "", a.number),
            ("TX-2", "31.02.2026", "abc", "EUR", "x", "", "y"),
            ("TX-3", "2026-03-12", "1.005", "EUR", "x", "", "z"),
        ]
    )
    with pytest.raises(BankImportError) as excinfo:
        bank_statement_import(data=data, format="csv")
    problems = [str(problem) for problem in excinfo.value.report.errors]
    assert "row 3, Amount: 'abc' is not an amount" in problems
    assert any(p.startswith("row 3, Booking date") for p in problems)
    assert any(p.startswith("row 4, Currency") and "more decimals" in p for p in problems)
    assert not BankStatement.objects.exists() and not Payment.objects.exists()
    with pytest.raises(BankImportError, match="not in the header"):
        bank_statement_import(data=b"Date,Value\n2026-03-01,5\n", format="csv")


def test_csv_column_mapping_and_derived_ids(customer, invoices):
    a, _ = invoices
    data = f'Buchungstag,Betrag,Verwendungszweck\n12.03.2026,"100,00",{a.number}\n'.encode()
    mapping = {
        "booking_date": "Buchungstag",
        "amount": "Betrag",
        "remittance": "Verwendungszweck",
        "currency_default": "EUR",
    }
    report = bank_statement_import(data=data, format="csv", mapping=mapping)
    assert report.matched == 1
    assert BankTransaction.objects.get().transaction_id.startswith("csv:")
    assert bank_statement_import(data=data, format="csv", mapping=mapping).duplicate == 1


CAMT = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>MSG-1</MsgId><CreDtTm>2026-03-13T08:00:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>STMT-2026-03-13</Id>
      <Ntry>
        <Amt Ccy="EUR">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>2026-03-12</Dt></BookgDt><AcctSvcrRef>BANKREF-1</AcctSvcrRef>
        <NtryDtls><TxDtls>
          <Refs><EndToEndId>E2E-1</EndToEndId></Refs>
          <RltdPties>
            <Dbtr><Nm>Kunde GmbH</Nm></Dbtr>
            <DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct>
          </RltdPties>
          <RmtInf><Ustrd>Invoice {number}</Ustrd></RmtInf>
        </TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">19.99</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-03-12</Dt></BookgDt><AcctSvcrRef>BANKREF-2</AcctSvcrRef>
        <NtryDtls><TxDtls><RmtInf><Ustrd>Spende</Ustrd></RmtInf></TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="EUR">5.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
        <BookgDt><Dt>2026-03-12</Dt></BookgDt><AcctSvcrRef>BANKREF-3</AcctSvcrRef>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""


def test_camt053_import_matches_queues_and_ignores_duplicates(invoices):
    a, _ = invoices
    data = CAMT.format(number=a.number).encode()
    report = bank_statement_import(data=data, format="camt053", filename="camt.xml")
    assert report.statement_id == "STMT-2026-03-13"
    assert (report.new, report.matched, report.queued, report.skipped) == (2, 1, 1, 1)
    matched = BankTransaction.objects.get(transaction_id="BANKREF-1")
    assert (matched.counterparty_name, matched.counterparty_iban) == ("Kunde GmbH", "DE89370400440532013000")
    a.refresh_from_db()
    assert a.status == InvoiceStatus.PAID
    assert BankTransaction.objects.get(transaction_id="BANKREF-2").status == BankTransactionStatus.UNMATCHED
    again = bank_statement_import(data=data, format="camt053")
    assert (again.new, again.duplicate) == (0, 2)
    assert Payment.objects.count() == 1


def test_unsafe_or_broken_xml_is_refused(billing):
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><Document>&b;</Document>'
    with pytest.raises(BankImportError, match="refused unsafe XML"):
        bank_statement_import(data=bomb, format="camt053")
    with pytest.raises(BankImportError, match="not well-formed"):
        bank_statement_import(data=b"<Document><BkToCstmrStmt>", format="camt053")
    with pytest.raises(BankImportError, match=r"not an ISO 20022 CAMT\.053"):
        bank_statement_import(data=b"<Invoice/>", format="camt053")
    assert not BankStatement.objects.exists()


def test_the_command_supports_dry_run_json_and_mapping(tmp_path, invoices):
    a, _ = invoices
    path = tmp_path / "statement.csv"
    path.write_text(f"Datum;Betrag;Zweck\n2026-03-12;100,00;{a.number}\n")
    out = StringIO()
    mapping = "booking_date=Datum,amount=Betrag,remittance=Zweck,currency_default=EUR"
    call_command("import_bank_statement", str(path), "--mapping", mapping, "--dry-run", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["dry_run"] is True and report["counts"]["matched"] == 1
    assert not BankTransaction.objects.exists() and not Payment.objects.exists()
    out = StringIO()
    call_command("import_bank_statement", str(path), "--format", "csv", "--mapping", mapping, stdout=out)
    assert "1 matched" in out.getvalue()
    with pytest.raises(CommandError, match="mapping"):
        call_command("import_bank_statement", str(path), "--mapping", "nonsense=Col")


def test_an_invoice_of_another_customer_named_with_ours_is_ambiguous(invoices):
    a, _ = invoices
    other = make_invoice(CustomerFactory(exempt=True), "10.00")
    data = _csv([("TX-5", "2026-03-12", "110.00", "EUR", "x", "", f"{a.number} {other.number}")])
    report = bank_statement_import(data=data, format="csv")
    assert report.queued == 1
    assert "several customers" in BankTransaction.objects.get().match_note


def test_admin_upload_dry_run_then_import_then_the_same_file_again(admin_client, invoices):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    a, _ = invoices
    data = _csv([("TX-9", "2026-03-12", "100.00", "EUR", "Kunde GmbH", "", f"Invoice {a.number}")])
    url = reverse("admin:payments_bankstatement_import")
    response = admin_client.post(url, {"file": SimpleUploadedFile("march.csv", data), "dry_run": "on"})
    assert response.status_code == 200
    assert b"Dry run" in response.content
    assert BankTransaction.objects.count() == 0
    response = admin_client.post(url, {"file": SimpleUploadedFile("march.csv", data)})
    assert response.status_code == 302
    a.refresh_from_db()
    assert a.status == InvoiceStatus.PAID
    admin_client.post(url, {"file": SimpleUploadedFile("march.csv", data)})
    assert BankTransaction.objects.filter(transaction_id="TX-9").count() == 1
    assert Payment.objects.count() == 1


def test_admin_upload_of_a_bad_file_lists_the_problems_and_writes_nothing(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    data = _csv([("TX-1", "not a date", "100.00", "EUR", "X", "", "")])
    response = admin_client.post(
        reverse("admin:payments_bankstatement_import"), {"file": SimpleUploadedFile("bad.csv", data)}
    )
    assert response.status_code == 200
    assert b"<td>2</td><td>Booking date</td>" in response.content
    assert BankStatement.objects.count() == 0 and BankTransaction.objects.count() == 0
