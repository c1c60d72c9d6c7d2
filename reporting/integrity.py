"""The integrity check (``manage.py verify_integrity``, the nightly job "Integrity check"): the invariants the
books rest on, recomputed from the rows themselves. The database and the services enforce each of them when
rows are written; this job proves nothing slipped past — a raw SQL fix, a restored backup, a bug, a disk that
changed a stored PDF. It only reads (and stores its result as an ``IntegrityCheck`` row).

- ``numbering``: the numbers of each series and year are exactly 1 … the counter's last number, each once.
- ``invoice_totals``: an issued invoice's subtotal, discount, tax and total are the sums of its lines; its tax
  rows add up to its tax.
- ``amount_due``: amount paid = payments allocated (less refunded) + customer credit applied; amount credited =
  its credit notes; amount due = total − paid − credited.
- ``credit_ledger``: credit entries agree with the documents they book (credit note, refund), customer and
  currency. The balance is not stored anywhere: it is the sum of the entries by definition.
- ``payments``: a received payment is allocated to invoices or on account (customer credit), to the cent; its
  refunded amount matches its refunds.
- ``pdfs``: each archived PDF's file exists and still has the SHA-256 recorded when it was rendered.
- ``periods``: no subscription period is billed twice (by period key, or by the same recurring line period).

Each problem names the row (model, id), what is wrong, and the expected and found values.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, cast

from django.db.models import Count, DecimalField, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from invoicing.archive import archive_verify
from invoicing.models import (
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    NumberSeries,
    NumberSeriesCounter,
    Quote,
)
from payments.models import (
    CreditEntryKind,
    CreditLedgerEntry,
    Payment,
    PaymentAllocation,
    PaymentStatus,
    Refund,
    RefundStatus,
    WalletEntryKind,
    WalletTransaction,
)
from reporting.models import IntegrityCheck
from subscriptions.models import LineKind

ZERO = Decimal(0)
# Sums are compared exactly: every stored amount is rounded to the currency's minor unit before it is written. On
# SQLite (the demo) amounts are binary floats, so anything below half a unit of the third decimal is equal.
TOLERANCE = Decimal("0.0005")
RECEIVED = (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)


@dataclass(frozen=True)
class Problem:
    check: str
    model: str
    id: int | None
    problem: str
    expected: str
    found: str

    def line(self) -> str:
        where = f"{self.model} {self.id}" if self.id is not None else self.model
        return f"[{self.check}] {where}: {self.problem} (expected {self.expected}, found {self.found})"


@dataclass
class IntegrityReport:
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    checked: dict[str, int] | None = None
    problems: list[Problem] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "checked": self.checked or {},
            "problems": [asdict(problem) for problem in self.problems or []],
        }


def _differs(expected: Decimal | None, found: Decimal | None) -> bool:
    return abs((expected or ZERO) - (found or ZERO)) >= TOLERANCE


def _sum(queryset: Any, field: str, *, by: str) -> Coalesce:
    """A correlated SUM of ``field`` over ``queryset`` (filtered on ``by`` = OuterRef), 0 when there are no rows."""
    total = queryset.order_by().values(by).annotate(total=Sum(field)).values("total")[:1]
    return Coalesce(Subquery(total), Value(ZERO), output_field=DecimalField(max_digits=30, decimal_places=6))


def _money(amount: Decimal | None, currency: str = "") -> str:
    value = f"{(amount or ZERO).quantize(Decimal('0.001')).normalize():f}"
    return f"{value} {currency}".strip()


# --- the checks ---------------------------------------------------------------------------------------------


def _number_pattern(series: NumberSeries) -> re.Pattern[str]:
    """A regex that reads a number of ``series`` back into its year and sequence number."""
    parts = []
    for literal, field, _spec, _conversion in string.Formatter().parse(series.format):
        parts.append(re.escape(literal))
        if field == "prefix":
            parts.append(re.escape(series.prefix))
        elif field == "year":
            parts.append(r"(?P<year>\d+)")
        elif field == "number":
            parts.append(r"(?P<number>\d+)")
    return re.compile("".join(parts))


def check_numbering() -> tuple[int, list[Problem]]:
    """Per series and counter year: the issued numbers are exactly 1 … the counter's last number, each once."""
    problems: list[Problem] = []
    checked = 0
    for series in NumberSeries.objects.order_by("pk"):
        model: type[Invoice] | type[CreditNote] | type[Quote]
        rows: Any
        if series.kind == NumberSeries.Kind.QUOTE:  # numbered when sent, dated by the quote date
            model = Quote
            rows = Quote.objects.filter(series=series).exclude(number="").values_list("pk", "number", "quote_date")
        else:
            model = Invoice if series.kind == NumberSeries.Kind.INVOICE else CreditNote
            documents = Invoice.objects.finalized() if model is Invoice else CreditNote.objects.all()
            rows = documents.filter(number_series=series).values_list("pk", "number", "issue_date")
        pattern = _number_pattern(series)
        used: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))  # year → n → pks
        for pk, number, issued in rows:
            checked += 1
            issue_date = cast(dt.date, issued)  # finalized documents are dated (a database constraint)
            year = issue_date.year if series.yearly_reset else 0
            match = pattern.fullmatch(number)
            n = int(match["number"]) if match else 0
            if not match or series.format_number(year=issue_date.year, number=n) != number:
                problems.append(
                    Problem("numbering", model.__name__, pk,
                            f"number {number!r} is not a number of series {series.code} issued {issue_date}",
                            series.format_number(year=issue_date.year, number=n or 1), number)
                )  # fmt: skip
                continue
            used[year][n].append(pk)
        counters = {counter.year: counter for counter in NumberSeriesCounter.objects.filter(series=series)}
        for year in sorted(set(used) | set(counters)):
            counter = counters.get(year)
            last = counter.last_number if counter else 0
            label = f"{series.code} {year}" if year else series.code
            numbers = used.get(year, {})
            gaps = [n for n in range(1, last + 1) if n not in numbers]
            for n in gaps[:50]:
                problems.append(
                    Problem("numbering", "NumberSeriesCounter", counter.pk if counter else None,
                            f"series {label}: number {n} was handed out but no document has it (a gap)",
                            f"numbers 1–{last} each once", f"{n} missing")
                )  # fmt: skip
            if len(gaps) > 50:
                problems.append(
                    Problem("numbering", "NumberSeriesCounter", counter.pk if counter else None,
                            f"series {label}: {len(gaps) - 50} more gaps", "no gap", f"{len(gaps)} gaps")
                )  # fmt: skip
            for n, pks in sorted(numbers.items()):
                if n > last:
                    problems.extend(
                        Problem("numbering", model.__name__, pk,
                                f"series {label}: number {n} is beyond the counter's last number",
                                f"at most {last}", str(n))
                        for pk in pks
                    )  # fmt: skip
                elif len(pks) > 1:
                    problems.extend(
                        Problem("numbering", model.__name__, pk, f"series {label}: number {n} is used twice",
                                "once", f"{len(pks)} documents ({pks})")
                        for pk in pks
                    )  # fmt: skip
    return checked, problems


