from __future__ import annotations

from typing import Any

from core.commands import BaseCommand
from core.progress import progress_bar
from invoicing import documents


class Command(BaseCommand):
    help = (
        "Render and archive the PDFs of finalized invoices and credit notes that have none (an archived PDF is "
        "never rewritten)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--missing", action="store_true", help="Only read documents whose PDF is missing (the faster query)."
        )

    def handle(self, *args: Any, missing: bool = False, **options: Any) -> None:
        total = documents.pdfs_needing_render_count(only_missing=missing)
        with progress_bar(total=total, description="Rendering PDFs", stream=self.stderr._out) as bar:
            outcome = documents.pdfs_render(only_missing=missing, on_progress=bar.update)
        for line in outcome.failed:
            self.stderr.write(line)
        self.stdout.write(f"{outcome.rendered} rendered, {len(outcome.failed)} failed.")
