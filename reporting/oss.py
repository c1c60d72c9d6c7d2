"""The EU One-Stop-Shop (OSS) return: sales to consumers in other member states, per quarter
(docs/decisions/vat-validation.md "OSS").

A consumer (no VAT id, or one VIES found invalid) in another EU member state than the seller is taxed at their
country's rate (``invoicing.taxes.resolve_tax``). The seller declares that VAT quarterly, per member state of
consumption and rate, in euros, through its home country's OSS — this module gives the figures:

- **What counts**: lines of finalized, non-void invoices issued in the period whose customer (the invoice's
  snapshot, as issued) is in another EU member state than the seller, taxed at a rate (VAT categories S, AA, Z —
  reverse-charge, exempt and outside-scope lines are not OSS supplies), minus the lines of credit notes issued in
  the period on such invoices (a correction is declared in the return of the quarter it is made in).
- **Euros**: amounts in another currency are converted at the ECB rate of the period's last day (art. 369h of
  the VAT Directive), per (member state, rate, currency) group, then added.
- **Evidence**: per invoice, the pieces that say where the consumer is — billing address country, IP address
  country, bank or card country (the customer's, as issued). A sale needs two that agree with the country taxed
  and none that contradicts it (Implementing Regulation 282/2011, art. 24b and 24f); the report counts the
  invoices that fall short so staff can complete the evidence.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import F, Sum
from django.db.models.fields.json import KeyTextTransform

from accounting.rates import RateBook
from core.errors import InvalidInput
from core.money import round_amount
from core.tax_categories import RATED_CATEGORIES
from customers.models import EU_VAT_COUNTRIES
from customers.seller import seller_country
from invoicing.models import CreditNoteLine, InvoiceLine
from reporting.metrics import RECOGNISED_STATUSES, add_months

ZERO = Decimal(0)
OSS_CURRENCY = "EUR"
EVIDENCE_KEYS = ("country", "ip_country", "bank_country")


def quarter_range(value: str) -> tuple[dt.date, dt.date]:
    """``2026-Q3`` → (2026-07-01, 2026-09-30); a clear error naming the format otherwise."""
    text = value.strip().upper().replace(" ", "")
    try:
        year_text, quarter_text = text.split("-Q")
        year, quarter = int(year_text), int(quarter_text)
    except ValueError:
        raise InvalidInput(f"quarter: '{value}' is not a quarter like 2026-Q3", field="quarter") from None
    if not 1 <= quarter <= 4 or not 2000 <= year <= 2100:
        raise InvalidInput(f"quarter: '{value}' is not a quarter like 2026-Q3", field="quarter")
    first = dt.date(year, 3 * quarter - 2, 1)
    last = add_months(first, 3) - dt.timedelta(days=1)
    return first, last


def evidence_ok(snapshot: dict[str, Any]) -> bool:
    """Two pieces agree with the customer's country and none contradicts it."""
    country = str(snapshot.get("country") or "").upper()
    pieces = [str(snapshot.get(key) or "").upper() for key in EVIDENCE_KEYS]
    pieces = [piece for piece in pieces if piece]
    return bool(country) and pieces.count(country) >= 2 and all(piece == country for piece in pieces)


@dataclass(frozen=True)
class OssRow:
    member_state: str
    tax_category: str
    tax_percentage: Decimal
    invoices: int
    invoiced_taxable: Decimal
    invoiced_tax: Decimal
    credited_taxable: Decimal
    credited_tax: Decimal
    evidence_missing: int

    @property
    def taxable(self) -> Decimal:
        return self.invoiced_taxable - self.credited_taxable

    @property
    def tax(self) -> Decimal:
        return self.invoiced_tax - self.credited_tax


