"""``manage.py import_bank_statement FILE [--format csv|camt053] [--mapping …] [--dry-run] [--json]``
(core.imports.ImportCommand)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management.base import CommandParser

from core.imports import ImportCommand, ImportReport
from payments.bank_import import bank_statement_import, format_of, parse_mapping


class Command(ImportCommand):
    help = "Import a bank statement (CSV or CAMT.053): match payments to invoices, queue the rest."

    def add_import_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--format", choices=["csv", "camt053"], help="Default: from the file name (.xml → camt053, else csv)."
        )
        parser.add_argument(
            "--mapping",
            default="",
            help="CSV columns as field=Column pairs, e.g. "
            "'amount=Betrag,booking_date=Buchungstag,currency_default=EUR'.",
        )

    def run_import(self, *, stream: IO[bytes], path: Path, dry_run: bool, options: dict[str, Any]) -> ImportReport:
        mapping = parse_mapping(options["mapping"])
        # One byte past the limit is enough to refuse a file that is too large, without holding all of it.
        return bank_statement_import(
            data=stream.read(settings.IMPORT_MAX_BYTES + 1),
            format=options["format"] or format_of(path.name),
            filename=path.name,
            mapping=mapping,
            dry_run=dry_run,
        )
