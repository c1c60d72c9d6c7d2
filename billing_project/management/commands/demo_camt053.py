from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from billing_project.demo.camt053 import demo_statement


class Command(BaseCommand):
    help = (
        "Write a CAMT.053 bank statement that pays open demo invoices (number and amount due), to try the "
        "bank-statement import on the demo."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--output",
            default=str(settings.VAR_DIR / "camt053-demo.xml"),
            help="Where to write it (default: var/camt053-demo.xml).",
        )
        parser.add_argument("--limit", type=int, default=6, help="At most this many transfers (default 6).")

    def handle(self, *args: Any, output: str, limit: int, **options: Any) -> None:
        data, invoices = demo_statement(limit=limit)
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if options["verbosity"] >= 1:
            numbers = ", ".join(invoice.number for invoice in invoices) or "none (no open demo invoice to pay)"
            self.stdout.write(f"Wrote {path}: {len(invoices)} transfer(s), paying {numbers}.")
