from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from core.asof import parse_as_of
from core.commands import BaseCommand
from reporting.forecast import UNKNOWABLE, forecast_cached, forecast_store


class Command(BaseCommand):
    help = (
        "What the billing run, the payment retries and the reminders will do in the next --days days from --as-of "
        "(default: today in BILLING_TIMEZONE), per day and currency, computed with their own code; writes nothing. "
        "--store keeps the summary for the forecast-vs-actual comparison (the 'Forecast snapshot' job)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=30, help="The horizon in days (1–366; default 30).")
        parser.add_argument("--as-of", help="YYYY-MM-DD; the first day of the forecast.")
        parser.add_argument("--json", action="store_true", help="Print the forecast as JSON.")
        parser.add_argument("--store", action="store_true", help="Store the summary (replacing today's, if any).")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_as_of(options["as_of"])  # a bad date: CommandError naming --as-of (core.commands)
        days = options["days"]
        if options["store"]:
            stored = forecast_store(as_of=as_of, days=days)
            self.stdout.write(f"Stored the {days}-day forecast as of {as_of}: {stored} day row(s).")
        forecast = forecast_cached(days=days, as_of=as_of)
        if options["json"]:
            self.stdout.write(json.dumps(forecast.as_dict()))
            return
        self.stdout.write(
            f"Forecast {forecast.as_of} – {forecast.last_day} ({days} days), computed "
            f"{forecast.computed_at:%Y-%m-%d %H:%M}:"
        )
        for row in forecast.rows:
            self.stdout.write(
                f"{row.day} {row.currency}: {row.invoices} invoice(s) {row.total}, credit {row.credit}, "
                f"{row.charges} charge(s) {row.charges_amount}, {row.reminders} reminder(s), "
                f"{row.late_fees} late fee(s), cash in {row.cash_in}"
            )
        for currency, total in forecast.totals().items():
            self.stdout.write(
                self.style.SUCCESS(
                    f"Total {currency}: {total.invoices} invoice(s) {total.total}, {total.charges} charge(s), "
                    f"{total.reminders} reminder(s), cash in {total.cash_in}"
                )
            )
        self.stdout.write("Not known to a forecast: " + "; ".join(UNKNOWABLE) + ".")
