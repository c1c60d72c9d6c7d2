"""E-invoices as part of issuing (docs/decisions/einvoice.md).

- Before a number is taken, ``issue_problems`` builds the customer's e-invoice from the draft (with a provisional
  number) and validates it: missing mandatory data is named by its field first, then every blocking rule that
  fails (XSD, EN 16931, XRechnung). The billing run holds such an invoice as a draft with the problems in its
  memo; staff finalizing a draft get the same list as the error. Never issued broken.
- After issue, ``einvoice_store`` writes the XML from what the document froze (numbers, snapshots), validates it
  once more and archives it with its SHA-256, once — like the PDF, it is never rewritten. A Factur-X customer's
  archived PDF is the PDF/A-3 with this XML embedded (``invoicing.documents``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from core.errors import InvalidInput
from customers.seller import seller_snapshot
from invoicing.einvoice import cii, mapping, ubl, validation
from invoicing.einvoice.model import Document
from invoicing.einvoice.syntax import EN16931, PEPPOL_BIS, PEPPOL_PROFILE, XRECHNUNG, Profile
from invoicing.models import CreditNote, EInvoiceFile, Invoice
from invoicing.terms import payment_terms_text

logger = logging.getLogger(__name__)

PROVISIONAL_NUMBER = "PROVISIONAL"


@dataclass(frozen=True)
class Format:
    code: str
    label: str
    build: Callable[[Document, Profile], bytes]
    profile: Profile
    xrechnung: bool = False
    embedded_in_pdf: bool = False

    def xml(self, document: Document) -> bytes:
        return self.build(document, self.profile)

    @property
    def file_suffix(self) -> str:
        return {
            "xrechnung_ubl": "xrechnung-ubl",
            "xrechnung_cii": "xrechnung-cii",
            "facturx": "factur-x",
            "peppol": "peppol-bis",
        }[self.code]


FORMATS: Mapping[str, Format] = {
    "xrechnung_ubl": Format("xrechnung_ubl", "XRechnung 3.0 (UBL)", ubl.build, Profile(XRECHNUNG), xrechnung=True),
    "xrechnung_cii": Format("xrechnung_cii", "XRechnung 3.0 (CII)", cii.build, Profile(XRECHNUNG), xrechnung=True),
    "facturx": Format("facturx", "ZUGFeRD / Factur-X (EN 16931)", cii.build, Profile(EN16931), embedded_in_pdf=True),
    "peppol": Format("peppol", "Peppol BIS Billing 3.0", ubl.build, Profile(PEPPOL_BIS, PEPPOL_PROFILE)),
}


def format_for(customer_data: Mapping[str, Any]) -> Format | None:
    return FORMATS.get(customer_data.get("einvoice_format") or "")


@dataclass(frozen=True)
class Problem:
    """Why an e-invoice cannot be issued: the rule (EN 16931 / XRechnung id, or "missing") and the field to fix."""

    rule: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f" — fix: {self.field}" if self.field else ""
        return f"{self.rule}: {self.message}{where}"


class EInvoiceRejected(InvalidInput):
    """The customer's e-invoice would fail validation: the invoice is not issued."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


# What to fix for the rules that fail on our data (the rest name their business term in their message).
RULE_FIELDS: Mapping[str, str] = {
    "BR-DE-15": "customer → buyer reference / Leitweg-ID",
    "BR-DE-2": "seller profile → phone and contact e-mail",
    "BR-DE-5": "seller profile → legal name",
    "BR-DE-6": "seller profile → phone",
    "BR-DE-7": "seller profile → contact e-mail",
    "BR-DE-3": "seller profile → address (last line: postcode and city)",
    "BR-DE-4": "seller profile → address (last line: postcode and city)",
    "BR-DE-8": "customer → city",
    "BR-DE-9": "customer → postal code",
    "BR-DE-23-a": "seller profile → IBAN",
    "BR-AE-02": "customer → tax id (VAT number)",
    "BR-AE-03": "customer → tax id (VAT number)",
    "BR-CO-26": "seller profile → VAT id or tax number",
    "BR-S-02": "seller profile → VAT id or tax number",
    "BR-6": "seller profile → legal name",
    "BR-7": "customer → name",
    "BR-8": "seller profile → address",
    "BR-10": "customer → billing address",
    "BR-11": "customer → country",
}


