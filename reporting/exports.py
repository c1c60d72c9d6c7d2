"""Accounting export: the invoices, credit notes and payments of a period, for the accountant's books.

Three layouts of the same documents (docs/decisions/accounting-export.md):

- ``csv`` — one row per document line (invoice and credit note lines; a payment's allocations and the part that
  became customer credit), every column plain text, for a spreadsheet;
- ``journal`` — double-entry lines (debit / credit per account) that balance to zero per document;
- ``xero`` — Xero's "Sales invoice import" CSV template (invoices and credit notes; Xero imports payments
  separately).

The period is the closed date range ``[date_from, date_to]`` of issue dates (invoices, credit notes) and received
dates (payments). Drafts are never exported; void invoices appear in the plain CSV with their status and are left
out of the journal and the Xero file. Every string cell goes through ``csv_safe.safe_cell`` (formula injection);
amounts are rounded to the currency's minor unit and written as numbers.

Reporting sits above payments in the layers (docs/ARCHITECTURE.md), so it imports the payment models directly.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.db import models
from django.db.models import Prefetch, QuerySet

from accounting.journal_fx import BaseLine, LazyRates, base_amounts, fx_accounts
from accounting.rates import RateMissing
from accounting.recognition import line_entries, months, next_month, recognition_report
from core.csv_safe import safe_cell
from core.dates import billing_date_of, billing_tz
from core.errors import InvalidInput
from core.money import round_amount
from invoicing.models import CreditNote, CreditNoteLine, Invoice, InvoiceLine, InvoiceStatus
from payments.models import CreditLedgerEntry, Payment, PaymentAllocation, Refund

ZERO = Decimal(0)

# Account codes of the journal and the Xero file. Override any of them with the ACCOUNTING_ACCOUNTS setting (a
# dict, e.g. from the ACCOUNTING_ACCOUNTS environment variable as JSON); missing keys keep these defaults.
DEFAULT_ACCOUNTS: dict[str, Any] = {
    "receivables": "1200",
    "bank": "1000",
    "revenue": "4000",
    "tax_payable": "2200",
    "customer_credit": "2300",
    # credit granted or taken back by hand (goodwill, corrections): the other side of a manual adjustment
    "credit_adjustments": "6900",
    # product id (as a string) or product name → revenue account; other lines go to "revenue"
    "revenue_by_product": {},
    # tax name as printed on the line (e.g. "VAT 19 %") → tax account; other rates go to "tax_payable"
    "tax_by_rate": {},
    # tax name → Xero TaxType (the tax rate's display name in the Xero organisation)
    "xero_tax_types": {},
    # Xero TaxType of lines without tax
    "xero_no_tax": "Tax Exempt",
    # revenue recognition entries (layout "recognition"): invoiced revenue moved to deferred revenue, and what
    # each month recognises moved back to the product's revenue account
    "deferred_revenue": "2400",
    # company-currency side of the journal (accounting/journal_fx.py): realised exchange differences when a
    # payment settles an invoice at another rate, and the cents lost converting each line on its own
    "fx_gain": "fx_gain",
    "fx_loss": "fx_loss",
    "rounding": "rounding",
}

# Xero reads dates in the organisation's regional format; DD/MM/YYYY is what its template documents (UK, EU, AU,
# NZ). A US organisation would need %m/%d/%Y.
XERO_DATE_FORMAT = "%d/%m/%Y"
PAYMENT_STATUSES_RECEIVED = ("succeeded", "partially_refunded", "refunded")


class TextSink(Protocol):
    """Where the CSV goes: a text file, ``sys.stdout``, a command's stdout or an ``HttpResponse``."""

    def write(self, text: str, /) -> Any: ...


class ExportFormat(models.TextChoices):
    CSV = "csv", "Plain CSV (one row per document line)"
    JOURNAL = "journal", "Double-entry journal (CSV)"
    XERO = "xero", "Xero sales invoice import (CSV)"
    RECOGNITION = "recognition", "Revenue recognition entries per month (journal CSV)"
    DATEV = "datev", "DATEV Buchungsstapel (EXTF, Windows-1252)"
    DATEV_DEBITORS = "datev-debitors", "DATEV Debitoren master data (EXTF, Windows-1252)"
    EINVOICES = "einvoices", "E-invoices of the period (zip of the archived XML, with a manifest)"


