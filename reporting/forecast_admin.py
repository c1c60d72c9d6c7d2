"""The forecast's admin pages, in the reports section: ``/admin/reports/forecast/`` (per day and currency, with the
customers behind any figure, SVG charts and a CSV download) and ``/admin/reports/forecast/compare/`` (a stored
forecast beside what happened). Permission ``invoicing.view_invoice``, as every report. Nothing is written."""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from core.csv_safe import safe_cell
from core.dates import billing_today
from core.money import round_amount
from customers.models import Customer
from dunning.models import ReminderTemplate
from reporting.charts import Bar, bar_chart
from reporting.dashboard import format_amount
from reporting.forecast import (
    COMPARED,
    FIGURES,
    HORIZONS,
    UNKNOWABLE,
    DayRow,
    Forecast,
    forecast_cached,
    forecast_compare,
    forecast_made_on_dates,
)
from reporting.reports import HTML_ROW_LIMIT, _require_permission

# A reminder's kind is its e-mail template ("reminders/final"): shown by the name staff chose it by in the policy.
REMINDER_NAMES = {str(value): str(label) for value, label in ReminderTemplate.choices}

# (figure for the drill-down, header, the DayRow attribute shown, money?)
COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("invoices", "Invoices", "invoices", False),
    ("", "Net", "net", True),
    ("", "Tax", "tax", True),
    ("invoices", "Total", "total", True),
    ("drafts", "Held drafts", "drafts", False),
    ("cancellations", "Subscriptions ending", "cancellations", False),
    ("credit", "Credit consumed", "credit", True),
    ("charges", "Charges", "charges", False),
    ("charges", "Charged", "charges_amount", True),
    ("reminders", "Reminders", "reminders", False),
    ("late_fees", "Late fees", "late_fees_amount", True),
    ("cash_in", "Cash in", "cash_in", True),
)
FIGURE_TITLES = {
    "invoices": "Invoices the billing run will issue",
    "drafts": "Invoices the billing run will hold for review",
    "cancellations": "Subscriptions that end (canceled at period end)",
    "credit": "Customer credit consumed",
    "charges": "Automatic charges to attempt",
    "reminders": "Reminders to send",
    "late_fees": "Late fees to charge",
    "cash_in": "Expected cash in",
}
DRILL_LIMIT = 500


