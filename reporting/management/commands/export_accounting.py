from __future__ import annotations

import os
import tempfile
from typing import Any

from django.core.management.base import CommandError

from core.asof import parse_date_option
from core.commands import BaseCommand
from reporting.exports import ExportError, ExportFormat, accounting_export_write, export_encoding


class Command(BaseCommand):
    help = (
        "Export the invoices, credit notes and payments of a period (both dates included) as a plain CSV, a "
        "double-entry journal, a Xero sales invoice import file, the monthly revenue recognition entries, or DATEV's "
        "Buchungsstapel and Debitoren files (Windows-1252)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--from", dest="date_from", required=True, help="First day, YYYY-MM-DD.")
        parser.add_argument("--to", dest="date_to", required=True, help="Last day (included), YYYY-MM-DD.")
        parser.add_argument(
            "--format",
            dest="export_format",
            choices=[value for value in ExportFormat.values if value != ExportFormat.EINVOICES],
            default=ExportFormat.CSV,
            help="CSV formats; the e-invoices of a period: manage.py export_einvoices.",
        )
        parser.add_argument("--output", help="File to write; without it the CSV goes to standard output.")

    def handle(
        self,
        *args: Any,
        date_from: str,
        date_to: str,
        export_format: str,
        output: str | None = None,
        **options: Any,
    ) -> None:
        start, end = parse_date_option(date_from, option="--from"), parse_date_option(date_to, option="--to")
        if output is None:
            try:
                summary = accounting_export_write(
                    out=self.stdout, export_format=export_format, date_from=start, date_to=end, exported_by="manage.py"
                )
            except ExportError as exc:
                raise CommandError(str(exc)) from exc
            self.stderr.write(f"Exported {summary}.")
            return
        # Written next to the target and renamed into place: a failed export never leaves half a file behind.
        directory = os.path.dirname(os.path.abspath(output))
        handle, partial = tempfile.mkstemp(prefix=".export-", suffix=".csv", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding=export_encoding(export_format), newline="") as out:
                summary = accounting_export_write(
                    out=out, export_format=export_format, date_from=start, date_to=end, exported_by="manage.py"
                )
            os.replace(partial, output)
        except ExportError as exc:
            os.unlink(partial)
            raise CommandError(str(exc)) from exc
        except BaseException:
            os.unlink(partial)
            raise
        self.stdout.write(f"Exported {summary} to {output}.")
