"""Reporting's own rows: the results of the integrity check (reporting/integrity.py) and the metrics snapshot
(reporting/metrics.py)."""

from __future__ import annotations

from django.db import models


class IntegrityCheck(models.Model):
    """One run of ``verify_integrity`` (the nightly job or the command): how many rows each check read and every
    broken row it found (model, id, what is wrong, expected and found; the first 1,000 are stored)."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField(help_text="No problem found.")
    problem_count = models.PositiveIntegerField(default=0)
    checked = models.JSONField(default=dict, blank=True, help_text="Rows read per check.")
    problems = models.JSONField(default=list, blank=True)
    triggered_by = models.CharField(max_length=40, help_text="command or schedule")

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["-started_at"], name="integrity_check_started_idx")]

    def __str__(self) -> str:
        outcome = "clean" if self.ok else f"{self.problem_count} problem(s)"
        return f"Integrity check {self.started_at:%Y-%m-%d %H:%M}: {outcome}"


# --- The metrics snapshot (reporting/metrics.py): summary tables rebuilt by the "Metrics refresh" job ----------
# Readers (dashboard, reports, CSV/XLSX) read only these rows, so a report over a million invoices reads a few
# hundred rows. ``metrics_refresh`` replaces every row in one transaction: a reader sees the old snapshot or the
# new one, never half of each. Amounts have invoicing's precision (18 digits, 3 decimals), rounded per currency.


class MetricsRefresh(models.Model):
    """One rebuild of the snapshot: the business date its figures are as of, when it ran and how long."""

    as_of = models.DateField(help_text="Business date (billing timezone) the figures are as of.")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    lines_read = models.PositiveIntegerField(default=0, help_text="Invoice line groups read.")
    open_invoices_read = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Open invoices aged into the receivables snapshot (empty: a refresh before ageing was kept).",
    )
    triggered_by = models.CharField(max_length=40, help_text="command, schedule or demo")

    class Meta:
        ordering = ["-finished_at", "-pk"]
        get_latest_by = "finished_at"

    def __str__(self) -> str:
        return f"Metrics as of {self.as_of.isoformat()} (refreshed {self.finished_at:%Y-%m-%d %H:%M})"


class MrrMonth(models.Model):
    """MRR of one currency in one month and how it moved from the month before (docs/METRICS.md):
    starting + new + reactivation + expansion − contraction − churn = ending, exactly."""

    month = models.DateField(help_text="First day of the month.")
    currency = models.CharField(max_length=3)
    starting_mrr = models.DecimalField(max_digits=18, decimal_places=3)
    new = models.DecimalField(max_digits=18, decimal_places=3)
    reactivation = models.DecimalField(max_digits=18, decimal_places=3)
    expansion = models.DecimalField(max_digits=18, decimal_places=3)
    contraction = models.DecimalField(max_digits=18, decimal_places=3)
    churn = models.DecimalField(max_digits=18, decimal_places=3)
    ending_mrr = models.DecimalField(max_digits=18, decimal_places=3)
    starting_customers = models.PositiveIntegerField()
    ending_customers = models.PositiveIntegerField()
    new_customers = models.PositiveIntegerField()
    reactivation_customers = models.PositiveIntegerField()
    expansion_customers = models.PositiveIntegerField()
    contraction_customers = models.PositiveIntegerField()
    churn_customers = models.PositiveIntegerField()

    class Meta:
        ordering = ["month", "currency"]
        constraints = [models.UniqueConstraint(fields=["month", "currency"], name="mrr_month_unique")]

    def __str__(self) -> str:
        return f"MRR {self.currency} {self.month:%Y-%m}"


class RevenueMonth(models.Model):
    """Net revenue (invoice line net amounts) of recognised invoices of one issue month, currency and product."""

    month = models.DateField(help_text="First day of the issue month.")
    currency = models.CharField(max_length=3)
    product = models.CharField(max_length=200, blank=True, help_text="Empty: lines without a catalog price.")
    invoices = models.PositiveIntegerField()
    net_revenue = models.DecimalField(max_digits=18, decimal_places=3)

    class Meta:
        ordering = ["month", "currency", "product"]
        constraints = [
            models.UniqueConstraint(fields=["month", "currency", "product"], name="revenue_month_unique"),
        ]

    def __str__(self) -> str:
        return f"Revenue {self.currency} {self.month:%Y-%m} {self.product}"


class CohortCell(models.Model):
    """Of the customers whose MRR first became non-zero in ``cohort`` (any currency), how many had MRR
    ``months_since`` months later."""

    cohort = models.DateField(help_text="First day of the month the customers started paying.")
    months_since = models.PositiveSmallIntegerField()
    customers = models.PositiveIntegerField()

    class Meta:
        ordering = ["cohort", "months_since"]
        constraints = [models.UniqueConstraint(fields=["cohort", "months_since"], name="cohort_cell_unique")]

    def __str__(self) -> str:
        return f"Cohort {self.cohort:%Y-%m} +{self.months_since}"


class CustomerAgeing(models.Model):
    """What one customer owes in one currency on the snapshot's as-of date: the amount due (and number) of its
    open invoices per ageing bucket (days past the due date, docs/METRICS.md). Amounts are the exact sums of the
    invoices' ``amount_due`` (rounded when read, per customer or per currency), so the report per customer and
    the dashboard's per-currency figures equal the live aggregate over the open invoices at the refresh. The
    customer's name is copied at the refresh, like every figure here."""

    # No database constraint: a snapshot row never holds up deleting a customer (seed_scale --reset deletes with
    # raw SQL); the next refresh drops what no longer exists.
    customer = models.ForeignKey("customers.Customer", on_delete=models.CASCADE, related_name="+", db_constraint=False)
    customer_name = models.CharField(max_length=200, help_text="The customer's name at the refresh (rows sort by it).")
    currency = models.CharField(max_length=3)
    invoices = models.PositiveIntegerField(help_text="Open invoices.")
    due_current = models.DecimalField(max_digits=18, decimal_places=3, help_text="Not yet due.")
    due_1_30 = models.DecimalField(max_digits=18, decimal_places=3)
    due_31_60 = models.DecimalField(max_digits=18, decimal_places=3)
    due_61_90 = models.DecimalField(max_digits=18, decimal_places=3)
    due_90_plus = models.DecimalField(max_digits=18, decimal_places=3)
    count_current = models.PositiveIntegerField()
    count_1_30 = models.PositiveIntegerField()
    count_31_60 = models.PositiveIntegerField()
    count_61_90 = models.PositiveIntegerField()
    count_90_plus = models.PositiveIntegerField()

    class Meta:
        ordering = ["customer_name", "currency", "customer"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "currency"], name="customer_ageing_unique"),
        ]
        # the report's page: the first 200 rows by name without sorting them all
        indexes = [models.Index(fields=["customer_name", "currency", "customer"], name="customer_ageing_name_idx")]

    def __str__(self) -> str:
        return f"Ageing {self.currency} customer {self.customer_id}"


class ForecastDay(models.Model):
    """One day and currency of the forecast made on ``made_on`` (the "Forecast snapshot" job, reporting/forecast.py):
    kept so that "the forecast made N days ago" can be set beside what happened. Amounts rounded per currency."""

    made_on = models.DateField(help_text="The forecast's as-of date (billing timezone).")
    day = models.DateField()
    currency = models.CharField(max_length=3)
    invoices = models.PositiveIntegerField(default=0)
    net = models.DecimalField(max_digits=18, decimal_places=3, default=0)
    tax = models.DecimalField(max_digits=18, decimal_places=3, default=0)
    total = models.DecimalField(max_digits=18, decimal_places=3, default=0)
    credit = models.DecimalField(max_digits=18, decimal_places=3, default=0)
    charges = models.PositiveIntegerField(default=0)
    reminders = models.PositiveIntegerField(default=0)
    late_fees = models.PositiveIntegerField(default=0)
    cash_in = models.DecimalField(max_digits=18, decimal_places=3, default=0)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["-made_on", "day", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["made_on", "day", "currency"], name="forecast_day_unique"),
        ]

    def __str__(self) -> str:
        return f"Forecast of {self.made_on} for {self.day} ({self.currency})"