def missing_data(fmt: Format, customer: Mapping[str, Any], seller: Mapping[str, Any], treatment: str) -> list[Problem]:
    """Mandatory data named by field before any XML is written: cheaper and clearer than the rule that fails."""
    problems = []

    def need(ok: bool, field: str, message: str) -> None:
        if not ok:
            problems.append(Problem(rule="missing", field=field, message=message))

    _, _, postcode, city = mapping.split_address(seller.get("address", ""))
    need(bool(seller.get("legal_name")), "seller profile → legal name", "the seller's legal name is empty")
    need(
        bool(postcode and city), "seller profile → address", "the seller address needs a last line '<postcode> <city>'"
    )
    need(
        bool(seller.get("tax_id") or seller.get("tax_number")),
        "seller profile → VAT id or tax number",
        "the seller has neither a VAT id nor a tax number",
    )
    need(
        bool(customer.get("address_line1") and customer.get("city") and customer.get("postal_code")),
        "customer → billing address",
        "the buyer's street, postal code and city are all required",
    )
    need(
        bool(customer.get("einvoice_address") or customer.get("email")),
        "customer → e-invoice address",
        "the buyer has no electronic address",
    )
    if treatment == "reverse_charge":
        need(
            bool(customer.get("tax_id")),
            "customer → tax id (VAT number)",
            "a reverse-charge invoice states the buyer's VAT id",
        )
    if fmt.xrechnung:
        need(
            bool(customer.get("buyer_reference")),
            "customer → buyer reference / Leitweg-ID",
            "XRechnung requires the buyer reference (BT-10; the Leitweg-ID for public buyers)",
        )
        need(bool(seller.get("phone")), "seller profile → phone", "XRechnung requires the seller's phone number")
        need(
            bool(seller.get("email")),
            "seller profile → contact e-mail",
            "XRechnung requires the seller's contact e-mail",
        )
    return problems


def validation_problems(fmt: Format, xml: bytes) -> list[Problem]:
    report = validation.validate(xml, xrechnung=fmt.xrechnung)
    return [Problem(rule=f.rule, field=RULE_FIELDS.get(f.rule, ""), message=f.text) for f in report.errors]


def issue_problems(
    *,
    invoice: Invoice,
    lines: Sequence[Any],
    customer: Mapping[str, Any],
    seller: Mapping[str, Any],
    issue_date: dt.date,
) -> list[Problem]:
    """What stops this draft's e-invoice, checked before the invoice takes a number; [] when the customer takes
    none or it is valid."""
    fmt = format_for(customer)
    if fmt is None:
        return []
    problems = missing_data(fmt, customer, seller, invoice.tax_treatment)
    if problems:
        return problems
    document = mapping.invoice_document(
        invoice,
        lines,
        number=invoice.number or PROVISIONAL_NUMBER,
        issue_date=issue_date,
        customer=customer,
        seller=seller,
    )
    return validation_problems(fmt, fmt.xml(document))


def problems_before_issue(
    invoice: Invoice, lines: Sequence[Any], *, customer: Mapping[str, Any], issue_date: dt.date
) -> str:
    """ "" when the draft may be issued; else why not — the format and each problem, for a held draft's memo or
    the error staff see. ``customer`` is the snapshot the invoice will freeze; the seller is today's profile."""
    fmt = format_for(customer)
    if fmt is None:
        return ""
    problems = issue_problems(
        invoice=invoice, lines=lines, customer=customer, seller=seller_snapshot(), issue_date=issue_date
    )
    if not problems:
        return ""
    return f"the {fmt.label} e-invoice fails validation: " + "; ".join(str(p) for p in problems)


