"""From an issued (or about-to-be-issued) invoice or credit note to the neutral ``model.Document``.

Reads only what the document froze at issue — its lines, amounts, tax summary and the customer and seller
snapshots — so an e-invoice built again later says exactly what the original said. The rules, in EN 16931 terms:

- a line's net amount (BT-131) is the line's amount after its discount, without tax; its discount is a line
  allowance (BG-27) named after the coupon. A line whose amount is not quantity × unit price (a proration, a
  tier's flat fee) is written as quantity 1 at its amount, its real quantity in the description;
- tax-inclusive lines (B2C catalog prices) are written at their net amount, without an allowance;
- the VAT breakdown (BG-23) is the document's tax summary, one row per category and rate;
- periods are inclusive in EN 16931 and exclusive here: the end date written is the day before;
- a document without a service period states the issue date as the delivery date (BT-72).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from core.money import round_amount
from invoicing.einvoice import model as m

ZERO = Decimal(0)
ONE = Decimal(1)

# Our tax treatment → EN 16931 VAT category, exemption reason text and VATEX code (CEF VATEX code list).
TREATMENT_CATEGORY: Mapping[str, tuple[str, str, str]] = {
    "standard": (m.STANDARD, "", ""),
    "exempt": (m.EXEMPT, "Exempt from VAT", "VATEX-EU-132"),
    "reverse_charge": (m.REVERSE_CHARGE, "Reverse charge", "VATEX-EU-AE"),
    "outside_scope": (m.OUTSIDE_SCOPE, "Not subject to VAT", "VATEX-EU-O"),
}


def _end(value: dt.date | None) -> dt.date | None:
    return value - dt.timedelta(days=1) if value else None


def split_address(text: str) -> tuple[str, str, str, str]:
    """(street, additional line, postcode, city) from the seller profile's address: "one line each", the last
    line "<postcode> <city>" (as every EU address writes it, postcode first) — else the whole last line is the
    city."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return "", "", "", ""
    last = lines[-1]
    postcode, _, city = last.partition(" ")
    if not any(ch.isdigit() for ch in postcode) or not city:
        postcode, city = "", last
    street = lines[0] if len(lines) > 1 else ""
    additional = ", ".join(lines[1:-1])
    return street, additional, postcode, city.strip()


def seller_party(seller: Mapping[str, Any], *, with_vat_id: bool = True) -> m.Party:
    street, additional, postcode, city = split_address(seller.get("address", ""))
    register = " ".join(part for part in (seller.get("register_court", ""), seller.get("register_number", "")) if part)
    email = seller.get("email", "")
    return m.Party(
        name=seller.get("legal_name", ""),
        country=(seller.get("country") or "").upper(),
        street=street,
        additional_street=additional,
        postcode=postcode,
        city=city,
        vat_id=seller.get("tax_id", "") if with_vat_id else "",
        tax_number=seller.get("tax_number", ""),
        registration=register,
        electronic_address=email,
        contact_name=seller.get("legal_name", ""),
        contact_phone=seller.get("phone", ""),
        contact_email=email,
    )


def buyer_party(customer: Mapping[str, Any], *, with_vat_id: bool = True) -> m.Party:
    electronic = customer.get("einvoice_address") or customer.get("email", "")
    return m.Party(
        name=customer.get("legal_name") or customer.get("name", ""),
        country=(customer.get("country") or "").upper(),
        street=customer.get("address_line1", ""),
        additional_street=customer.get("address_line2", ""),
        postcode=customer.get("postal_code", ""),
        city=customer.get("city", ""),
        subdivision=customer.get("region", ""),
        vat_id=customer.get("tax_id", "") if with_vat_id and customer.get("tax_status") != "individual" else "",
        identifier=str(customer.get("id", "")),
        electronic_address=electronic,
        electronic_scheme=customer.get("einvoice_address_scheme") or "EM",
        contact_email=customer.get("email", ""),
    )


def _en16931(category: str) -> str:
    """EN 16931 has no "reduced" category: a reduced rate is S at its percentage (BR-CL-18)."""
    return m.STANDARD if category == "AA" else category


def _line_category(line: Any, treatment: str) -> tuple[str, Decimal]:
    """The line's own category when it carries one (tax per line), else the invoice's treatment."""
    rate = Decimal(line.tax_percentage or 0)
    own = getattr(line, "tax_category", "")
    if own:
        category = _en16931(own)
    else:
        category, _, _ = TREATMENT_CATEGORY.get(treatment, TREATMENT_CATEGORY["standard"])
    if category == m.STANDARD and not rate:
        category = m.ZERO_RATED
    return category, rate if category == m.STANDARD else ZERO


