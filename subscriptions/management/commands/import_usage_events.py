"""``manage.py import_usage_events FILE [--dry-run] [--json]``: usage events from CSV or NDJSON, all or nothing,
through COPY (core.imports.ImportCommand; docs/decisions/usage-events.md)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from core.imports import ImportCommand, ImportReport
from subscriptions.services import EVENT_COLUMNS, usage_events_import


class Command(ImportCommand):
    help = (
        "Import usage events, all or nothing: NDJSON (*.ndjson, *.jsonl: one API event object per line) or CSV "
        f"(columns: {', '.join(EVENT_COLUMNS)}; properties is a JSON object). Transaction ids already stored "
        "are ignored and counted."
    )

    def run_import(self, *, stream: IO[bytes], path: Path, dry_run: bool, options: dict[str, Any]) -> ImportReport:
        ndjson = path.suffix.lower() in (".ndjson", ".jsonl")
        return usage_events_import(stream=stream, ndjson=ndjson, dry_run=dry_run)
