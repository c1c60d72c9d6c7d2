"""Every periodic job of the product, as django-celery-beat entries (``manage.py setup_schedules``).

The table is the single list of what beat runs; docs/decisions/dunning.md and the README show it to people. Daily
jobs run at local times in ``BILLING_TIMEZONE`` (crontabs carry that zone), outside 02:00–03:59 so that a
daylight-saving change never skips or repeats them; each job computes its own "today" with
``core.dates.billing_today()`` and is idempotent, so even a repeated run does nothing twice.

``schedules_setup()`` upserts by name: a missing entry is created; an existing one keeps its time, its
enabled flag and its arguments — whatever staff changed in the admin — and only a task path the code renamed is
corrected. Nothing is ever deleted: an entry of a job whose work moved elsewhere (``RETIRED_JOBS``) is disabled.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction


@dataclass(frozen=True)
class JobSchedule:
    name: str
    task: str
    description: str
    command: str
    daily_at: str = ""  # "HH:MM" local time in BILLING_TIMEZONE, or …
    every_minutes: int = 0  # … an interval

    @property
    def when(self) -> str:
        if self.daily_at:
            return f"daily at {self.daily_at} ({settings.BILLING_TIMEZONE})"
        return f"every {self.every_minutes} minutes"


def job_schedules() -> list[JobSchedule]:
    """The table, with times from settings (read at call time, so tests and deployments can change them)."""
    return [
        JobSchedule(
            name="Billing run",
            task="invoicing.run_billing",
            description="Bill every subscription period due today: invoices, finalized and numbered, then PDFs, "
            "e-mails and automatic charges.",
            command="manage.py billing_run --as-of YYYY-MM-DD [--dry-run] [--async]",
            daily_at=settings.SCHEDULE_BILLING_RUN_AT,
        ),
        JobSchedule(
            name="Progressive billing",
            task="invoicing.progressive_billing",
            description="Invoice at once the usage of subscriptions whose period's usage crossed one of their "
            "thresholds (once per threshold and period); the period's invoice deducts it.",
            command="manage.py progressive_billing --as-of YYYY-MM-DD [--dry-run] [--subscription ID]",
            every_minutes=60,
        ),
        JobSchedule(
            name="Payment retries",
            task="payments.retry_payments",
            description="Retry soft-declined automatic charges that are due today; send unsent failure e-mails.",
            command="(task only) celery -A billing_project call payments.retry_payments",
            daily_at=settings.SCHEDULE_PAYMENT_RETRIES_AT,
        ),
        JobSchedule(
            name="Exchange rates",
            task="accounting.load_exchange_rates",
            description="Load the ECB's euro reference rates of the day (EXCHANGE_RATES_URL) for the journals' "
            "company-currency amounts.",
            command="manage.py load_exchange_rates [--url URL | --file rates.csv]",
            daily_at=settings.SCHEDULE_EXCHANGE_RATES_AT,
        ),
        JobSchedule(
            name="Ledger sync",
            task="accounting.sync_ledger",
            description="Push new customers, invoices, credit notes and payments to the connected Xero / "
            "QuickBooks Online ledgers — only with LEDGER_SYNC_ENABLED. Idempotent and resumable; a rate limit "
            "continues after the provider's Retry-After.",
            command="manage.py sync_ledger --provider xero|quickbooks [--since YYYY-MM-DD]",
            every_minutes=settings.SCHEDULE_LEDGER_SYNC_EVERY_MINUTES,
        ),
        JobSchedule(
            name="VAT number checks",
            task="customers.recheck_vat_numbers",
            description="Ask the EU's VIES about customers' VAT numbers never answered, left unanswered while VIES "
            "was down, or last found valid more than VAT_RECHECK_DAYS ago; each answer is kept as evidence.",
            command="manage.py check_vat_numbers [--customer ID] [--json]",
            daily_at=settings.SCHEDULE_VAT_CHECKS_AT,
        ),
        JobSchedule(
            name="Card expiry notices",
            task="payments.card_expiry_notices",
            description="E-mail customers whose default card expires at the end of this month or next, with a "
            "link to the portal's payment methods — once per card and expiry month.",
            command="manage.py card_expiry_notices --as-of YYYY-MM-DD [--json]",
            daily_at=settings.SCHEDULE_CARD_EXPIRY_NOTICES_AT,
        ),
        JobSchedule(
            name="Wallet credit expiry",
            task="payments.expire_wallet_credits",
            description="Void what is left of prepaid wallet credits whose expiry day has passed (one ledger entry "
            "per grant, never twice), before the billing run consumes credits.",
            command="manage.py expire_wallet_credits --as-of YYYY-MM-DD [--json]",
            daily_at=settings.SCHEDULE_WALLET_EXPIRY_AT,
        ),
        JobSchedule(
            name="Stale work sweeper",
            task="billing_project.sweep_stale",
            description="Work a dead worker left in progress: billing runs without a heartbeat for "
            "BILLING_RUN_STALE_MINUTES are marked interrupted and resumed by a new run; payment attempts stuck "
            "'processing' are re-sent with the same idempotency key; e-mails stuck 'sending' are marked failed "
            "for staff.",
            command="manage.py sweep_stale [--json]",
            every_minutes=10,
        ),
        JobSchedule(
            name="Payment reminders (dunning)",
            task="invoicing.send_reminders",
            description="Apply the dunning steps due today: reminder e-mails, late fees, suspension, "
            "uncollectible — each step once per invoice.",
            command="manage.py send_reminders --as-of YYYY-MM-DD [--dry-run] [--json]",
            daily_at=settings.SCHEDULE_REMINDERS_AT,
        ),
        JobSchedule(
            name="Render missing PDFs",
            task="invoicing.render_missing_pdfs",
            description="Render the PDFs of invoices and credit notes whose stored PDF is missing or stale.",
            command="manage.py render_pdfs --missing",
            every_minutes=settings.SCHEDULE_RENDER_PDFS_EVERY_MINUTES,
        ),
        JobSchedule(
            name="Domain events",
            task="core.process_events",
            description="Run the handlers that have not run yet for domain events older than "
            "DOMAIN_EVENTS_SWEEP_AFTER_MINUTES (credit and collection, then PDF and e-mail of issued invoices; "
            "credit-note credit and e-mail; payment receipts and refund e-mails): their after-commit dispatch was "
            "lost or a handler failed. Each handler once.",
            command="manage.py process_events [--limit N]",
            every_minutes=5,
        ),
        JobSchedule(
            name="E-mail sweep",
            task="invoicing.sweep_emails",
            description="Send customer e-mails still queued after EMAIL_SWEEP_AFTER_MINUTES (the broker was "
            "unreachable, a worker died); mark failed the "
            "e-mails a dead worker left sending (staff check and resend).",
            command="manage.py sweep_emails",
            every_minutes=10,
        ),
        JobSchedule(
            name="API idempotency keys",
            task="api.purge_idempotency_keys",
            description="Delete the stored first responses of API requests with an Idempotency-Key older than "
            "API_IDEMPOTENCY_HOURS (24): such a key no longer replays.",
            command="manage.py purge_idempotency_keys",
            every_minutes=60,
        ),
        JobSchedule(
            name="Webhooks",
            task="webhooks.send_due",
            description="Send the webhook deliveries that are due: retries with exponential backoff for "
            "WEBHOOKS_RETRY_HOURS, first attempts whose task was lost. An endpoint failing for "
            "WEBHOOKS_DISABLE_AFTER_DAYS is disabled and shown on the dashboard.",
            command="manage.py send_webhooks [--limit N]",
            every_minutes=1,
        ),
        JobSchedule(
            name="Integrity check",
            task="reporting.verify_integrity",
            description="Verify the books: gapless numbers, invoice totals, amounts due, the credit ledger, payment "
            "allocation, archived PDF hashes, no period billed twice. The result shows on the admin dashboard.",
            command="manage.py verify_integrity [--json]",
            daily_at=settings.SCHEDULE_INTEGRITY_CHECK_AT,
        ),
        JobSchedule(
            name="Forecast snapshot",
            task="reporting.store_forecast",
            description="Store the summary of today's 90-day forecast (before the billing run), so the forecast "
            "page can set the forecast made N days ago beside what happened.",
            command="manage.py forecast --days 90 --store [--as-of YYYY-MM-DD]",
            daily_at=settings.SCHEDULE_FORECAST_AT,
        ),
        JobSchedule(
            name="Metrics refresh",
            task="reporting.refresh_metrics",
            description="Rebuild the figures the dashboard and the reports show (MRR and its movements, churn, "
            "NRR/GRR, ARPA, cohorts, revenue by month, receivables ageing per customer) from the issued and the open "
            "invoices; the pages show their as-of time and a Refresh now button.",
            command="manage.py refresh_metrics [--as-of YYYY-MM-DD] [--json]",
            every_minutes=settings.SCHEDULE_METRICS_REFRESH_EVERY_MINUTES,
        ),
    ]


# Jobs an earlier release scheduled whose work moved into another job: disabled (never deleted) by
# schedules_setup, so the work does not run twice as often. name → task it had.
RETIRED_JOBS = {"Payment recovery": "payments.recover_attempts"}  # folded into "Stale work sweeper"


@dataclass(frozen=True)
class SetupOutcome:
    name: str
    outcome: str  # created, updated, kept


def _hour_minute(value: str) -> tuple[str, str]:
    hour, minute = value.split(":")
    if not (0 <= int(hour) < 24 and 0 <= int(minute) < 60):
        raise ValueError(f"not a time of day: {value!r}")
    return str(int(hour)), str(int(minute))


@transaction.atomic
def schedules_setup() -> list[SetupOutcome]:
    """Create the beat entries that are missing; leave existing ones as staff left them (see module doc)."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    outcomes = []
    for job in job_schedules():
        existing = PeriodicTask.objects.select_for_update().filter(name=job.name).first()
        if existing is not None:
            if existing.task != job.task:
                existing.task = job.task
                existing.save(update_fields=["task"])
                outcomes.append(SetupOutcome(job.name, "updated"))
            else:
                outcomes.append(SetupOutcome(job.name, "kept"))
            continue
        task = PeriodicTask(name=job.name, task=job.task, description=job.description, kwargs="{}")
        if job.daily_at:
            hour, minute = _hour_minute(job.daily_at)
            crontab_fields = {
                "minute": minute,
                "hour": hour,
                "day_of_week": "*",
                "day_of_month": "*",
                "month_of_year": "*",
                "timezone": settings.BILLING_TIMEZONE,
            }
            crontab = CrontabSchedule.objects.filter(**crontab_fields).order_by("pk").first()
            task.crontab = crontab or CrontabSchedule.objects.create(**crontab_fields)
        else:
            interval_fields = {"every": job.every_minutes, "period": IntervalSchedule.MINUTES}
            interval = IntervalSchedule.objects.filter(**interval_fields).order_by("pk").first()
            task.interval = interval or IntervalSchedule.objects.create(**interval_fields)
        task.save()
        outcomes.append(SetupOutcome(job.name, "created"))
    for name, task_name in RETIRED_JOBS.items():
        if PeriodicTask.objects.filter(name=name, task=task_name, enabled=True).update(enabled=False):
            outcomes.append(SetupOutcome(name, "retired"))
    return outcomes