def check_invoice_totals() -> tuple[int, list[Problem]]:
    """Issued invoices: their amounts are the sums of their lines, and their tax rows add up to their tax."""
    lines = InvoiceLine.objects.filter(invoice=OuterRef("pk"))
    invoices = Invoice.objects.finalized().annotate(
        lines_amount=_sum(lines, "amount", by="invoice"),
        lines_discount=_sum(lines, "discount_amount", by="invoice"),
        lines_tax=_sum(lines, "tax_amount", by="invoice"),
        lines_total=_sum(lines, "total_amount", by="invoice"),
    )
    problems: list[Problem] = []
    checked = 0
    for invoice in invoices.only(
        "pk", "currency", "subtotal", "discount_total", "tax_total", "total", "tax_summary"
    ).iterator(chunk_size=2000):
        checked += 1
        for field, summed in (
            ("subtotal", invoice.lines_amount),  # type: ignore[attr-defined]
            ("discount_total", invoice.lines_discount),  # type: ignore[attr-defined]
            ("tax_total", invoice.lines_tax),  # type: ignore[attr-defined]
            ("total", invoice.lines_total),  # type: ignore[attr-defined]
        ):
            stored = getattr(invoice, field)
            if _differs(summed, stored):
                problems.append(
                    Problem(
                        "invoice_totals", "Invoice", invoice.pk, f"{field} is not the sum of its lines",
                        _money(summed, invoice.currency), _money(stored, invoice.currency),
                    )
                )  # fmt: skip
        summary_tax = sum((Decimal(str(row.get("tax_amount", "0"))) for row in invoice.tax_summary or []), ZERO)
        if invoice.tax_summary and _differs(summary_tax, invoice.tax_total):
            problems.append(
                Problem(
                    "invoice_totals", "Invoice", invoice.pk, "the tax rows do not add up to the tax total",
                    _money(invoice.tax_total, invoice.currency), _money(summary_tax, invoice.currency),
                )
            )  # fmt: skip
    return checked, problems


