"""The figures of the admin home dashboard (docs/METRICS.md defines each one).

Selectors only: every figure is one aggregate query (grouped by currency where it is money), never a query per
row, so the page costs the same with ten invoices or ten million. Amounts are never added across currencies.
Each figure carries the URL of the admin changelist behind it, built only from filters that admin offers (or
plain field lookups, which the admin always accepts)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Case, CharField, Count, F, Model, OuterRef, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import TruncMonth
from django.urls import reverse
from django.utils import timezone

from core.alerts import alerts_for
from core.dates import billing_tz
from core.money import round_amount
from core.queries import counts
from invoicing.models import BillingRun, BillingRunStatus, Invoice, InvoiceStatus
from notifications.models import EmailAddressStatus, EmailStatus, OutboundEmail
from payments.models import QUEUE_STATUSES, AttemptStatus, BankTransaction, PaymentAttempt
from reporting.charts import Bar, bar_chart
from reporting.models import IntegrityCheck
from subscriptions.models import Interval, PriceTier, Subscription, SubscriptionItem, SubscriptionStatus, UsageType
from subscriptions.pricing import Tier, full_amount, price_parts

ZERO = Decimal(0)
MRR_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
# Months per interval: a price billed every ``interval_count`` intervals contributes amount / (months × count).
MONTHS_PER_INTERVAL: Mapping[str, Decimal] = {
    Interval.DAY: Decimal(12) / Decimal(365),
    Interval.WEEK: Decimal(12) / Decimal(52),
    Interval.MONTH: Decimal(1),
    Interval.YEAR: Decimal(12),
}
AGEING_BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")
AGEING_LABELS = {"current": "Current", "1-30": "1–30", "31-60": "31–60", "61-90": "61–90", "90+": "90+"}


def changelist_url(model_label: str, **params: object) -> str:
    """``admin:<app>_<model>_changelist`` with query parameters (dates in ISO form)."""
    app_label, model_name = model_label.split(".")
    url = reverse(f"admin:{app_label}_{model_name}_changelist")
    query = urlencode(
        {key: value.isoformat() if isinstance(value, dt.date) else value for key, value in params.items()}
    )
    return f"{url}?{query}" if query else url


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(first_of_month: dt.date, months: int) -> dt.date:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


# --- MRR ------------------------------------------------------------------------------------------------


def monthly_amount(*, amount: Decimal, interval: str, interval_count: int) -> Decimal:
    """``amount`` billed every ``interval_count`` × ``interval``, per month (unrounded)."""
    return amount / (MONTHS_PER_INTERVAL[interval] * interval_count)


def mrr_by_currency(*, as_of: dt.date) -> dict[str, Decimal]:
    """Monthly recurring revenue per currency: the live licensed items of active and past-due subscriptions,
    each priced as the billing run would price its quantity (flat, per unit, package, graduated, volume),
    normalised to a month and rounded once per currency. Metered usage, discounts and taxes are left out."""
    items = list(
        SubscriptionItem.objects.filter(subscription__status__in=MRR_STATUSES, price__usage_type=UsageType.LICENSED)
        .filter(Q(removed_on__isnull=True) | Q(removed_on__gt=as_of))
        .select_related("price")
        .only(
            "quantity",
            "price__unit_amount",
            "price__unit_amount_currency",
            "price__pricing_model",
            "price__package_size",
            "price__interval",
            "price__interval_count",
        )
    )
    tiered = {item.price_id for item in items if item.price.is_tiered}
    tiers: dict[int, list[Tier]] = defaultdict(list)
    if tiered:  # one more query, only when some live item has a tiered price
        for tier in PriceTier.objects.filter(price_id__in=tiered):  # Meta.ordering: by up_to, open end last
            tiers[tier.price_id].append(Tier(tier.up_to, tier.unit_amount, tier.flat_amount))
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for item in items:
        price = item.price
        amount = full_amount(
            price_parts(
                pricing_model=price.pricing_model,
                unit_amount=price.unit_amount.amount,
                quantity=Decimal(item.quantity),
                tiers=tiers.get(price.pk, []),
                package_size=price.package_size,
            )
        )
        totals[price.currency] += monthly_amount(
            amount=amount, interval=price.interval, interval_count=price.interval_count
        )
    return {currency: round_amount(total, currency) for currency, total in sorted(totals.items())}


# --- Subscriptions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionCounts:
    active: int
    active_at_month_start: int
    new_this_month: int
    churned_this_month: int
    churned_of_month_start: int  # of those active at the start of the month

    @property
    def churn_rate(self) -> Decimal | None:
        """Share of the subscriptions active at the start of the month that churned during it, in percent
        (None without a base). Subscriptions started and ended within the month count as churned, not here."""
        if not self.active_at_month_start:
            return None
        return (Decimal(self.churned_of_month_start) * 100 / self.active_at_month_start).quantize(Decimal("0.1"))


def subscription_counts(*, as_of: dt.date) -> SubscriptionCounts:
    first = month_start(as_of)
    following = add_months(first, 1)
    ended = [SubscriptionStatus.CANCELED, SubscriptionStatus.ENDED]
    at_month_start = (
        Q(start_date__lt=first)
        & ~Q(status=SubscriptionStatus.TRIALING)
        & (Q(ended_at__isnull=True) | Q(ended_at__gte=first))
    )
    churned = Q(status__in=ended, ended_at__gte=first, ended_at__lt=following)
    figures = Subscription.objects.aggregate(
        active=Count("pk", filter=Q(status__in=MRR_STATUSES)),
        active_at_month_start=Count("pk", filter=at_month_start),
        new_this_month=Count("pk", filter=Q(start_date__gte=first, start_date__lt=following)),
        churned_this_month=Count("pk", filter=churned),
        churned_of_month_start=Count("pk", filter=churned & at_month_start),
    )
    return SubscriptionCounts(**figures)


# --- Revenue --------------------------------------------------------------------------------------------


def recognised_invoices() -> QuerySet[Invoice]:
    """Invoices whose amounts count as revenue: finalized and not void (open, paid, uncollectible)."""
    return Invoice.objects.finalized().exclude(status=InvoiceStatus.VOID)


RECOGNISED_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)


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


def revenue_by_month(*, as_of: dt.date, months: int = 12) -> dict[str, list[tuple[dt.date, Decimal]]]:
    """Per currency, the net amount (total − tax) of recognised invoices per issue month, for the ``months``
    months up to and including ``as_of``'s month (months without invoices are zero)."""
    first = add_months(month_start(as_of), -(months - 1))
    following = add_months(month_start(as_of), 1)
    rows = (
        recognised_invoices()
        .filter(issue_date__gte=first, issue_date__lt=following)
        .annotate(month=TruncMonth("issue_date"))
        .values("currency", "month")
        .annotate(net=Sum(F("total") - F("tax_total")))
        .order_by("currency", "month")
    )
    sums: dict[str, dict[dt.date, Decimal]] = defaultdict(dict)
    for row in rows:
        month = row["month"].date() if isinstance(row["month"], dt.datetime) else row["month"]
        sums[row["currency"]][month] = round_amount(row["net"], row["currency"])
    calendar = [add_months(first, offset) for offset in range(months)]
    return {
        currency: [(month, by_month.get(month, round_amount(ZERO, currency))) for month in calendar]
        for currency, by_month in sorted(sums.items())
    }


