from __future__ import annotations

from typing import Any

from core.commands import BaseCommand
from invoicing.einvoice.validation import compile_xrechnung


class Command(BaseCommand):
    help = (
        "Compile the vendored XRechnung Schematron (UBL and CII) to XSLT with the vendored SchXslt, into "
        "invoicing/einvoice/rules/xrechnung/compiled/. Run after updating the rule set; commit the result "
        "(a test checks the committed XSLT matches the Schematron). Never needed at run time."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for syntax, path in compile_xrechnung().items():
            self.stdout.write(f"{syntax}: {path}")
