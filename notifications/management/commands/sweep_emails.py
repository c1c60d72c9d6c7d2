from __future__ import annotations

from typing import Any

from core.commands import BaseCommand
from notifications.sweep import outbox_sweep


class Command(BaseCommand):
    help = (
        "Send the queued e-mails whose task was lost "
        "(the broker was unreachable, a worker died) and mark failed the e-mails a dead worker left 'sending' "
        "(staff check and resend them). Safe to run at any time and in parallel: each message is claimed before "
        "it is sent. Invoice e-mails that were never queued are queued by `process_events`."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--limit", type=int, default=500, help="Send at most this many messages (default 500).")

    def handle(self, *args: Any, limit: int = 500, **options: Any) -> None:
        outcome = outbox_sweep(limit=limit)
        self.stdout.write(
            f"{outcome.sent} sent, "
            f"{outcome.retrying} to retry, {outcome.failed} failed, {outcome.skipped} taken by another run; "
            f"{outcome.interrupted} interrupted while sending marked failed."
        )
