"""One source for every business figure: the dashboard, the reports, their CSV/XLSX downloads and (later) the
API read this module, so a figure has one definition (docs/METRICS.md) and the same value everywhere.

Two kinds of figure:
- **From the snapshot** (MRR and its movements, customer and revenue churn, NRR, GRR, ARPA, cohorts, revenue by
  month): summary tables (``reporting.models``) rebuilt by ``metrics_refresh`` — the "Metrics refresh" beat job
  every ``METRICS_REFRESH_EVERY_MINUTES``, ``manage.py refresh_metrics`` and the demo seed. Readers show the
  snapshot's as-of time. Rebuilding reads every recurring invoice line once (seconds at a million invoices);
  reading a report then touches a few hundred rows.
- **Receivables ageing** (per customer, per currency, overdue): in the snapshot too (``CustomerAgeing``: one
  row per customer and currency owing money, aged on the as-of date), because aggregating 250,000 open invoices
  per customer on every view took 4.8 s. Another as-of date is aggregated live (the ``*_live`` functions, which
  the snapshot equals at its refresh).

MRR is read from what was **billed**, not from the price list: issued invoices do not change, so every month's
MRR can be recomputed and the movements add up (start + movements = end) for every month, which a price list
that subscriptions change in place cannot give."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, CharField, Count, F, Min, Q, QuerySet, Sum, Value, When
from django.db.models.functions import TruncMonth
from django.utils import timezone

from core.dates import billing_today
from core.money import quantum, round_amount
from invoicing.models import Invoice, InvoiceLine, InvoiceStatus
from reporting.models import CohortCell, CustomerAgeing, MetricsRefresh, MrrMonth, RevenueMonth
from subscriptions.models import Interval, LineKind

ZERO = Decimal(0)
RECOGNISED_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)
# Months per interval: a price billed every ``interval_count`` intervals contributes amount / (months × count).
MONTHS_PER_INTERVAL: Mapping[str, Decimal] = {
    Interval.DAY: Decimal(12) / Decimal(365),
    Interval.WEEK: Decimal(12) / Decimal(52),
    Interval.MONTH: Decimal(1),
    Interval.YEAR: Decimal(12),
}
MRR_MOVEMENTS = ("new", "reactivation", "expansion", "contraction", "churn")
AGEING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
AGEING_LABELS = {"current": "Current", "1-30": "1–30", "31-60": "31–60", "61-90": "61–90", "90+": "90+"}
REFRESH_HISTORY_KEPT = 100  # MetricsRefresh rows kept (the newest)


# --- Calendar -------------------------------------------------------------------------------------------


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(first_of_month: dt.date, months: int) -> dt.date:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def month_end(first_of_month: dt.date) -> dt.date:
    return add_months(first_of_month, 1) - dt.timedelta(days=1)


def monthly_amount(*, amount: Decimal, interval: str, interval_count: int) -> Decimal:
    """``amount`` billed every ``interval_count`` × ``interval``, per month (unrounded)."""
    return amount / (MONTHS_PER_INTERVAL[interval] * interval_count)


def percent(part: Decimal | int, whole: Decimal | int) -> Decimal | None:
    """``part`` of ``whole`` in percent, one decimal (ROUND_HALF_UP); None without a base."""
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


# --- Building the snapshot ------------------------------------------------------------------------------


def recurring_lines() -> QuerySet[InvoiceLine]:
    """The lines MRR is made of: recurring fees (not prorations) with a catalog price and a service period, on
    recognised invoices (finalized, not void)."""
    return InvoiceLine.objects.filter(
        invoice__status__in=RECOGNISED_STATUSES,
        kind=LineKind.RECURRING,
        proration=False,
        price__isnull=False,
        period_start__isnull=False,
        period_end__isnull=False,
    )


@dataclass
class _MonthTotals:
    starting_mrr: Decimal = ZERO
    ending_mrr: Decimal = ZERO
    starting_customers: int = 0
    ending_customers: int = 0
    amounts: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(MRR_MOVEMENTS, ZERO))
    customers: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MRR_MOVEMENTS, 0))


def _customer_mrr(*, as_of: dt.date) -> tuple[list[dt.date], dict[tuple[int, str], dict[int, Decimal]], int]:
    """(months, per (customer, currency) their MRR per month index (rounded, non-zero only), line groups read).

    A month's MRR is taken on its last day, or on ``as_of`` for the month in progress: the sum of the recurring
    lines whose service period [start, end) contains that day, each normalised to a month by its price's
    interval, rounded to the minor unit per customer and currency."""
    lines = recurring_lines().filter(period_start__lte=as_of)
    first = lines.aggregate(first=Min("period_start"))["first"]
    if first is None:
        return [], {}, 0
    months: list[dt.date] = []
    month = month_start(first)
    while month <= as_of:
        months.append(month)
        month = add_months(month, 1)
    snapshot_days = [min(month_end(month), as_of) for month in months]
    count = len(months)
    unrounded: dict[tuple[int, str], dict[int, Decimal]] = defaultdict(dict)
    groups = (
        lines.values_list(
            "invoice__customer_id",
            "invoice__currency",
            "price__interval",
            "price__interval_count",
            "period_start",
            "period_end",
        )
        .annotate(amount=Sum("net_amount"))
        .order_by()
    )
    read = 0
    for customer_id, currency, interval, interval_count, start, end, amount in groups.iterator(chunk_size=20_000):
        read += 1
        if not amount:
            continue
        per_month = amount / (MONTHS_PER_INTERVAL[interval] * interval_count)
        series = unrounded[(customer_id, currency)]
        index = bisect_left(snapshot_days, start)
        while index < count and snapshot_days[index] < end:
            series[index] = series.get(index, ZERO) + per_month
            index += 1
    rounded: dict[tuple[int, str], dict[int, Decimal]] = {}
    for (customer_id, currency), series in unrounded.items():
        kept = {index: round_amount(amount, currency) for index, amount in series.items()}
        kept = {index: amount for index, amount in kept.items() if amount}
        if kept:
            rounded[(customer_id, currency)] = kept
    return months, rounded, read


def _movements(months: list[dt.date], customer_mrr: Mapping[tuple[int, str], Mapping[int, Decimal]]) -> list[MrrMonth]:
    """Per month and currency: starting and ending MRR and the movements between them, per customer month over
    month — new (first non-zero month ever), reactivation (non-zero again after zero), expansion, contraction,
    churn (to zero). Rounded per customer before anything is added, so the sums reconcile exactly."""
    table: dict[tuple[int, str], _MonthTotals] = defaultdict(_MonthTotals)
    for (_customer_id, currency), series in customer_mrr.items():
        first = min(series)
        for index in range(first, len(months)):
            before = series.get(index - 1, ZERO)
            after = series.get(index, ZERO)
            if not before and not after:
                continue
            totals = table[(index, currency)]
            totals.starting_mrr += before
            totals.ending_mrr += after
            totals.starting_customers += 1 if before else 0
            totals.ending_customers += 1 if after else 0
            if before == after:
                continue
            if not before:
                movement = "new" if index == first else "reactivation"
            elif not after:
                movement = "churn"
            else:
                movement = "expansion" if after > before else "contraction"
            totals.amounts[movement] += abs(after - before)
            totals.customers[movement] += 1
    return [
        MrrMonth(
            month=months[index],
            currency=currency,
            starting_mrr=totals.starting_mrr,
            ending_mrr=totals.ending_mrr,
            starting_customers=totals.starting_customers,
            ending_customers=totals.ending_customers,
            **totals.amounts,
            **{f"{name}_customers": number for name, number in totals.customers.items()},
        )
        for (index, currency), totals in sorted(table.items())
    ]


def _cohorts(months: list[dt.date], customer_mrr: Mapping[tuple[int, str], Mapping[int, Decimal]]) -> list[CohortCell]:
    """Customers by the month their MRR first became non-zero (any currency) × months since then: how many
    still had MRR."""
    paying: dict[int, set[int]] = defaultdict(set)
    for (customer_id, _currency), series in customer_mrr.items():
        paying[customer_id].update(series)
    cells: dict[tuple[int, int], int] = defaultdict(int)
    for indices in paying.values():
        start = min(indices)
        for index in indices:
            cells[(start, index - start)] += 1
    return [
        CohortCell(cohort=months[start], months_since=since, customers=customers)
        for (start, since), customers in sorted(cells.items())
    ]


def _revenue(*, as_of: dt.date) -> list[RevenueMonth]:
    """Net revenue per issue month, currency and product: the line net amounts (after discounts, without tax)
    of recognised invoices; lines without a catalog price count under product ""."""
    rows = (
        InvoiceLine.objects.filter(invoice__status__in=RECOGNISED_STATUSES, invoice__issue_date__lte=as_of)
        .annotate(month=TruncMonth("invoice__issue_date"), product=F("price__product__name"))
        .values("month", "invoice__currency", "product")
        .annotate(invoices=Count("invoice", distinct=True), net=Sum("net_amount"))
        .order_by()
    )
    return [
        RevenueMonth(
            month=_as_date(row["month"]),
            currency=row["invoice__currency"],
            product=row["product"] or "",
            invoices=row["invoices"],
            net_revenue=round_amount(row["net"], row["invoice__currency"]),
        )
        for row in rows
    ]


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def metrics_refresh(*, as_of: dt.date | None = None, triggered_by: str = "command") -> MetricsRefresh:
    """Rebuild the snapshot as of ``as_of`` (default: today in the billing timezone) and record the refresh.

    The figures are computed first, outside the transaction; the rows are then replaced in one transaction that
    holds an EXCLUSIVE lock on the tables (readers go on reading the old rows; a concurrent refresh waits)."""
    as_of = as_of or billing_today()
    started_at = timezone.now()
    months, customer_mrr, lines_read = _customer_mrr(as_of=as_of)
    mrr_rows = _movements(months, customer_mrr)
    cohort_rows = _cohorts(months, customer_mrr)
    revenue_rows = _revenue(as_of=as_of)
    ageing_rows = _customer_ageing(as_of=as_of)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            tables = ", ".join(model._meta.db_table for model in (MrrMonth, RevenueMonth, CohortCell, CustomerAgeing))
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
        MrrMonth.objects.all().delete()
        MrrMonth.objects.bulk_create(mrr_rows, batch_size=2_000)
        RevenueMonth.objects.all().delete()
        RevenueMonth.objects.bulk_create(revenue_rows, batch_size=2_000)
        CohortCell.objects.all().delete()
        CohortCell.objects.bulk_create(cohort_rows, batch_size=2_000)
        CustomerAgeing.objects.all().delete()
        CustomerAgeing.objects.bulk_create(ageing_rows, batch_size=2_000)
        refresh = MetricsRefresh.objects.create(
            as_of=as_of,
            started_at=started_at,
            finished_at=timezone.now(),
            lines_read=lines_read,
            open_invoices_read=sum(row.invoices for row in ageing_rows),
            triggered_by=triggered_by,
        )
        stale = MetricsRefresh.objects.order_by("-finished_at", "-pk").values_list("pk", flat=True)[
            REFRESH_HISTORY_KEPT:
        ]
        MetricsRefresh.objects.filter(pk__in=list(stale)).delete()
    return refresh


# --- Reading the snapshot -------------------------------------------------------------------------------


def latest_refresh() -> MetricsRefresh | None:
    return MetricsRefresh.objects.order_by("-finished_at", "-pk").first()


@dataclass(frozen=True)
class MrrFigures:
    """One month of one currency, with the ratios docs/METRICS.md defines."""

    month: dt.date
    currency: str
    starting_mrr: Decimal
    new: Decimal
    reactivation: Decimal
    expansion: Decimal
    contraction: Decimal
    churn: Decimal
    ending_mrr: Decimal
    starting_customers: int
    ending_customers: int
    new_customers: int
    reactivation_customers: int
    expansion_customers: int
    contraction_customers: int
    churn_customers: int

    @property
    def net_movement(self) -> Decimal:
        return self.new + self.reactivation + self.expansion - self.contraction - self.churn

    @property
    def arr(self) -> Decimal:
        return self.ending_mrr * 12

    @property
    def nrr(self) -> Decimal | None:
        """Net revenue retention: (starting + expansion − contraction − churn) / starting, in percent."""
        return percent(self.starting_mrr + self.expansion - self.contraction - self.churn, self.starting_mrr)

    @property
    def grr(self) -> Decimal | None:
        """Gross revenue retention: (starting − contraction − churn) / starting, in percent."""
        return percent(self.starting_mrr - self.contraction - self.churn, self.starting_mrr)

    @property
    def customer_churn_rate(self) -> Decimal | None:
        """Churned customers / customers paying at the start of the month, in percent."""
        return percent(self.churn_customers, self.starting_customers)

    @property
    def revenue_churn_rate(self) -> Decimal | None:
        """Churned MRR / starting MRR, in percent (contraction is not churn; GRR counts both)."""
        return percent(self.churn, self.starting_mrr)

    @property
    def arpa(self) -> Decimal | None:
        """Average revenue per account: ending MRR / customers paying at the end of the month."""
        if not self.ending_customers:
            return None
        return round_amount(self.ending_mrr / self.ending_customers, self.currency)

    @classmethod
    def zero(cls, month: dt.date, currency: str) -> MrrFigures:
        zero = round_amount(ZERO, currency)
        amounts = dict.fromkeys(("starting_mrr", *MRR_MOVEMENTS, "ending_mrr"), zero)
        customers = dict.fromkeys(
            ("starting_customers", "ending_customers", *(f"{name}_customers" for name in MRR_MOVEMENTS)), 0
        )
        return cls(month=month, currency=currency, **amounts, **customers)  # type: ignore[arg-type]


def _figures(row: MrrMonth) -> MrrFigures:
    currency = row.currency
    amounts = {
        name: round_amount(getattr(row, name), currency) for name in ("starting_mrr", *MRR_MOVEMENTS, "ending_mrr")
    }
    customers = {
        name: getattr(row, name)
        for name in (
            "starting_customers",
            "ending_customers",
            *(f"{movement}_customers" for movement in MRR_MOVEMENTS),
        )
    }
    return MrrFigures(month=row.month, currency=currency, **amounts, **customers)  # type: ignore[arg-type]


def mrr_months(*, date_from: dt.date, date_to: dt.date, currency: str = "") -> list[MrrFigures]:
    """The snapshot's MRR months from ``date_from``'s month to ``date_to``'s, ordered by month and currency."""
    rows = MrrMonth.objects.filter(month__gte=month_start(date_from), month__lte=date_to)
    if currency:
        rows = rows.filter(currency=currency)
    return [_figures(row) for row in rows.order_by("month", "currency")]


