from __future__ import annotations

import os
import tempfile
from typing import Any

from core.asof import parse_date_option
from core.commands import BaseCommand
from invoicing.einvoice.export import einvoices_zip_write


class Command(BaseCommand):
    help = (
        "Write the e-invoices (XRechnung, Factur-X, Peppol XML) of the invoices and credit notes issued in a period "
        "(both dates included) into one zip with a manifest of their SHA-256 — for the accountant."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--from", dest="date_from", required=True, help="First day, YYYY-MM-DD.")
        parser.add_argument("--to", dest="date_to", required=True, help="Last day (included), YYYY-MM-DD.")
        parser.add_argument("--output", required=True, help="The zip file to write.")

    def handle(self, *args: Any, date_from: str, date_to: str, output: str, **options: Any) -> None:
        start, end = parse_date_option(date_from, option="--from"), parse_date_option(date_to, option="--to")
        # Written next to the target and renamed into place: a failed export never leaves half a file behind.
        directory = os.path.dirname(os.path.abspath(output))
        handle, partial = tempfile.mkstemp(prefix=".einvoices-", suffix=".zip", dir=directory)
        try:
            with os.fdopen(handle, "wb") as out:
                summary = einvoices_zip_write(out=out, date_from=start, date_to=end)
            os.replace(partial, output)
        except BaseException:
            os.unlink(partial)
            raise
        self.stdout.write(f"Exported {summary} to {output}.")
