"""``manage.py purge_idempotency_keys``: delete Idempotency-Key records older than API_IDEMPOTENCY_HOURS (24 h)."""

from __future__ import annotations

from typing import Any

from api.idempotency import idempotency_records_purge
from core.commands import BaseCommand


class Command(BaseCommand):
    help = "Delete idempotency records older than API_IDEMPOTENCY_HOURS."

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = idempotency_records_purge()
        self.stdout.write(f"Deleted {deleted} idempotency record(s).")