# Formats written in Windows-1252 (DATEV's files); the others are UTF-8.
CP1252_FORMATS = frozenset({ExportFormat.DATEV, ExportFormat.DATEV_DEBITORS})


class ExportError(InvalidInput):
    """The export cannot be written (a document that does not balance, a bad period)."""


@dataclass(frozen=True)
class JournalLine:
    date: dt.date
    document_type: str
    document_number: str
    customer: str
    account: str
    description: str
    currency: str
    debit: Decimal
    credit: Decimal
    # the same line in the company currency (COMPANY_CURRENCY) at ``rate`` (document currency units per company
    # currency unit; None on the FX and rounding lines, which exist in the company currency only)
    base_debit: Decimal = ZERO
    base_credit: Decimal = ZERO
    base_currency: str = ""
    rate: Decimal | None = None


@dataclass
class ExportSummary:
    format: str
    date_from: dt.date
    date_to: dt.date
    invoices: int = 0
    credit_notes: int = 0
    payments: int = 0
    rows: int = 0
    skipped_void: int = 0
    refunds: int = 0
    credit_movements: int = 0

    def __str__(self) -> str:
        void = f", {self.skipped_void} void invoice(s) left out" if self.skipped_void else ""
        more = "".join(
            f", {count} {label}"
            for count, label in ((self.refunds, "refund(s)"), (self.credit_movements, "customer credit movement(s)"))
            if count
        )
        return (
            f"{self.format}: {self.invoices} invoice(s), {self.credit_notes} credit note(s), {self.payments} "
            f"payment(s){more}, {self.rows} row(s) for {self.date_from}..{self.date_to}{void}"
        )


@dataclass
class _Counts:
    invoices: int = 0
    credit_notes: int = 0
    payments: int = 0
    skipped_void: int = 0
    refunds: int = 0
    credit_movements: int = 0


def accounting_accounts() -> dict[str, Any]:
    configured = getattr(settings, "ACCOUNTING_ACCOUNTS", None) or {}
    return {**DEFAULT_ACCOUNTS, **configured}


# --- selectors ------------------------------------------------------------------------------------------


def export_invoices(*, date_from: dt.date, date_to: dt.date) -> QuerySet[Invoice]:
    """Finalized invoices issued in the period (void ones included: the caller decides), by date and number."""
    lines = InvoiceLine.objects.select_related("price__product").order_by("position", "pk")
    return (
        Invoice.objects.finalized()
        .filter(issue_date__gte=date_from, issue_date__lte=date_to)
        .prefetch_related(Prefetch("lines", queryset=lines))
        .order_by("issue_date", "number")
    )


def export_credit_notes(*, date_from: dt.date, date_to: dt.date) -> QuerySet[CreditNote]:
    lines = CreditNoteLine.objects.select_related("invoice_line__price__product").order_by("position", "pk")
    return (
        CreditNote.objects.filter(issue_date__gte=date_from, issue_date__lte=date_to)
        .select_related("invoice")
        .prefetch_related(Prefetch("lines", queryset=lines))
        .order_by("issue_date", "number")
    )


def export_payments(*, date_from: dt.date, date_to: dt.date) -> QuerySet[Any]:
    """Payments received in the period (later refunds do not change what was received), with their allocations."""
    allocations = PaymentAllocation.objects.select_related("invoice").order_by("pk")
    return (
        Payment.objects.filter(
            received_on__gte=date_from, received_on__lte=date_to, status__in=PAYMENT_STATUSES_RECEIVED
        )
        .select_related("customer")
        .prefetch_related(Prefetch("allocations", queryset=allocations))
        .order_by("received_on", "pk")
    )


