"""Tax summaries stored the rate as ``str(Decimal(pct).normalize())``, which writes 20 % as "2E+1" and 10 % as
"1E+1". The value is the same number; this rewrites the text as plain digits ("20", "7.5") so exports, the API and
staff screens never show exponent notation. New summaries are written plain (``core.formatting.plain_decimal``).
Only the JSON text of the rate changes: no amount, and no archived PDF, is touched."""

from decimal import Decimal, InvalidOperation

from django.db import migrations, models
from django.db.models.functions import Cast

BATCH = 1000


def _plain(value):
    try:
        text = f"{Decimal(str(value)).normalize():f}"
    except (InvalidOperation, ValueError):
        return value
    return "0" if text == "-0" else text


def _normalise(apps, schema_editor, model_name):
    model = apps.get_model("invoicing", model_name)
    rows = (
        model.objects.annotate(summary_text=Cast("tax_summary", models.TextField()))
        .filter(models.Q(summary_text__contains="E+") | models.Q(summary_text__contains="e+"))
        .only("pk", "tax_summary")
    )
    batch = []
    for row in rows.iterator(chunk_size=BATCH):
        summary = [
            {**entry, "percentage": _plain(entry["percentage"])}
            if isinstance(entry, dict) and "percentage" in entry
            else entry
            for entry in row.tax_summary or []
        ]
        if summary != row.tax_summary:
            row.tax_summary = summary
            batch.append(row)
        if len(batch) >= BATCH:
            model.objects.bulk_update(batch, ["tax_summary"])
            batch = []
    if batch:
        model.objects.bulk_update(batch, ["tax_summary"])


def normalise(apps, schema_editor):
    for model_name in ("Invoice", "CreditNote"):
        _normalise(apps, schema_editor, model_name)


class Migration(migrations.Migration):
    dependencies = [
        ("invoicing", "0011_audit_trail_of_issue20_fields"),
    ]

    operations = [
        migrations.RunPython(normalise, migrations.RunPython.noop),
    ]
