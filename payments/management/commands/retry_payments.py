"""``manage.py retry_payments --as-of DATE [--json]``: retry soft-declined automatic charges whose retry date has
come, re-send attempts a crash left processing, and send payment-failed e-mails that were not sent."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from core.asof import parse_as_of
from core.commands import BaseCommand
from payments.services import payment_attempts_retry_due


class Command(BaseCommand):
    help = "Retry failed automatic payments that are due (soft declines only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="YYYY-MM-DD; default today in BILLING_TIMEZONE.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_as_of(options["as_of"])  # a bad date: CommandError naming --as-of (core.commands)
        report = payment_attempts_retry_due(as_of=as_of)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(
                f"{as_of}: {report.retried} retried ({report.succeeded} succeeded, {report.failed} failed), "
                f"{report.skipped} no longer due, {report.recovered} recovered, "
                f"{report.first_charges} missed first charges made, {report.notified} e-mails sent."
            )
        if report.errors:
            raise CommandError("; ".join(report.errors))
