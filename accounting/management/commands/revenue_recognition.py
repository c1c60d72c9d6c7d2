from __future__ import annotations

import csv
import json
from typing import Any

from accounting.recognition import recognition_report
from core.asof import parse_date_option
from core.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Revenue recognition per month, currency and product: invoiced, recognised, deferred and unbilled at the "
        "month's end (net of tax; docs/decisions/revenue-recognition.md). CSV on standard output, or --json."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--from", dest="date_from", required=True, help="A day of the first month, YYYY-MM-DD.")
        parser.add_argument("--to", dest="date_to", required=True, help="A day of the last month, YYYY-MM-DD.")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, date_from: str, date_to: str, json: bool = False, **options: Any) -> None:
        start, end = parse_date_option(date_from, option="--from"), parse_date_option(date_to, option="--to")
        rows = recognition_report(date_from=start, date_to=end)
        fields = ("month", "currency", "product", "invoiced", "recognised", "deferred", "unbilled")
        if json:
            self.stdout.write(
                _json.dumps([{name: str(getattr(row, name)) for name in fields} for row in rows], indent=1)
            )
            return
        writer = csv.writer(self.stdout)
        writer.writerow(fields)
        for row in rows:
            writer.writerow([getattr(row, name) for name in fields])


_json = json
