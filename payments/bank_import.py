"""Bank statement import: CSV (configurable column mapping) and ISO 20022 CAMT.053 XML (parsed with defusedxml).

An import is all or nothing. The whole file is parsed and checked first; any problem is reported by row (CSV line,
the header being line 1) or entry (CAMT ``Ntry``, counted from 1) and column/element, and nothing is written.
Then, in one transaction, every incoming credit whose bank transaction id is new is stored and matched:

- the remittance text names open invoices (by number) of one customer in the transaction's currency whose
  amounts due add up to exactly the amount → a payment allocated to them (status ``matched``);
- anything else — no invoice number, a different amount, a paid or void invoice, several customers, another
  currency — waits in the reconciliation queue (``unmatched`` / ``ambiguous``, with a note and, where one
  invoice fits, a suggestion) until staff assign it in the admin.

Outgoing (debit) and not-yet-booked entries are skipped. A transaction id already imported is counted as a
duplicate and left alone, so importing the same statement twice creates nothing new.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import imports
from core.csvfile import CsvFileError, RowError, decode_text, format_size, read_csv
from core.errors import InvalidInput, NotAllowed
from core.locks import LockOrder
from core.money import CurrencyMismatch, amount_limit_problem, round_amount
from customers.models import Customer
from invoicing.models import Invoice, InvoiceStatus
from payments.models import (
    QUEUE_STATUSES,
    BankStatement,
    BankStatementFormat,
    BankTransaction,
    BankTransactionStatus,
    Payment,
    PaymentMethodKind,
)
from payments.services import Actor, AllocationSpec, PaymentError, payment_record

CSV_FIELDS = (
    "transaction_id",
    "booking_date",
    "amount",
    "currency",
    "counterparty_name",
    "counterparty_iban",
    "remittance",
)
CSV_REQUIRED = ("booking_date", "amount", "remittance")
BANK_GATEWAY = "bank"
_TOKEN = re.compile(r"[A-Z0-9][A-Z0-9\-/_.]{2,59}")
PAYABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
# Digits with an optional decimal part, after thousands separators are removed: no exponents, NaN or Infinity.
_PLAIN_AMOUNT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


@dataclass(frozen=True)
class ParsedTransaction:
    row: int
    transaction_id: str
    booking_date: dt.date
    amount: Decimal
    currency: str
    counterparty_name: str = ""
    counterparty_iban: str = ""
    remittance: str = ""


class ImportProblem(RowError):
    """A problem of a statement: ``row`` is the CSV row (the header is row 1) or the CAMT.053 entry (from 1);
    row 0 and no column is the file as a whole."""

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "file"
        return f"{where}, {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


@dataclass(kw_only=True)
class BankImportReport(imports.ImportReport):
    counters = ("new", "duplicate", "skipped", "matched", "queued")

    format: str
    filename: str = ""
    statement_id: str = ""
    new: int = 0
    duplicate: int = 0
    skipped: int = 0
    matched: int = 0
    queued: int = 0
    transactions: list[dict[str, Any]] = field(default_factory=list)
    statement_pk: int | None = None

    def outcome(self) -> str:
        prefix = "Dry run: would import" if self.dry_run else "Imported"
        return (
            f"{prefix} {self.new} transaction(s): {self.matched} matched, {self.queued} to the reconciliation "
            f"queue; {self.duplicate} already imported, {self.skipped} skipped (debits, not booked)."
        )

    def details(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "filename": self.filename,
            "statement_id": self.statement_id,
            "transactions": self.transactions,
        }


class BankImportError(imports.DataImportError):
    """The statement was refused whole; the message lists the first problems."""

    report: BankImportReport


class MappingError(InvalidInput, ValueError):
    """A ``--mapping`` (the admin's "CSV columns") that cannot be read."""


@dataclass
class ParsedStatement:
    """What a parser found: the incoming credits, the entries it skipped, the records it read, the problems."""

    transactions: list[ParsedTransaction] = field(default_factory=list)
    skipped: int = 0
    rows: int = 0
    statement_id: str = ""
    problems: list[RowError] = field(default_factory=list)


def _refused(*problems: ImportProblem, rows: int = 0) -> ParsedStatement:
    return ParsedStatement(problems=list(problems), rows=rows)


class _DryRunRollback(Exception):
    pass


# --- parsing: shared ------------------------------------------------------------------------------------


def parse_amount(text: str) -> Decimal:
    """ "1.234,56" and "1,234.56" and "-12.5" → Decimal; the last separator is the decimal point."""
    value = text.strip().replace(" ", "").replace("\u00a0", "").replace("'", "")
    if not value:
        raise ValueError("empty")
    if "," in value and "." in value:
        if value.rfind(",") > value.rfind("."):
            value = value.replace(".", "").replace(",", ".")
        else:
            value = value.replace(",", "")
    elif "," in value:
        value = value.replace(",", ".")
    if value.startswith("+"):
        value = value[1:]
    if not _PLAIN_AMOUNT.fullmatch(value):
        raise ValueError(f"'{text}' is not an amount")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"'{text}' is not an amount") from exc
    if not amount.is_finite():
        raise ValueError(f"'{text}' is not an amount")
    return amount


