"""``manage.py import_customers FILE [--dry-run] [--json]`` (core.imports.ImportCommand)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from core.imports import ImportCommand, ImportReport
from customers.services import customers_import_csv


class Command(ImportCommand):
    help = "Import customers from a CSV file, all or nothing (see README for the columns)."

    def run_import(self, *, stream: IO[bytes], path: Path, dry_run: bool, options: dict[str, Any]) -> ImportReport:
        return customers_import_csv(stream=stream, dry_run=dry_run)
