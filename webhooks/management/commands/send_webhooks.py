from __future__ import annotations

from typing import Any

from core.commands import BaseCommand
from webhooks.services import deliveries_send_due


class Command(BaseCommand):
    help = (
        "Send the webhook deliveries that are due: retries whose time has come (exponential backoff for "
        "WEBHOOKS_RETRY_HOURS), first attempts whose task was lost, deliveries a dead sender left 'sending'. Safe to "
        "run at any time and in parallel: each delivery is claimed before it is sent."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=500, help="Send at most this many deliveries (default 500).")

    def handle(self, *args: Any, limit: int = 500, **options: Any) -> None:
        outcome = deliveries_send_due(limit=limit)
        self.stdout.write(
            f"{outcome.succeeded} delivered, {outcome.retrying} to retry, {outcome.failed} failed (retries ran out), "
            f"{outcome.skipped} taken by another sender."
        )