def _period_moments(date_from: dt.date, date_to: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start of date_from, start of the day after date_to) in the billing timezone."""
    tz = billing_tz()
    return (
        dt.datetime.combine(date_from, dt.time.min, tzinfo=tz),
        dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time.min, tzinfo=tz),
    )


def export_refunds(*, date_from: dt.date, date_to: dt.date) -> QuerySet[Any]:
    """Refunds paid out in the period (processed, in the billing timezone)."""
    start, end = _period_moments(date_from, date_to)
    return (
        Refund.objects.filter(status="succeeded", processed_at__gte=start, processed_at__lt=end)
        .select_related("customer")
        .order_by("processed_at", "pk")
    )


def export_credit_movements(*, date_from: dt.date, date_to: dt.date) -> QuerySet[Any]:
    """Customer credit used to settle invoices, and credit granted or taken back by hand, in the period. (Credit
    from overpayments, credit notes and refunds is booked with those documents.)"""
    start, end = _period_moments(date_from, date_to)
    return (
        CreditLedgerEntry.objects.filter(
            kind__in=("applied_to_invoice", "manual_adjustment"), created_at__gte=start, created_at__lt=end
        )
        .select_related("customer", "invoice")
        .order_by("created_at", "pk")
    )


def payment_number(payment: Any) -> str:
    """Payments have no number series; the export names them by id."""
    return f"PAY-{payment.pk}"


# --- helpers --------------------------------------------------------------------------------------------


def _amount(value: Decimal, currency: str) -> Decimal:
    return round_amount(value, currency)


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros and never in exponent notation: 1.0000 → 1, 10.0000 → 10, 0.012500 → 0.0125."""
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    return normalized.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else normalized


def _quantity(value: Decimal | None) -> Decimal | str:
    return "" if value is None else _plain(value)


def _percentage(value: Decimal) -> Decimal:
    return _plain(value) if value else ZERO


def _unit_amount(value: Decimal, currency: str) -> Decimal:
    """At the currency's minor unit when that is exact (100.000000 → 100.00), else as precise as stored."""
    rounded = _amount(value, currency)
    return rounded if rounded == value else _plain(value)


def _contact_name(snapshot: dict[str, Any], fallback: str) -> str:
    return str(snapshot.get("legal_name") or snapshot.get("name") or fallback)


def _revenue_account(product: Any, accounts: dict[str, Any]) -> str:
    if product is not None:
        return _product_revenue_account(product.pk, product.name, accounts)
    return str(accounts["revenue"])


def _product_revenue_account(product_id: int | None, product_name: str, accounts: dict[str, Any]) -> str:
    if product_id is not None:
        by_product = accounts["revenue_by_product"]
        for key in (str(product_id), product_name):
            if key in by_product:
                return str(by_product[key])
    return str(accounts["revenue"])


def _tax_account(tax_name: str, accounts: dict[str, Any]) -> str:
    return str(accounts["tax_by_rate"].get(tax_name, accounts["tax_payable"]))


def _tax_label(tax_name: str, percentage: Decimal) -> str:
    return tax_name or f"Tax {_percentage(percentage)} %"


def _invoice_line_product(line: InvoiceLine | None) -> Any:
    if line is None or line.price is None:
        return None
    return line.price.product


def _writer(out: TextSink) -> Any:
    return csv.writer(out, lineterminator="\r\n")


def _safe(row: Iterable[Any]) -> list[str]:
    return [safe_cell(value) for value in row]


# --- journal --------------------------------------------------------------------------------------------


