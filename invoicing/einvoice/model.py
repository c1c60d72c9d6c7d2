"""The e-invoice as EN 16931 sees it: one neutral description of an issued invoice or credit note, built from
the document by ``invoicing.einvoice.mapping`` and written out by the syntax builders (``ubl``, ``cii``).

Amounts are ``Decimal`` at the currency's minor units, exactly as the document states them: the builders never
compute money, they only write it. Business-term numbers (BT-…) in the comments are EN 16931's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

# UNCL 5305 VAT category codes that EN 16931 allows (BR-CL-17/18). A "reduced rate" is category S at its rate.
STANDARD = "S"
ZERO_RATED = "Z"
EXEMPT = "E"
REVERSE_CHARGE = "AE"
INTRA_COMMUNITY = "K"
EXPORT = "G"
OUTSIDE_SCOPE = "O"
CATEGORIES = (STANDARD, ZERO_RATED, EXEMPT, REVERSE_CHARGE, INTRA_COMMUNITY, EXPORT, OUTSIDE_SCOPE)
# Categories whose breakdown needs an exemption reason (text or code): BR-E-10, BR-AE-10, BR-IC-10, BR-G-10, BR-O-10.
NEEDS_EXEMPTION_REASON = frozenset({EXEMPT, REVERSE_CHARGE, INTRA_COMMUNITY, EXPORT, OUTSIDE_SCOPE})

INVOICE = "invoice"
CREDIT_NOTE = "credit_note"
TYPE_CODES = {INVOICE: "380", CREDIT_NOTE: "381"}  # UNTDID 1001 (BT-3)

# UNTDID 4461 payment means (BT-81)
CREDIT_TRANSFER = "30"
SEPA_CREDIT_TRANSFER = "58"
SEPA_DIRECT_DEBIT = "59"
CARD = "48"
CLEARING_BETWEEN_PARTNERS = "97"


@dataclass(frozen=True)
class Party:
    """Seller (BG-4) or buyer (BG-7)."""

    name: str
    country: str  # ISO 3166-1 alpha-2
    street: str = ""
    additional_street: str = ""
    city: str = ""
    postcode: str = ""
    subdivision: str = ""
    vat_id: str = ""  # BT-31 / BT-48
    tax_number: str = ""  # BT-32, the seller's national tax number (Steuernummer)
    registration: str = ""  # BT-30 / BT-47, legal registration (Handelsregister number)
    trading_name: str = ""  # BT-28 / BT-45
    identifier: str = ""  # BT-46 buyer identifier (our customer number)
    electronic_address: str = ""  # BT-34 / BT-49
    electronic_scheme: str = "EM"  # EAS code; EM = e-mail address
    contact_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""


@dataclass(frozen=True)
class AllowanceCharge:
    """An allowance (a coupon's discount) or charge: on the document (BG-20 / BG-21, in one VAT category and rate)
    or on a line (BG-27 / BG-28: category and rate are the line's)."""

    amount: Decimal
    category: str
    rate: Decimal
    reason: str
    charge: bool = False
    reason_code: str = ""  # UNTDID 5189 (allowances) / 7161 (charges); "95" = discount


@dataclass(frozen=True)
class Line:
    """An invoice or credit note line (BG-25). ``net_amount`` is quantity × net price as the document states it
    (after rounding per line); ``net_price`` is never negative (BR-27) — reductions are allowances."""

    id: str
    name: str
    quantity: Decimal
    net_price: Decimal
    net_amount: Decimal
    category: str
    rate: Decimal
    unit_code: str = "C62"  # UN/ECE rec 20: "one"
    description: str = ""
    seller_item_id: str = ""
    period_start: dt.date | None = None
    period_end: dt.date | None = None
    allowances: tuple[AllowanceCharge, ...] = ()  # line allowances (BG-27): the discount, already out of net_amount


@dataclass(frozen=True)
class TaxSubtotal:
    """One row of the VAT breakdown (BG-23): per category and rate."""

    category: str
    rate: Decimal
    taxable: Decimal
    tax: Decimal
    exemption_reason: str = ""  # BT-120
    exemption_code: str = ""  # BT-121 (VATEX code)


@dataclass(frozen=True)
class Payment:
    means_code: str = SEPA_CREDIT_TRANSFER
    remittance: str = ""  # BT-83, what the payer writes on the transfer
    iban: str = ""  # BT-84
    bic: str = ""  # BT-86
    account_name: str = ""  # BT-85
    mandate_reference: str = ""  # BT-89
    creditor_id: str = ""  # BT-90, SEPA creditor identifier
    debited_account: str = ""  # BT-91, the payer's IBAN (direct debit)


@dataclass(frozen=True)
class Document:
    kind: str  # INVOICE or CREDIT_NOTE
    number: str
    issue_date: dt.date
    currency: str
    seller: Party
    buyer: Party
    lines: tuple[Line, ...]
    tax_subtotals: tuple[TaxSubtotal, ...]
    line_total: Decimal  # BT-106
    allowance_total: Decimal  # BT-107
    charge_total: Decimal  # BT-108
    tax_exclusive: Decimal  # BT-109
    tax_total: Decimal  # BT-110
    tax_inclusive: Decimal  # BT-112
    prepaid: Decimal  # BT-113
    payable: Decimal  # BT-115
    allowances: tuple[AllowanceCharge, ...] = ()
    due_date: dt.date | None = None
    payment_terms: str = ""  # BT-20
    payment: Payment | None = None
    buyer_reference: str = ""  # BT-10 (Leitweg-ID for German public buyers)
    order_reference: str = ""  # BT-13
    preceding_number: str = ""  # BT-25, the invoice a credit note corrects
    preceding_date: dt.date | None = None  # BT-26
    period_start: dt.date | None = None  # BG-14
    period_end: dt.date | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)  # BT-22
    deliver_to: Party | None = None  # BG-15: where goods went; required for an intra-community supply (BR-IC-12)

    @property
    def type_code(self) -> str:
        return TYPE_CODES[self.kind]