def mrr_now(*, as_of: dt.date) -> dict[str, MrrFigures]:
    """Per currency, the figures of ``as_of``'s month (its MRR is the MRR on the snapshot's as-of date)."""
    month = month_start(as_of)
    return {figures.currency: figures for figures in mrr_months(date_from=month, date_to=month)}


def mrr_history(*, as_of: dt.date, months: int = 12) -> dict[str, list[MrrFigures]]:
    """Per currency, the last ``months`` months up to ``as_of``'s month (months without a row are zero)."""
    first = add_months(month_start(as_of), -(months - 1))
    calendar = [add_months(first, offset) for offset in range(months)]
    found: dict[str, dict[dt.date, MrrFigures]] = defaultdict(dict)
    for figures in mrr_months(date_from=first, date_to=as_of):
        found[figures.currency][figures.month] = figures
    return {
        currency: [by_month.get(month) or MrrFigures.zero(month, currency) for month in calendar]
        for currency, by_month in sorted(found.items())
    }


@dataclass(frozen=True)
class RevenueRow:
    month: dt.date
    currency: str
    product: str  # "" for lines without a catalog price
    invoices: int
    net_revenue: Decimal


def revenue_rows(*, date_from: dt.date, date_to: dt.date, currency: str = "") -> list[RevenueRow]:
    """Net revenue per issue month, currency and product, whole months from ``date_from``'s to ``date_to``'s."""
    rows = RevenueMonth.objects.filter(month__gte=month_start(date_from), month__lte=date_to)
    if currency:
        rows = rows.filter(currency=currency)
    return [
        RevenueRow(row.month, row.currency, row.product, row.invoices, round_amount(row.net_revenue, row.currency))
        for row in rows.order_by("month", "currency", "product")
    ]


