from __future__ import annotations

import csv
import json
from typing import Any

from core.commands import BaseCommand
from reporting.oss import oss_rows, quarter_range

COLUMNS = (
    "member_state",
    "currency",
    "tax_category",
    "tax_percentage",
    "invoices",
    "invoiced_taxable",
    "invoiced_tax",
    "credited_taxable",
    "credited_tax",
    "taxable",
    "tax",
    "evidence_missing",
)


class Command(BaseCommand):
    help = (
        "The EU OSS return of a quarter: per member state of consumption and VAT rate, the taxable amount and VAT "
        "of sales to consumers in other EU countries, minus credit notes, in euros (ECB rate of the quarter's last "
        "day), and how many invoices lack two agreeing pieces of location evidence. CSV on stdout, or --json."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--quarter", required=True, help="The quarter, e.g. 2026-Q3.")
        parser.add_argument("--json", action="store_true", help="Print the rows as JSON.")

    def handle(self, *args: Any, quarter: str, **options: Any) -> None:
        date_from, date_to = quarter_range(quarter)
        rows = oss_rows(date_from=date_from, date_to=date_to)
        if options["json"]:
            payload = {
                "quarter": quarter.upper(),
                "date_from": date_from.isoformat(),
                "date_to": date_to.isoformat(),
                "rows": [{key: str(row[key]) for key in COLUMNS} for row in rows],
            }
            self.stdout.write(json.dumps(payload, indent=2))
            return
        writer = csv.writer(self.stdout, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row[key] for key in COLUMNS])