def invoice_einvoice(invoice: Invoice, lines: Sequence[Any] | None = None) -> tuple[Format, bytes] | None:
    """The e-invoice of an issued invoice, from what it froze at issue; None when its customer takes none."""
    fmt = format_for(invoice.customer_snapshot)
    if fmt is None or invoice.is_draft:
        return None
    lines = list(invoice.lines.order_by("position", "pk")) if lines is None else lines
    document = mapping.invoice_document(invoice, lines, payment_terms=payment_terms_text(invoice))
    return fmt, fmt.xml(document)


def credit_note_einvoice(credit_note: CreditNote) -> tuple[Format, bytes] | None:
    invoice = credit_note.invoice
    fmt = format_for(credit_note.customer_snapshot or invoice.customer_snapshot)
    if fmt is None:
        return None
    document = mapping.credit_note_document(
        credit_note, list(credit_note.lines.order_by("position", "pk")), invoice=invoice
    )
    return fmt, fmt.xml(document)


def einvoice_path(*, number: str, issue_date: dt.date | None, fmt: Format, sha256: str) -> str:
    year = issue_date.year if issue_date else "undated"
    return f"einvoices/{year}/{number}-{fmt.file_suffix}-{sha256[:16]}.xml"


def einvoice_store(*, invoice: Invoice | None = None, credit_note: CreditNote | None = None) -> EInvoiceFile | None:
    """Build, validate and archive the document's e-invoice, once (a second call returns the archived one)."""
    lookup: dict[str, Any] = {"invoice": invoice} if invoice is not None else {"credit_note": credit_note}
    existing = EInvoiceFile.objects.filter(**lookup).first()
    if existing is not None:
        return existing
    built = invoice_einvoice(invoice) if invoice is not None else credit_note_einvoice(credit_note)  # type: ignore[arg-type]
    if built is None:
        return None
    fmt, xml = built
    problems = validation_problems(fmt, xml)
    document = invoice if invoice is not None else credit_note
    assert document is not None
    if problems:
        # Checked before issue; failing here means the frozen data changed meaning (a rule set update): staff see
        # the failed event, nothing broken is archived or sent.
        raise EInvoiceRejected(f"the {fmt.label} e-invoice fails validation: " + "; ".join(map(str, problems)))
    sha256 = hashlib.sha256(xml).hexdigest()
    name = default_storage.save(
        einvoice_path(number=document.number, issue_date=document.issue_date, fmt=fmt, sha256=sha256),
        ContentFile(xml),
    )
    try:
        with transaction.atomic():
            return EInvoiceFile.objects.create(**lookup, format=fmt.code, file=name, sha256=sha256, size=len(xml))
    except IntegrityError:
        winner = EInvoiceFile.objects.get(**lookup)
        if winner.file.name != name:
            transaction.on_commit(lambda: default_storage.delete(name))
        return winner


def einvoice_bytes(stored: EInvoiceFile) -> tuple[str, bytes]:
    with stored.file.open("rb") as handle:
        content = handle.read()
    if hashlib.sha256(content).hexdigest() != stored.sha256:
        raise ValueError(f"the archived e-invoice {stored.file.name} does not match its SHA-256")
    fmt = FORMATS[stored.format]
    number = stored.invoice.number if stored.invoice_id else stored.credit_note.number  # type: ignore[union-attr]
    return f"{number}-{fmt.file_suffix}.xml", content


def invoice_einvoice_file(invoice: Invoice) -> tuple[str, bytes] | None:
    """The archived e-invoice of an issued invoice as (filename, XML), archiving it first if the render task has
    not yet; None when the customer takes no e-invoice. For the admin, the portal and the API."""
    if invoice.is_draft or format_for(invoice.customer_snapshot) is None:
        return None
    stored = einvoice_store(invoice=invoice)
    return einvoice_bytes(stored) if stored is not None else None


def format_label(invoice: Invoice) -> str:
    fmt = format_for(invoice.customer_snapshot)
    return fmt.label if fmt is not None else ""


def einvoice_in_pdf(invoice: Invoice) -> bool:
    """Factur-X: the XML travels inside the PDF, there is no separate file to offer."""
    fmt = format_for(invoice.customer_snapshot)
    return fmt is not None and fmt.embedded_in_pdf
