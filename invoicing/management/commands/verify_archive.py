from __future__ import annotations

from typing import Any

from core.commands import BaseCommand, CommandError
from invoicing.archive import archive_verify


class Command(BaseCommand):
    help = (
        "Check every archived invoice and credit-note PDF (originals and later versions) and e-invoice XML: the "
        "file exists and "
        "has the SHA-256 recorded when it was rendered. Names each broken file; exits 1 if any."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        checked, problems = archive_verify()
        for problem in problems:
            self.stdout.write(problem.line())
        summary = f"Archive: {checked} file(s) checked, {len(problems)} broken."
        self.stdout.write(self.style.ERROR(summary) if problems else self.style.SUCCESS(summary))
        if problems:
            raise CommandError(f"{len(problems)} archived file(s) missing or changed", returncode=1)