def check_amount_due() -> tuple[int, list[Problem]]:
    """Issued invoices: paid = allocations (net of refunds) + credit applied + wallet credits used; credited = credit
    notes; due = total − paid − credited. A refund that took back the credit a credit note left on a paid invoice is
    booked on the allocation too, but the invoice stays settled by the credit note: that part (the refund's ledger
    entry on the invoice, ``payments.services._refund_book``) is not missing from what was paid."""
    allocations = PaymentAllocation.objects.filter(invoice=OuterRef("pk"))
    applied = CreditLedgerEntry.objects.filter(invoice=OuterRef("pk"), kind=CreditEntryKind.APPLIED_TO_INVOICE)
    refunded_from_credit = CreditLedgerEntry.objects.filter(invoice=OuterRef("pk"), kind=CreditEntryKind.REFUND)
    credit_notes = CreditNote.objects.filter(invoice=OuterRef("pk"))
    # prepaid wallet credits that paid the invoice: negative entries
    wallet = WalletTransaction.objects.filter(invoice=OuterRef("pk"), kind=WalletEntryKind.CONSUMPTION)
    invoices = Invoice.objects.finalized().annotate(
        allocated=_sum(allocations, "amount", by="invoice"),
        allocation_refunded=_sum(allocations, "amount_refunded", by="invoice"),
        credit_applied=_sum(applied, "amount", by="invoice"),
        refunded_from_credit=_sum(refunded_from_credit, "amount", by="invoice"),
        credit_notes_applied=_sum(credit_notes, "amount_applied", by="invoice"),
        wallet_consumed=_sum(wallet, "amount", by="invoice"),
    )
    problems: list[Problem] = []
    checked = 0
    for invoice in invoices.only("pk", "currency", "total", "amount_paid", "amount_credited", "amount_due").iterator(
        chunk_size=2000
    ):
        checked += 1
        currency = invoice.currency
        paid = (
            invoice.allocated  # type: ignore[attr-defined]
            - invoice.allocation_refunded  # type: ignore[attr-defined]
            - invoice.credit_applied  # type: ignore[attr-defined]
            - invoice.refunded_from_credit  # type: ignore[attr-defined]
            - invoice.wallet_consumed  # type: ignore[attr-defined]
        )
        credited = invoice.credit_notes_applied  # type: ignore[attr-defined]
        due = invoice.total - paid - credited
        for field, expected, why in (
            ("amount_paid", paid, "amount paid is not its payment allocations (less refunds) plus credit applied"),
            ("amount_credited", credited, "amount credited is not the sum of its credit notes"),
            ("amount_due", due, "amount due is not total − allocations − credits"),
        ):
            if _differs(expected, getattr(invoice, field)):
                problems.append(
                    Problem(
                        "amount_due", "Invoice", invoice.pk, why, _money(expected, currency),
                        _money(getattr(invoice, field), currency),
                    )
                )  # fmt: skip
    return checked, problems


