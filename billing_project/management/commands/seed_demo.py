from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

from billing_project.demo import seed_all
from core.commands import BaseCommand
from invoicing.models import CreditNote, Invoice, InvoiceStatus
from notifications.models import OutboundEmail


class Command(BaseCommand):
    help = "Load realistic demo data (idempotent: running it again changes nothing)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("Seeding the demo data (records that already exist are kept as they are):")
        seed_all(log=self.stdout.write)
        issued = Invoice.objects.finalized()
        without_pdf = issued.filter(pdf__isnull=True).count() + CreditNote.objects.filter(pdf__isnull=True).count()
        pdfs = "every one with its PDF" if without_pdf == 0 else f"{without_pdf} without a PDF yet"
        self.stdout.write(
            f"Demo data ready: {issued.count()} invoices ({issued.filter(status=InvoiceStatus.OPEN).count()} open) "
            f"and {CreditNote.objects.count()} credit note(s), {pdfs}; {OutboundEmail.objects.count()} e-mails "
            f"written to {_relative(settings.EMAIL_FILE_PATH)}/."
        )


def _relative(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path