def _oss_lines(model: Any, prefix: str, *, seller: str, date_from: dt.date, date_to: dt.date) -> Any:
    document = f"{prefix}__"
    filters: dict[str, Any] = {
        f"{document}issue_date__gte": date_from,
        f"{document}issue_date__lte": date_to,
        "tax_category__in": sorted(RATED_CATEGORIES),
    }
    if model is InvoiceLine:
        filters[f"{document}status__in"] = RECOGNISED_STATUSES
    return (
        model.objects.filter(**filters)
        .annotate(
            member_state=KeyTextTransform("country", f"{document}customer_snapshot"),
            currency=F(f"{document}currency"),
        )
        .filter(member_state__in=sorted(EU_VAT_COUNTRIES - {seller}))
        .order_by()
    )


def oss_return(*, date_from: dt.date, date_to: dt.date) -> list[OssRow]:
    """The OSS return's rows for the period (both dates included), in euros, by member state and rate."""
    seller = seller_country().upper()
    if seller not in EU_VAT_COUNTRIES:
        raise InvalidInput(
            f"country: the seller profile's country {seller or '(none)'} is not an EU member state; the EU OSS "
            "applies to sellers established in the EU",
            field="country",
        )
    rates = RateBook.load(date_from=date_to, date_to=date_to)
    sums: dict[tuple[str, str, Decimal], dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for prefix, model, document in (("invoiced", InvoiceLine, "invoice"), ("credited", CreditNoteLine, "credit_note")):
        lines = _oss_lines(model, document, seller=seller, date_from=date_from, date_to=date_to)
        for row in lines.values("member_state", "tax_category", "tax_percentage", "currency").annotate(
            taxable=Sum("net_amount"), tax=Sum("tax_amount")
        ):
            key = (row["member_state"], row["tax_category"], row["tax_percentage"].normalize())
            currency = row["currency"]
            for name in ("taxable", "tax"):
                amount = round_amount(row[name], currency)
                sums[key][f"{prefix}_{name}"] += rates.convert(amount, currency, date_to, into=OSS_CURRENCY)
    # the invoices behind each row, with the customer as issued (the evidence), from the same lines
    invoices: dict[tuple[str, str, Decimal], set[int]] = defaultdict(set)
    snapshots: dict[int, dict[str, Any]] = {}
    issued = _oss_lines(InvoiceLine, "invoice", seller=seller, date_from=date_from, date_to=date_to)
    for member_state, category, percentage, invoice_id, snapshot in issued.values_list(
        "member_state", "tax_category", "tax_percentage", "invoice_id", "invoice__customer_snapshot"
    ).distinct():
        invoices[(member_state, category, percentage.normalize())].add(invoice_id)
        snapshots[invoice_id] = snapshot
    result = []
    for key in sorted(sums, key=lambda k: (k[0], -k[2], k[1])):  # per country, highest rate first
        member_state, category, percentage = key
        amounts = sums[key]
        found = invoices.get(key, set())
        result.append(
            OssRow(
                member_state=member_state,
                tax_category=category,
                tax_percentage=percentage,
                invoices=len(found),
                invoiced_taxable=amounts["invoiced_taxable"],
                invoiced_tax=amounts["invoiced_tax"],
                credited_taxable=amounts["credited_taxable"],
                credited_tax=amounts["credited_tax"],
                evidence_missing=sum(1 for pk in found if not evidence_ok(snapshots.get(pk) or {})),
            )
        )
    return result


def oss_rows(*, date_from: dt.date, date_to: dt.date) -> list[dict[str, Any]]:
    """The return as report rows (reporting/reports.py "oss"; the CSV and the command print the same)."""
    return [
        {
            "member_state": row.member_state,
            "currency": OSS_CURRENCY,
            "tax_category": row.tax_category,
            "tax_percentage": f"{row.tax_percentage:f}",
            "invoices": row.invoices,
            "invoiced_taxable": row.invoiced_taxable,
            "invoiced_tax": row.invoiced_tax,
            "credited_taxable": row.credited_taxable,
            "credited_tax": row.credited_tax,
            "taxable": row.taxable,
            "tax": row.tax,
            "evidence_missing": row.evidence_missing,
        }
        for row in oss_return(date_from=date_from, date_to=date_to)
    ]
