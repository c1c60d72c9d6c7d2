from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from core.commands import BaseCommand, CommandError
from reporting.integrity import CHECKS, integrity_check_record, integrity_verify


class Command(BaseCommand):
    help = (
        "Verify the invariants of the books: gapless numbers, invoice totals, amounts due, the credit ledger, "
        "payment allocation, archived PDF hashes, no period billed twice. Prints each broken row; exits 1 if any."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--check", action="append", choices=sorted(CHECKS), help="Run only this check (repeatable)."
        )
        parser.add_argument("--no-store", action="store_true", help="Do not store the result for the dashboard.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = integrity_verify(checks=options["check"])
        if not options["no_store"]:
            integrity_check_record(report=report, triggered_by="command")
        problems = report.problems or []
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            checked = ", ".join(f"{name} {count}" for name, count in (report.checked or {}).items())
            for problem in problems:
                self.stdout.write(problem.line())
            summary = f"Integrity check: {len(problems)} problem(s); rows checked: {checked}."
            self.stdout.write(self.style.SUCCESS(summary) if report.ok else self.style.ERROR(summary))
        if problems:
            raise CommandError(f"{len(problems)} integrity problem(s)", returncode=1)
