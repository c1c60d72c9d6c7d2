from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from billing_project.sweeper import stale_work_sweep
from core.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Find work a dead worker left in progress — billing runs without a heartbeat, payment attempts stuck "
        "processing, e-mails stuck sending — and resume it or mark it for staff (docs/RELIABILITY.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = stale_work_sweep()
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            for run in report.billing_runs:
                resumed = f"resumed as run {run.resumed_by}" if run.resumed_by else "NOT resumed (see the log)"
                self.stdout.write(
                    self.style.WARNING(
                        f"Billing run {run.run_id} (as of {run.as_of}) interrupted: no heartbeat since "
                        f"{run.last_heartbeat:%Y-%m-%d %H:%M:%S %Z}, {run.chunks_done} of {run.chunks_total} "
                        f"chunk(s) done, {run.invoices_created} invoice(s); {resumed}."
                    )
                )
            line = (
                f"Stale work: {len(report.billing_runs)} billing run(s) interrupted, "
                f"{report.payment_attempts_resent} payment attempt(s) re-sent, "
                f"{report.emails_marked_failed} e-mail(s) marked failed."
            )
            self.stdout.write(self.style.WARNING(line) if report.found else self.style.SUCCESS(line))
        for error in report.errors:
            self.stderr.write(self.style.ERROR(error))
        if report.errors:
            raise SystemExit(1)
