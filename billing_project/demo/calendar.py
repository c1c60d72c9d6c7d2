"""Run the demo's calendar up to today: each billing date gets its own run (so invoices carry the dates they
would have had, in number order), then today's reminders — what the daily beat tasks would have done."""

from __future__ import annotations

import datetime as dt

from django.db.models import Min
from django.test.utils import override_settings

from billing_project.demo.clock import on_day
from core.dates import billing_today
from dunning.services import send_reminders
from invoicing.billing_run import billing_run
from subscriptions.models import Subscription, SubscriptionStatus


def bill_up_to_today() -> int:
    return bill_through(billing_today())


def bill_through(day: dt.date, *, quiet_before: dt.date | None = None) -> int:
    """Run the billing for every date that fell due up to ``day``, oldest first; returns the invoices created.
    Runs for dates before ``quiet_before`` skip the after-finalize hooks (no e-mail, PDF or charge for
    invoices of long ago; ``seed_demo`` renders their PDFs at its end) and run with the clock on their date."""
    invoices = 0
    failed: set[int] = set()
    while True:
        next_date = (
            Subscription.objects.filter(next_billing_date__lte=day)
            .exclude(status=SubscriptionStatus.PAUSED)
            .exclude(pk__in=failed)
            .aggregate(first=Min("next_billing_date"))["first"]
        )
        if next_date is None:
            return invoices
        quiet = quiet_before is not None and next_date < quiet_before
        if quiet:
            with override_settings(BILLING_AFTER_FINALIZE_HOOKS=False), on_day(next_date, dt.time(5)):
                run = billing_run(as_of=next_date)
        else:
            run = billing_run(as_of=next_date)
        invoices += run.invoices_created + run.drafts_created
        # A subscription that fails stays due; leave it (its error is on the run, in the admin) and go on.
        failed.update(pk for pk in run.errors.values_list("subscription_id", flat=True) if pk is not None)


def remind_today() -> int:
    """Today's dunning run, after the demo's payments are in (so paid invoices are not chased)."""
    return send_reminders(as_of=billing_today()).emails