class _Entry:
    """The journal lines of one document, merged per (account, description); signs pick the side. Each line is
    also converted to the company currency at its rate date (the document's, or the settled invoice's issue date
    for a receivable it clears), with realised FX and rounding lines so the entry balances in both currencies."""

    def __init__(
        self,
        *,
        date: dt.date,
        document_type: str,
        number: str,
        customer: str,
        currency: str,
        rates: LazyRates | None = None,
        accounts: dict[str, Any] | None = None,
    ) -> None:
        self.date, self.document_type, self.number = date, document_type, number
        self.customer, self.currency = customer, currency
        self.rates = rates if rates is not None else LazyRates(date_from=date, date_to=date)
        self.accounts = accounts if accounts is not None else accounting_accounts()
        self.amounts: dict[tuple[str, str], Decimal] = {}
        self.rate_dates: dict[tuple[str, str], dt.date] = {}

    def debit(self, account: str, description: str, amount: Decimal, *, rate_date: dt.date | None = None) -> None:
        key = (account, description)
        self.amounts[key] = self.amounts.get(key, ZERO) + amount
        self.rate_dates.setdefault(key, rate_date or self.date)

    def credit(self, account: str, description: str, amount: Decimal, *, rate_date: dt.date | None = None) -> None:
        self.debit(account, description, -amount, rate_date=rate_date)

    def _line(
        self, account: str, description: str, amount: Decimal, base: Decimal, rate: Decimal | None
    ) -> JournalLine:
        company = self.rates.into
        return JournalLine(
            date=self.date,
            document_type=self.document_type,
            document_number=self.number,
            customer=self.customer,
            account=account,
            description=description,
            currency=self.currency,
            debit=_amount(amount, self.currency) if amount > 0 else ZERO,
            credit=_amount(-amount, self.currency) if amount < 0 else ZERO,
            base_debit=base if base > 0 else ZERO,
            base_credit=-base if base < 0 else ZERO,
            base_currency=company,
            rate=rate,
        )

    def lines(self) -> list[JournalLine]:
        rounded = [(key, _amount(amount, self.currency)) for key, amount in self.amounts.items()]
        kept = [(key, amount) for key, amount in rounded if amount != 0]
        debits = sum((amount for _, amount in kept if amount > 0), ZERO)
        credits = sum((-amount for _, amount in kept if amount < 0), ZERO)
        if debits != credits:
            raise ExportError(
                f"{self.document_type} {self.number} does not balance: debits {debits}, credits {credits}"
            )
        try:
            base = base_amounts(
                [BaseLine(amount, self.rate_dates[key]) for key, amount in kept],
                currency=self.currency,
                document_date=self.date,
                rates=self.rates,
            )
        except RateMissing as exc:
            raise ExportError(f"{self.document_type} {self.number}: {exc}", field="currency") from exc
        lines = [
            self._line(account, description, amount, base_amount, rate)
            for ((account, description), amount), base_amount, rate in zip(kept, base.amounts, base.rates, strict=True)
        ]
        fx_gain, fx_loss, rounding = fx_accounts(self.accounts)
        if base.fx_difference > 0:
            lines.append(self._line(fx_loss, "Realised exchange loss", ZERO, base.fx_difference, None))
        elif base.fx_difference < 0:
            lines.append(self._line(fx_gain, "Realised exchange gain", ZERO, base.fx_difference, None))
        if base.rounding:
            lines.append(self._line(rounding, "Currency conversion rounding", ZERO, base.rounding, None))
        return lines


def invoice_journal(invoice: Invoice, *, accounts: dict[str, Any], rates: LazyRates | None = None) -> list[JournalLine]:
    """Receivables (debit, the total) against revenue per account and tax payable per rate (credit)."""
    entry = _Entry(
        date=invoice.issue_date,  # type: ignore[arg-type]
        document_type="invoice",
        number=invoice.number,
        customer=_contact_name(invoice.customer_snapshot, str(invoice.customer_id)),
        currency=invoice.currency,
        rates=rates,
        accounts=accounts,
    )
    entry.debit(str(accounts["receivables"]), f"Invoice {invoice.number}", invoice.total)
    for line in invoice.lines.all():
        entry.credit(_revenue_account(_invoice_line_product(line), accounts), "Revenue", line.net_amount)
        if line.tax_amount:
            entry.credit(
                _tax_account(line.tax_name, accounts), _tax_label(line.tax_name, line.tax_percentage), line.tax_amount
            )
    return entry.lines()


def credit_note_journal(
    credit_note: CreditNote, *, accounts: dict[str, Any], rates: LazyRates | None = None
) -> list[JournalLine]:
    """The mirror of an invoice: revenue and tax debited back; credited to receivables for the part that reduced
    the invoice's amount due and to customer credit for the rest."""
    entry = _Entry(
        date=credit_note.issue_date,
        document_type="credit_note",
        number=credit_note.number,
        customer=_contact_name(credit_note.customer_snapshot, str(credit_note.customer_id)),
        currency=credit_note.currency,
        rates=rates,
        accounts=accounts,
    )
    for line in credit_note.lines.all():
        entry.debit(_revenue_account(_invoice_line_product(line.invoice_line), accounts), "Revenue", line.net_amount)
        if line.tax_amount:
            entry.debit(
                _tax_account(line.tax_name, accounts), _tax_label(line.tax_name, line.tax_percentage), line.tax_amount
            )
    entry.credit(
        str(accounts["receivables"]),
        f"Invoice {credit_note.invoice.number}",
        credit_note.amount_applied,
        rate_date=credit_note.invoice.issue_date,
    )
    entry.credit(str(accounts["customer_credit"]), "Customer credit", credit_note.amount_to_customer_credit)
    return entry.lines()


