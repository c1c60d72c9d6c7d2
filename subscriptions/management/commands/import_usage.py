from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from subscriptions.services import UsageImportError, usage_import_csv


class Command(BaseCommand):
    help = (
        "Import usage records from a CSV file, all or nothing "
        "(columns: subscription_item_id, quantity, timestamp, idempotency_key)."
    )

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
                report = usage_import_csv(stream=stream, dry_run=options["dry_run"])
        except UsageImportError as exc:
            report = exc.report
            if options["json"]:
                self.stdout.write(json.dumps(report.as_dict()))
            else:
                for error in report.errors:
                    self.stderr.write(f"{path}: {error}")
            raise CommandError(report.summary()) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            self.stdout.write(self.style.SUCCESS(report.summary()))