def check_credit_ledger() -> tuple[int, list[Problem]]:
    """Credit entries agree with what they book: a credit note's part for customer credit, a refund's part taken
    from credit, the document's currency and customer."""
    problems: list[Problem] = []
    checked = 0
    entries = CreditLedgerEntry.objects.select_related("credit_note", "refund", "payment", "invoice").order_by("pk")
    for entry in entries.iterator(chunk_size=2000):
        checked += 1
        document = entry.credit_note or entry.refund or entry.payment or entry.invoice
        if document is not None and (document.currency, document.customer_id) != (entry.currency, entry.customer_id):
            problems.append(
                Problem(
                    "credit_ledger", "CreditLedgerEntry", entry.pk,
                    f"the entry's customer or currency differs from its {type(document).__name__.lower()}'s",
                    f"customer {document.customer_id}, {document.currency}",
                    f"customer {entry.customer_id}, {entry.currency}",
                )
            )  # fmt: skip
        if (
            entry.kind == CreditEntryKind.CREDIT_NOTE
            and entry.credit_note is not None
            and _differs(entry.credit_note.amount_to_customer_credit, entry.amount)
        ):
            problems.append(
                Problem(
                    "credit_ledger", "CreditLedgerEntry", entry.pk,
                    f"credit from credit note {entry.credit_note.number} differs from its part for customer credit",
                    _money(entry.credit_note.amount_to_customer_credit, entry.currency),
                    _money(entry.amount, entry.currency),
                )
            )  # fmt: skip
        if (
            entry.kind == CreditEntryKind.REFUND
            and entry.refund is not None
            and _differs(-entry.refund.amount_from_credit, entry.amount)
        ):
            problems.append(
                Problem(
                    "credit_ledger", "CreditLedgerEntry", entry.pk,
                    f"credit taken by refund {entry.refund.pk} differs from the refund's part from credit",
                    _money(-entry.refund.amount_from_credit, entry.currency), _money(entry.amount, entry.currency),
                )
            )  # fmt: skip
    return checked, problems


def check_payments() -> tuple[int, list[Problem]]:
    """A received payment is allocated to invoices or on account (an overpayment credit entry), to the cent; its
    refunded amount is the sum of its succeeded refunds. A payment not received has neither."""
    allocations = PaymentAllocation.objects.filter(payment=OuterRef("pk"))
    on_account = CreditLedgerEntry.objects.filter(payment=OuterRef("pk"), kind=CreditEntryKind.OVERPAYMENT)
    refunds = Refund.objects.filter(payment=OuterRef("pk"), status=RefundStatus.SUCCEEDED)
    payments = Payment.objects.annotate(
        allocated=_sum(allocations, "amount", by="payment"),
        on_account=_sum(on_account, "amount", by="payment"),
        refunded=_sum(refunds, "amount", by="payment"),
        allocation_currencies=Count("allocations__currency", filter=~Q(allocations__currency=F("currency"))),
    )
    problems: list[Problem] = []
    checked = 0
    for payment in payments.only("pk", "currency", "amount", "amount_refunded", "status").iterator(chunk_size=2000):
        checked += 1
        currency = payment.currency
        placed = payment.allocated + payment.on_account  # type: ignore[attr-defined]
        expected = payment.amount if payment.status in RECEIVED else ZERO
        if _differs(expected, placed):
            problems.append(
                Problem(
                    "payments", "Payment", payment.pk,
                    "the payment is not fully allocated to invoices or on account" if payment.status in RECEIVED
                    else f"a {payment.status} payment has allocations or credit",
                    _money(expected, currency), _money(placed, currency),
                )
            )  # fmt: skip
        if _differs(payment.refunded, payment.amount_refunded):  # type: ignore[attr-defined]
            problems.append(
                Problem(
                    "payments", "Payment", payment.pk, "amount refunded is not the sum of its succeeded refunds",
                    _money(payment.refunded, currency), _money(payment.amount_refunded, currency),  # type: ignore[attr-defined]
                )
            )  # fmt: skip
        if payment.allocation_currencies:  # type: ignore[attr-defined]
            problems.append(
                Problem("payments", "Payment", payment.pk, "allocations in another currency than the payment",
                        currency, f"{payment.allocation_currencies} allocation(s) in another currency")  # type: ignore[attr-defined]
            )  # fmt: skip
    return checked, problems