def _line(index: int, line: Any, *, treatment: str, currency: str, credit: bool) -> tuple[m.Line, Decimal]:
    """The e-invoice line and its allowance (the discount, excluded from the net price)."""
    category, rate = _line_category(line, treatment)
    net = Decimal(line.net_amount)
    quantity = Decimal(line.quantity) if getattr(line, "quantity", None) is not None else ONE
    description = line.description
    discount = ZERO if credit or line.tax_inclusive else Decimal(getattr(line, "discount_amount", ZERO) or ZERO)
    gross = net + discount  # the line's amount before its discount, without tax
    unit = Decimal(getattr(line, "unit_amount", ZERO) or ZERO)
    if credit or line.tax_inclusive or quantity <= 0 or round_amount(quantity * unit, currency) != gross:
        if quantity != ONE:
            description = f"{description} ({quantity.normalize():f} ×)"
        quantity, unit = ONE, gross
    allowance = discount
    start = getattr(line, "period_start", None)
    end = getattr(line, "period_end", None)
    return (
        m.Line(
            id=str(index),
            name=description[:250] or "—",
            quantity=quantity,
            net_price=unit,
            net_amount=net,
            category=category,
            rate=rate,
            allowances=(
                (
                    m.AllowanceCharge(
                        amount=allowance,
                        category=category,
                        rate=rate,
                        reason=getattr(line, "discount_description", "") or "Discount",
                        reason_code="95",
                    ),
                )
                if allowance
                else ()
            ),
            period_start=start if start and end else None,
            period_end=_end(end) if start and end else None,
        ),
        allowance,
    )


def _breakdown(rows: Sequence[Mapping[str, Any]], *, treatment: str) -> tuple[m.TaxSubtotal, ...]:
    """One row per EN 16931 category and rate. Rows written with tax per line carry their category and exemption
    reason; older rows take the invoice's treatment."""
    default_category, default_reason, default_code = TREATMENT_CATEGORY.get(treatment, TREATMENT_CATEGORY["standard"])
    merged: dict[tuple[str, Decimal], list[Any]] = {}
    for row in rows:
        rate = Decimal(row["percentage"])
        category = _en16931(row.get("category") or default_category)
        if category == m.STANDARD and not rate:
            category = m.ZERO_RATED
        key = (category, rate if category == m.STANDARD else ZERO)
        reason = row.get("exemption_reason") or (default_reason if "category" not in row else "")
        code = row.get("exemption_reason_code") or (default_code if "category" not in row else "")
        bucket = merged.setdefault(key, [ZERO, ZERO, reason, code])
        bucket[0] += Decimal(row["taxable_amount"])
        bucket[1] += Decimal(row["tax_amount"])
    return tuple(
        m.TaxSubtotal(
            category=key[0],
            rate=key[1],
            taxable=taxable,
            tax=tax,
            exemption_reason=(reason or EXEMPTION_TEXT.get(key[0], "")) if key[0] in m.NEEDS_EXEMPTION_REASON else "",
            exemption_code=(code or EXEMPTION_CODE.get(key[0], "")) if key[0] in m.NEEDS_EXEMPTION_REASON else "",
        )
        for key, (taxable, tax, reason, code) in merged.items()
    )


# When a row names no reason of its own (BT-120 / BT-121 are required for these categories).
EXEMPTION_TEXT = {
    m.EXEMPT: "Exempt from VAT",
    m.REVERSE_CHARGE: "Reverse charge",
    m.INTRA_COMMUNITY: "Intra-community supply",
    m.EXPORT: "Export outside the EU",
    m.OUTSIDE_SCOPE: "Not subject to VAT",
}
EXEMPTION_CODE = {
    m.EXEMPT: "VATEX-EU-132",
    m.REVERSE_CHARGE: "VATEX-EU-AE",
    m.INTRA_COMMUNITY: "VATEX-EU-IC",
    m.EXPORT: "VATEX-EU-G",
    m.OUTSIDE_SCOPE: "VATEX-EU-O",
}


def _with_vat_ids(treatment: str, rows: Sequence[Mapping[str, Any]] = ()) -> bool:
    # BR-O-02..04: a "not subject to VAT" invoice carries no VAT identifiers (the seller's tax number stays).
    if any(row.get("category") == m.OUTSIDE_SCOPE for row in rows):
        return False
    return treatment != "outside_scope" or any(row.get("category") not in (None, m.OUTSIDE_SCOPE) for row in rows)


