"""The e-invoices of a period as one zip for the accountant (and the tax office's data access, GoBD): every invoice
and credit note issued in the period whose customer takes e-invoices, as archived — XML files, and the Factur-X
PDFs that carry theirs — plus a manifest with each file's SHA-256. Drafts are never exported."""

from __future__ import annotations

import datetime as dt
import zipfile
from dataclasses import dataclass
from typing import Any

from invoicing.einvoice.service import einvoice_bytes, einvoice_store, format_for
from invoicing.models import CreditNote, EInvoiceFile, Invoice, InvoiceStatus


@dataclass(frozen=True)
class EInvoiceExport:
    invoices: int
    credit_notes: int

    def __str__(self) -> str:
        return f"{self.invoices} invoice e-invoice(s) and {self.credit_notes} credit-note e-invoice(s)"


def einvoices_zip_write(*, out: Any, date_from: dt.date, date_to: dt.date) -> EInvoiceExport:
    """Write the zip of ``[date_from, date_to]`` (issue dates, both included) to ``out`` (a binary file or an
    HTTP response). A document issued before
    its file was archived (the render task has not run yet) is archived now, as it would be."""
    invoices = (
        Invoice.objects.filter(issue_date__range=(date_from, date_to))
        .exclude(status=InvoiceStatus.DRAFT)
        .exclude(customer_snapshot__einvoice_format="")
        .filter(customer_snapshot__has_key="einvoice_format")
        .order_by("issue_date", "number")
    )
    credit_notes = (
        CreditNote.objects.filter(issue_date__range=(date_from, date_to))
        .select_related("invoice")
        .order_by("issue_date", "number")
    )
    manifest = ["file;document;number;issue_date;format;sha256"]
    counts = {"invoice": 0, "credit_note": 0}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for document in (*invoices, *credit_notes):
            is_invoice = isinstance(document, Invoice)
            snapshot = (
                document.customer_snapshot
                if is_invoice
                else (
                    document.customer_snapshot or document.invoice.customer_snapshot  # type: ignore[union-attr]
                )
            )
            if format_for(snapshot) is None:
                continue
            stored: EInvoiceFile | None = (
                einvoice_store(invoice=document) if is_invoice else einvoice_store(credit_note=document)  # type: ignore[arg-type]
            )
            if stored is None:
                continue
            filename, content = einvoice_bytes(stored)
            kind = "invoice" if is_invoice else "credit_note"
            folder = "invoices" if is_invoice else "credit-notes"
            archive.writestr(f"{folder}/{filename}", content)
            manifest.append(
                f"{folder}/{filename};{kind};{document.number};{document.issue_date};{stored.format};{stored.sha256}"
            )
            counts[kind] += 1
        archive.writestr("manifest.csv", "\n".join(manifest) + "\n")
    return EInvoiceExport(invoices=counts["invoice"], credit_notes=counts["credit_note"])


def einvoices_zip_filename(*, date_from: dt.date, date_to: dt.date) -> str:
    return f"einvoices-{date_from.isoformat()}-{date_to.isoformat()}.zip"
