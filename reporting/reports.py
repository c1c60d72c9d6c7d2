"""Staff reports under ``/admin/reports/``: selectors that return rows, one view that shows them as a table
with filters (date range, currency) and downloads the same rows as CSV (``?format=csv``).

Every report reads finalized documents only and never adds amounts of different currencies: each row has its
currency. Amounts are rounded to the currency's minor unit. docs/METRICS.md defines what each column means.
Permission: ``invoicing.view_invoice`` (checked in the view; the admin site checks staff status first)."""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Min, Q, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from core.csv_safe import safe_cell
from core.dates import billing_today, billing_tz
from core.money import round_amount
from invoicing.models import CreditNoteLine, Invoice, InvoiceLine, InvoiceStatus
from reporting.dashboard import (
    AGEING_BUCKETS,
    MONTHS_PER_INTERVAL,
    RECOGNISED_STATUSES,
    add_months,
    ageing_bucket,
    month_start,
    recognised_invoices,
)
from subscriptions.models import LineKind

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
    month, currency and product. Lines without a price (manual and one-off lines) count as "(no product)"."""
    lines = InvoiceLine.objects.filter(
        invoice__status__in=RECOGNISED_STATUSES,
        invoice__issue_date__gte=filters.date_from,
        invoice__issue_date__lt=filters.date_until,
    )
    rows = (
        _with_currency(lines, "invoice__currency", filters)
        .annotate(month=TruncMonth("invoice__issue_date"), product=F("price__product__name"))
        .values("month", "invoice__currency", "product")
        .annotate(invoices=Count("invoice", distinct=True), net=Sum("net_amount"))
        .order_by()
    )
    # sorted here, not in SQL: databases order NULL (no product) and punctuation differently
    result = [
        {
            "month": _month(row["month"]).strftime("%Y-%m"),
            "currency": row["invoice__currency"],
            "product": row["product"] or NO_PRODUCT,
            "invoices": row["invoices"],
            "net_revenue": round_amount(row["net"], row["invoice__currency"]),
        }
        for row in rows
    ]
    return sorted(result, key=lambda row: (row["month"], row["currency"], row["product"]))


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
    """Amount due of open invoices per customer and currency, by days past due on ``as_of``."""
    as_of = filters.as_of or billing_today()
    bucket = ageing_bucket(as_of=as_of)
    sums = {
        f"bucket_{index}": Coalesce(Sum("amount_due", filter=Q(bucket=name)), ZERO)
        for index, name in enumerate(AGEING_BUCKETS)
    }
    rows = (
        _with_currency(Invoice.objects.filter(status=InvoiceStatus.OPEN), "currency", filters)
        .annotate(bucket=bucket)
        .values("customer_id", "customer__name", "currency")
        .annotate(invoices=Count("pk"), total=Sum("amount_due"), **sums)
        .order_by()
    )
    result = []
    for row in rows:
        currency = row["currency"]
        result.append(
            {
                "customer": row["customer__name"],
                "currency": currency,
                "invoices": row["invoices"],
                **{
                    f"days_{name}": round_amount(row[f"bucket_{index}"], currency)
                    for index, name in enumerate(AGEING_BUCKETS)
                },
                "total_due": round_amount(row["total"], currency),
            }
        )
    return sorted(result, key=lambda row: (row["customer"], row["currency"]))


def invoices_report(*, filters: ReportFilters) -> list[Row]:
    """Per month and currency: invoices issued (finalized, not void; by issue date, their totals), paid (by the
    date they were paid in full, billing timezone; their totals) and overdue now (open and past due on
    ``as_of``, by due month; their amounts due)."""
    as_of = filters.as_of or billing_today()
    issued = (
        _with_currency(
            recognised_invoices().filter(issue_date__gte=filters.date_from, issue_date__lt=filters.date_until),
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


MRR_MOVEMENTS = ("new", "expansion", "contraction", "churn", "reactivation")


def _snapshot_dates(filters: ReportFilters) -> list[tuple[dt.date, dt.date]]:
    """(month, snapshot date) for the month before the range and every month of it: a month's MRR is the MRR
    on its last day, or on the as-of date for the month in progress."""
    as_of = filters.as_of or billing_today()
    first = add_months(month_start(filters.date_from), -1)
    last = month_start(min(filters.date_to, as_of))
    result = []
    month = first
    while month <= last:
        result.append((month, min(add_months(month, 1) - dt.timedelta(days=1), as_of)))
        month = add_months(month, 1)
    return result


def mrr_movements_report(*, filters: ReportFilters) -> list[Row]:
    """MRR movements per month and currency, from what was billed: a customer's MRR on a date is the sum of the
    recurring lines (not prorations; before discounts, without tax) of finalized, non-void invoices whose
    service period contains that date, each normalised to one month by its price's interval and rounded to the
    minor unit per customer. Month over month, per customer: new (from zero, never billed before),
    reactivation (from zero, billed before), expansion / contraction (up / down, both non-zero), churn (to
    zero). Starting MRR + new + reactivation + expansion − contraction − churn = ending MRR, to the cent."""
    snapshots = _snapshot_dates(filters)
    if len(snapshots) < 2:
        return []
    lines = _with_currency(
        InvoiceLine.objects.filter(
            invoice__status__in=RECOGNISED_STATUSES,  # recognised_invoices(), without a second join
            kind=LineKind.RECURRING,
            proration=False,
            price__isnull=False,
            period_start__isnull=False,
            period_start__lte=snapshots[-1][1],
        ),
        "invoice__currency",
        filters,
    )
    on = {
        f"on_{index}": Sum("amount", filter=Q(period_start__lte=day, period_end__gt=day))
        for index, (_month, day) in enumerate(snapshots)
    }
    rows = (
        lines.values("invoice__customer_id", "invoice__currency", "price__interval", "price__interval_count")
        .annotate(first_start=Min("period_start"), **on)
        .order_by()
    )
    count = len(snapshots)
    mrr: dict[tuple[int, str], list[Decimal]] = {}
    first_billed: dict[tuple[int, str], dt.date] = {}
    for row in rows:
        key = (row["invoice__customer_id"], row["invoice__currency"])
        series = mrr.get(key)
        if series is None:
            series = mrr[key] = [ZERO] * count
        months = MONTHS_PER_INTERVAL[row["price__interval"]] * row["price__interval_count"]
        for index in range(count):
            amount = row[f"on_{index}"]
            if amount:
                series[index] += amount / months
        first = row["first_start"]
        if key not in first_billed or first < first_billed[key]:
            first_billed[key] = first
    table: dict[tuple[dt.date, str], Row] = {}
    for (customer_id, currency), series in mrr.items():
        if not any(series):
            continue  # billed, but not on any of these dates
        rounded = [round_amount(amount, currency) if amount else ZERO for amount in series]
        for index in range(1, count):
            before, after = rounded[index - 1], rounded[index]
            if not before and not after:
                continue
            month = snapshots[index][0]
            entry = table.get((month, currency))
            if entry is None:
                entry = table[(month, currency)] = _mrr_row(month, currency)
            entry["starting_mrr"] += before
            entry["ending_mrr"] += after
            if before == after:
                continue
            if not before:
                movement = "reactivation" if first_billed[(customer_id, currency)] < month else "new"
            elif not after:
                movement = "churn"
            else:
                movement = "expansion" if after > before else "contraction"
            entry[movement] += abs(after - before)
            entry[f"{movement}_customers"] += 1
    for entry in table.values():
        entry["net_movement"] = entry["ending_mrr"] - entry["starting_mrr"]
    return [table[key] for key in sorted(table)]


def _mrr_row(month: dt.date, currency: str) -> Row:
    zero = round_amount(ZERO, currency)
    return {
        "month": month.strftime("%Y-%m"),
        "currency": currency,
        "starting_mrr": zero,
        **dict.fromkeys(MRR_MOVEMENTS, zero),
        **{f"{name}_customers": 0 for name in MRR_MOVEMENTS},
        "net_movement": zero,
        "ending_mrr": zero,
    }


# --- Report registry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    slug: str
    title: str
    description: str
    columns: Sequence[tuple[str, str]]  # (row key, column header)
    rows: Callable[..., list[Row]]
    date_range: bool = True  # filtered by a date range (else by an as-of date only)
    as_of: bool = False


_AGEING_COLUMNS = [
    (f"days_{name}", label)
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
            "Net amounts (after discounts, without tax) of finalized, non-void invoices, by issue month.",
            [
                ("month", "Month"),
                ("currency", "Currency"),
                ("product", "Product"),
                ("invoices", "Invoices"),
                ("net_revenue", "Net revenue"),
            ],
            revenue_report,
        ),
        Report(
            "tax",
            "Tax by rate and month",
            "Taxable amount and tax per VAT category (EN 16931 code: S standard, AA reduced, Z zero, E exempt, AE "
            "reverse charge, K intra-community, G export, O outside scope) and rate: invoice lines of finalized, "
            "non-void invoices minus credit note lines, each by its document's issue month.",
            [
                ("month", "Month"),
                ("currency", "Currency"),
                ("tax_category", "VAT category"),
                ("tax_name", "Tax"),
                ("tax_percentage", "Rate %"),
                ("invoiced_taxable", "Invoiced taxable"),
                ("invoiced_tax", "Invoiced tax"),
                ("credited_taxable", "Credited taxable"),
                ("credited_tax", "Credited tax"),
                ("taxable", "Taxable"),
                ("tax", "Tax"),
            ],
            tax_report,
        ),
        Report(
            "ageing",
            "Receivables ageing by customer",
            "Amount due of open invoices by days past their due date on the as-of date.",
            [
                ("customer", "Customer"),
                ("currency", "Currency"),
                ("invoices", "Open invoices"),
                *_AGEING_COLUMNS,
                ("total_due", "Total due"),
            ],
            ageing_report,
            date_range=False,
            as_of=True,
        ),
        Report(
            "invoices",
            "Invoices issued, paid and overdue by month",
            "Issued: finalized, non-void invoices by issue month (totals). Paid: invoices paid in full, by the "
            "month they were paid (totals). Overdue: invoices still open and past due on the as-of date, by due "
            "month (amounts due).",
            [
                ("month", "Month"),
                ("currency", "Currency"),
                ("issued_count", "Issued"),
                ("issued_amount", "Issued total"),
                ("paid_count", "Paid"),
                ("paid_amount", "Paid total"),
                ("overdue_count", "Overdue"),
                ("overdue_amount", "Overdue amount due"),
            ],
            invoices_report,
            as_of=True,
        ),
        Report(
            "mrr",
            "MRR movements by month",
            "Monthly recurring revenue billed (recurring lines of finalized, non-void invoices, per month, before "
            "discounts and tax) and how it moved month over month, per customer: new, reactivation, expansion, "
            "contraction, churn. A month's MRR is taken on its last day (the as-of date for the current month).",
            [
                ("month", "Month"),
                ("currency", "Currency"),
                ("starting_mrr", "Starting MRR"),
                ("new", "New"),
                ("reactivation", "Reactivation"),
                ("expansion", "Expansion"),
                ("contraction", "Contraction"),
                ("churn", "Churn"),
                ("net_movement", "Net movement"),
                ("ending_mrr", "Ending MRR"),
                ("new_customers", "New customers"),
                ("reactivation_customers", "Reactivated customers"),
                ("expansion_customers", "Expanded customers"),
                ("contraction_customers", "Contracted customers"),
                ("churn_customers", "Churned customers"),
            ],
            mrr_movements_report,
            as_of=True,
        ),
    )
}


# --- Views ----------------------------------------------------------------------------------------------


class ReportFilterForm(forms.Form):
    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    as_of = forms.DateField(required=False, label="As of", widget=forms.DateInput(attrs={"type": "date"}))
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


def report_csv(*, report: Report, rows: list[Row], filters: ReportFilters) -> HttpResponse:
    period = (
        f"{filters.date_from.isoformat()}_{filters.date_to.isoformat()}"
        if report.date_range
        else (filters.as_of or billing_today()).isoformat()
    )
    filename = f"{report.slug}_{period}{'_' + filters.currency if filters.currency else ''}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow([safe_cell(header) for _key, header in report.columns])
    for row in rows:
        writer.writerow([safe_cell(row[key]) for key, _header in report.columns])
    return response


def _require_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


def reports_index_view(request: HttpRequest, *, site: AdminSite) -> TemplateResponse:
    _require_permission(request)
    context = {**site.each_context(request), "title": "Reports", "reports": REPORTS.values()}
    return TemplateResponse(request, "admin/reports/index.html", context)


def report_view(request: HttpRequest, slug: str, *, site: AdminSite) -> HttpResponse:
    _require_permission(request)
    report = REPORTS.get(slug)
    if report is None:
        raise Http404("No such report")
    today = billing_today()
    defaults = default_filters(today=today)
    form = ReportFilterForm(
        request.GET or None,
        initial={"date_from": defaults.date_from, "date_to": defaults.date_to, "as_of": defaults.as_of},
    )
    filters = filters_from(form, today=today)
    rows = report.rows(filters=filters)
    if request.GET.get("format") == "csv":
        return report_csv(report=report, rows=rows, filters=filters)
    query = request.GET.copy()
    query["format"] = "csv"
    context = {
        **site.each_context(request),
        "title": report.title,
        "report": report,
        "form": form,
        "filters": filters,
        "headers": [header for _key, header in report.columns],
        "table": [[(row[key], isinstance(row[key], int | Decimal)) for key, _header in report.columns] for row in rows],
        "csv_query": query.urlencode(),
    }
    return TemplateResponse(request, "admin/reports/report.html", context)
