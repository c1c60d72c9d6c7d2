"""``manage.py expire_wallet_credits --as-of DATE [--json]``: void what is left of wallet grants whose expiry day lies
before the as-of date (the daily "Wallet credit expiry" job runs the same; docs/decisions/wallets.md)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from core.asof import parse_as_of
from core.commands import BaseCommand
from payments.wallets import wallet_credits_expire


class Command(BaseCommand):
    help = "Void the unused part of wallet credit grants whose expiry day has passed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="YYYY-MM-DD; default today in BILLING_TIMEZONE.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_as_of(options["as_of"])
        report = wallet_credits_expire(as_of=as_of)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            voided = ", ".join(f"{amount} {currency}" for currency, amount in sorted(report.amounts.items()))
            self.stdout.write(f"{as_of}: {report.grants} grant(s) expired, {voided or 'nothing'} voided.")
        if report.errors:
            raise CommandError("; ".join(report.errors))
