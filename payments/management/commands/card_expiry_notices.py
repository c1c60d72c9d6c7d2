"""``manage.py card_expiry_notices --as-of DATE [--json]``: e-mail customers whose default card expires at the end
of this month or next (once per card and expiry month; the daily "Card expiry notices" job runs the same)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from core.asof import parse_as_of
from core.commands import BaseCommand
from payments.notifications import card_expiry_notices_send


class Command(BaseCommand):
    help = "E-mail customers whose default card expires at the end of this month or next."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="YYYY-MM-DD; default today in BILLING_TIMEZONE.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_as_of(options["as_of"])
        report = card_expiry_notices_send(as_of=as_of)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(
                f"{as_of}: {report.cards} default card(s) expiring this month or next, {report.queued} e-mail(s) "
                f"queued, {report.already_sent} already sent."
            )
        if report.errors:
            raise CommandError("; ".join(report.errors))
