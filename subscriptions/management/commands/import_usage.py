"""``manage.py import_usage FILE [--dry-run] [--json]`` (core.imports.ImportCommand)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from core.imports import ImportCommand, ImportReport
from subscriptions.services import usage_import_csv


class Command(ImportCommand):
    help = (
        "Import usage records from a CSV file, all or nothing "
        "(columns: subscription_item_id, quantity, timestamp, idempotency_key)."
    )

    def run_import(self, *, stream: IO[bytes], path: Path, dry_run: bool, options: dict[str, Any]) -> ImportReport:
        return usage_import_csv(stream=stream, dry_run=dry_run)
