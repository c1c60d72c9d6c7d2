from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.services import CustomerImportError, customers_import_csv


class Command(BaseCommand):
    help = "Import customers from a CSV file, all or nothing (see README for the columns)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--dry-run", action="store_true", help="Validate and report; write nothing.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            with path.open("rb") as stream:
                report = customers_import_csv(stream=stream, dry_run=options["dry_run"])
        except CustomerImportError as exc:
            report = exc.report
            if options["json"]:
                self.stdout.write(json.dumps(_as_dict(report)))
            else:
                for error in report.errors:
                    self.stderr.write(f"{path}: {error}")
            raise CommandError(report.summary()) from exc
        if options["json"]:
            self.stdout.write(json.dumps(_as_dict(report)))
        else:
            self.stdout.write(self.style.SUCCESS(report.summary()))


def _as_dict(report: Any) -> dict[str, Any]:
    return {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "dry_run": report.dry_run,
        "errors": [{"row": e.row, "column": e.column, "message": e.message} for e in report.errors],
    }
