"""Revenue recognition (docs/decisions/revenue-recognition.md): when the net amount of an invoice line becomes
revenue, month by month, and what is deferred or unbilled at each month end.

Rules:
- a line with a service period (recurring fees, prorations, usage) is recognised over that period, pro rata per
  day: each month gets its days' share, split with ``distribute_amount`` so the parts add up to the line exactly;
  usage is recognised over the period it was consumed in (its usage window);
- a line without a period (one-off) is recognised on its invoice's issue date;
- void invoices recognise nothing; drafts are not revenue;
- a credit note line undoes its share of the invoice line's schedule in proportion: the part of months already
  past at the credit note's issue date is reversed in the credit note's month, later months are reduced;
- amounts are net of tax, in the document currency (one set of figures per currency).

Then, per month M and currency: *invoiced* = lines issued in M − credit notes issued in M; *recognised* = what the
schedules put in M; *deferred* at the end of M = invoiced but not yet recognised; *unbilled* = recognised but not
yet invoiced (usage consumed before its invoice). Every month reconciles: cumulative invoiced − cumulative
recognised = deferred − unbilled.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from invoicing.models import CreditNoteLine, InvoiceLine, InvoiceStatus
from invoicing.taxes import distribute_amount

ZERO = Decimal(0)


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return (month + dt.timedelta(days=32)).replace(day=1)


def months(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    """First days of the months from ``start``'s to ``end``'s, both included."""
    month = month_of(start)
    while month <= end:
        yield month
        month = next_month(month)


def schedule(
    *, amount: Decimal, currency: str, issue_date: dt.date, start: dt.date | None, end: dt.date | None
) -> dict[dt.date, Decimal]:
    """Month → the part of ``amount`` recognised in it. ``end`` is exclusive, as every period in the product."""
    if not amount:
        return {}
    if start is None or end is None or end <= start:
        return {month_of(issue_date): amount}
    weights: dict[dt.date, Decimal] = {}
    for month in months(start, end - dt.timedelta(days=1)):
        first, after = max(start, month), min(end, next_month(month))
        weights[month] = Decimal((after - first).days)
    parts = distribute_amount(total=amount, weights=list(weights.values()), currency=currency)
    return dict(zip(weights, parts, strict=True))


@dataclass(frozen=True)
class Entry:
    """What one document line does to revenue: invoiced in ``invoiced_month``, recognised per ``recognised``."""

    currency: str
    product: str
    document: str
    invoiced_month: dt.date
    invoiced: Decimal
    recognised: dict[dt.date, Decimal]
    # the catalog product (None: a line without a price), for mapping to a revenue account
    product_id: int | None = None
    product_name: str = ""


def _product(line: InvoiceLine) -> str:
    price = line.price
    return price.product.public_name if price is not None else "One-off and other lines"


def _product_key(line: InvoiceLine) -> tuple[int | None, str]:
    price = line.price
    return (price.product.pk, price.product.name) if price is not None else (None, "")


def line_entries(*, until: dt.date) -> Iterator[Entry]:
    """Every issued line and credit note line up to ``until`` (their invoices' issue dates), with its schedule."""
    lines = (
        InvoiceLine.objects.filter(invoice__issue_date__lte=until)
        .exclude(invoice__status__in=(InvoiceStatus.DRAFT, InvoiceStatus.VOID))
        .select_related("invoice", "price__product")
        .order_by("pk")
    )
    schedules: dict[int, dict[dt.date, Decimal]] = {}
    products: dict[int, str] = {}
    product_keys: dict[int, tuple[int | None, str]] = {}
    for line in lines.iterator(chunk_size=2000):
        invoice = line.invoice
        assert invoice.issue_date is not None
        plan = schedule(
            amount=line.net_amount,
            currency=invoice.currency,
            issue_date=invoice.issue_date,
            start=line.period_start,
            end=line.period_end,
        )
        schedules[line.pk], products[line.pk], product_keys[line.pk] = plan, _product(line), _product_key(line)
        yield Entry(
            invoice.currency,
            products[line.pk],
            invoice.number,
            month_of(invoice.issue_date),
            line.net_amount,
            plan,
            *product_keys[line.pk],
        )
    by_invoice: dict[int, list[int]] = defaultdict(list)
    for line_id, invoice_id in lines.values_list("pk", "invoice_id"):
        by_invoice[invoice_id].append(line_id)
    credits = (
        CreditNoteLine.objects.filter(credit_note__issue_date__lte=until).select_related("credit_note").order_by("pk")
    )
    for credit in credits.iterator(chunk_size=2000):
        note = credit.credit_note
        on = month_of(note.issue_date)
        if credit.invoice_line_id is not None:
            shares = [(credit.invoice_line_id, credit.net_amount)]
        else:
            # credited by amount (split over the tax rates, not over lines): each line of the invoice undoes its
            # share in proportion to its net amount
            ids = [line_id for line_id in by_invoice.get(note.invoice_id, []) if schedules.get(line_id)]
            weights = [sum(schedules[line_id].values(), ZERO) for line_id in ids]
            if not ids or not any(weights):
                continue
            parts = distribute_amount(total=credit.net_amount, weights=weights, currency=note.currency)
            shares = list(zip(ids, parts, strict=True))
        for line_id, credited in shares:
            credited_plan = schedules.get(line_id)
            if credited_plan is None:  # the credited invoice was voided meanwhile: nothing was recognised to undo
                continue
            yield Entry(
                note.currency,
                products[line_id],
                note.number,
                on,
                -credited,
                _reversal(credited_plan, credited=credited, currency=note.currency, on=on),
                *product_keys[line_id],
            )


def _reversal(plan: dict[dt.date, Decimal], *, credited: Decimal, currency: str, on: dt.date) -> dict[dt.date, Decimal]:
    """The credit note's share of each month of the line's schedule, negative; months before its own month are
    reversed in its month (their books are closed)."""
    weights = list(plan.values())
    if not credited or not any(weights):
        return {}
    parts = distribute_amount(total=credited, weights=weights, currency=currency)
    reversal: dict[dt.date, Decimal] = defaultdict(lambda: ZERO)
    for month, part in zip(plan, parts, strict=True):
        reversal[max(month, on)] -= part
    return dict(reversal)


@dataclass(frozen=True)
class MonthRow:
    month: dt.date
    currency: str
    product: str
    invoiced: Decimal
    recognised: Decimal
    deferred: Decimal  # at the month's end
    unbilled: Decimal  # at the month's end


def recognition_report(
    *, date_from: dt.date, date_to: dt.date, entries: Iterable[Entry] | None = None
) -> list[MonthRow]:
    """One row per month in [date_from, date_to], currency and product with any figure."""
    entries = list(line_entries(until=date_to) if entries is None else entries)
    wanted = list(months(date_from, date_to))
    rows = []
    keys = sorted({(entry.currency, entry.product) for entry in entries})
    by_key: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        by_key[(entry.currency, entry.product)].append(entry)
    for currency, product in keys:
        group = by_key[(currency, product)]
        for month in wanted:
            invoiced = sum((e.invoiced for e in group if e.invoiced_month == month), ZERO)
            recognised = sum((e.recognised.get(month, ZERO) for e in group), ZERO)
            deferred = unbilled = ZERO
            for entry in group:
                later = sum((amount for m, amount in entry.recognised.items() if m > month), ZERO)
                earlier = sum((amount for m, amount in entry.recognised.items() if m <= month), ZERO)
                if entry.invoiced_month <= month:
                    deferred += later  # invoiced, recognised after this month
                else:
                    unbilled += earlier  # recognised by now, invoiced later
            if invoiced or recognised or deferred or unbilled:
                rows.append(MonthRow(month, currency, product, invoiced, recognised, deferred, unbilled))
    return rows