def check_pdfs() -> tuple[int, list[Problem]]:
    """Every archived PDF, originals and later versions: the file exists and its SHA-256 is the one recorded when
    it was rendered (``invoicing.archive``, which ``manage.py verify_archive`` runs too)."""
    checked, broken = archive_verify()
    return checked, [
        Problem("pdfs", item.model, item.pk, f"the archived file {item.file} {item.what}", item.expected, item.found)
        for item in broken
    ]


def check_periods() -> tuple[int, list[Problem]]:
    """No subscription period billed twice: by period key (the database's unique constraint, re-checked), and by
    the same recurring, non-prorated line period of the same subscription item on two live invoices."""
    problems: list[Problem] = []
    live = ~Q(status=InvoiceStatus.VOID)
    keyed = (
        Invoice.objects.filter(live, subscription__isnull=False)
        .exclude(period_key="")
        .values("subscription_id", "period_key")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .order_by()
    )
    for row in keyed:
        for pk in Invoice.objects.filter(
            live, subscription_id=row["subscription_id"], period_key=row["period_key"]
        ).values_list("pk", flat=True):
            problems.append(
                Problem("periods", "Invoice", pk,
                        f"subscription {row['subscription_id']}: period {row['period_key']} is billed twice",
                        "one invoice", f"{row['n']} invoices")
            )  # fmt: skip
    lines = (
        InvoiceLine.objects.filter(
            kind=LineKind.RECURRING, proration=False, subscription_item__isnull=False, period_start__isnull=False
        )
        .exclude(invoice__status__in=[InvoiceStatus.VOID])
        .values("subscription_item_id", "period_start", "period_end")
        .annotate(invoices=Count("invoice", distinct=True))
        .filter(invoices__gt=1)
        .order_by()
    )
    for row in lines:
        invoice_ids = sorted(
            set(
                InvoiceLine.objects.filter(
                    kind=LineKind.RECURRING,
                    proration=False,
                    subscription_item_id=row["subscription_item_id"],
                    period_start=row["period_start"],
                    period_end=row["period_end"],
                )
                .exclude(invoice__status=InvoiceStatus.VOID)
                .values_list("invoice_id", flat=True)
            )
        )
        for pk in invoice_ids:
            problems.append(
                Problem("periods", "Invoice", pk,
                        f"subscription item {row['subscription_item_id']}: period {row['period_start']} – "
                        f"{row['period_end']} is billed on {len(invoice_ids)} invoices ({invoice_ids})",
                        "one invoice", f"{len(invoice_ids)} invoices")
            )  # fmt: skip
    checked = Invoice.objects.filter(live, subscription__isnull=False).count()
    return checked, problems


CHECKS: dict[str, Callable[[], tuple[int, list[Problem]]]] = {
    "numbering": check_numbering,
    "invoice_totals": check_invoice_totals,
    "amount_due": check_amount_due,
    "credit_ledger": check_credit_ledger,
    "payments": check_payments,
    "pdfs": check_pdfs,
    "periods": check_periods,
}


def integrity_verify(*, checks: list[str] | None = None) -> IntegrityReport:
    """Run the checks (all by default) and return the report; writes nothing."""
    report = IntegrityReport(started_at=timezone.now(), checked={}, problems=[])
    for name in checks or list(CHECKS):
        checked, problems = CHECKS[name]()
        assert report.checked is not None and report.problems is not None
        report.checked[name] = checked
        report.problems.extend(problems)
    report.finished_at = timezone.now()
    return report


# At most this many problems are stored on the IntegrityCheck row (the command prints them all).
STORED_PROBLEMS = 1000


def integrity_check_record(*, report: IntegrityReport, triggered_by: str) -> IntegrityCheck:
    problems = report.problems or []
    return IntegrityCheck.objects.create(
        started_at=report.started_at,
        finished_at=report.finished_at or timezone.now(),
        ok=report.ok,
        problem_count=len(problems),
        checked=report.checked or {},
        problems=[asdict(problem) for problem in problems[:STORED_PROBLEMS]],
        triggered_by=triggered_by,
    )
