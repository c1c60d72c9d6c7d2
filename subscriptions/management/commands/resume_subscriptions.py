"""``manage.py resume_subscriptions --as-of DATE``: end every pause whose resume date has come (the daily billing
run does the same before it bills, so a subscription back on its billing day is billed that day)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from core.asof import parse_as_of
from core.commands import BaseCommand
from subscriptions.services import subscriptions_resume_due


class Command(BaseCommand):
    help = "Resume the paused subscriptions (billing or collection) whose resume date is on or before --as-of."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="YYYY-MM-DD; default today in BILLING_TIMEZONE.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_as_of(options["as_of"])
        resumed = subscriptions_resume_due(as_of=as_of)
        ids = ", ".join(f"#{pk}" for pk in resumed) or "none"
        self.stdout.write(f"{as_of}: resumed {len(resumed)} subscription(s): {ids}.")
