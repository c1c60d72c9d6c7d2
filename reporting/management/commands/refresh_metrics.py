from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from core.asof import parse_date_option
from core.commands import BaseCommand
from reporting.metrics import metrics_refresh


class Command(BaseCommand):
    help = (
        "Rebuild the metrics snapshot the dashboard, the reports and their downloads read (MRR and its movements, "
        "churn, NRR/GRR, ARPA, cohorts, revenue by month, receivables ageing) from the issued and the open "
        "invoices. Safe to run at any time."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="Business date of the figures, YYYY-MM-DD (default: today).")
        parser.add_argument("--json", action="store_true", help="Print the outcome as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        as_of = parse_date_option(options["as_of"], option="--as-of") if options["as_of"] else None
        refresh = metrics_refresh(as_of=as_of, triggered_by="command")
        seconds = (refresh.finished_at - refresh.started_at).total_seconds()
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "as_of": refresh.as_of.isoformat(),
                        "seconds": seconds,
                        "lines_read": refresh.lines_read,
                        "open_invoices_read": refresh.open_invoices_read,
                    }
                )
            )
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Metrics as of {refresh.as_of.isoformat()} rebuilt in {seconds:.1f} s "
                    f"({refresh.lines_read:,} recurring line groups, {refresh.open_invoices_read or 0:,} open invoices "
                    "read)."
                )
            )
