from __future__ import annotations

from typing import Any

from accounting.ledger.models import LedgerConnection, LedgerProvider
from accounting.ledger.sync import ledger_sync
from core.asof import parse_date_option
from core.commands import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Push customers, issued invoices, credit notes and payments to the connected Xero or QuickBooks Online "
        "ledger (docs/decisions/ledger-sync.md). Idempotent: what the ledger has is skipped; a rerun continues "
        "a run that was interrupted or rate limited."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--provider", required=True, choices=LedgerProvider.values)
        parser.add_argument(
            "--since",
            help="Only documents dated on or after YYYY-MM-DD (default: the connection's 'sync from' day).",
        )

    def handle(self, *args: Any, provider: str, since: str | None = None, **options: Any) -> None:
        connection = LedgerConnection.objects.filter(provider=provider).first()
        if connection is None:
            raise CommandError(f"{LedgerProvider(provider).label} is not connected: connect it in the admin first")
        if not connection.is_active:
            raise CommandError(f"the {LedgerProvider(provider).label} connection is inactive (admin)")
        since_date = parse_date_option(since, option="--since") if since else None
        outcome = ledger_sync(connection=connection, since=since_date)
        self.stdout.write(f"{LedgerProvider(provider).label}: {outcome.summary}.")
        for failure in outcome.failures:
            self.stdout.write(f"  failed: {failure}")
        if outcome.retry_after:
            self.stdout.write(f"Run the command again in {outcome.retry_after} s to continue.")
