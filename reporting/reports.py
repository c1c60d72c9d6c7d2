"""Staff reports under ``/admin/reports/``: selectors that return rows, one view that shows them as a table
with filters (date range, currency) and downloads the same rows as CSV (``?format=csv``).

Every report reads finalized documents only and never adds amounts of different currencies: each row has its
currency. Amounts are rounded to the currency's minor unit. docs/METRICS.md defines what each column means.
Permission: ``invoicing.view_invoice`` (checked in the view; the admin site checks staff status first)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncMonth
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.safestring import SafeString, mark_safe

from accounting import recognition
from core.csv_safe import safe_cell
from core.dates import billing_today, billing_tz
from core.money import round_amount
from invoicing.models import CreditNoteLine, Invoice, InvoiceLine, InvoiceStatus
from reporting import metrics, oss
from reporting.charts import Bar, bar_chart
from reporting.dashboard import changelist_url, format_amount
from reporting.metrics import (
    AGEING_BUCKETS,
    AGEING_LABELS,
    MRR_MOVEMENTS,
    RECOGNISED_STATUSES,
    add_months,
    month_start,
)

PERMISSION = "invoicing.view_invoice"
ZERO = Decimal(0)
NO_PRODUCT = "(no product)"
Row = dict[str, Any]


@dataclass(frozen=True)
class ReportFilters:
    date_from: dt.date
    date_to: dt.date  # inclusive
    currency: str = ""
    as_of: dt.date | None = None

    @property
    def date_until(self) -> dt.date:
        return self.date_to + dt.timedelta(days=1)


def _month(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _with_currency(queryset: Any, path: str, filters: ReportFilters) -> Any:
    return queryset.filter(**{path: filters.currency}) if filters.currency else queryset


# --- Selectors ------------------------------------------------------------------------------------------


def revenue_report(*, filters: ReportFilters) -> list[Row]:
    """Net revenue (line net amounts: after discounts, without tax) of finalized, non-void invoices per issue
    month, currency and product, whole months (``reporting.metrics`` snapshot). Lines without a price (manual
    and one-off lines) count as "(no product)"."""
    return [
        {
            "month": row.month.strftime("%Y-%m"),
            "currency": row.currency,
            "product": row.product or NO_PRODUCT,
            "invoices": row.invoices,
            "net_revenue": row.net_revenue,
        }
        for row in metrics.revenue_rows(date_from=filters.date_from, date_to=filters.date_to, currency=filters.currency)
    ]


def tax_report(*, filters: ReportFilters) -> list[Row]:
    """Per month, currency, VAT category, tax name and percentage: the taxable amount and tax of finalized,
    non-void invoice lines (by issue date), minus the credit note lines issued in the same month with the same tax
    (by the credit note's issue date: a credit note corrects the period it is issued in). A document's tax-summary
    rows are the sums of its lines per category and rate, so these sums are the sums of those rows."""
    key_fields = ("month", "currency", "tax_category", "tax_name", "tax_percentage")
    invoiced = (
        _with_currency(
            InvoiceLine.objects.filter(
                invoice__status__in=RECOGNISED_STATUSES,
                invoice__issue_date__gte=filters.date_from,
                invoice__issue_date__lt=filters.date_until,
            ),
            "invoice__currency",
            filters,
        )
        .annotate(month=TruncMonth("invoice__issue_date"), currency=F("invoice__currency"))
        .values(*key_fields)
        .annotate(taxable=Sum("net_amount"), tax=Sum("tax_amount"))
        .order_by()
    )
    credited = (
        _with_currency(
            CreditNoteLine.objects.filter(
                credit_note__issue_date__gte=filters.date_from, credit_note__issue_date__lt=filters.date_until
            ),
            "credit_note__currency",
            filters,
        )
        .annotate(month=TruncMonth("credit_note__issue_date"), currency=F("credit_note__currency"))
        .values(*key_fields)
        .annotate(taxable=Sum("net_amount"), tax=Sum("tax_amount"))
        .order_by()
    )
    sums: dict[tuple[Any, ...], dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for prefix, rows in (("invoiced", invoiced), ("credited", credited)):
        for row in rows:
            key = (
                _month(row["month"]),
                row["currency"],
                row["tax_category"],
                row["tax_name"],
                row["tax_percentage"].normalize(),
            )
            sums[key][f"{prefix}_taxable"] += row["taxable"]
            sums[key][f"{prefix}_tax"] += row["tax"]
    result = []
    for (month, currency, category, tax_name, percentage), amounts in sorted(sums.items(), key=lambda item: item[0]):
        rounded = {
            name: round_amount(amounts[name], currency)
            for name in ("invoiced_taxable", "invoiced_tax", "credited_taxable", "credited_tax")
        }
        result.append(
            {
                "month": month.strftime("%Y-%m"),
                "currency": currency,
                "tax_category": category,
                "tax_name": tax_name or "(no tax)",
                "tax_percentage": f"{percentage:f}",
                **rounded,
                "taxable": rounded["invoiced_taxable"] - rounded["credited_taxable"],
                "tax": rounded["invoiced_tax"] - rounded["credited_tax"],
            }
        )
    return result


def ageing_report(*, filters: ReportFilters) -> list[Row]:
    """Amount due of open invoices per customer and currency, by days past due on ``as_of``: the metrics
    snapshot when it is aged on that date, else live."""
    return metrics.ageing_by_customer(as_of=filters.as_of or billing_today(), currency=filters.currency)


def ageing_report_page(*, filters: ReportFilters, limit: int) -> metrics.AgeingPage:
    """The ageing report's page: its first rows, the row count and the totals, from the database."""
    return metrics.ageing_by_customer_page(
        as_of=filters.as_of or billing_today(), currency=filters.currency, limit=limit
    )


def invoices_report(*, filters: ReportFilters) -> list[Row]:
    """Per month and currency: invoices issued (finalized, not void; by issue date, their totals), paid (by the
    date they were paid in full, billing timezone; their totals) and overdue now (open and past due on
    ``as_of``, by due month; their amounts due)."""
    as_of = filters.as_of or billing_today()
    issued = (
        _with_currency(
            Invoice.objects.filter(
                status__in=RECOGNISED_STATUSES, issue_date__gte=filters.date_from, issue_date__lt=filters.date_until
            ),
            "currency",
            filters,
        )
        .annotate(month=TruncMonth("issue_date"))
        .values("month", "currency")
        .annotate(count=Count("pk"), amount=Sum("total"))
        .order_by()
    )
    tz = billing_tz()
    start = dt.datetime.combine(filters.date_from, dt.time.min, tzinfo=tz)
    end = dt.datetime.combine(filters.date_until, dt.time.min, tzinfo=tz)
    paid = (
        _with_currency(
            Invoice.objects.filter(status=InvoiceStatus.PAID, paid_at__gte=start, paid_at__lt=end), "currency", filters
        )
        .annotate(month=TruncMonth("paid_at", tzinfo=tz))
        .values("month", "currency")
        .annotate(count=Count("pk"), amount=Sum("total"))
        .order_by()
    )
    overdue = (
        _with_currency(
            Invoice.objects.filter(
                status=InvoiceStatus.OPEN,
                due_date__gte=filters.date_from,
                due_date__lt=min(as_of, filters.date_until),
            ),
            "currency",
            filters,
        )
        .annotate(month=TruncMonth("due_date"))
        .values("month", "currency")
        .annotate(count=Count("pk"), amount=Sum("amount_due"))
        .order_by()
    )
    table: dict[tuple[dt.date, str], Row] = {}
    for kind, rows in (("issued", issued), ("paid", paid), ("overdue", overdue)):
        for row in rows:
            key = (_month(row["month"]), row["currency"])
            zero = round_amount(ZERO, row["currency"])
            entry = table.setdefault(
                key,
                {
                    "month": key[0].strftime("%Y-%m"),
                    "currency": row["currency"],
                    **{
                        f"{name}_{what}": 0 if what == "count" else zero
                        for name in ("issued", "paid", "overdue")
                        for what in ("count", "amount")
                    },
                },
            )
            entry[f"{kind}_count"] = row["count"]
            entry[f"{kind}_amount"] = round_amount(row["amount"], row["currency"])
    return [table[key] for key in sorted(table)]


def mrr_movements_report(*, filters: ReportFilters) -> list[Row]:
    """MRR movements per month and currency (``reporting.metrics`` snapshot; docs/METRICS.md): starting MRR +
    new + reactivation + expansion − contraction − churn = ending MRR, to the cent, with the customers behind
    each movement and the month's ratios (customer and revenue churn, NRR, GRR, ARPA)."""
    return [
        {
            "month": month.month.strftime("%Y-%m"),
            "currency": month.currency,
            "starting_mrr": month.starting_mrr,
            **{name: getattr(month, name) for name in MRR_MOVEMENTS},
            "net_movement": month.net_movement,
            "ending_mrr": month.ending_mrr,
            "starting_customers": month.starting_customers,
            **{f"{name}_customers": getattr(month, f"{name}_customers") for name in MRR_MOVEMENTS},
            "ending_customers": month.ending_customers,
            "customer_churn_rate": month.customer_churn_rate,
            "revenue_churn_rate": month.revenue_churn_rate,
            "nrr": month.nrr,
            "grr": month.grr,
            "arpa": month.arpa,
        }
        for month in metrics.mrr_months(
            date_from=filters.date_from,
            date_to=min(filters.date_to, filters.as_of or filters.date_to),
            currency=filters.currency,
        )
    ]


def cohort_report(*, filters: ReportFilters) -> list[Row]:
    """Customers by the month they started paying × months since: how many still pay (snapshot)."""
    as_of = filters.as_of or billing_today()
    return [
        {
            "cohort": row.cohort.strftime("%Y-%m"),
            "customers": row.size,
            **{f"month_{since}": row.retained[since] for since in range(COHORT_MONTHS)},
        }
        for row in metrics.cohort_table(as_of=as_of, months=COHORT_MONTHS)
    ]


COHORT_MONTHS = 12


def recognition_report_rows(*, filters: ReportFilters) -> list[Row]:
    """Revenue recognition (accounting/recognition.py, docs/decisions/revenue-recognition.md) per month, currency
    and product: invoiced, recognised, deferred and unbilled at the month's end, net of tax."""
    return [
        {
            "month": row.month.strftime("%Y-%m"),
            "currency": row.currency,
            "product": row.product,
            "invoiced": round_amount(row.invoiced, row.currency),
            "recognised": round_amount(row.recognised, row.currency),
            "deferred": round_amount(row.deferred, row.currency),
            "unbilled": round_amount(row.unbilled, row.currency),
        }
        for row in recognition.recognition_report(date_from=filters.date_from, date_to=filters.date_to)
        if not filters.currency or row.currency == filters.currency
    ]


# --- Report registry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    kind: str = "text"  # text, count, money (formatted in the row's currency), percent
    total: str = ""  # how the totals row adds it up per currency: sum, first (the earliest month's), last
    count: str = ""  # a count column shown under this one on the page (e.g. the customers behind a movement)
    html: bool = True  # a column of its own on the page (False: only in the downloads, or under another one)

    @property
    def is_number(self) -> bool:
        return self.kind != "text"


@dataclass(frozen=True)
class Report:
    slug: str
    title: str
    description: str
    columns: Sequence[Column]
    rows: Callable[..., list[Row]]
    date_range: bool = True  # filtered by a date range (else by an as-of date only)
    as_of: bool = False
    chart_column: str = ""  # a bar chart per currency of this column by month (or by ageing bucket)
    link: Callable[[Row, ReportFilters], tuple[str, dict[str, object]] | None] | None = None  # drill-down
    snapshot: bool = False  # reads the metrics snapshot (reporting.metrics): shows its as-of time
    live_on_other_dates: bool = False  # the ageing: an as-of date the snapshot is not aged on is computed live
    # The HTML page's rows, row count and totals without building every row (the ageing: a row per customer)
    page: Callable[..., metrics.AgeingPage] | None = None
    per_currency: bool = True  # rows carry a currency (totals and charts are per currency)


def _M(key: str, header: str, total: str = "sum", count: str = "") -> Column:
    return Column(key, header, "money", total, count=count)


def _N(key: str, header: str, total: str = "sum", html: bool = True) -> Column:
    return Column(key, header, "count", total, html=html)


def _month_range(row: Row) -> dict[str, object]:
    first = dt.date.fromisoformat(f"{row['month']}-01")
    return {"issue_date__gte": first, "issue_date__lt": add_months(first, 1)}


def _issued_invoices(row: Row, _filters: ReportFilters) -> tuple[str, dict[str, object]]:
    return "invoicing.invoice", {
        "status__in": ",".join(RECOGNISED_STATUSES),
        "currency__exact": row["currency"],
        **_month_range(row),
    }


def _customer_open_invoices(row: Row, _filters: ReportFilters) -> tuple[str, dict[str, object]]:
    return "invoicing.invoice", {
        "status__exact": "open",
        "currency__exact": row["currency"],
        "customer__exact": row["customer_id"],
    }


def _mrr_invoices(row: Row, _filters: ReportFilters) -> tuple[str, dict[str, object]]:
    """The invoices billed in the month (their recurring lines make its MRR)."""
    return _issued_invoices(row, _filters)


_AGEING_COLUMNS = [
    _M(f"days_{name}", label)
    for name, label in zip(
        AGEING_BUCKETS, ("Current", "1–30 days", "31–60 days", "61–90 days", "90+ days"), strict=True
    )
]

REPORTS: dict[str, Report] = {
    report.slug: report
    for report in (
        Report(
            "revenue",
            "Revenue by month, product and currency",
            "Net amounts (after discounts, without tax) of finalized, non-void invoices, by issue month (whole "
            "months).",
            [
                Column("month", "Month"),
                Column("currency", "Currency"),
                Column("product", "Product"),
                _N("invoices", "Invoices", total=""),
                _M("net_revenue", "Net revenue"),
            ],
            revenue_report,
            chart_column="net_revenue",
            link=_issued_invoices,
            snapshot=True,
        ),
        Report(
            "tax",
            "Tax by rate and month",
            "Taxable amount and tax per VAT category (EN 16931 code: S standard, AA reduced, Z zero, E exempt, AE "
            "reverse charge, K intra-community, G export, O outside scope) and rate: invoice lines of finalized, "
            "non-void invoices minus credit note lines, each by its document's issue month.",
            [
                Column("month", "Month"),
                Column("currency", "Currency"),
                Column("tax_category", "VAT category"),
                Column("tax_name", "Tax"),
                Column("tax_percentage", "Rate %"),
                _M("invoiced_taxable", "Invoiced taxable"),
                _M("invoiced_tax", "Invoiced tax"),
                _M("credited_taxable", "Credited taxable"),
                _M("credited_tax", "Credited tax"),
                _M("taxable", "Taxable"),
                _M("tax", "Tax"),
            ],
            tax_report,
            chart_column="tax",
            link=_issued_invoices,
        ),
        Report(
            "ageing",
            "Receivables ageing by customer",
            "Amount due of open invoices by days past their due date on the as-of date.",
            [
                Column("customer", "Customer"),
                Column("currency", "Currency"),
                _N("invoices", "Open invoices"),
                *_AGEING_COLUMNS,
                _M("total_due", "Total due"),
            ],
            ageing_report,
            date_range=False,
            as_of=True,
            chart_column="ageing",
            link=_customer_open_invoices,
            snapshot=True,
            live_on_other_dates=True,
            page=ageing_report_page,
        ),
        Report(
            "invoices",
            "Invoices issued, paid and overdue by month",
            "Issued: finalized, non-void invoices by issue month (totals). Paid: invoices paid in full, by the "
            "month they were paid (totals). Overdue: invoices still open and past due on the as-of date, by due "
            "month (amounts due).",
            [
                Column("month", "Month"),
                Column("currency", "Currency"),
                _N("issued_count", "Issued"),
                _M("issued_amount", "Issued total"),
                _N("paid_count", "Paid"),
                _M("paid_amount", "Paid total"),
                _N("overdue_count", "Overdue"),
                _M("overdue_amount", "Overdue amount due"),
            ],
            invoices_report,
            as_of=True,
            chart_column="issued_amount",
            link=_issued_invoices,
        ),
        Report(
            "mrr",
            "MRR movements by month",
            "Monthly recurring revenue billed (recurring lines of finalized, non-void invoices, after discounts, "
            "without tax, normalised to a month) and how it moved month over month, per customer: new, "
            "reactivation, expansion, contraction, churn. A month's MRR is taken on its last day (the as-of date "
            "of the metrics for the month in progress).",
            [
                Column("month", "Month"),
                Column("currency", "Currency"),
                _M("starting_mrr", "Starting MRR", total="first", count="starting_customers"),
                _M("new", "New", count="new_customers"),
                _M("reactivation", "Reactivation", count="reactivation_customers"),
                _M("expansion", "Expansion", count="expansion_customers"),
                _M("contraction", "Contraction", count="contraction_customers"),
                _M("churn", "Churn", count="churn_customers"),
                _M("net_movement", "Net movement"),
                _M("ending_mrr", "Ending MRR", total="last", count="ending_customers"),
                _N("starting_customers", "Customers at start", total="first", html=False),
                _N("new_customers", "New customers", html=False),
                _N("reactivation_customers", "Reactivated customers", html=False),
                _N("expansion_customers", "Expanded customers", html=False),
                _N("contraction_customers", "Contracted customers", html=False),
                _N("churn_customers", "Churned customers", html=False),
                _N("ending_customers", "Customers at end", total="last", html=False),
                Column("customer_churn_rate", "Customer churn %", "percent"),
                Column("revenue_churn_rate", "Revenue churn %", "percent"),
                Column("nrr", "NRR %", "percent"),
                Column("grr", "GRR %", "percent"),
                _M("arpa", "ARPA", total="last"),
            ],
            mrr_movements_report,
            as_of=True,
            chart_column="ending_mrr",
            link=_mrr_invoices,
            snapshot=True,
        ),
        Report(
            "recognition",
            "Revenue recognition by month and product",
            "Net amounts (without tax) of issued invoice lines recognised over their service period, pro rata per "
            "day (one-offs on the issue date); credit notes reverse their share. Invoiced: lines issued in the "
            "month minus credit notes. Deferred: invoiced, recognised later. Unbilled: recognised, invoiced later "
            "(usage before its invoice). Cumulative invoiced − cumulative recognised = deferred − unbilled.",
            [
                Column("month", "Month"),
                Column("currency", "Currency"),
                Column("product", "Product"),
                _M("invoiced", "Invoiced"),
                _M("recognised", "Recognised"),
                _M("deferred", "Deferred at month end", total=""),
                _M("unbilled", "Unbilled at month end", total=""),
            ],
            recognition_report_rows,
            chart_column="recognised",
        ),
        Report(
            "cohorts",
            "Customer retention by cohort",
            "Customers by the month they started paying (their MRR first became non-zero) and how many still "
            "paid 0, 1, 2, … months later, in percent of the cohort (counts in the downloads).",
            [
                Column("cohort", "Cohort"),
                _N("customers", "Customers", total=""),
                *(Column(f"month_{since}", f"Month {since}", "count") for since in range(COHORT_MONTHS)),
            ],
            cohort_report,
            date_range=False,
            as_of=True,
            snapshot=True,
            per_currency=False,
        ),
    )
}


def oss_report(*, filters: ReportFilters) -> list[Row]:
    """The EU OSS return of the period (reporting/oss.py): in euros, by member state of consumption and rate."""
    return oss.oss_rows(date_from=filters.date_from, date_to=filters.date_to)


REPORTS["oss"] = Report(
    "oss",
    "EU OSS return (sales to consumers in other member states)",
    "Per member state of consumption and VAT rate: taxable amount and VAT of invoice lines to consumers in another "
    "EU country than the seller, minus credit notes of the period, in euros at the ECB rate of the period's last "
    "day. Choose a calendar quarter. \u201cEvidence missing\u201d counts invoices without two pieces (address, IP, "
    "bank country) agreeing on the country.",
    [
        Column("member_state", "Member state"),
        Column("currency", "Currency"),
        Column("tax_category", "VAT category"),
        Column("tax_percentage", "Rate %"),
        _N("invoices", "Invoices"),
        _M("invoiced_taxable", "Invoiced taxable"),
        _M("invoiced_tax", "Invoiced VAT"),
        _M("credited_taxable", "Credited taxable"),
        _M("credited_tax", "Credited VAT"),
        _M("taxable", "Taxable"),
        _M("tax", "VAT"),
        _N("evidence_missing", "Evidence missing"),
    ],
    oss_report,
)


# --- Totals, previous period, charts -------------------------------------------------------------------


def previous_filters(filters: ReportFilters) -> ReportFilters:
    """The period of the same number of whole months just before ``filters``' range (as-of moved with it)."""
    first = month_start(filters.date_from)
    last = month_start(filters.date_to)
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    start = add_months(first, -months)
    end = first - dt.timedelta(days=1)
    return ReportFilters(date_from=start, date_to=end, currency=filters.currency, as_of=min(end, filters.as_of or end))


def report_totals(report: Report, rows: list[Row]) -> dict[str, dict[str, Any]]:
    """Per currency, each totalled column: sums, or the first / last month's value (rows are by month)."""
    totals: dict[str, dict[str, Any]] = {}
    for row in rows:
        currency = row["currency"]
        entry = totals.setdefault(currency, {})
        for column in report.columns:
            value = row[column.key]
            if not column.total or value is None:
                continue
            if column.total == "sum":
                entry[column.key] = entry.get(column.key, 0) + value
            elif column.total == "first":
                entry.setdefault(column.key, value)
            else:
                entry[column.key] = value
    return dict(sorted(totals.items()))


def _display(column: Column, value: Any, currency: str) -> str:
    if value is None:
        return "–"
    if column.kind == "money":
        return format_amount(value, currency)
    if column.kind == "percent":
        return f"{value.normalize():f} %"
    if column.kind == "count":
        return f"{value:,}"
    return str(value)


def report_charts(
    report: Report, rows: list[Row], totals: dict[str, dict[str, Any]] | None = None
) -> list[tuple[str, SafeString]]:
    """A bar chart per currency of the report's chart column, by month (the ageing report: by bucket, from the
    per-currency ``totals``)."""
    if not report.chart_column or not report.per_currency:
        return []
    header = {column.key: column.header for column in report.columns}
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    if report.chart_column == "ageing":
        for currency, values in (totals if totals is not None else report_totals(report, rows)).items():
            for bucket in AGEING_BUCKETS:
                sums[currency][AGEING_LABELS[bucket]] += values.get(f"days_{bucket}", ZERO)
        title = "Amount due by days past due"
    else:
        for row in rows:
            sums[row["currency"]][row["month"]] += row[report.chart_column]
        title = f"{header[report.chart_column]} by month"
    return [
        (
            f"{title}, {currency}",
            bar_chart(
                title=f"{title}, {currency}",
                label_width=64,
                bars=[Bar(label, amount, format_amount(amount, currency)) for label, amount in by_label.items()],
            ),
        )
        for currency, by_label in sorted(sums.items())
    ]


# --- Downloads ------------------------------------------------------------------------------------------


def _filename(report: Report, filters: ReportFilters, extension: str) -> str:
    period = (
        f"{filters.date_from.isoformat()}_{filters.date_to.isoformat()}"
        if report.date_range
        else (filters.as_of or billing_today()).isoformat()
    )
    return f"{report.slug}_{period}{'_' + filters.currency if filters.currency else ''}.{extension}"


def _plain(value: Any) -> Any:
    return "" if value is None else value


def report_csv(*, report: Report, rows: list[Row], filters: ReportFilters) -> HttpResponse:
    """The rows as shown, numbers as stored (rounded to the currency's minor unit), no formatting. Written to a
    buffer first: a response encodes every ``write`` on its own (a third of a 25,000-row download's time)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    keys = [column.key for column in report.columns]
    writer.writerow([safe_cell(column.header) for column in report.columns])
    writer.writerows([safe_cell(_plain(row[key])) for key in keys] for row in rows)
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename(report, filters, "csv")}"'
    return response


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def report_xlsx(*, report: Report, rows: list[Row], filters: ReportFilters) -> HttpResponse:
    """The same rows as the CSV in a workbook: amounts as numbers with their currency's decimals, a frozen
    header row. Text cells are neutralised like the CSV's (a formula stays text)."""
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    from core.money import minor_units

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = report.slug
    sheet.append([column.header for column in report.columns])
    for row in rows:
        values = []
        for column in report.columns:
            value = row[column.key]
            values.append(value if column.is_number or value is None else safe_cell(str(value)))
        sheet.append(values)
        if "currency" in row:
            digits = minor_units(row["currency"])
            number_format = "#,##0" + ("." + "0" * digits if digits else "")
            for index, column in enumerate(report.columns, start=1):
                if column.kind == "money":
                    sheet.cell(row=sheet.max_row, column=index).number_format = number_format
    sheet.freeze_panes = "A2"
    for index, column in enumerate(report.columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = max(10, len(column.header) + 2)
    response = HttpResponse(content_type=XLSX_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{_filename(report, filters, "xlsx")}"'
    workbook.save(response)
    return response


# --- Views ----------------------------------------------------------------------------------------------


# Rows the page shows (each is formatted and linked); the totals, the charts and the downloads use every row. The
# ageing report has a row per customer with money owed: 100,000 customers would be a page nobody reads (and
# 500 formatted rows took 0.6 s of Babel and template time).
HTML_ROW_LIMIT = 200

DATE_INPUT = forms.DateInput(format="%Y-%m-%d", attrs={"type": "date"})  # a date input wants ISO dates


class ReportFilterForm(forms.Form):
    date_from = forms.DateField(required=False, label="From", widget=DATE_INPUT)
    date_to = forms.DateField(required=False, label="To", widget=DATE_INPUT)
    as_of = forms.DateField(required=False, label="As of", widget=DATE_INPUT)
    currency = forms.ChoiceField(required=False, choices=[("", "All currencies"), *settings.CURRENCY_CHOICES])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        date_from, date_to = cleaned.get("date_from"), cleaned.get("date_to")
        if date_from and date_to and date_from > date_to:
            raise forms.ValidationError("“From” must not be after “To”.")
        return cleaned


def default_filters(*, today: dt.date) -> ReportFilters:
    """The last 12 months up to today, all currencies."""
    return ReportFilters(date_from=add_months(month_start(today), -11), date_to=today, as_of=today)


def filters_from(form: ReportFilterForm, *, today: dt.date) -> ReportFilters:
    defaults = default_filters(today=today)
    if not form.is_valid():
        return defaults
    data = form.cleaned_data
    return ReportFilters(
        date_from=data.get("date_from") or defaults.date_from,
        date_to=data.get("date_to") or defaults.date_to,
        currency=data.get("currency") or "",
        as_of=data.get("as_of") or today,
    )


def _require_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


def reports_index_view(request: HttpRequest, *, site: AdminSite) -> TemplateResponse:
    _require_permission(request)
    context = {**site.each_context(request), "title": "Reports", "reports": REPORTS.values()}
    return TemplateResponse(request, "admin/reports/index.html", context)


def _row_link(report: Report, row: Row, filters: ReportFilters, user: Any, bases: dict[str, str | None]) -> str | None:
    """The changelist behind a row (``bases``: each model's changelist URL, or None without the view permission,
    looked up once per page)."""
    if report.link is None:
        return None
    target = report.link(row, filters)
    if target is None:
        return None
    model_label, params = target
    if model_label not in bases:
        app_label, model_name = model_label.split(".")
        bases[model_label] = changelist_url(model_label) if user.has_perm(f"{app_label}.view_{model_name}") else None
    base = bases[model_label]
    if base is None:
        return None
    query = urlencode(
        {key: value.isoformat() if isinstance(value, dt.date) else value for key, value in params.items()}
    )
    return f"{base}?{query}" if query else base


def report_view(
    request: HttpRequest,
    slug: str,
    *,
    site: AdminSite,
    refresh_now: Callable[[Any], str | None] | None = None,
) -> HttpResponse:
    """A report's page or download. ``refresh_now``: the URL of "Refresh now" for a user (the "Metrics refresh"
    job's Run now, which the composition layer knows), or None where they may not run it."""
    _require_permission(request)
    report = REPORTS.get(slug)
    if report is None:
        raise Http404("No such report")
    today = billing_today()
    refresh = metrics.latest_refresh() if report.snapshot else None
    if refresh is not None:
        today = min(today, refresh.as_of)  # the snapshot knows nothing after its as-of date
    defaults = default_filters(today=today)
    form = ReportFilterForm(
        request.GET or None,
        initial={"date_from": defaults.date_from, "date_to": defaults.date_to, "as_of": defaults.as_of},
    )
    filters = filters_from(form, today=today)
    if form.is_bound and form.is_valid():  # show the dates in effect, also those left empty
        form = ReportFilterForm(
            {
                **request.GET.dict(),
                "date_from": filters.date_from.isoformat(),
                "date_to": filters.date_to.isoformat(),
                "as_of": (filters.as_of or today).isoformat(),
            }
        )
    live = False
    if report.live_on_other_dates and metrics.ageing_snapshot_for(filters.as_of or today) is None:
        refresh, live = None, True
    download = request.GET.get("format")
    if download == "csv":
        return report_csv(report=report, rows=report.rows(filters=filters), filters=filters)
    if download == "xlsx":
        return report_xlsx(report=report, rows=report.rows(filters=filters), filters=filters)
    if report.page is not None:  # the database counts and totals; only the rows shown are read
        page = report.page(filters=filters, limit=HTML_ROW_LIMIT)
        rows, row_count, current = page.rows, page.count, page.totals
    else:
        rows = report.rows(filters=filters)
        row_count, current = len(rows), report_totals(report, rows) if report.per_currency else {}
    shown = [column for column in report.columns if column.html]
    totals: list[dict[str, Any]] = []
    if report.per_currency:
        previous = report_totals(report, report.rows(filters=previous_filters(filters))) if report.date_range else {}
        for currency, values in current.items():
            before = previous.get(currency, {})
            totals.append(
                {
                    "currency": currency,
                    "cells": [
                        (
                            _display(column, values[column.key], currency) if column.key in values else "",
                            (
                                f"previous {_display(column, before.get(column.key, 0), currency)}"
                                if report.date_range and column.key in values
                                else ""
                            ),
                            column.is_number,
                        )
                        for column in shown
                    ],
                }
            )
    csv_query = request.GET.copy()
    csv_query["format"] = "csv"
    xlsx_query = request.GET.copy()
    xlsx_query["format"] = "xlsx"
    cohort = report.slug == "cohorts"
    bases: dict[str, str | None] = {}
    context = {
        **site.each_context(request),
        "is_nav_sidebar_enabled": False,  # the width goes to the table (breadcrumbs lead back)
        "title": report.title,
        "report": report,
        "form": form,
        "filters": filters,
        "previous": previous_filters(filters) if report.date_range else None,
        "refresh": refresh,
        "live": live,
        "refresh_now_url": refresh_now(request.user) if refresh_now is not None and report.snapshot else None,
        "headers": [(column.header, column.is_number) for column in shown],
        "rows": rows,
        "table": [
            _table_row(
                [
                    (
                        _cohort_cell(row, column)
                        if cohort
                        else _display(column, row[column.key], row.get("currency", "")),
                        column.is_number,
                        _customers_note(row[column.count]) if column.count and row[column.count] else "",
                    )
                    for column in shown
                ],
                _row_link(report, row, filters, request.user, bases),
            )
            for row in rows[:HTML_ROW_LIMIT]
        ],
        "row_count": row_count,
        "row_limit": HTML_ROW_LIMIT if row_count > HTML_ROW_LIMIT else None,
        "has_links": report.link is not None,
        "totals": totals,
        "charts": report_charts(report, rows, current if report.page is not None else None),
        "csv_query": csv_query.urlencode(),
        "xlsx_query": xlsx_query.urlencode(),
    }
    return TemplateResponse(request, "admin/reports/report.html", context)


def _table_row(cells: list[tuple[str, bool, str]], link: str | None) -> dict[str, Any]:
    """A table row: its cells, and their ``<td>`` markup built here (every value escaped) — a template loop, or
    ``format_html`` per cell, over 200 rows × 10 cells was most of the ageing report's page time."""
    parts = []
    for value, is_number, note in cells:
        parts.append('<td class="number">' if is_number else "<td>")
        parts.append(escape(str(value)))
        if note:
            parts.append(f'<br><span class="figure-note">{escape(note)}</span>')
        parts.append("</td>")
    return {"cells": cells, "html": mark_safe("".join(parts)), "link": link}  # noqa: S308 - escaped above


def _customers_note(count: int) -> str:
    return f"{count:,} customer{'s' if count != 1 else ''}"


def _cohort_cell(row: Row, column: Column) -> str:
    """A cohort's retention in percent of its size (the size and the cohort as they are)."""
    value = row[column.key]
    if not column.key.startswith("month_"):
        return str(value)
    if value is None:
        return ""
    share = metrics.percent(value, row["customers"])
    return f"{share.normalize():f} %" if share is not None else "–"
