"""Existing invoices and credit notes get the VAT category of the one treatment they were issued with: every line
and every tax-summary row of a document had the same treatment, so the category follows from it (and from the
rate: a standard treatment at 0 % is zero rated). Only the new category columns and keys are written; no amount,
rate name or percentage changes (tests/invoicing/test_tax_per_line.py checks an issued invoice's totals)."""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Left

TREATMENT_CATEGORY = {"exempt": "E", "reverse_charge": "AE", "outside_scope": "O"}
BATCH = 2000


def category_of(treatment: str, percentage: Any) -> str:
    if treatment in TREATMENT_CATEGORY:
        return TREATMENT_CATEGORY[treatment]
    return "S" if str(percentage).strip("0.") else "Z"


def _summary_with_categories(summary: list[dict[str, Any]], treatment: str, note: str) -> list[dict[str, Any]]:
    rows = []
    for row in summary or []:
        category = row.get("category") or category_of(treatment, row.get("percentage", "0"))
        rows.append(
            {
                **row,
                "category": category,
                "exemption_reason_code": row.get("exemption_reason_code", ""),
                "exemption_reason": row.get("exemption_reason", note if category == "E" else ""),
            }
        )
    return rows


def forwards(apps: Any, schema_editor: Any) -> None:
    Invoice = apps.get_model("invoicing", "Invoice")
    InvoiceLine = apps.get_model("invoicing", "InvoiceLine")
    CreditNote = apps.get_model("invoicing", "CreditNote")
    CreditNoteLine = apps.get_model("invoicing", "CreditNoteLine")
    # Set-based: one UPDATE per treatment, whatever the number of lines.
    for treatment, category in TREATMENT_CATEGORY.items():
        InvoiceLine.objects.filter(invoice__tax_treatment=treatment).update(
            tax_category=category, supply_tax_category="S"
        )
        CreditNoteLine.objects.filter(credit_note__invoice__tax_treatment=treatment).update(tax_category=category)
    InvoiceLine.objects.filter(invoice__tax_treatment="standard", tax_percentage=0).update(
        tax_category="Z", supply_tax_category="Z"
    )
    CreditNoteLine.objects.filter(credit_note__invoice__tax_treatment="standard", tax_percentage=0).update(
        tax_category="Z"
    )
    InvoiceLine.objects.filter(invoice__tax_treatment="exempt").update(
        tax_exemption_reason=Subquery(
            Invoice.objects.filter(pk=OuterRef("invoice_id")).values(note=Left("tax_note", 300))[:1]
        )
    )
    for model, treatment_of in ((Invoice, "tax_treatment"), (CreditNote, "invoice__tax_treatment")):
        note_of = "tax_note" if model is Invoice else "invoice__tax_note"
        queryset = (
            model.objects.exclude(Q(tax_summary=[]))
            .order_by("pk")
            .values_list("pk", "tax_summary", treatment_of, note_of)
        )
        batch = []
        for pk, summary, treatment, note in queryset.iterator(chunk_size=BATCH):
            batch.append(model(pk=pk, tax_summary=_summary_with_categories(summary, treatment, note)))
            if len(batch) == BATCH:
                model.objects.bulk_update(batch, ["tax_summary"])
                batch = []
        if batch:
            model.objects.bulk_update(batch, ["tax_summary"])


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0014_tax_category_per_line_and_rate")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False)]