def invoice_document(
    invoice: Any,
    lines: Sequence[Any],
    *,
    number: str | None = None,
    issue_date: dt.date | None = None,
    customer: Mapping[str, Any] | None = None,
    seller: Mapping[str, Any] | None = None,
    payment_terms: str = "",
) -> m.Document:
    """``number``, ``issue_date``, ``customer`` and ``seller`` override what the invoice holds: a draft being
    checked before it is issued has no number or snapshots yet."""
    currency = invoice.currency
    treatment = invoice.tax_treatment
    customer = customer if customer is not None else invoice.customer_snapshot
    seller = seller if seller is not None else invoice.seller_snapshot
    vat_ids = _with_vat_ids(treatment, invoice.tax_summary)
    built = [_line(i, line, treatment=treatment, currency=currency, credit=False) for i, line in enumerate(lines, 1)]
    doc_lines = tuple(line for line, _ in built)
    line_total = sum((line.net_amount for line in doc_lines), round_amount(ZERO, currency))
    total = Decimal(invoice.total)
    due = Decimal(invoice.amount_due)
    issue = issue_date or invoice.issue_date
    period_start, period_end = _service_period(invoice, lines)
    return m.Document(
        kind=m.INVOICE,
        number=number or invoice.number,
        issue_date=issue,
        currency=currency,
        seller=seller_party(seller, with_vat_id=vat_ids),
        buyer=buyer_party(customer, with_vat_id=vat_ids),
        lines=doc_lines,
        tax_subtotals=_breakdown(invoice.tax_summary, treatment=treatment),
        line_total=line_total,
        allowance_total=ZERO,
        charge_total=ZERO,
        tax_exclusive=line_total,
        tax_total=Decimal(invoice.tax_total),
        tax_inclusive=total,
        prepaid=max(total - due, ZERO) if total else ZERO,
        payable=min(due, total) if total else ZERO,
        due_date=invoice.due_date,
        payment_terms=payment_terms,
        payment=_payment(seller, remittance=number or invoice.number),
        buyer_reference=customer.get("buyer_reference", ""),
        order_reference=customer.get("purchase_order", ""),
        period_start=period_start,
        period_end=period_end if period_start else (period_end or issue),
        notes=tuple(note for note in (invoice.tax_note,) if note),
        deliver_to=_deliver_to(customer, doc_lines),
    )


def credit_note_document(credit_note: Any, lines: Sequence[Any], *, invoice: Any) -> m.Document:
    currency = credit_note.currency
    treatment = invoice.tax_treatment
    vat_ids = _with_vat_ids(treatment, credit_note.tax_summary)
    customer = credit_note.customer_snapshot or invoice.customer_snapshot
    seller = credit_note.seller_snapshot or invoice.seller_snapshot
    built = [_line(i, line, treatment=treatment, currency=currency, credit=True) for i, line in enumerate(lines, 1)]
    doc_lines = tuple(line for line, _ in built)
    line_total = sum((line.net_amount for line in doc_lines), round_amount(ZERO, currency))
    return m.Document(
        kind=m.CREDIT_NOTE,
        number=credit_note.number,
        issue_date=credit_note.issue_date,
        currency=currency,
        seller=seller_party(seller, with_vat_id=vat_ids),
        buyer=buyer_party(customer, with_vat_id=vat_ids),
        lines=doc_lines,
        tax_subtotals=_breakdown(credit_note.tax_summary, treatment=treatment),
        line_total=line_total,
        allowance_total=ZERO,
        charge_total=ZERO,
        tax_exclusive=line_total,
        tax_total=Decimal(credit_note.tax_total),
        tax_inclusive=Decimal(credit_note.total),
        prepaid=ZERO,
        payable=Decimal(credit_note.total),
        # the credit is set off against the invoice or kept as the customer's credit balance
        payment=m.Payment(means_code=m.CLEARING_BETWEEN_PARTNERS, remittance=invoice.number),
        buyer_reference=customer.get("buyer_reference", ""),
        order_reference=customer.get("purchase_order", ""),
        preceding_number=invoice.number,
        preceding_date=invoice.issue_date,
        period_start=invoice.period_start if invoice.period_start and invoice.period_end else None,
        period_end=_end(invoice.period_end) if invoice.period_start and invoice.period_end else credit_note.issue_date,
        notes=tuple(note for note in (credit_note.reason, invoice.tax_note) if note),
        deliver_to=_deliver_to(customer, doc_lines),
    )


def _deliver_to(customer: Mapping[str, Any], lines: Sequence[m.Line]) -> m.Party | None:
    """Goods supplied to another member state name where they went (BG-15, BR-IC-12): the buyer's address."""
    if any(line.category == m.INTRA_COMMUNITY for line in lines):
        return buyer_party(customer)
    return None


def _service_period(invoice: Any, lines: Sequence[Any]) -> tuple[dt.date | None, dt.date | None]:
    if invoice.period_start and invoice.period_end:
        return invoice.period_start, _end(invoice.period_end)
    dated = [line for line in lines if getattr(line, "period_start", None) and getattr(line, "period_end", None)]
    if not dated:
        return None, None
    return min(line.period_start for line in dated), _end(max(line.period_end for line in dated))


def _payment(seller: Mapping[str, Any], *, remittance: str) -> m.Payment | None:
    iban = (seller.get("iban") or "").replace(" ", "")
    if not iban:
        return None
    sepa = iban[:2].upper() in SEPA_COUNTRIES
    return m.Payment(
        means_code=m.SEPA_CREDIT_TRANSFER if sepa else m.CREDIT_TRANSFER,
        remittance=remittance,
        iban=iban,
        bic=seller.get("bic", ""),
        account_name=seller.get("legal_name", ""),
    )


SEPA_COUNTRIES = frozenset(
    {
        "AD",
        "AT",
        "BE",
        "BG",
        "CH",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GB",
        "GR",
        "HR",
        "HU",
        "IE",
        "IS",
        "IT",
        "LI",
        "LT",
        "LU",
        "LV",
        "MC",
        "MT",
        "NL",
        "NO",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
        "SM",
        "VA",
    }
)
