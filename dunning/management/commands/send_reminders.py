from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from core.asof import parse_as_of
from core.commands import BaseCommand
from dunning.services import send_reminders


class Command(BaseCommand):
    help = (
        "Apply the dunning steps (reminder e-mails, late fees, suspension, uncollectible) due on or before --as-of "
        "(default: today in BILLING_TIMEZONE). Each step happens once per invoice, however often this runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="YYYY-MM-DD; steps due on or before this date are applied.")
        parser.add_argument("--dry-run", action="store_true", help="Show what would happen; write and send nothing.")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_as_of(options["as_of"])  # a bad date: CommandError naming --as-of (core.commands)
        result = send_reminders(as_of=as_of, dry_run=options["dry_run"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict()))
            return
        prefix = "Dry run as of" if result.dry_run else "Reminders as of"
        verb = "would send" if result.dry_run else "sent"
        summary = result.as_dict()["outcomes"]
        other = ", ".join(
            f"{count} {outcome}" for outcome, count in summary.items() if outcome not in ("sent", "would_send")
        )
        line = (
            f"{prefix} {as_of}: {result.invoices_seen} invoice(s) looked at, {verb} {result.emails} e-mail(s)"
            f"{', ' + other if other else ''}."
        )
        for step in result.steps:
            if step.outcome == "failed":
                self.stderr.write(f"invoice {step.invoice_number}, step {step.step_id}: {step.detail}")
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(self.style.WARNING(line) if result.failed else self.style.SUCCESS(line))
