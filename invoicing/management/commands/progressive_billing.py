from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from core.asof import parse_as_of
from core.commands import BaseCommand
from invoicing.progressive import progressive_billing_run
from subscriptions.models import Subscription


class Command(BaseCommand):
    help = (
        "Progressive billing: invoice at once the usage of subscriptions whose current period's usage crossed one "
        "of their thresholds as of --as-of (default: today in BILLING_TIMEZONE; that day's usage included). "
        "Each threshold is billed once per period; the period's invoice deducts it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="YYYY-MM-DD; usage up to and including this date counts.")
        parser.add_argument("--dry-run", action="store_true", help="Show what would be invoiced; write nothing.")
        parser.add_argument("--subscription", type=int, help="Only this subscription (subscription id).")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_as_of(options["as_of"])  # a bad date: CommandError naming --as-of (core.commands)
        subscription_id = options["subscription"]
        if subscription_id is not None and not Subscription.objects.filter(pk=subscription_id).exists():
            raise CommandError(f"--subscription: no subscription with id {subscription_id}")
        outcome = progressive_billing_run(as_of=as_of, dry_run=options["dry_run"], subscription_id=subscription_id)
        if options["json"]:
            result = {
                "as_of": as_of.isoformat(),
                "dry_run": outcome.dry_run,
                "checked": outcome.checked,
                "invoices": [
                    {
                        "subscription": entry.subscription_id,
                        "threshold": f"{entry.threshold:f}",
                        "currency": entry.currency,
                        "total": f"{entry.total:f}",
                        "invoice": entry.invoice.number if entry.invoice is not None else None,
                    }
                    for entry in outcome.issued
                ],
                "held": [
                    {"subscription": entry.subscription_id, "reason": entry.held_reason} for entry in outcome.held
                ],
            }
            self.stdout.write(json.dumps(result, indent=2))
            return
        for entry in outcome.issued:
            number = entry.invoice.number if entry.invoice is not None else "(dry run)"
            self.stdout.write(
                f"subscription {entry.subscription_id}: usage over {entry.threshold:f} {entry.currency} → "
                f"invoice {number}, {entry.total:f} {entry.currency}"
            )
        for entry in outcome.held:
            self.stdout.write(f"subscription {entry.subscription_id}: not invoiced now — {entry.held_reason}")
        self.stdout.write(outcome.summary())
