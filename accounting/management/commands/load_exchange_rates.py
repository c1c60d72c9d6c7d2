from __future__ import annotations

from pathlib import Path
from typing import Any

from accounting.rates import ecb_load, rates_import_csv
from core.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Load exchange rates (1 EUR = rate currency): the ECB reference rates from EXCHANGE_RATES_URL or --url, or "
        "a CSV file with the columns date,currency,rate for offline use (all rows or none)."
    )

    def add_arguments(self, parser: Any) -> None:
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--url", help="An ECB eurofxref XML file (daily, 90 days or history).")
        source.add_argument("--file", help="A CSV file: date,currency,rate (YYYY-MM-DD, ISO code, 1 EUR = rate).")

    def handle(self, *args: Any, url: str | None = None, file: str | None = None, **options: Any) -> None:
        if file:
            count = rates_import_csv(Path(file).read_text(encoding="utf-8"))
            self.stdout.write(f"Imported {count} exchange rate(s) from {file}.")
        else:
            count = ecb_load(url=url)
            self.stdout.write(f"Loaded {count} ECB exchange rate(s).")