def payment_journal(payment: Any, *, accounts: dict[str, Any], rates: LazyRates | None = None) -> list[JournalLine]:
    """Bank (debit, the amount received) against receivables per settled invoice and customer credit for the
    part that settled nothing (overpayment)."""
    number = payment_number(payment)
    entry = _Entry(
        date=payment.received_on,
        document_type="payment",
        number=number,
        customer=payment.customer.display_legal_name,
        currency=payment.currency,
        rates=rates,
        accounts=accounts,
    )
    entry.debit(str(accounts["bank"]), f"Payment {number}", payment.amount)
    allocated = ZERO
    for allocation in payment.allocations.all():
        entry.credit(
            str(accounts["receivables"]),
            f"Invoice {allocation.invoice.number}",
            allocation.amount,
            rate_date=allocation.invoice.issue_date,
        )
        allocated += allocation.amount
    entry.credit(str(accounts["customer_credit"]), "Customer credit (overpayment)", payment.amount - allocated)
    return entry.lines()


def refund_journal(refund: Any, *, accounts: dict[str, Any], rates: LazyRates | None = None) -> list[JournalLine]:
    """Bank (credit, the money paid back) against receivables for the part that re-opened invoices and customer
    credit for the rest (credit paid out, or taken back from the customer's balance)."""
    entry = _Entry(
        date=billing_date_of(refund.processed_at),
        document_type="refund",
        number=f"REF-{refund.pk}",
        customer=refund.customer.display_legal_name,
        currency=refund.currency,
        rates=rates,
        accounts=accounts,
    )
    entry.credit(str(accounts["bank"]), f"Refund REF-{refund.pk}", refund.amount)
    entry.debit(str(accounts["receivables"]), "Invoices re-opened", refund.amount_reopened)
    entry.debit(str(accounts["customer_credit"]), "Customer credit", refund.amount - refund.amount_reopened)
    return entry.lines()


def credit_movement_journal(
    movement: Any, *, accounts: dict[str, Any], rates: LazyRates | None = None
) -> list[JournalLine]:
    """Credit applied to an invoice: customer credit (debit) settles receivables (credit). A manual adjustment:
    customer credit against the adjustments account, in the direction of its sign."""
    entry = _Entry(
        date=billing_date_of(movement.created_at),
        document_type="customer_credit",
        number=f"CR-{movement.pk}",
        customer=movement.customer.display_legal_name,
        currency=movement.currency,
        rates=rates,
        accounts=accounts,
    )
    amount = movement.amount  # the ledger's sign: + credit granted, − credit used
    if movement.kind == "applied_to_invoice":
        number = movement.invoice.number if movement.invoice_id else ""
        issued = movement.invoice.issue_date if movement.invoice_id else None
        entry.debit(str(accounts["customer_credit"]), "Customer credit applied", -amount)
        entry.credit(str(accounts["receivables"]), f"Invoice {number}".strip(), -amount, rate_date=issued)
    else:
        entry.debit(str(accounts["credit_adjustments"]), movement.reason or "Credit adjustment", amount)
        entry.credit(str(accounts["customer_credit"]), "Customer credit", amount)
    return entry.lines()