def parse_date(text: str) -> dt.date:
    value = text.strip()[:10]
    for fmt in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(value, fmt).date()  # noqa: DTZ007 - a calendar date, no time zone
        except ValueError:
            continue
    raise ValueError(f"'{text}' is not a date (YYYY-MM-DD or DD.MM.YYYY)")


def _check_money(amount: Decimal, currency: str) -> str | None:
    if currency not in settings.CURRENCIES:
        return f"'{currency}' is not one of the billing currencies {', '.join(settings.CURRENCIES)}"
    if problem := amount_limit_problem(amount, currency):
        return problem
    if round_amount(amount, currency) != amount:
        return f"{amount} has more decimals than {currency} allows"
    return None


def _decode(data: bytes) -> str:
    return decode_text(data, max_bytes=settings.IMPORT_MAX_BYTES)


# --- CSV ------------------------------------------------------------------------------------------------


def format_of(filename: str) -> str:
    """The format a statement's file name suggests: ``.xml`` is CAMT.053, anything else CSV."""
    return BankStatementFormat.CAMT053 if filename.lower().endswith(".xml") else BankStatementFormat.CSV


def parse_mapping(text: str | None) -> dict[str, str]:
    """``--mapping "amount=Betrag,booking_date=Buchungstag,currency_default=EUR"`` → a dict."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, column = part.partition("=")
        key = key.strip()
        if not sep or key not in (*CSV_FIELDS, "currency_default"):
            raise MappingError(
                f"mapping '{part.strip()}': expected field=Column with field one of {', '.join(CSV_FIELDS)}",
                field="mapping",
            )
        mapping[key] = column.strip()
    return mapping


def parse_csv(data: bytes, *, mapping: Mapping[str, str] | None = None) -> ParsedStatement:
    """The credit transactions of a CSV statement (debits are skipped), or its problems."""
    columns = {**settings.PAYMENTS_BANK_CSV_MAPPING, **(mapping or {})}
    default_currency = columns.pop("currency_default", "")
    try:
        header, csv_rows = read_csv(data, max_bytes=settings.IMPORT_MAX_BYTES, max_rows=settings.IMPORT_MAX_ROWS)
    except CsvFileError as exc:
        return _refused(*(ImportProblem(e.row, e.column, e.message) for e in exc.errors))
    except (ValueError, csv.Error) as exc:
        return _refused(ImportProblem(0, "", str(exc)))
    problems: list[RowError] = []
    if not header:
        return _refused(ImportProblem(0, "", "the file is empty"))
    required = [*CSV_REQUIRED, *(() if default_currency else ("currency",))]
    for name in required:
        if columns.get(name, "") not in header:
            problems.append(
                ImportProblem(
                    1, columns.get(name, name), f"column for '{name}' not in the header ({', '.join(header)})"
                )
            )
    if problems:
        return ParsedStatement(problems=problems, rows=len(csv_rows))
    has_id = columns.get("transaction_id", "") in header
    parsed: list[ParsedTransaction] = []
    skipped = 0
    seen_ids: Counter[str] = Counter()
    derived: Counter[str] = Counter()

    def cell(record: dict[str, Any], name: str) -> str:
        column = columns.get(name, "")
        return str(record.get(column) or "").strip() if column in header else ""

    for record in csv_rows:
        line = record.row
        if not any((value or "").strip() for value in record.values() if isinstance(value, str)):
            continue
        row_problems: list[RowError] = []
        try:
            amount = parse_amount(cell(record, "amount"))
        except ValueError as exc:
            row_problems.append(ImportProblem(line, columns["amount"], str(exc)))
            amount = Decimal(0)
        try:
            booking_date = parse_date(cell(record, "booking_date"))
        except ValueError as exc:
            row_problems.append(ImportProblem(line, columns["booking_date"], str(exc)))
            booking_date = dt.date.min
        currency = (cell(record, "currency") or default_currency).upper()
        if amount and (message := _check_money(abs(amount), currency)):
            row_problems.append(ImportProblem(line, columns.get("currency", "currency"), message))
        transaction_id = cell(record, "transaction_id")
        if has_id and not transaction_id:
            row_problems.append(ImportProblem(line, columns["transaction_id"], "empty transaction id"))
        problems.extend(row_problems)
        if row_problems or amount <= 0:
            skipped += 0 if row_problems else 1
            continue
        remittance = cell(record, "remittance")
        counterparty = cell(record, "counterparty_name")
        if not has_id:
            # No id column: a stable id from the row's content (and its repetition count within the file).
            basis = "|".join([booking_date.isoformat(), str(amount), currency, counterparty, remittance])
            derived[basis] += 1
            digest = hashlib.sha256(f"{basis}|{derived[basis]}".encode()).hexdigest()[:32]
            transaction_id = f"csv:{digest}"
        seen_ids[transaction_id] += 1
        if seen_ids[transaction_id] > 1:
            problems.append(ImportProblem(line, columns.get("transaction_id", ""), f"'{transaction_id}' is repeated"))
            continue
        parsed.append(
            ParsedTransaction(
                row=line,
                transaction_id=transaction_id[:200],
                booking_date=booking_date,
                amount=amount,
                currency=currency,
                counterparty_name=counterparty[:200],
                counterparty_iban=cell(record, "counterparty_iban").replace(" ", "")[:40],
                remittance=remittance,
            )
        )
    if not parsed and not problems and not skipped:
        problems.append(ImportProblem(0, "", "the file has no transactions"))
    return ParsedStatement(transactions=parsed, skipped=skipped, rows=len(csv_rows), problems=problems)


# --- CAMT.053 -------------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> Iterator[Element]:
    return (child for child in element if _local(child.tag) == name)


def _find(element: Element | None, path: str) -> Element | None:
    for name in path.split("/"):
        if element is None:
            return None
        element = next(_children(element, name), None)
    return element


def _text(element: Element | None, path: str) -> str:
    found = _find(element, path)
    return (found.text or "").strip() if found is not None else ""


def _find_all(element: Element, path: str) -> list[Element]:
    *parents, last = path.split("/")
    node = _find(element, "/".join(parents)) if parents else element
    return list(_children(node, last)) if node is not None else []


def parse_camt053(data: bytes) -> ParsedStatement:
    """The statement id and credit transactions of a CAMT.053 statement (debits and unbooked entries are
    skipped), or its problems."""
    if len(data) > settings.IMPORT_MAX_BYTES:
        limit = format_size(settings.IMPORT_MAX_BYTES)
        return _refused(ImportProblem(0, "", f"the file is larger than the limit of {limit}; split it"))
    try:
        root = fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        return _refused(ImportProblem(0, "", f"refused unsafe XML ({type(exc).__name__})"))
    except ParseError as exc:
        return _refused(ImportProblem(0, "", f"not well-formed XML: {exc}"))
    container = _find(root, "BkToCstmrStmt") if _local(root.tag) == "Document" else None
    if container is None:
        return _refused(ImportProblem(0, "", "not an ISO 20022 CAMT.053 document (no Document/BkToCstmrStmt)"))
    statements = list(_children(container, "Stmt"))
    if not statements:
        return _refused(ImportProblem(0, "Stmt", "the statement has no Stmt element"))
    statement_ids = [_text(stmt, "Id") for stmt in statements]
    problems: list[RowError] = []
    parsed: list[ParsedTransaction] = []
    skipped = 0
    number = 0
    seen: set[str] = set()
    for stmt in statements:
        for entry in _children(stmt, "Ntry"):
            number += 1
            if number > settings.IMPORT_MAX_ROWS:
                limit = f"{settings.IMPORT_MAX_ROWS:,}"
                too_many = f"the statement has more than {limit} entries, the limit per import; split it"
                return _refused(ImportProblem(number, "Ntry", too_many), rows=number)
            status = _text(entry, "Sts") or _text(entry, "Sts/Cd")
            if _text(entry, "CdtDbtInd") != "CRDT" or status not in ("BOOK", ""):
                skipped += 1
                continue
            amount_el = _find(entry, "Amt")
            entry_problems: list[RowError] = []
            try:
                entry_amount = parse_amount(amount_el.text or "") if amount_el is not None else None
            except ValueError as exc:
                entry_problems.append(ImportProblem(number, "Amt", str(exc)))
                entry_amount = None
            if amount_el is None:
                entry_problems.append(ImportProblem(number, "Amt", "missing"))
            currency = (amount_el.get("Ccy", "") if amount_el is not None else "").upper()
            date_text = _text(entry, "BookgDt/Dt") or _text(entry, "BookgDt/DtTm") or _text(entry, "ValDt/Dt")
            try:
                booking_date = parse_date(date_text)
            except ValueError as exc:
                entry_problems.append(ImportProblem(number, "BookgDt", str(exc)))
                booking_date = dt.date.min
            entry_ref = _text(entry, "AcctSvcrRef") or _text(entry, "NtryRef")
            details = _find_all(entry, "NtryDtls/TxDtls")
            if entry_problems:
                problems.extend(entry_problems)
                continue
            assert entry_amount is not None
            for index, tx in enumerate(details or [None], start=1):
                amount = entry_amount
                tx_currency = currency
                if tx is not None and len(details) > 1:
                    tx_amount_el = _find(tx, "Amt")
                    if tx_amount_el is None:
                        tx_amount_el = _find(tx, "AmtDtls/TxAmt/Amt")
                    if tx_amount_el is None:
                        problems.append(ImportProblem(number, "TxDtls/Amt", f"transaction {index}: missing amount"))
                        continue
                    try:
                        amount = parse_amount(tx_amount_el.text or "")
                    except ValueError as exc:
                        problems.append(ImportProblem(number, "TxDtls/Amt", f"transaction {index}: {exc}"))
                        continue
                    tx_currency = (tx_amount_el.get("Ccy") or currency).upper()
                if message := _check_money(amount, tx_currency):
                    problems.append(ImportProblem(number, "Amt", message))
                    continue
                tx_ref = _text(tx, "Refs/AcctSvcrRef") if tx is not None else ""
                end_to_end = _text(tx, "Refs/EndToEndId") if tx is not None else ""
                if not tx_ref and entry_ref:
                    suffix = f":{index}" if len(details) > 1 else ""
                    tx_ref = f"{entry_ref}{suffix}"
                if not tx_ref and end_to_end and end_to_end != "NOTPROVIDED":
                    tx_ref = f"e2e:{end_to_end}"
                if not tx_ref:
                    problems.append(ImportProblem(number, "AcctSvcrRef", "no bank reference (AcctSvcrRef, NtryRef)"))
                    continue
                if tx_ref in seen:
                    problems.append(ImportProblem(number, "AcctSvcrRef", f"'{tx_ref}' is repeated"))
                    continue
                seen.add(tx_ref)
                remittance_parts = [
                    (el.text or "").strip() for el in (_find_all(tx, "RmtInf/Ustrd") if tx is not None else [])
                ]
                if tx is not None:
                    remittance_parts += [
                        _text(strd, "CdtrRefInf/Ref") for strd in _find_all(tx, "RmtInf/Strd") if strd is not None
                    ]
                remittance_parts.append(_text(entry, "AddtlNtryInf"))
                name = (_text(tx, "RltdPties/Dbtr/Nm") or _text(tx, "RltdPties/Dbtr/Pty/Nm")) if tx is not None else ""
                iban = _text(tx, "RltdPties/DbtrAcct/Id/IBAN") if tx is not None else ""
                parsed.append(
                    ParsedTransaction(
                        row=number,
                        transaction_id=tx_ref[:200],
                        booking_date=booking_date,
                        amount=amount,
                        currency=tx_currency,
                        counterparty_name=name[:200],
                        counterparty_iban=iban.replace(" ", "")[:40],
                        remittance=" ".join(part for part in remittance_parts if part),
                    )
                )
    return ParsedStatement(
        transactions=parsed,
        skipped=skipped,
        rows=number,
        statement_id=", ".join(filter(None, statement_ids))[:140],
        problems=problems,
    )


# --- matching -------------------------------------------------------------------------------------------


@dataclass
class Match:
    status: str
    note: str
    invoices: list[Invoice] = field(default_factory=list)
    suggested: Invoice | None = None


def invoice_numbers_in(text: str) -> list[str]:
    return sorted({token.strip(".-/_") for token in _TOKEN.findall(text.upper())})


def match_transaction(tx: ParsedTransaction) -> Match:
    """Decide what one incoming credit pays (read-only; the import re-checks under locks when it books)."""
    tokens = invoice_numbers_in(tx.remittance)
    named = list(Invoice.objects.filter(number__in=tokens).exclude(number="").order_by("due_date", "pk"))
    if not named:
        candidates = list(
            Invoice.objects.filter(status__in=PAYABLE, currency=tx.currency, amount_due=tx.amount).order_by("pk")[:2]
        )
        suggestion = candidates[0] if len(candidates) == 1 else None
        note = "no invoice number in the remittance text"
        if suggestion is not None:
            note += f"; the amount equals the amount due of {suggestion.number}"
        return Match(BankTransactionStatus.UNMATCHED, note, suggested=suggestion)
    numbers = ", ".join(invoice.number for invoice in named)
    if len({invoice.customer_id for invoice in named}) > 1:
        return Match(BankTransactionStatus.AMBIGUOUS, f"invoices of several customers named: {numbers}")
    first = named[0]
    if any(invoice.currency != tx.currency for invoice in named):
        return Match(BankTransactionStatus.AMBIGUOUS, f"{numbers} not in {tx.currency}", suggested=first)
    not_open = [invoice for invoice in named if invoice.status not in PAYABLE or invoice.amount_due <= 0]
    if not_open:
        states = ", ".join(f"{invoice.number} is {invoice.status}" for invoice in not_open)
        return Match(BankTransactionStatus.AMBIGUOUS, states, suggested=first)
    due = sum((invoice.amount_due for invoice in named), Decimal(0))
    if due != tx.amount:
        return Match(
            BankTransactionStatus.AMBIGUOUS,
            f"{tx.amount} {tx.currency} differs from the amount due {due} of {numbers}",
            suggested=first if len(named) == 1 else None,
        )
    return Match(BankTransactionStatus.MATCHED, f"paid {numbers}", invoices=named)


# --- import ---------------------------------------------------------------------------------------------


def bank_statement_import(
    *,
    data: bytes,
    format: str,
    filename: str = "",
    mapping: Mapping[str, str] | None = None,
    dry_run: bool = False,
    actor: Actor = None,
) -> BankImportReport:
    """Import a statement (see the module docstring). Raises ``BankImportError`` carrying the report when the
    file is rejected; a dry run reports what would happen and writes nothing."""
    report = BankImportReport(format=format, filename=filename, dry_run=dry_run)
    if format == BankStatementFormat.CSV:
        statement = parse_csv(data, mapping=mapping)
    elif format == BankStatementFormat.CAMT053:
        statement = parse_camt053(data)
    else:
        statement = _refused(ImportProblem(0, "", f"unknown format '{format}' (csv or camt053)"))
    parsed = statement.transactions
    report.statement_id, report.skipped, report.rows = statement.statement_id, statement.skipped, statement.rows
    report.errors.extend(statement.problems)
    if report.errors:
        raise BankImportError(report)
    try:
        with transaction.atomic():
            _import_parsed(report, parsed, data=data, actor=actor)
            if dry_run:
                raise _DryRunRollback
    except _DryRunRollback:
        report.statement_pk = None
    except PaymentError as exc:
        report.errors.append(ImportProblem(0, "", str(exc)))
        raise BankImportError(report) from exc
    return report


def _import_parsed(report: BankImportReport, parsed: list[ParsedTransaction], *, data: bytes, actor: Actor) -> None:
    existing = set(
        BankTransaction.objects.filter(transaction_id__in=[tx.transaction_id for tx in parsed]).values_list(
            "transaction_id", flat=True
        )
    )
    fresh = [tx for tx in parsed if tx.transaction_id not in existing]
    report.duplicate = len(parsed) - len(fresh)
    for tx in parsed:
        if tx.transaction_id in existing:
            report.transactions.append({"row": tx.row, "transaction_id": tx.transaction_id, "status": "duplicate"})
    statement = BankStatement.objects.create(
        filename=report.filename[:255],
        format=report.format,
        statement_id=report.statement_id,
        sha256=hashlib.sha256(data).hexdigest(),
        imported_by_id=actor.pk if actor is not None and actor.is_authenticated else None,
    )
    report.statement_pk = statement.pk
    matches = [(tx, match_transaction(tx)) for tx in fresh]
    # Lock every customer that will be paid up front, in id order (the services lock them again, harmlessly),
    # so that two imports running at once cannot wait for each other's customers in a cycle.
    customer_ids = sorted({m.invoices[0].customer_id for _, m in matches if m.invoices})
    LockOrder().lock(Customer.objects.all(), customer_ids)
    for tx, match in matches:
        payment = None
        if match.status == BankTransactionStatus.MATCHED:
            payment = _book_matched(tx, match, actor=actor)
        row = BankTransaction.objects.create(
            statement=statement,
            transaction_id=tx.transaction_id,
            booking_date=tx.booking_date,
            currency=tx.currency,
            amount=tx.amount,
            counterparty_name=tx.counterparty_name,
            counterparty_iban=tx.counterparty_iban,
            remittance=tx.remittance,
            status=BankTransactionStatus.MATCHED if payment else match.status,
            match_note=match.note[:500],
            suggested_invoice=match.suggested,
            payment=payment,
        )
        report.new += 1
        if row.status == BankTransactionStatus.MATCHED:
            report.matched += 1
        else:
            report.queued += 1
        report.transactions.append(
            {
                "row": tx.row,
                "transaction_id": tx.transaction_id,
                "status": row.status,
                "amount": str(tx.amount),
                "currency": tx.currency,
                "invoices": [invoice.number for invoice in match.invoices],
                "payment": payment.pk if payment else None,
                "note": row.match_note,
            }
        )
    BankStatement.objects.filter(pk=statement.pk).update(
        transactions_new=report.new,
        transactions_duplicate=report.duplicate,
        matched=report.matched,
        queued=report.queued,
    )


def _book_matched(tx: ParsedTransaction, match: Match, *, actor: Actor) -> Payment | None:
    invoices = match.invoices
    customer = Customer.objects.get(pk=invoices[0].customer_id)
    # The invoices were read without a lock: payment_record re-reads them locked and refuses if one changed.
    try:
        with transaction.atomic():
            return payment_record(
                customer=customer,
                amount=tx.amount,
                currency=tx.currency,
                received_on=tx.booking_date,
                method=PaymentMethodKind.BANK_TRANSFER,
                reference=tx.remittance[:255],
                invoice=invoices[0] if len(invoices) == 1 else None,
                allocations=[AllocationSpec(invoice=i, amount=i.amount_due) for i in invoices]
                if len(invoices) > 1
                else None,
                gateway=BANK_GATEWAY,
                gateway_reference=tx.transaction_id,
                actor=actor,
            )
    except (PaymentError, CurrencyMismatch) as exc:
        match.status = BankTransactionStatus.AMBIGUOUS
        match.note = f"could not be booked automatically: {exc}"
        match.invoices = []
        return None


# --- reconciliation queue -------------------------------------------------------------------------------


class ReconciliationError(NotAllowed, PaymentError):
    pass


def bank_transaction_assign(
    *,
    bank_transaction: BankTransaction,
    customer: Customer,
    invoice: Invoice | None = None,
    actor: Actor = None,
) -> Payment:
    """Staff assign a queued transaction: a payment of ``customer``, allocated to ``invoice`` if given, else to
    the customer's open invoices oldest first (the rest becomes credit)."""
    with transaction.atomic():
        lock_customer = Customer.objects.select_for_update().get(pk=customer.pk)
        row = BankTransaction.objects.select_for_update().get(pk=bank_transaction.pk)
        if row.status not in QUEUE_STATUSES:
            raise ReconciliationError(f"bank transaction {row.transaction_id} is already {row.get_status_display()}")
        if invoice is not None and invoice.customer_id != customer.pk:
            raise ReconciliationError(f"invoice {invoice} belongs to another customer")
        payment = payment_record(
            customer=lock_customer,
            amount=row.amount,
            currency=row.currency,
            received_on=row.booking_date,
            method=PaymentMethodKind.BANK_TRANSFER,
            reference=row.remittance[:255],
            invoice=invoice,
            gateway=BANK_GATEWAY,
            gateway_reference=row.transaction_id,
            actor=actor,
        )
        BankTransaction.objects.filter(pk=row.pk).update(
            status=BankTransactionStatus.ASSIGNED,
            payment=payment,
            resolved_by_id=actor.pk if actor is not None and actor.is_authenticated else None,
            resolved_at=timezone.now(),
        )
    return payment


def bank_transaction_ignore(*, bank_transaction: BankTransaction, note: str, actor: Actor = None) -> BankTransaction:
    """Take a transaction out of the queue without a payment (not a customer payment, e.g. an interest credit)."""
    if not note.strip():
        raise ReconciliationError("say why the transaction is ignored")
    changed = BankTransaction.objects.filter(pk=bank_transaction.pk, status__in=QUEUE_STATUSES).update(
        status=BankTransactionStatus.IGNORED,
        match_note=note[:500],
        resolved_by_id=actor.pk if actor is not None and actor.is_authenticated else None,
        resolved_at=timezone.now(),
    )
    if changed != 1:
        raise ReconciliationError(f"bank transaction {bank_transaction.transaction_id} is not in the queue")
    bank_transaction.refresh_from_db()
    return bank_transaction