def revenue_by_month(*, as_of: dt.date, months: int = 12) -> dict[str, list[tuple[dt.date, Decimal]]]:
    """Per currency, net revenue per issue month for the ``months`` months up to ``as_of``'s (zero-filled)."""
    first = add_months(month_start(as_of), -(months - 1))
    sums: dict[str, dict[dt.date, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for row in revenue_rows(date_from=first, date_to=as_of):
        sums[row.currency][row.month] += row.net_revenue
    calendar = [add_months(first, offset) for offset in range(months)]
    return {
        currency: [(month, round_amount(by_month.get(month, ZERO), currency)) for month in calendar]
        for currency, by_month in sorted(sums.items())
    }


def revenue_total(rows: Iterable[RevenueRow]) -> dict[str, Decimal]:
    """Net revenue per currency of ``rows``."""
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for row in rows:
        totals[row.currency] += row.net_revenue
    return dict(sorted(totals.items()))


@dataclass(frozen=True)
class CohortRow:
    cohort: dt.date
    size: int
    retained: list[int | None]  # customers paying k months later; None where that month is not over yet

    def share(self, since: int) -> Decimal | None:
        value = self.retained[since] if since < len(self.retained) else None
        return None if value is None else percent(value, self.size)


def cohort_table(*, as_of: dt.date, months: int = 12) -> list[CohortRow]:
    """Cohorts that started in the last ``months`` months up to ``as_of``'s, each with its customers paying
    0, 1, … months after its start (up to ``as_of``'s month)."""
    first = add_months(month_start(as_of), -(months - 1))
    last = month_start(as_of)
    counts: dict[dt.date, dict[int, int]] = defaultdict(dict)
    for cell in CohortCell.objects.filter(cohort__gte=first, cohort__lte=last):
        counts[cell.cohort][cell.months_since] = cell.customers
    rows = []
    for offset in range(months):
        cohort = add_months(first, offset)
        if cohort not in counts:
            continue
        span = (last.year - cohort.year) * 12 + last.month - cohort.month + 1
        cells = counts[cohort]
        rows.append(
            CohortRow(
                cohort=cohort,
                size=cells.get(0, 0),
                retained=[cells.get(since, 0) for since in range(span)] + [None] * (months - span),
            )
        )
    return rows


# --- Receivables: ageing (snapshot, live for another date) ------------------------------------------------


def bucket_lookups(as_of: dt.date) -> dict[str, dict[str, dt.date]]:
    """Each ageing bucket as lookups on the due date (as ``ageing_bucket`` classifies), for filters and links."""
    days = dt.timedelta
    return {
        "current": {"due_date__gte": as_of},
        "1-30": {"due_date__gte": as_of - days(days=30), "due_date__lt": as_of},
        "31-60": {"due_date__gte": as_of - days(days=60), "due_date__lt": as_of - days(days=30)},
        "61-90": {"due_date__gte": as_of - days(days=90), "due_date__lt": as_of - days(days=60)},
        "90+": {"due_date__lt": as_of - days(days=90)},
    }


def ageing_bucket(*, as_of: dt.date) -> Case:
    """The ageing bucket of an invoice by days past its due date on ``as_of``."""
    days = dt.timedelta
    return Case(
        When(due_date__gte=as_of, then=Value("current")),
        When(due_date__gte=as_of - days(days=30), then=Value("1-30")),
        When(due_date__gte=as_of - days(days=60), then=Value("31-60")),
        When(due_date__gte=as_of - days(days=90), then=Value("61-90")),
        default=Value("90+"),
        output_field=CharField(),
    )


@dataclass
class Ageing:
    currency: str
    amounts: dict[str, Decimal] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return sum((self.amounts[b] for b in AGEING_BUCKETS), round_amount(ZERO, self.currency))

    @property
    def overdue_amount(self) -> Decimal:
        return sum((self.amounts[b] for b in AGEING_BUCKETS if b != "current"), round_amount(ZERO, self.currency))

    @property
    def overdue_count(self) -> int:
        return sum(self.counts[b] for b in AGEING_BUCKETS if b != "current")


def open_invoices() -> QuerySet[Invoice]:
    """What is owed: open invoices (uncollectible ones are written off and left out)."""
    return Invoice.objects.filter(status=InvoiceStatus.OPEN)


# Each bucket's column suffix in ``CustomerAgeing`` (``due_<suffix>``, ``count_<suffix>``).
AGEING_COLUMNS = {"current": "current", "1-30": "1_30", "31-60": "31_60", "61-90": "61_90", "90+": "90_plus"}


def _new_ageing(currency: str) -> Ageing:
    zero = round_amount(ZERO, currency)
    return Ageing(currency, dict.fromkeys(AGEING_BUCKETS, zero), dict.fromkeys(AGEING_BUCKETS, 0))


def ageing_snapshot_for(as_of: dt.date, *, latest: MetricsRefresh | None = None) -> MetricsRefresh | None:
    """The latest refresh (``latest`` when the caller has read it) when its snapshot holds the receivables aged
    on ``as_of``, else None (then the ageing is computed live: another date, no refresh yet, or a refresh from
    before ageing was kept)."""
    refresh = latest or latest_refresh()
    if refresh is None or refresh.as_of != as_of or refresh.open_invoices_read is None:
        return None
    return refresh


def receivables_ageing(
    *, as_of: dt.date, currency: str = "", latest: MetricsRefresh | None = None
) -> dict[str, Ageing]:
    """Amount due (and count) of open invoices per currency and ageing bucket on ``as_of``: from the snapshot
    when it is aged on that date (a row per customer owing money, summed), else live
    (``receivables_ageing_live``). ``latest``: the latest refresh, when the caller has read it."""
    if ageing_snapshot_for(as_of, latest=latest) is None:
        return receivables_ageing_live(as_of=as_of, currency=currency)
    rows = CustomerAgeing.objects.filter(currency=currency) if currency else CustomerAgeing.objects.all()
    sums = {}
    for suffix in AGEING_COLUMNS.values():
        sums[f"due_{suffix}"] = Sum(f"due_{suffix}")
        sums[f"count_{suffix}"] = Sum(f"count_{suffix}")
    result: dict[str, Ageing] = {}
    for row in rows.values("currency").annotate(**sums).order_by():
        code = row["currency"]
        ageing = result[code] = _new_ageing(code)
        for bucket, suffix in AGEING_COLUMNS.items():
            ageing.amounts[bucket] = round_amount(row[f"due_{suffix}"], code)
            ageing.counts[bucket] = row[f"count_{suffix}"]
    return dict(sorted(result.items()))


def receivables_ageing_live(*, as_of: dt.date, currency: str = "") -> dict[str, Ageing]:
    """``receivables_ageing`` aggregated over the open invoices now (one query; 0.5 s at 250,000 open)."""
    invoices = open_invoices().filter(currency=currency) if currency else open_invoices()
    rows = (
        invoices.annotate(bucket=ageing_bucket(as_of=as_of))
        .values("currency", "bucket")
        .annotate(amount=Sum("amount_due"), count=Count("pk"))
        .order_by()
    )
    result: dict[str, Ageing] = {}
    for row in rows:
        code = row["currency"]
        if code not in result:
            result[code] = _new_ageing(code)
        result[code].amounts[row["bucket"]] = round_amount(row["amount"], code)
        result[code].counts[row["bucket"]] = row["count"]
    return dict(sorted(result.items()))


def _ageing_row(
    customer_id: int, customer: str, currency: str, invoices: int, amounts: Iterable[Decimal], total: Decimal
) -> dict[str, Any]:
    unit = quantum(currency)
    return {
        "customer_id": customer_id,
        "customer": customer,
        "currency": currency,
        "invoices": invoices,
        **{
            f"days_{name}": amount.quantize(unit, rounding=ROUND_HALF_UP)
            for name, amount in zip(AGEING_BUCKETS, amounts, strict=True)
        },
        "total_due": total.quantize(unit, rounding=ROUND_HALF_UP),
    }


# Rows by customer name, currency, customer id — sorted by the database in both paths, so they are in one order.
AGEING_ORDER = ("customer__name", "currency", "customer_id")
SNAPSHOT_AGEING_ORDER = ("customer_name", "currency", "customer_id")  # the snapshot's copy of the name (indexed)


def _snapshot_ageing(currency: str) -> QuerySet[CustomerAgeing]:
    return CustomerAgeing.objects.filter(currency=currency) if currency else CustomerAgeing.objects.all()


def _snapshot_rows(queryset: QuerySet[CustomerAgeing]) -> list[dict[str, Any]]:
    amounts = [f"due_{suffix}" for suffix in AGEING_COLUMNS.values()]
    return [
        _ageing_row(customer_id, name, code, invoices, due, sum(due, ZERO))
        for customer_id, name, code, invoices, *due in queryset.values_list(
            "customer_id", "customer_name", "currency", "invoices", *amounts
        )
    ]


def ageing_by_customer(*, as_of: dt.date, currency: str = "") -> list[dict[str, Any]]:
    """The ageing buckets per customer and currency (the ageing report's rows and downloads); sums to
    ``receivables_ageing``. From the snapshot when it is aged on ``as_of`` (one row per customer owing money),
    else live (``ageing_by_customer_live``, which the snapshot equals at the refresh)."""
    if ageing_snapshot_for(as_of) is None:
        return ageing_by_customer_live(as_of=as_of, currency=currency)
    return _snapshot_rows(_snapshot_ageing(currency).order_by(*SNAPSHOT_AGEING_ORDER))


@dataclass(frozen=True)
class AgeingPage:
    """What the ageing report's page shows: its first rows, how many there are, and per currency the column
    totals (open invoices, each bucket, total due) of every row."""

    rows: list[dict[str, Any]]
    count: int
    totals: dict[str, dict[str, Any]]


def ageing_by_customer_page(*, as_of: dt.date, currency: str = "", limit: int) -> AgeingPage:
    """``ageing_by_customer``'s first ``limit`` rows, its row count and per-currency totals, without reading
    every row from the snapshot (two queries; the live path reads them all). Amounts due are in minor units
    (every line is rounded, docs/DESIGN.md), so the totals of the rounded rows are the rounded sums."""
    if ageing_snapshot_for(as_of) is None:
        rows = ageing_by_customer_live(as_of=as_of, currency=currency)
        totals: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = totals.setdefault(str(row["currency"]), {})
            for key in ("invoices", *(f"days_{name}" for name in AGEING_BUCKETS), "total_due"):
                entry[key] = entry.get(key, 0) + row[key]
        return AgeingPage(rows=rows[:limit], count=len(rows), totals=dict(sorted(totals.items())))
    queryset = _snapshot_ageing(currency)
    sums: dict[str, Sum | Count] = {"rows": Count("pk"), "invoices_sum": Sum("invoices")}
    for suffix in AGEING_COLUMNS.values():
        sums[f"due_{suffix}"] = Sum(f"due_{suffix}")
    totals = {}
    count = 0
    for row in queryset.values("currency").annotate(**sums).order_by("currency"):
        code = row["currency"]
        count += row["rows"]
        due = [row[f"due_{suffix}"] for suffix in AGEING_COLUMNS.values()]
        rounded = _ageing_row(0, "", code, row["invoices_sum"], due, sum(due, ZERO))
        totals[code] = {key: rounded[key] for key in rounded if key not in ("customer_id", "customer", "currency")}
    first = _snapshot_rows(queryset.order_by(*SNAPSHOT_AGEING_ORDER)[:limit])
    return AgeingPage(rows=first, count=count, totals=totals)


def ageing_by_customer_live(*, as_of: dt.date, currency: str = "") -> list[dict[str, Any]]:
    """``ageing_by_customer`` aggregated over the open invoices now (4.8 s at 250,000 open invoices)."""
    sums = {
        f"bucket_{index}": Sum("amount_due", filter=Q(bucket=name), default=ZERO)
        for index, name in enumerate(AGEING_BUCKETS)
    }
    invoices = open_invoices().filter(currency=currency) if currency else open_invoices()
    rows = (
        invoices.annotate(bucket=ageing_bucket(as_of=as_of))
        .values("customer_id", "customer__name", "currency")
        .annotate(invoices=Count("pk"), total=Sum("amount_due"), **sums)
        .order_by(*AGEING_ORDER)
    )
    return [
        _ageing_row(
            row["customer_id"],
            row["customer__name"],
            row["currency"],
            row["invoices"],
            [row[f"bucket_{index}"] for index in range(len(AGEING_BUCKETS))],
            row["total"],
        )
        for row in rows
    ]


def _customer_ageing(*, as_of: dt.date) -> list[CustomerAgeing]:
    """The snapshot's receivables: per customer and currency, the open invoices' amount due and number per
    ageing bucket on ``as_of`` (exact sums, rounded when read)."""
    sums: dict[str, Sum | Count] = {}
    for bucket, suffix in AGEING_COLUMNS.items():
        sums[f"due_{suffix}"] = Sum("amount_due", filter=Q(bucket=bucket), default=ZERO)
        sums[f"count_{suffix}"] = Count("pk", filter=Q(bucket=bucket))
    rows = (
        open_invoices()
        .annotate(bucket=ageing_bucket(as_of=as_of))
        .values("customer_id", "currency")
        .annotate(customer_name=F("customer__name"), invoices=Count("pk"), **sums)
        .order_by()
    )
    return [CustomerAgeing(**row) for row in rows.iterator(chunk_size=20_000)]
