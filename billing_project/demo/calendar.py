"""Run the demo's calendar up to today: each billing date gets its own run (so invoices carry the dates they
would have had), then today's reminders — exactly what the daily beat tasks would have done."""

from __future__ import annotations

from django.db.models import Min

from billing_project.lib.dates import billing_today
from invoicing.billing_run import billing_run
from invoicing.dunning import send_reminders
from subscriptions.models import Subscription, SubscriptionStatus


def bill_up_to_today() -> int:
    today = billing_today()
    invoices = 0
    while True:
        next_date = (
            Subscription.objects.filter(next_billing_date__lte=today)
            .exclude(status=SubscriptionStatus.PAUSED)
            .aggregate(first=Min("next_billing_date"))["first"]
        )
        if next_date is None:
            break
        run = billing_run(as_of=next_date)
        invoices += run.invoices_created + run.drafts_created
        if run.invoices_created + run.drafts_created == 0 and run.failed:
            break  # nothing can move on (the errors are on the run, in the admin)
    send_reminders(as_of=today)
    return invoices