class ForecastForm(forms.Form):
    days = forms.TypedChoiceField(
        label="Horizon", choices=[(days, f"{days} days") for days in HORIZONS], coerce=int, initial=30
    )
    as_of = forms.DateField(label="As of", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    currency = forms.CharField(label="Currency", required=False, max_length=3)


def _display(value: Any, currency: str, money: bool) -> str:
    if money:
        return format_amount(value, currency)
    return f"{value:,}"


def _charts(forecast: Forecast, currency: str) -> list[tuple[str, Any]]:
    """Per currency: the invoice totals and the expected cash in, by day (days with some)."""
    charts = []
    for attribute, title in (("total", "Invoiced"), ("cash_in", "Expected cash in")):
        by_currency: dict[str, list[DayRow]] = defaultdict(list)
        for row in forecast.rows:
            if getattr(row, attribute) and (not currency or row.currency == currency):
                by_currency[row.currency].append(row)
        for code, rows in sorted(by_currency.items()):
            caption = f"{title} by day, {code}"
            bars = [
                Bar(row.day.strftime("%d %b"), getattr(row, attribute), format_amount(getattr(row, attribute), code))
                for row in rows
            ]
            charts.append((caption, bar_chart(title=caption, bars=bars, label_width=60)))
    return charts


def _csv(filename: str, header: list[str], rows: list[list[Any]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return response


def forecast_view(request: HttpRequest, *, site: AdminSite) -> HttpResponse:
    _require_permission(request)
    form = ForecastForm(request.GET or None, initial={"days": 30})
    days, as_of, currency = 30, billing_today(), ""
    if form.is_bound and form.is_valid():
        days = form.cleaned_data["days"]
        as_of = form.cleaned_data["as_of"] or as_of
        currency = (form.cleaned_data["currency"] or "").upper()
    forecast = forecast_cached(days=days, as_of=as_of, refresh=request.GET.get("refresh") == "1")
    rows = [row for row in forecast.rows if not currency or row.currency == currency]
    figure = request.GET.get("figure", "")
    day_text = request.GET.get("day", "")
    drill_currency = request.GET.get("drill_currency", "")
    drill: list[dict[str, Any]] | None = None
    drill_count = 0
    drill_title = ""
    if figure in FIGURES and drill_currency:
        try:
            day = dt.date.fromisoformat(day_text) if day_text else None
        except ValueError:
            day = None
        entries = forecast.entries_for(day=day, currency=drill_currency, figure=figure)
        drill_count = len(entries)
        if request.GET.get("format") != "csv":
            entries = entries[:DRILL_LIMIT]  # the page shows these (a figure may stand for 400,000 reminders)
        names = dict(
            Customer.objects.filter(pk__in={entry.customer_id for entry in entries[:DRILL_LIMIT]}).values_list(
                "pk", "name"
            )
        )
        drill = [
            {
                "day": entry.day,
                "customer": names.get(entry.customer_id, f"#{entry.customer_id}"),
                "customer_url": reverse("admin:customers_customer_change", args=[entry.customer_id]),
                "subscription_id": entry.subscription_id,
                "invoice_url": reverse("admin:invoicing_invoice_change", args=[entry.invoice_id])
                if entry.invoice_id
                else "",
                "invoice_id": entry.invoice_id,
                "kind": REMINDER_NAMES.get(entry.kind) or entry.kind.replace("_", " "),
                "amount": format_amount(entry.amount, drill_currency) if entry.amount else "",
                "plain_amount": round_amount(entry.amount, drill_currency),  # 119.00, not the column's 119.000
                "customer_id": entry.customer_id,
            }
            for entry in entries
        ]
        drill_title = f"{FIGURE_TITLES[figure]}, {drill_currency}" + (f", {day:%Y-%m-%d}" if day else "")
        if request.GET.get("format") == "csv":
            return _csv(
                f"forecast-{forecast.as_of}-{figure}-{drill_currency}.csv",
                ["date", "customer_id", "customer", "subscription_id", "invoice_id", "kind", "amount"],
                [
                    [
                        row["day"].isoformat(),
                        row["customer_id"],
                        row["customer"],
                        row["subscription_id"] or "",
                        row["invoice_id"] or "",
                        row["kind"],
                        row["plain_amount"],
                    ]
                    for row in drill
                ],
            )
    if request.GET.get("format") == "csv":
        return _csv(
            f"forecast-{forecast.as_of}-{forecast.days}d.csv",
            list(DayRow(as_of, "EUR").as_dict()),
            [list(row.as_dict().values()) for row in rows],
        )
    base = {"days": forecast.days, "as_of": forecast.as_of.isoformat(), "currency": currency}

    def link(figure: str, row: DayRow | None, code: str) -> str:
        if not figure:
            return ""
        query = {**base, "figure": figure, "drill_currency": code}
        if row is not None:
            query["day"] = row.day.isoformat()
        return "?" + "&".join(f"{key}={value}" for key, value in query.items()) + "#drill"

    totals = [
        {
            "currency": code,
            "cells": [
                (_display(getattr(total, attribute), code, money), link(figure, None, code), True)
                for figure, _header, attribute, money in COLUMNS
            ],
        }
        for code, total in forecast.totals().items()
        if not currency or code == currency
    ]
    table = [
        {
            "day": row.day,
            "currency": row.currency,
            "cells": [
                (
                    _display(getattr(row, attribute), row.currency, money) if getattr(row, attribute) else "",
                    link(figure, row, row.currency) if getattr(row, attribute) else "",
                    True,
                )
                for figure, _header, attribute, money in COLUMNS
            ],
        }
        for row in rows[:HTML_ROW_LIMIT]
    ]
    csv_query = request.GET.copy()
    csv_query["format"] = "csv"
    context = {
        **site.each_context(request),
        "is_nav_sidebar_enabled": False,
        "title": f"Forecast, next {forecast.days} days",
        "form": form,
        "forecast": forecast,
        "headers": [header for _figure, header, _attribute, _money in COLUMNS],
        "table": table,
        "row_count": len(rows),
        "row_limit": HTML_ROW_LIMIT if len(rows) > HTML_ROW_LIMIT else None,
        "totals": totals,
        "charts": _charts(forecast, currency),
        "unknown": UNKNOWABLE,
        "drill": drill,
        "drill_count": drill_count,
        "drill_limit": DRILL_LIMIT,
        "drill_title": drill_title,
        "drill_csv": request.GET.urlencode() + "&format=csv",
        "csv_query": csv_query.urlencode(),
        "refresh_query": "&".join(f"{key}={value}" for key, value in base.items()) + "&refresh=1",
    }
    return TemplateResponse(request, "admin/reports/forecast.html", context)


class CompareForm(forms.Form):
    made_on = forms.DateField(label="Forecast made on", widget=forms.DateInput(attrs={"type": "date"}))


def forecast_compare_view(request: HttpRequest, *, site: AdminSite) -> HttpResponse:
    _require_permission(request)
    made = forecast_made_on_dates()
    form = CompareForm(request.GET or None)
    made_on: dt.date | None = made[-1] if made else None  # the oldest stored: the most days to compare
    if form.is_bound and form.is_valid():
        made_on = form.cleaned_data["made_on"]
    comparison = forecast_compare(made_on=made_on) if made_on is not None else None
    rows = []
    if comparison is not None:
        for row in comparison.rows:
            cells = []
            for name in COMPARED:
                predicted, happened = row[name]
                money = isinstance(predicted, Decimal) or isinstance(happened, Decimal)
                cells.append(
                    (
                        _display(predicted, row["currency"], money),
                        _display(happened, row["currency"], money),
                        predicted != happened,
                    )
                )
            rows.append({"day": row["day"], "currency": row["currency"], "cells": cells})
    context = {
        **site.each_context(request),
        "is_nav_sidebar_enabled": False,
        "title": "Forecast vs actual",
        "form": form,
        "made": made,
        "made_on": made_on,
        "comparison": comparison,
        "headers": [name.replace("_", " ").capitalize() for name in COMPARED],
        "rows": rows[:HTML_ROW_LIMIT],
        "unknown": UNKNOWABLE,
    }
    return TemplateResponse(request, "admin/reports/forecast_compare.html", context)
