from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from core import events


class Command(BaseCommand):
    help = (
        "Run the handlers that have not run yet for domain events written more than "
        "DOMAIN_EVENTS_SWEEP_AFTER_MINUTES ago (their after-commit dispatch was lost: the broker was unreachable, a "
        "worker died, a handler failed). Each handler runs at most once per event; phases keep their order."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=500, help="Process at most this many events (default 500).")

    def handle(self, *args: Any, limit: int = 500, **options: Any) -> None:
        outcome = events.events_sweep(limit=limit)
        self.stdout.write(
            f"{outcome.processed} event(s) processed, {outcome.pending} still pending (a handler failed; retried "
            f"later), {outcome.failed} failed for good."
        )
