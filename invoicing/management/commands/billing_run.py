from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from core.asof import parse_as_of
from core.commands import BaseCommand
from core.progress import progress_bar
from customers.models import Customer
from invoicing.billing_run import DISPATCH_CELERY, DISPATCH_INLINE, billing_run
from invoicing.billing_tasks import billing_run_async
from subscriptions.models import Subscription
from subscriptions.selectors import subscription_ids_due


class Command(BaseCommand):
    help = (
        "Bill every subscription period due on or before --as-of (default: today in BILLING_TIMEZONE). "
        "Chunks are billed in this process, or by the Celery workers with --async."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="YYYY-MM-DD; periods due on or before this date are billed.")
        parser.add_argument("--dry-run", action="store_true", help="Show what would be billed; write nothing.")
        parser.add_argument("--customer", type=int, help="Only this customer's subscriptions (customer id).")
        parser.add_argument("--subscription", type=int, help="Only this subscription (subscription id).")
        parser.add_argument("--async", dest="use_celery", action="store_true", help="Hand the chunks to workers.")
        parser.add_argument("--chunk-size", type=int, help="Subscriptions per chunk (default BILLING_RUN_CHUNK_SIZE).")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_as_of(options["as_of"])  # a bad date: CommandError naming --as-of (core.commands)
        customer_id = options["customer"]
        if customer_id is not None and not Customer.objects.filter(pk=customer_id).exists():
            raise CommandError(f"--customer: no customer with id {customer_id}")
        subscription_id = options["subscription"]
        if subscription_id is not None and not Subscription.objects.filter(pk=subscription_id).exists():
            raise CommandError(f"--subscription: no subscription with id {subscription_id}")
        if subscription_id is not None and options["use_celery"]:
            raise CommandError("--subscription bills one subscription here; leave out --async")
        if options["chunk_size"] is not None and options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1")
        dispatch = DISPATCH_CELERY if options["use_celery"] else DISPATCH_INLINE
        total = len(subscription_ids_due(as_of=as_of, customer_id=customer_id, subscription_id=subscription_id))
        with progress_bar(total=total, description=f"Billing up to {as_of}", stream=self.stderr._out) as bar:
            if dispatch == DISPATCH_CELERY and not options["dry_run"]:
                run = billing_run_async(as_of=as_of, customer_id=customer_id, chunk_size=options["chunk_size"])
            else:
                run = billing_run(
                    as_of=as_of,
                    dry_run=options["dry_run"],
                    customer_id=customer_id,
                    chunk_size=options["chunk_size"],
                    on_progress=bar.update,
                    subscription_id=subscription_id,
                )
        result = {
            "run": run.pk,
            "as_of": as_of.isoformat(),
            "dry_run": run.dry_run,
            "dispatch": dispatch,
            "status": run.status,
            "subscriptions": run.subscriptions_seen,
            "invoices": run.invoices_created,
            "drafts": run.drafts_created,
            "failed": run.failed,
            "totals": run.totals,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        if dispatch == DISPATCH_CELERY and not run.dry_run:
            self.stdout.write(
                f"Billing run {run.pk} as of {as_of}: {run.subscriptions_seen} subscription(s) in "
                f"{run.chunks_total} chunk(s) handed to the workers."
            )
            return
        totals = ", ".join(f"{amount} {currency}" for currency, amount in run.totals.items()) or "nothing"
        prefix = "Dry run as of" if run.dry_run else f"Billing run {run.pk} as of"
        verb = "would issue" if run.dry_run else "issued"
        line = (
            f"{prefix} {as_of}: {run.subscriptions_seen} subscription(s) due, {verb} {run.invoices_created} "
            f"invoice(s) ({totals}), {run.drafts_created} draft(s) held for review, {run.failed} failed."
        )
        self.stdout.write(self.style.WARNING(line) if run.failed else self.style.SUCCESS(line))