def journal_lines(*, date_from: dt.date, date_to: dt.date, counts: _Counts | None = None) -> Iterator[JournalLine]:
    counts = counts if counts is not None else _Counts()
    accounts = accounting_accounts()
    rates = LazyRates(date_from=date_from, date_to=date_to)
    for invoice in export_invoices(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        if invoice.status == InvoiceStatus.VOID:
            counts.skipped_void += 1
            continue
        counts.invoices += 1
        yield from invoice_journal(invoice, accounts=accounts, rates=rates)
    for credit_note in export_credit_notes(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        counts.credit_notes += 1
        yield from credit_note_journal(credit_note, accounts=accounts, rates=rates)
    for payment in export_payments(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        counts.payments += 1
        yield from payment_journal(payment, accounts=accounts, rates=rates)
    for refund in export_refunds(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        counts.refunds += 1
        yield from refund_journal(refund, accounts=accounts, rates=rates)
    for movement in export_credit_movements(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        counts.credit_movements += 1
        yield from credit_movement_journal(movement, accounts=accounts, rates=rates)


def recognition_journal_lines(*, date_from: dt.date, date_to: dt.date) -> Iterator[JournalLine]:
    """Revenue recognition entries (docs/decisions/revenue-recognition.md), one per month and currency, dated the
    month's last day, for the months that end in ``[date_from, date_to]``. The documents' journal credits revenue
    when an invoice is issued; per revenue account this entry moves the month's invoiced amount (net of credit
    notes) to deferred revenue and what the month recognises back to revenue, so revenue shows what was
    recognised and deferred revenue holds the balance (deferred − unbilled)."""
    wanted = [month for month in months(date_from, date_to) if next_month(month) - dt.timedelta(days=1) <= date_to]
    if not wanted:
        return
    accounts = accounting_accounts()
    rates = LazyRates(date_from=wanted[0], date_to=date_to)
    entries = [
        replace(entry, product=_product_revenue_account(entry.product_id, entry.product_name, accounts))
        for entry in line_entries(until=date_to)
    ]
    rows = recognition_report(date_from=wanted[0], date_to=date_to, entries=entries)
    deferred = str(accounts["deferred_revenue"])
    for month in wanted:
        for currency in sorted({row.currency for row in rows if row.month == month}):
            month_end = next_month(month) - dt.timedelta(days=1)
            entry = _Entry(
                date=month_end,
                document_type="recognition",
                number=f"REC-{month:%Y-%m}-{currency}",
                customer="",
                currency=currency,
                rates=rates,
                accounts=accounts,
            )
            for row in rows:
                if row.month != month or row.currency != currency:
                    continue
                entry.debit(row.product, "Invoiced in the month, deferred", row.invoiced)
                entry.credit(deferred, "Invoiced in the month", row.invoiced)
                entry.debit(deferred, "Recognised in the month", row.recognised)
                entry.credit(row.product, "Recognised in the month", row.recognised)
            yield from entry.lines()


JOURNAL_HEADER = (
    "date",
    "document_type",
    "document_number",
    "customer",
    "account",
    "description",
    "debit",
    "credit",
    "currency",
    "base_debit",
    "base_credit",
    "base_currency",
    "rate",
)


def _journal_rows(lines: Iterable[JournalLine]) -> Iterator[list[Any]]:
    for line in lines:
        yield [
            line.date.isoformat(),
            line.document_type,
            line.document_number,
            line.customer,
            line.account,
            line.description,
            line.debit if line.debit else "",
            line.credit if line.credit else "",
            line.currency,
            line.base_debit if line.base_debit else "",
            line.base_credit if line.base_credit else "",
            line.base_currency,
            "" if line.rate is None else _plain(line.rate),
        ]


# --- plain CSV ------------------------------------------------------------------------------------------

PLAIN_HEADER = (
    "document_type",
    "document_number",
    "status",
    "date",
    "due_date",
    "customer",
    "customer_email",
    "customer_tax_id",
    "currency",
    "line",
    "description",
    "quantity",
    "unit_amount",
    "net_amount",
    "tax_category",
    "tax_name",
    "tax_percentage",
    "tax_amount",
    "line_total",
    "document_total",
    "reference",
)


def _plain_rows(*, date_from: dt.date, date_to: dt.date, counts: _Counts) -> Iterator[list[Any]]:
    for invoice in export_invoices(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        counts.invoices += 1
        snapshot, currency = invoice.customer_snapshot, invoice.currency
        for position, line in enumerate(invoice.lines.all(), start=1):
            yield [
                "invoice",
                invoice.number,
                invoice.status,
                invoice.issue_date.isoformat(),  # type: ignore[union-attr]
                invoice.due_date.isoformat(),  # type: ignore[union-attr]
                _contact_name(snapshot, str(invoice.customer_id)),
                snapshot.get("email", ""),
                snapshot.get("tax_id", ""),
                currency,
                position,
                line.description,
                _quantity(line.quantity),
                _unit_amount(line.unit_amount, currency),
                _amount(line.net_amount, currency),
                line.tax_category,
                line.tax_name,
                _percentage(line.tax_percentage),
                _amount(line.tax_amount, currency),
                _amount(line.total_amount, currency),
                _amount(invoice.total, currency),
                "",
            ]
    for credit_note in export_credit_notes(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        counts.credit_notes += 1
        snapshot, currency = credit_note.customer_snapshot, credit_note.currency
        for position, cn_line in enumerate(credit_note.lines.all(), start=1):
            yield [
                "credit_note",
                credit_note.number,
                "issued",
                credit_note.issue_date.isoformat(),
                "",
                _contact_name(snapshot, str(credit_note.customer_id)),
                snapshot.get("email", ""),
                snapshot.get("tax_id", ""),
                currency,
                position,
                cn_line.description,
                _quantity(cn_line.quantity),
                "",
                _amount(cn_line.net_amount, currency),
                cn_line.tax_category,
                cn_line.tax_name,
                _percentage(cn_line.tax_percentage),
                _amount(cn_line.tax_amount, currency),
                _amount(cn_line.total_amount, currency),
                _amount(credit_note.total, currency),
                credit_note.invoice.number,
            ]
    for payment in export_payments(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        counts.payments += 1
        currency, customer = payment.currency, payment.customer
        parts = [(f"Allocated to {a.invoice.number}", a.amount, a.invoice.number) for a in payment.allocations.all()]
        leftover = payment.amount - sum((amount for _, amount, _ in parts), ZERO)
        if leftover:
            parts.append(("To customer credit", leftover, ""))
        for position, (description, amount, invoice_number) in enumerate(parts, start=1):
            yield [
                "payment",
                payment_number(payment),
                payment.status,
                payment.received_on.isoformat(),
                "",
                customer.display_legal_name,
                customer.email,
                customer.tax_id,
                currency,
                position,
                description,
                "",
                "",
                _amount(amount, currency),
                "",
                "",
                "",
                "",
                _amount(amount, currency),
                _amount(payment.amount, currency),
                invoice_number or payment.reference,
            ]


# --- Xero -----------------------------------------------------------------------------------------------

# The column names of Xero's "Sales invoice import" CSV template, in its order (* = required by Xero).
XERO_HEADER = (
    "*ContactName",
    "EmailAddress",
    "POAddressLine1",
    "POAddressLine2",
    "POAddressLine3",
    "POAddressLine4",
    "POCity",
    "PORegion",
    "POPostalCode",
    "POCountry",
    "*InvoiceNumber",
    "Reference",
    "*InvoiceDate",
    "*DueDate",
    "InventoryItemCode",
    "*Description",
    "*Quantity",
    "*UnitAmount",
    "Discount",
    "*AccountCode",
    "*TaxType",
    "TrackingName1",
    "TrackingOption1",
    "TrackingName2",
    "TrackingOption2",
    "Currency",
    "BrandingTheme",
)


def _xero_contact(snapshot: dict[str, Any], fallback: str) -> list[Any]:
    return [
        _contact_name(snapshot, fallback),
        snapshot.get("email", ""),
        snapshot.get("address_line1", ""),
        snapshot.get("address_line2", ""),
        "",
        "",
        snapshot.get("city", ""),
        snapshot.get("region", ""),
        snapshot.get("postal_code", ""),
        snapshot.get("country", ""),
    ]


def _xero_tax_type(tax_name: str, tax_amount: Decimal, accounts: dict[str, Any]) -> str:
    if not tax_amount:
        return str(accounts["xero_no_tax"])
    return str(accounts["xero_tax_types"].get(tax_name, tax_name))


def _xero_quantity_and_unit(line: InvoiceLine, currency: str) -> tuple[Decimal | str, Decimal]:
    """Tax-exclusive amounts (import with "Amounts are: Tax exclusive"): quantity × unit amount where that is
    exactly the line's net amount, else one unit of the net amount, so Xero's line totals equal ours."""
    if not line.tax_inclusive and line.quantity * line.unit_amount == line.net_amount:
        return _quantity(line.quantity), _unit_amount(line.unit_amount, currency)
    return Decimal(1), _amount(line.net_amount, currency)


def _xero_rows(*, date_from: dt.date, date_to: dt.date, counts: _Counts) -> Iterator[list[Any]]:
    accounts = accounting_accounts()
    tail = ["", "", "", ""]
    for invoice in export_invoices(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        if invoice.status == InvoiceStatus.VOID:
            counts.skipped_void += 1
            continue
        counts.invoices += 1
        contact = _xero_contact(invoice.customer_snapshot, str(invoice.customer_id))
        for line in invoice.lines.all():
            quantity, unit = _xero_quantity_and_unit(line, invoice.currency)
            yield [
                *contact,
                invoice.number,
                "",
                invoice.issue_date.strftime(XERO_DATE_FORMAT),  # type: ignore[union-attr]
                invoice.due_date.strftime(XERO_DATE_FORMAT),  # type: ignore[union-attr]
                "",
                line.description,
                quantity,
                unit,
                "",
                _revenue_account(_invoice_line_product(line), accounts),
                _xero_tax_type(line.tax_name, line.tax_amount, accounts),
                *tail,
                invoice.currency,
                "",
            ]
    # Xero imports a document whose total is negative as a credit note.
    for credit_note in export_credit_notes(date_from=date_from, date_to=date_to).iterator(chunk_size=500):
        counts.credit_notes += 1
        contact = _xero_contact(credit_note.customer_snapshot, str(credit_note.customer_id))
        issue_date = credit_note.issue_date.strftime(XERO_DATE_FORMAT)
        for cn_line in credit_note.lines.all():
            yield [
                *contact,
                credit_note.number,
                credit_note.invoice.number,
                issue_date,
                issue_date,
                "",
                cn_line.description,
                Decimal(1),
                -_amount(cn_line.net_amount, credit_note.currency),
                "",
                _revenue_account(_invoice_line_product(cn_line.invoice_line), accounts),
                _xero_tax_type(cn_line.tax_name, cn_line.tax_amount, accounts),
                *tail,
                credit_note.currency,
                "",
            ]


# --- writing --------------------------------------------------------------------------------------------


class FileWriter(Protocol):
    def __call__(self, *, out: TextSink, date_from: dt.date, date_to: dt.date, exported_by: str) -> ExportSummary: ...


# Formats with a file shape of their own, written by another module built on this one's selectors (the DATEV
# files: reporting/datev.py, registered by reporting.apps so this module does not import it back).
FILE_WRITERS: dict[str, FileWriter] = {}


def accounting_export_write(
    *, out: TextSink, export_format: str, date_from: dt.date, date_to: dt.date, exported_by: str = ""
) -> ExportSummary:
    """Write the export of ``[date_from, date_to]`` in ``export_format`` to ``out`` (text, CSV). The DATEV
    formats' text holds only Windows-1252 characters: encode it so (``export_encoding``)."""
    if date_to < date_from:
        raise ExportError(f"the period ends ({date_to}) before it starts ({date_from})")
    if export_format in FILE_WRITERS:
        return FILE_WRITERS[export_format](out=out, date_from=date_from, date_to=date_to, exported_by=exported_by)
    counts = _Counts()
    rows: Iterator[list[Any]]
    if export_format == ExportFormat.CSV:
        header: tuple[str, ...] = PLAIN_HEADER
        rows = _plain_rows(date_from=date_from, date_to=date_to, counts=counts)
    elif export_format == ExportFormat.JOURNAL:
        header = JOURNAL_HEADER
        rows = _journal_rows(journal_lines(date_from=date_from, date_to=date_to, counts=counts))
    elif export_format == ExportFormat.XERO:
        header = XERO_HEADER
        rows = _xero_rows(date_from=date_from, date_to=date_to, counts=counts)
    elif export_format == ExportFormat.RECOGNITION:
        header = JOURNAL_HEADER
        rows = _journal_rows(recognition_journal_lines(date_from=date_from, date_to=date_to))
    else:
        raise ExportError(f"unknown format {export_format!r}: choose {', '.join(ExportFormat.values)}")
    writer = _writer(out)
    writer.writerow(header)
    written = 0
    for row in rows:
        writer.writerow(_safe(row))
        written += 1
    return ExportSummary(
        format=str(export_format),
        date_from=date_from,
        date_to=date_to,
        invoices=counts.invoices,
        credit_notes=counts.credit_notes,
        payments=counts.payments,
        rows=written,
        skipped_void=counts.skipped_void,
        refunds=counts.refunds,
        credit_movements=counts.credit_movements,
    )


def export_encoding(export_format: str) -> str:
    return "cp1252" if export_format in CP1252_FORMATS else "utf-8"


def accounting_export_filename(*, export_format: str, date_from: dt.date, date_to: dt.date) -> str:
    if export_format in CP1252_FORMATS:  # DATEV imports files named EXTF_*.csv
        kind = "Buchungsstapel" if export_format == ExportFormat.DATEV else "Debitoren"
        return f"EXTF_{kind}_{date_from:%Y%m%d}_{date_to:%Y%m%d}.csv"
    return f"accounting-{export_format}-{date_from.isoformat()}-{date_to.isoformat()}.csv"


def can_export_accounting(user: Any) -> bool:
    """Who may download the export: whoever may see invoices, credit notes and payments (billing admins, clerks
    and auditors by the staff groups)."""
    return bool(
        user.is_active
        and user.is_staff
        and user.has_perms(("invoicing.view_invoice", "invoicing.view_creditnote", "payments.view_payment"))
    )