# --- Receivables ----------------------------------------------------------------------------------------


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
    def overdue_amount(self) -> Decimal:
        return sum((self.amounts[b] for b in AGEING_BUCKETS if b != "current"), round_amount(ZERO, self.currency))

    @property
    def overdue_count(self) -> int:
        return sum(self.counts[b] for b in AGEING_BUCKETS if b != "current")


def receivables_ageing(*, as_of: dt.date) -> dict[str, Ageing]:
    """Amount due (and count) of open invoices per currency and ageing bucket. Uncollectible invoices are
    written off and left out."""
    rows = (
        Invoice.objects.filter(status=InvoiceStatus.OPEN)
        .annotate(bucket=ageing_bucket(as_of=as_of))
        .values("currency", "bucket")
        .annotate(amount=Sum("amount_due"), count=Count("pk"))
        .order_by()
    )
    result: dict[str, Ageing] = {}
    for row in rows:
        currency = row["currency"]
        if currency not in result:
            zero = round_amount(ZERO, currency)
            result[currency] = Ageing(currency, dict.fromkeys(AGEING_BUCKETS, zero), dict.fromkeys(AGEING_BUCKETS, 0))
        result[currency].amounts[row["bucket"]] = round_amount(row["amount"], currency)
        result[currency].counts[row["bucket"]] = row["count"]
    return dict(sorted(result.items()))


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
    return f"{amount:,} {currency}"


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


