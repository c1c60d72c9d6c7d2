"""Run the demo's calendar up to today: each billing date gets its own run (so invoices carry the dates they
would have had, in number order), then today's reminders — what the daily beat tasks would have done."""

from __future__ import annotations

from django.db.models import Min

from billing_project.lib.dates import billing_today
from invoicing.billing_run import billing_run
from invoicing.dunning import send_reminders
from subscriptions.models import Subscription, SubscriptionStatus


def bill_up_to_today() -> int:
    today = billing_today()
    invoices = 0
    failed: set[int] = set()
    while True:
        next_date = (
            Subscription.objects.filter(next_billing_date__lte=today)
            .exclude(status=SubscriptionStatus.PAUSED)
            .exclude(pk__in=failed)
            .aggregate(first=Min("next_billing_date"))["first"]
        )
        if next_date is None:
            break
        run = billing_run(as_of=next_date)
        invoices += run.invoices_created + run.drafts_created
        # A subscription that fails stays due; leave it (its error is on the run, in the admin) and go on.
        failed.update(pk for pk in run.errors.values_list("subscription_id", flat=True) if pk is not None)
    return invoices


def remind_today() -> int:
    """Today's dunning run, after the demo's payments are in (so paid invoices are not chased)."""
    return send_reminders(as_of=billing_today()).emails
