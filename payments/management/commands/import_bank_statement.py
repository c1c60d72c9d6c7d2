"""``manage.py import_bank_statement FILE [--format csv|camt053] [--mapping …] [--dry-run] [--json]``"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.bank_import import BankImportError, bank_statement_import, parse_mapping


class Command(BaseCommand):
    help = "Import a bank statement (CSV or CAMT.053): match payments to invoices, queue the rest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The statement file.")
        parser.add_argument(
            "--format", choices=["csv", "camt053"], help="Default: from the file name (.xml → camt053, else csv)."
        )
        parser.add_argument(
            "--mapping",
            default="",
            help="CSV columns as field=Column pairs, e.g. "
            "'amount=Betrag,booking_date=Buchungstag,currency_default=EUR'.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Check and match, write nothing.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        fmt = options["format"] or ("camt053" if path.suffix.lower() == ".xml" else "csv")
        try:
            mapping = parse_mapping(options["mapping"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            report = bank_statement_import(
                data=data, format=fmt, filename=path.name, mapping=mapping, dry_run=options["dry_run"]
            )
        except BankImportError as exc:
            if options["json"]:
                self.stdout.write(json.dumps(exc.report.as_dict(), indent=2))
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.stdout.write(report.summary())
