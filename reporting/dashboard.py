"""The admin home dashboard (docs/METRICS.md defines each figure).

The business figures come from ``reporting.metrics`` — the same functions the reports and their downloads
read — so the dashboard and the reports cannot disagree. The page shows one currency at a time (those with
activity only: MRR, revenue in the last 12 months or money owed), its main figures first, with a switcher for
the others. Every query is an aggregate or reads the metrics snapshot, so the page costs the same with ten
invoices or ten million. Each figure links to the admin changelist (or report) behind it, built only from
filters that admin offers (or plain field lookups, which the admin always accepts)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Protocol
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Model, OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone

from core.alerts import alerts_for
from core.dates import billing_tz
from core.formatting import money
from core.queries import counts
from invoicing.models import BillingRun, BillingRunStatus
from notifications.models import EmailAddressStatus, EmailStatus, OutboundEmail
from payments.models import QUEUE_STATUSES, AttemptStatus, BankTransaction, PaymentAttempt
from reporting.charts import Bar, bar_chart
from reporting.metrics import (
    AGEING_BUCKETS,
    AGEING_LABELS,
    Ageing,
    MrrFigures,
    add_months,
    bucket_lookups,
    latest_refresh,
    month_start,
    mrr_history,
    receivables_ageing,
    revenue_by_month,
)
from reporting.models import IntegrityCheck, MetricsRefresh
from subscriptions.models import Subscription, SubscriptionStatus

MRR_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


def changelist_url(model_label: str, **params: object) -> str:
    """``admin:<app>_<model>_changelist`` with query parameters (dates in ISO form)."""
    app_label, model_name = model_label.split(".")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    query = urlencode(
        {key: value.isoformat() if isinstance(value, dt.date) else value for key, value in params.items()}
    )
    return f"{url}?{query}" if query else url


# --- Operations -----------------------------------------------------------------------------------------


def last_billing_run() -> BillingRun | None:
    """The latest real (not dry) run, with ``error_count`` and ``resumes_run`` (the interrupted run it resumes)."""
    return (
        BillingRun.objects.filter(dry_run=False)
        .annotate(
            error_count=Count("errors"),
            resumes_run=Subquery(BillingRun.objects.filter(resumed_by=OuterRef("pk")).values("pk")[:1]),
        )
        .order_by("-started_at", "-pk")
        .first()
    )


def _days_ago(as_of: dt.date, days: int) -> dt.datetime:
    """The start of the day ``days`` before ``as_of`` in the billing timezone."""
    return dt.datetime.combine(as_of - dt.timedelta(days=days), dt.time.min, tzinfo=billing_tz())


def operations_counts(*, as_of: dt.date) -> dict[str, int]:
    """Failed payment attempts of the last 30 days, bounced addresses, e-mails that failed in the last 30 days
    (the provider refused them or retries ran out: staff resend them), bank transactions to reconcile."""
    return counts(
        failed_attempts=PaymentAttempt.objects.filter(
            status=AttemptStatus.FAILED, attempted_on__gt=as_of - dt.timedelta(days=30), attempted_on__lte=as_of
        ),
        bounced_addresses=EmailAddressStatus.objects.filter(bounced_at__isnull=False),
        failed_emails=OutboundEmail.objects.filter(status=EmailStatus.FAILED, failed_at__gte=_days_ago(as_of, 29)),
        unreconciled_transactions=BankTransaction.objects.filter(status__in=QUEUE_STATUSES),
        active_subscriptions=Subscription.objects.filter(status__in=MRR_STATUSES),
        interrupted_runs=BillingRun.objects.filter(
            status=BillingRunStatus.INTERRUPTED, started_at__gte=_days_ago(as_of, 29)
        ),
    )


def last_integrity_check() -> IntegrityCheck | None:
    return IntegrityCheck.objects.order_by("-started_at", "-pk").first()


def _run_note(run: BillingRun) -> str:
    note = f"{run.invoices_created} invoices, {run.error_count} errors"  # type: ignore[attr-defined]
    if run.status == BillingRunStatus.INTERRUPTED:
        note += f"; {run.chunks_done} of {run.chunks_total} chunks done; " + (
            f"resumed as run {run.resumed_by_id}" if run.resumed_by_id else "NOT resumed"
        )
    if run.resumes_run:  # type: ignore[attr-defined]
        note += f"; resumes interrupted run {run.resumes_run}"  # type: ignore[attr-defined]
    return note


# --- The page -------------------------------------------------------------------------------------------


def format_amount(amount: Decimal, currency: str) -> str:
    """Money as staff read it (symbol or code, the currency's minor units, thousands separators)."""
    return _format_amount(amount, currency, settings.LANGUAGE_CODE)


@lru_cache(maxsize=8192)
def _format_amount(amount: Decimal, currency: str, language: str) -> str:
    # Babel takes ~0.2 ms a call; a report page formats thousands of amounts, most of them repeated (0.00)
    return money(amount, currency, language)


def format_percent(value: Decimal | None) -> str:
    return "–" if value is None else f"{value.normalize():f} %"


def change_note(current: Decimal, previous: Decimal, currency: str, label: str = "last month") -> str:
    """``"last month €1,000.00 (+5.0 %)"``: the previous period beside a figure."""
    text = f"{label} {format_amount(previous, currency)}"
    if previous:
        change = ((current - previous) * 100 / previous).quantize(Decimal("0.1"))
        text += f" ({'+' if change >= 0 else ''}{change} %)"
    return text


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    url: str | None = None
    note: str = ""


class Viewer(Protocol):
    def has_perm(self, perm: str, obj: Model | None = None) -> bool: ...


def _link(user: Viewer, model_label: str, **params: object) -> str | None:
    """The changelist URL, or None when ``user`` may not view that model (no dead links to a 403)."""
    app_label, model_name = model_label.split(".")
    if not user.has_perm(f"{app_label}.view_{model_name}"):
        return None
    return changelist_url(model_label, **params)


def _report_url(slug: str, **params: object) -> str:
    """A report with its filters (the reports need the dashboard's own permission: no check needed)."""
    url = reverse("admin:report", args=[slug])
    query = urlencode(
        {key: value.isoformat() if isinstance(value, dt.date) else value for key, value in params.items()}
    )
    return f"{url}?{query}" if query else url


def _house_first(currency: str) -> tuple[bool, str]:
    """Sort key: the house currency (``DEFAULT_CURRENCY``) first, then the others by code."""
    return (currency != settings.DEFAULT_CURRENCY, currency)


def _ageing_link(user: Viewer, currency: str, bucket: str, as_of: dt.date) -> str | None:
    lookups = bucket_lookups(as_of)[bucket]
    return _link(user, "invoicing.invoice", status__exact="open", currency__exact=currency, **lookups)


def _currency_panel(
    *,
    currency: str,
    as_of: dt.date,
    user: Viewer,
    history: list[MrrFigures],
    revenue: list[tuple[dt.date, Decimal]],
    ageing: Ageing | None,
) -> dict[str, object]:
    """The figures and charts of one currency."""
    first = month_start(as_of)
    following = add_months(first, 1)
    now, before = history[-1], history[-2]
    revenue_now, revenue_before = revenue[-1][1], revenue[-2][1]
    month_filters = {"date_from": first, "date_to": as_of, "as_of": as_of, "currency": currency}
    mrr_report = _report_url("mrr", **month_filters)
    figures = [
        Figure(
            "MRR",
            format_amount(now.ending_mrr, currency),
            mrr_report,
            f"ARR {format_amount(now.arr, currency)} · {change_note(now.ending_mrr, before.ending_mrr, currency)}",
        ),
        Figure(
            "Net new MRR this month",
            format_amount(now.net_movement, currency),
            mrr_report,
            f"new {format_amount(now.new + now.reactivation, currency)} · expansion "
            f"{format_amount(now.expansion, currency)} · contraction {format_amount(now.contraction, currency)} · "
            f"churn {format_amount(now.churn, currency)}",
        ),
        Figure(
            "Paying customers",
            str(now.ending_customers),
            mrr_report,
            f"ARPA {format_amount(now.arpa, currency) if now.arpa is not None else '–'} · last month "
            f"{before.ending_customers}",
        ),
        Figure(
            "Churned customers this month",
            str(now.churn_customers),
            mrr_report,
            f"customer churn {format_percent(now.customer_churn_rate)} · last month {before.churn_customers} "
            f"({format_percent(before.customer_churn_rate)})",
        ),
        Figure(
            "Revenue churn this month",
            format_percent(now.revenue_churn_rate),
            mrr_report,
            f"{format_amount(now.churn, currency)} MRR lost · last month {format_percent(before.revenue_churn_rate)}",
        ),
        Figure(
            "NRR · GRR this month",
            f"{format_percent(now.nrr)} · {format_percent(now.grr)}",
            mrr_report,
            f"last month {format_percent(before.nrr)} · {format_percent(before.grr)}",
        ),
        Figure(
            "Revenue this month (net)",
            format_amount(revenue_now, currency),
            _link(
                user,
                "invoicing.invoice",
                status__in="open,paid,uncollectible",
                currency__exact=currency,
                issue_date__gte=first,
                issue_date__lt=following,
            ),
            change_note(revenue_now, revenue_before, currency),
        ),
        Figure(
            "Overdue invoices",
            f"{ageing.overdue_count} · {format_amount(ageing.overdue_amount, currency)}"
            if ageing
            else format_amount(Decimal(0), currency),
            _link(user, "invoicing.invoice", status__exact="open", currency__exact=currency, due_date__lt=as_of),
            f"open {format_amount(ageing.total, currency)}" if ageing else "nothing open",
        ),
    ]
    mrr_chart = bar_chart(
        title=f"MRR {currency} at the end of each month",
        label_width=64,
        bars=[
            Bar(month.month.strftime("%b %Y"), month.ending_mrr, format_amount(month.ending_mrr, currency))
            for month in history
        ],
    )
    revenue_chart = bar_chart(
        title=f"Revenue {currency} by issue month (net, finalized invoices)",
        label_width=64,
        bars=[Bar(month.strftime("%b %Y"), amount, format_amount(amount, currency)) for month, amount in revenue],
    )
    ageing_chart = (
        bar_chart(
            title=f"Receivables ageing {currency}, days past due on {as_of.isoformat()}",
            label_width=64,
            bars=[
                Bar(AGEING_LABELS[bucket], ageing.amounts[bucket], format_amount(ageing.amounts[bucket], currency))
                for bucket in AGEING_BUCKETS
            ],
        )
        if ageing
        else None
    )
    return {
        "currency": currency,
        "figures": figures,
        "mrr_chart": mrr_chart,
        "revenue_chart": revenue_chart,
        "revenue_report": _report_url("revenue", date_from=add_months(first, -11), date_to=as_of, currency=currency),
        "ageing_chart": ageing_chart,
        "ageing_links": [
            (AGEING_LABELS[bucket], ageing.counts[bucket], _ageing_link(user, currency, bucket, as_of))
            for bucket in AGEING_BUCKETS
        ]
        if ageing
        else [],
    }


def dashboard_context(*, as_of: dt.date, user: Viewer, refresh: MetricsRefresh | None = None) -> dict[str, object]:
    """Everything ``templates/admin/index.html`` shows above the app list. The business figures are those of
    the metrics snapshot (as of its refresh; ``refresh``: the latest, when the caller has read it), receivables
    ageing included; operations are live."""
    refresh = refresh or latest_refresh()
    figures_as_of = refresh.as_of if refresh else as_of
    history = mrr_history(as_of=figures_as_of, months=12)
    revenue = revenue_by_month(as_of=figures_as_of, months=12)
    ageing = receivables_ageing(as_of=figures_as_of, latest=refresh)
    active = {
        currency
        for currency, months in history.items()
        if months[-1].ending_mrr or months[-1].starting_mrr or months[-1].churn
    }
    active |= {currency for currency, months in revenue.items() if any(amount for _month, amount in months)}
    active |= set(ageing)
    currencies = sorted(active, key=_house_first)
    panels = [
        _currency_panel(
            currency=currency,
            as_of=figures_as_of,
            user=user,
            history=history.get(currency)
            or [MrrFigures.zero(add_months(month_start(figures_as_of), k - 11), currency) for k in range(12)],
            revenue=revenue.get(currency)
            or [(add_months(month_start(figures_as_of), k - 11), Decimal(0)) for k in range(12)],
            ageing=ageing.get(currency),
        )
        for currency in currencies
    ]

    run = last_billing_run()
    operations = operations_counts(as_of=as_of)
    check = last_integrity_check()
    live = ",".join(MRR_STATUSES)
    operations_figures = [
        Figure(
            "Active subscriptions",
            str(operations["active_subscriptions"]),
            _link(user, "subscriptions.subscription", status__in=live),
        ),
        Figure(
            "Last billing run",
            f"{run.as_of.isoformat()} · {run.get_status_display()}" if run else "none yet",
            reverse("admin:invoicing_billingrun_change", args=[run.pk]) if run else None,
            _run_note(run) if run else "",
        ),
        Figure(
            "Interrupted billing runs (30 days)",
            str(operations["interrupted_runs"]),
            _link(user, "invoicing.billingrun", status__exact=BillingRunStatus.INTERRUPTED),
            "a worker died mid-run; the stale-work sweeper resumed them",
        ),
        Figure(
            "Integrity check",
            ("clean" if check.ok else f"{check.problem_count} problem(s)") if check else "not run yet",
            reverse("admin:reporting_integritycheck_change", args=[check.pk])
            if check and user.has_perm("reporting.view_integritycheck")
            else None,
            f"{timezone.localtime(check.finished_at):%Y-%m-%d %H:%M} ({check.triggered_by})" if check else "",
        ),
        Figure(
            "Failed payment attempts (30 days)",
            str(operations["failed_attempts"]),
            _link(
                user,
                "payments.paymentattempt",
                status__exact="failed",
                attempted_on__gt=as_of - dt.timedelta(days=30),
                attempted_on__lte=as_of,
            ),
        ),
        Figure(
            "Bounced e-mail addresses",
            str(operations["bounced_addresses"]),
            _link(user, "notifications.emailaddressstatus", bounced_at__isempty="0"),
        ),
        Figure(
            "Failed e-mails (30 days)",
            str(operations["failed_emails"]),
            _link(
                user,
                "notifications.outboundemail",
                status__exact="failed",
                failed_at__gte=_days_ago(as_of, 29).isoformat(),
            ),
        ),
        Figure(
            "Bank transactions to reconcile",
            str(operations["unreconciled_transactions"]),
            _link(user, "payments.banktransaction", queue="open"),
        ),
        # Alerts of the apps above this one (webhook endpoints the sender disabled, …): core/alerts.py.
        *(Figure(alert.label, alert.value, alert.url, alert.note) for alert in alerts_for(user=user, as_of=as_of)),
    ]
    return {
        "as_of": as_of,
        "refresh": refresh,
        "figures_as_of": figures_as_of,
        "currencies": currencies,
        "panels": panels,
        "operations_figures": operations_figures,
    }
