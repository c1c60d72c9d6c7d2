from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing_project.lib.progress import progress_bar
from invoicing import documents


class Command(BaseCommand):
    help = "Render and store the PDFs of finalized invoices and credit notes (all, or only missing/stale ones)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--missing", action="store_true", help="Only documents whose PDF is missing or stale.")

    def handle(self, *args: Any, missing: bool = False, **options: Any) -> None:
        invoice_ids = list(documents.invoices_needing_pdf(only_missing_or_stale=missing).values_list("pk", flat=True))
        credit_note_ids = list(documents.credit_notes_needing_pdf(only_missing=missing).values_list("pk", flat=True))
        rendered, failed = 0, []
        total = len(invoice_ids) + len(credit_note_ids)
        with progress_bar(total=total, description="Rendering PDFs", stream=self.stderr._out) as bar:
            jobs = [(documents.invoice_pdf_store, "invoice_id", pk) for pk in invoice_ids] + [
                (documents.credit_note_pdf_store, "credit_note_id", pk) for pk in credit_note_ids
            ]
            for store, argument, pk in jobs:
                try:
                    store(**{argument: pk})
                    rendered += 1
                except Exception as exc:  # one broken document must not stop the others; each is reported
                    failed.append(f"{argument.removesuffix('_id').replace('_', ' ')} {pk}: {exc}")
                bar.update(1)
        for line in failed:
            self.stderr.write(line)
        self.stdout.write(f"{rendered} rendered, {len(failed)} failed.")