def dashboard_context(*, as_of: dt.date, user: Viewer) -> dict[str, object]:
    """Everything ``templates/admin/index.html`` shows above the app list."""
    first = month_start(as_of)
    following = add_months(first, 1)
    live = ",".join(MRR_STATUSES)

    mrr = mrr_by_currency(as_of=as_of)
    mrr_figures = [
        Figure(
            f"MRR {currency}",
            format_amount(amount, currency),
            _link(user, "subscriptions.subscription", status__in=live, currency__exact=currency),
            f"ARR {format_amount(amount * 12, currency)}",
        )
        for currency, amount in sorted(mrr.items(), key=lambda item: _house_first(item[0]))
    ]

    counts = subscription_counts(as_of=as_of)
    churn = f"churn {counts.churn_rate} %" if counts.churn_rate is not None else ""
    subscription_figures = [
        Figure("Active subscriptions", str(counts.active), _link(user, "subscriptions.subscription", status__in=live)),
        Figure(
            "New this month",
            str(counts.new_this_month),
            _link(user, "subscriptions.subscription", start_date__gte=first, start_date__lt=following),
        ),
        Figure(
            "Churned this month",
            str(counts.churned_this_month),
            _link(
                user,
                "subscriptions.subscription",
                status__in="canceled,ended",
                ended_at__gte=first,
                ended_at__lt=following,
            ),
            churn,
        ),
    ]

    ageing = receivables_ageing(as_of=as_of)
    overdue_figures = [
        Figure(
            f"Overdue {currency}",
            f"{bucketed.overdue_count} · {format_amount(bucketed.overdue_amount, currency)}",
            _link(user, "invoicing.invoice", status__exact="open", currency__exact=currency, due_date__lt=as_of),
        )
        for currency, bucketed in sorted(ageing.items(), key=lambda item: _house_first(item[0]))
        if bucketed.overdue_count
    ]
    ageing_charts = [
        bar_chart(
            title=f"Receivables ageing {currency}, days past due on {as_of.isoformat()}",
            label_width=64,
            bars=[
                Bar(AGEING_LABELS[bucket], bucketed.amounts[bucket], format_amount(bucketed.amounts[bucket], currency))
                for bucket in AGEING_BUCKETS
            ],
        )
        for currency, bucketed in ageing.items()
    ]
    ageing_links = {
        currency: [
            (AGEING_LABELS[bucket], bucketed.counts[bucket], _ageing_link(user, currency, bucket, as_of))
            for bucket in AGEING_BUCKETS
        ]
        for currency, bucketed in ageing.items()
    }

    revenue = revenue_by_month(as_of=as_of)
    revenue_charts = [
        bar_chart(
            title=f"Revenue {currency} by issue month (net, finalized invoices)",
            label_width=64,
            bars=[Bar(month.strftime("%b %Y"), amount, format_amount(amount, currency)) for month, amount in months],
        )
        for currency, months in revenue.items()
    ]
    revenue_links = {
        currency: [
            (
                month.strftime("%b %Y"),
                _link(
                    user,
                    "invoicing.invoice",
                    status__in="open,paid,uncollectible",
                    currency__exact=currency,
                    issue_date__gte=month,
                    issue_date__lt=add_months(month, 1),
                ),
            )
            for month, _amount in months
        ]
        for currency, months in revenue.items()
    }

    run = last_billing_run()
    operations = operations_counts(as_of=as_of)
    check = last_integrity_check()
    operations_figures = [
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
    ageing_charts_by = [
        {"currency": currency, "chart": chart, "links": ageing_links[currency]}
        for currency, chart in zip(ageing.keys(), ageing_charts, strict=True)
    ]
    revenue_charts_by = [
        {"currency": currency, "chart": chart, "links": revenue_links[currency]}
        for currency, chart in zip(revenue.keys(), revenue_charts, strict=True)
    ]
    return {
        "as_of": as_of,
        "mrr_figures": mrr_figures,
        "subscription_figures": subscription_figures,
        "overdue_figures": overdue_figures,
        "ageing_charts": ageing_charts_by,
        "revenue_charts": revenue_charts_by,
        "operations_figures": operations_figures,
        # one panel per currency: its revenue chart beside its ageing chart
        "currency_panels": [
            {
                "currency": currency,
                "revenue": next((c for c in revenue_charts_by if c["currency"] == currency), None),
                "ageing": next((c for c in ageing_charts_by if c["currency"] == currency), None),
            }
            for currency in sorted(set(revenue) | set(ageing), key=_house_first)
        ],
    }


def _house_first(currency: str) -> tuple[bool, str]:
    """Sort key: the house currency (``DEFAULT_CURRENCY``) first, then the others by code."""
    return (currency != settings.DEFAULT_CURRENCY, currency)


def _ageing_link(user: Viewer, currency: str, bucket: str, as_of: dt.date) -> str | None:
    lookups = bucket_lookups(as_of)[bucket]
    return _link(user, "invoicing.invoice", status__exact="open", currency__exact=currency, **lookups)
