"""Tax resolution and invoice arithmetic: pure functions, no queries (except the one loader).

Rules (docs/DESIGN.md "Billing rules", docs/decisions/taxes.md):
- each line amount is rounded to the currency's minor unit with ROUND_HALF_UP; totals are sums of rounded lines;
- discounts apply before tax;
- exclusive tax = round(net × rate / 100); inclusive tax = round(gross × rate / (100 + rate)), net = gross − tax.

A billing run resolves taxes for 1,000 customers with ``tax_rates_load()`` (one query) and ``resolve_tax()``
per customer, then ``compute_invoice_totals()`` per invoice, and stores the result with ``apply_totals()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from core import formatting as fmt
from core.errors import NotFound
from core.money import amount_limit_problem, round_amount
from core.tax_categories import RATED_CATEGORIES, TaxCategory
from customers.models import EU_VAT_COUNTRIES, TaxStatus, VatStatus
from customers.seller import seller_country as seller_country_of_profile
from invoicing.models import Invoice, InvoiceLine, TaxRate, TaxTreatment

if TYPE_CHECKING:
    from customers.models import Customer

ZERO = Decimal(0)
HUNDRED = Decimal(100)

REVERSE_CHARGE_EU_NOTE = (
    "Reverse charge: VAT to be accounted for by the recipient "
    "(Article 196, Council Directive 2006/112/EC). Customer VAT number: {tax_id}."
)
REVERSE_CHARGE_NOTE = "Reverse charge: tax to be accounted for by the recipient. Customer tax id: {tax_id}."
EXEMPT_NOTE = "Exempt from VAT."
OUTSIDE_SCOPE_NOTE = "Not subject to VAT in {seller_country}: place of supply outside the EU."
INTRA_COMMUNITY_NOTE = (
    "Intra-community supply, exempt from VAT (Article 138, Council Directive 2006/112/EC). "
    "Customer VAT number: {tax_id}."
)
EXPORT_NOTE = "Export outside the EU, exempt from VAT (Article 146, Council Directive 2006/112/EC)."
OUTSIDE_SCOPE_SUPPLY_NOTE = "Outside the scope of VAT."

# The name a line and its summary row carry when no configured rate names them (the rate's name otherwise).
CATEGORY_NAMES: Mapping[str, str] = {
    TaxCategory.STANDARD: "Standard",
    TaxCategory.REDUCED: "Reduced",
    TaxCategory.ZERO_RATED: "Zero rated",
    TaxCategory.EXEMPT: "Exempt",
    TaxCategory.REVERSE_CHARGE: "Reverse charge",
    TaxCategory.INTRA_COMMUNITY: "Intra-community supply",
    TaxCategory.EXPORT: "Export",
    TaxCategory.OUTSIDE_SCOPE: "Outside the scope of VAT",
}
# The invoice-wide treatment (Invoice.tax_treatment) a line's category stands for: what the customer's
# resolution was before taxes were per line, kept for the legal note and the filters of issued invoices.
CATEGORY_TREATMENTS: Mapping[str, str] = {
    TaxCategory.EXEMPT: TaxTreatment.EXEMPT,
    TaxCategory.REVERSE_CHARGE: TaxTreatment.REVERSE_CHARGE,
    TaxCategory.INTRA_COMMUNITY: TaxTreatment.REVERSE_CHARGE,
    TaxCategory.EXPORT: TaxTreatment.OUTSIDE_SCOPE,
    TaxCategory.OUTSIDE_SCOPE: TaxTreatment.OUTSIDE_SCOPE,
}
TREATMENT_CATEGORIES: Mapping[str, str] = {
    TaxTreatment.STANDARD: TaxCategory.STANDARD,
    TaxTreatment.EXEMPT: TaxCategory.EXEMPT,
    TaxTreatment.REVERSE_CHARGE: TaxCategory.REVERSE_CHARGE,
    TaxTreatment.OUTSIDE_SCOPE: TaxCategory.OUTSIDE_SCOPE,
}


class TaxRateMissing(NotFound):
    """A taxable customer in the seller's country or the EU has no active tax rate: a configuration error,
    never silently 0 %."""


class SellerCountryMissing(TaxRateMissing):
    """The seller profile has no country (a new installation's empty profile): which sales are domestic, EU
    cross-border (reverse charge) or outside the EU cannot be told, so no taxable line is taxed — the billing run
    holds such invoices for review with this message, and issuing a draft refuses naming it, as for a missing
    rate."""


SELLER_COUNTRY_MISSING = (
    "the seller profile has no country (Customers › Seller profile): domestic, EU cross-border and export sales "
    "cannot be told apart"
)


@dataclass(frozen=True)
class TaxResolution:
    """How one line (or, for ``resolve_tax`` without a category, a standard-rated line) is taxed for a customer:
    the EN 16931 category that applies, the configured rate (standard, reduced, zero) and the legal note."""

    treatment: str  # TaxTreatment value: the invoice-wide view of the category
    rate: TaxRate | None
    note: str = ""
    category: str = TaxCategory.STANDARD
    exemption_reason_code: str = ""
    exemption_reason: str = ""

    @property
    def percentage(self) -> Decimal:
        return self.rate.percentage if self.rate is not None and self.category in RATED_CATEGORIES else ZERO

    @property
    def inclusive(self) -> bool:
        return bool(self.rate is not None and self.category in RATED_CATEGORIES and self.rate.inclusive)

    @property
    def name(self) -> str:
        if self.rate is not None and self.category in RATED_CATEGORIES:
            return self.rate.name
        return CATEGORY_NAMES.get(self.category, str(TaxTreatment(self.treatment).label))


def _zero(category: str, note: str = "", code: str = "", reason: str = "") -> TaxResolution:
    return TaxResolution(
        CATEGORY_TREATMENTS.get(category, TaxTreatment.STANDARD),
        None,
        note,
        category=category,
        exemption_reason_code=code,
        exemption_reason=reason,
    )


class TaxRateTable(dict[str, list[TaxRate]]):
    """Active tax rates by country code, and the seller's country they are applied from (from the seller profile):
    what ``resolve_tax`` needs, loaded once per billing run or chunk."""

    seller_country: str | None = None


def tax_rates_load(*, countries: Iterable[str] | None = None) -> TaxRateTable:
    """Active tax rates grouped by country code, and the seller's country, in two queries; ``countries`` narrows
    the rates."""
    queryset = TaxRate.objects.filter(active=True).order_by("country", "region", "category", "pk")
    if countries is not None:
        queryset = queryset.filter(country__in=sorted({str(c).upper() for c in countries}))
    rates = TaxRateTable()
    for rate in queryset:
        rates.setdefault(str(rate.country), []).append(rate)
    rates.seller_country = seller_country_of_profile()
    return rates


def resolve_tax(
    *,
    customer: Customer,
    tax_rates_by_country: Mapping[str, Sequence[TaxRate]],
    seller_country: str | None = None,
    category: str = TaxCategory.STANDARD,
    exemption_reason_code: str = "",
    exemption_reason: str = "",
) -> TaxResolution:
    """Decide how a line of ``category`` (what is sold: the price's or the one-off line's category) is taxed for
    ``customer``. Pure, no query. In this order (docs/decisions/taxes.md "Resolution"):

    1. the line is exempt (E) → E with the line's own reason;
    2. the customer is exempt → E (the customer's exemption); the line is outside the scope (O) → O;
    3. reverse charge: the customer is marked so, or is an EU business with a VAT id (not one VIES found invalid)
       in another member state than the seller → K for goods sold as intra-community supply or export (K, G),
       otherwise AE; a line sold as AE (domestic reverse charge) is AE for every customer;
    4. a line sold as export (G) to a customer outside the EU → G;
    5. the active rate of the line's category (S, AA, Z; K and G that did not qualify are taxed at S) for the
       customer's region, else country; Z without a configured rate is 0 %;
    6. no rate and the customer is outside the EU and not in the seller's country → O;
    7. otherwise ``TaxRateMissing``, naming the country and the category.
    From step 3 on the seller's country decides: without one (an empty seller profile) ``SellerCountryMissing``."""
    if seller_country is None:
        seller_country = getattr(tax_rates_by_country, "seller_country", None)
    seller_country = (seller_country if seller_country is not None else seller_country_of_profile()).upper()
    country = str(customer.country).upper()
    if category == TaxCategory.EXEMPT:  # before the customer's exemption: the line's own reason is the precise one
        reason = exemption_reason or EXEMPT_NOTE
        return _zero(TaxCategory.EXEMPT, reason, exemption_reason_code, reason)
    if customer.tax_status == TaxStatus.EXEMPT:
        return _zero(TaxCategory.EXEMPT, EXEMPT_NOTE, reason=EXEMPT_NOTE)
    if category == TaxCategory.OUTSIDE_SCOPE:
        return _zero(TaxCategory.OUTSIDE_SCOPE, OUTSIDE_SCOPE_SUPPLY_NOTE)
    if not seller_country:
        raise SellerCountryMissing(SELLER_COUNTRY_MISSING)
    eu_cross_border = country in EU_VAT_COUNTRIES and seller_country in EU_VAT_COUNTRIES and country != seller_country
    # A number VIES found not registered is no VAT id for the derived reverse charge: the customer is taxed as a
    # consumer (their country's rate) until staff correct it (docs/decisions/vat-validation.md).
    vat_id = customer.tax_id if getattr(customer, "vat_status", "") != VatStatus.INVALID else ""
    if (
        customer.tax_status == TaxStatus.REVERSE_CHARGE
        or (vat_id and eu_cross_border)
        or category == TaxCategory.REVERSE_CHARGE
    ):
        if category in (TaxCategory.INTRA_COMMUNITY, TaxCategory.EXPORT) and eu_cross_border and vat_id:
            return _zero(TaxCategory.INTRA_COMMUNITY, INTRA_COMMUNITY_NOTE.format(tax_id=customer.tax_id))
        template = REVERSE_CHARGE_EU_NOTE if eu_cross_border else REVERSE_CHARGE_NOTE
        return _zero(TaxCategory.REVERSE_CHARGE, template.format(tax_id=customer.tax_id))
    outside_eu = country != seller_country and country not in EU_VAT_COUNTRIES
    if category == TaxCategory.EXPORT and outside_eu:
        return _zero(TaxCategory.EXPORT, EXPORT_NOTE)
    rated = category if category in RATED_CATEGORIES else TaxCategory.STANDARD
    rates = [r for r in tax_rates_by_country.get(country, ()) if getattr(r, "category", TaxCategory.STANDARD) == rated]
    region = (customer.region or "").strip().casefold()
    regional = [r for r in rates if r.region and r.region.strip().casefold() == region] if region else []
    national = [r for r in rates if not r.region]
    chosen = next(iter(regional or national), None)
    if chosen is not None:
        return TaxResolution(TaxTreatment.STANDARD, chosen, "", category=rated)
    if rated == TaxCategory.ZERO_RATED:
        return TaxResolution(TaxTreatment.STANDARD, None, "", category=rated)
    if outside_eu:
        return _zero(TaxCategory.OUTSIDE_SCOPE, OUTSIDE_SCOPE_NOTE.format(seller_country=seller_country))
    where = f"{country}{'-' + customer.region if customer.region else ''}"
    kind = "" if rated == TaxCategory.STANDARD else f" {TaxCategory(rated).label.lower()}"
    raise TaxRateMissing(f"no active{kind} tax rate for {where}")


# --- Line and invoice arithmetic ------------------------------------------------------------------------


class LineLike(Protocol):
    """What the arithmetic needs from a line; ``InvoiceLine`` satisfies it."""

    amount: Decimal
    quantity: Decimal
    unit_amount: Decimal
    discount_amount: Decimal
    tax_category: str
    tax_exemption_reason_code: str
    tax_exemption_reason: str
    tax_name: str
    tax_percentage: Decimal
    tax_inclusive: bool


@dataclass(frozen=True)
class LineAmounts:
    amount: Decimal  # round(quantity × unit amount)
    discount_amount: Decimal
    net_amount: Decimal  # without tax, after discount
    tax_amount: Decimal
    total_amount: Decimal  # net + tax: what the line adds to the invoice total


@dataclass(frozen=True)
class TaxSummaryRow:
    """One row of the invoice's VAT breakdown: per category and rate (EN 16931 BG-23), with the exemption reason
    of an exempt category. Its amounts are sums of the lines' rounded amounts (docs/decisions/taxes.md)."""

    category: str
    name: str
    percentage: Decimal
    inclusive: bool
    taxable_amount: Decimal
    tax_amount: Decimal
    exemption_reason_code: str = ""
    exemption_reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "category": str(self.category),
            "exemption_reason_code": self.exemption_reason_code,
            "exemption_reason": self.exemption_reason,
            "name": self.name,
            "percentage": fmt.plain_decimal(self.percentage),
            "inclusive": self.inclusive,
            "taxable_amount": str(self.taxable_amount),
            "tax_amount": str(self.tax_amount),
        }


@dataclass(frozen=True)
class InvoiceTotals:
    currency: str
    lines: tuple[LineAmounts, ...]
    subtotal: Decimal  # Σ amount (before discounts; includes tax for inclusive rates)
    discount_total: Decimal
    tax_total: Decimal
    total: Decimal  # Σ line totals = subtotal − discounts + exclusive tax
    tax_summary: tuple[TaxSummaryRow, ...]

    def tax_summary_json(self) -> list[dict[str, Any]]:
        return [row.as_json() for row in self.tax_summary]


def tax_of(*, amount: Decimal, percentage: Decimal, inclusive: bool, currency: str) -> Decimal:
    """Tax on an already rounded amount: net (exclusive) or gross (inclusive) — rounded half-up."""
    if not percentage:
        return round_amount(ZERO, currency)
    if inclusive:
        return round_amount(amount * percentage / (HUNDRED + percentage), currency)
    return round_amount(amount * percentage / HUNDRED, currency)


def compute_line_amounts(
    *,
    quantity: Decimal,
    unit_amount: Decimal,
    discount_amount: Decimal,
    tax_percentage: Decimal,
    tax_inclusive: bool,
    currency: str,
    amount: Decimal | None = None,
) -> LineAmounts:
    """``amount`` given: the line's amount was already computed and rounded upstream (a proration, a tier's
    flat fee) and is taken as it is; otherwise it is round(quantity × unit amount)."""
    for value in (quantity, unit_amount, discount_amount, tax_percentage):
        if not isinstance(value, Decimal | int):
            raise TypeError(f"line amounts must be Decimal, not {type(value).__name__}")
        if not Decimal(value).is_finite():
            raise ValueError(f"{value} is not a number")
    # Checked before rounding: an absurd product would overflow the amount columns (a DataError) or even the
    # decimal context (quantize raises InvalidOperation past 28 digits).
    for figure in (Decimal(quantity) * Decimal(unit_amount) if amount is None else amount, discount_amount):
        if problem := amount_limit_problem(figure, currency):
            raise ValueError(f"line amount {problem}")
    if amount is None:
        amount = round_amount(Decimal(quantity) * Decimal(unit_amount), currency)
    elif amount != round_amount(amount, currency):
        raise ValueError(f"a given line amount must be rounded to the currency: {amount} {currency}")
    discount = round_amount(discount_amount, currency)
    if discount < 0:
        raise ValueError("a discount is a positive amount taken off the line")
    if discount and discount > amount:
        raise ValueError(f"discount {discount} exceeds the line amount {amount}")
    discounted = amount - discount
    tax = tax_of(amount=discounted, percentage=Decimal(tax_percentage), inclusive=tax_inclusive, currency=currency)
    net = discounted - tax if tax_inclusive else discounted
    return LineAmounts(amount=amount, discount_amount=discount, net_amount=net, tax_amount=tax, total_amount=net + tax)


def compute_invoice_totals(lines: Sequence[LineLike], currency: str, *, amounts_given: bool = False) -> InvoiceTotals:
    """Round every line on its own, then add the rounded values: the PDF adds up to the cent.
    ``amounts_given``: take each line's ``amount`` as computed upstream instead of quantity × unit amount."""
    computed = tuple(
        compute_line_amounts(
            quantity=line.quantity,
            unit_amount=line.unit_amount,
            discount_amount=line.discount_amount,
            tax_percentage=line.tax_percentage,
            tax_inclusive=line.tax_inclusive,
            currency=currency,
            # Lines priced from the catalog (they carry a price) were computed upstream — tiers, prorations —
            # and keep their rounded amount; manual lines are quantity × unit amount.
            amount=Decimal(line.amount) if amounts_given or getattr(line, "price_id", None) else None,
        )
        for line in lines
    )
    summary = tax_summary_rows(
        ((line, amounts.net_amount, amounts.tax_amount) for line, amounts in zip(lines, computed, strict=True)),
        currency,
    )
    zero = round_amount(ZERO, currency)
    for figure in (sum((a.amount for a in computed), zero), sum((a.total_amount for a in computed), zero)):
        if problem := amount_limit_problem(figure, currency):
            raise ValueError(f"invoice total {problem}")
    return InvoiceTotals(
        currency=currency,
        lines=computed,
        subtotal=sum((a.amount for a in computed), zero),
        discount_total=sum((a.discount_amount for a in computed), zero),
        tax_total=sum((a.tax_amount for a in computed), zero),
        total=sum((a.total_amount for a in computed), zero),
        tax_summary=summary,
    )


class SummaryLine(Protocol):
    tax_category: str
    tax_exemption_reason_code: str
    tax_exemption_reason: str
    tax_name: str
    tax_percentage: Decimal
    tax_inclusive: bool


def tax_summary_rows(
    lines: Iterable[tuple[SummaryLine, Decimal, Decimal]], currency: str | None = None
) -> tuple[TaxSummaryRow, ...]:
    """One row per (category, rate) of (line, net, tax) triples — an invoice's or a credit note's: the
    taxable amount and tax of a row are the sums of its lines' rounded net and tax, so the document adds up to
    the cent. Rates with the same percentage but a different name (a regional rate) or inclusiveness stay
    apart, and so do exempt lines with different reasons (each reason is printed). Highest rate first.
    ``currency``: write the sums at its minor unit (amounts read back from the database carry 3 decimals)."""
    buckets: dict[tuple[str, str, Decimal, bool, str, str], list[Decimal]] = {}
    for line, net, tax in lines:
        key = (
            line.tax_category or TaxCategory.STANDARD,
            line.tax_name,
            Decimal(line.tax_percentage),
            bool(line.tax_inclusive),
            line.tax_exemption_reason_code or "",
            line.tax_exemption_reason or "",
        )
        bucket = buckets.setdefault(key, [ZERO, ZERO])
        bucket[0] += net
        bucket[1] += tax
    if currency is not None:  # sums of rounded amounts: this only drops the trailing zeros of the column scale
        buckets = {
            key: [round_amount(taxable, currency), round_amount(tax, currency)]
            for key, (taxable, tax) in buckets.items()
        }
    return tuple(
        TaxSummaryRow(
            category=category,
            name=name,
            percentage=pct,
            inclusive=inclusive,
            taxable_amount=taxable,
            tax_amount=tax,
            exemption_reason_code=code,
            exemption_reason=reason,
        )
        for (category, name, pct, inclusive, code, reason), (taxable, tax) in sorted(
            buckets.items(), key=lambda item: (-item[0][2], item[0][0], item[0][1], item[0][4], item[0][5])
        )
    )


def apply_tax_resolution(lines: Iterable[InvoiceLine], resolution: TaxResolution) -> None:
    """Stamp one resolution on each line (in memory): a provisional, untaxed draft."""
    for line in lines:
        _stamp(line, resolution)


def _stamp(line: InvoiceLine, resolution: TaxResolution) -> None:
    line.tax_rate = resolution.rate if resolution.category in RATED_CATEGORIES else None
    line.tax_category = resolution.category
    # An exempt line's reason is its input too: a provisional (untaxed) resolution must not wipe it.
    if resolution.category == TaxCategory.EXEMPT or getattr(line, "supply_tax_category", "") != TaxCategory.EXEMPT:
        line.tax_exemption_reason_code = resolution.exemption_reason_code
        line.tax_exemption_reason = resolution.exemption_reason
    line.tax_name = resolution.name
    line.tax_percentage = resolution.percentage
    if not getattr(line, "price_id", None):  # a catalog price says itself whether it includes tax
        line.tax_inclusive = resolution.inclusive


@dataclass(frozen=True)
class InvoiceTaxes:
    """What the lines' resolutions mean for the invoice: its treatment (standard when any line is taxed at a
    rate, else the zero category's) and its legal notes, each printed once."""

    treatment: str
    note: str


def apply_line_taxes(
    lines: Sequence[InvoiceLine],
    *,
    customer: Customer,
    tax_rates_by_country: Mapping[str, Sequence[TaxRate]],
    strict: bool = True,
) -> InvoiceTaxes:
    """Resolve every line's category for ``customer`` and stamp the result on it (in memory, no query). Lines
    of one invoice share a few categories, so each distinct (category, exemption reason) is resolved once.
    ``strict=False``: a line whose rate is missing stays untaxed (a draft's provisional totals) instead of
    raising ``TaxRateMissing``."""
    resolved: dict[tuple[str, str, str], TaxResolution] = {}
    for line in lines:
        supply = getattr(line, "supply_tax_category", "") or TaxCategory.STANDARD
        code = line.tax_exemption_reason_code if supply == TaxCategory.EXEMPT else ""
        reason = line.tax_exemption_reason if supply == TaxCategory.EXEMPT else ""
        key = (supply, code, reason)
        resolution = resolved.get(key)
        if resolution is None:
            try:
                resolution = resolve_tax(
                    customer=customer,
                    tax_rates_by_country=tax_rates_by_country,
                    category=supply,
                    exemption_reason_code=code,
                    exemption_reason=reason,
                )
            except TaxRateMissing:
                if strict:
                    raise
                resolution = TaxResolution(TaxTreatment.STANDARD, None, "", category=TaxCategory.STANDARD)
            resolved[key] = resolution
        _stamp(line, resolution)
    return invoice_taxes(resolved.values())


def invoice_taxes(resolutions: Iterable[TaxResolution]) -> InvoiceTaxes:
    resolutions = list(resolutions)
    notes = list(dict.fromkeys(r.note for r in resolutions if r.note))
    taxed = any(r.category in RATED_CATEGORIES for r in resolutions)
    treatment = TaxTreatment.STANDARD if taxed or not resolutions else resolutions[0].treatment
    return InvoiceTaxes(treatment=treatment, note="\n".join(notes))


def apply_totals(invoice: Invoice, lines: Sequence[InvoiceLine], totals: InvoiceTotals) -> None:
    """Copy computed amounts onto the invoice and its lines (in memory; the caller saves or bulk-inserts).
    Amount paid and credited are kept, so amount due stays total − paid − credited."""
    for line, amounts in zip(lines, totals.lines, strict=True):
        line.amount = amounts.amount
        line.discount_amount = amounts.discount_amount
        line.net_amount = amounts.net_amount
        line.tax_amount = amounts.tax_amount
        line.total_amount = amounts.total_amount
    invoice.subtotal = totals.subtotal
    invoice.discount_total = totals.discount_total
    invoice.tax_total = totals.tax_total
    invoice.total = totals.total
    invoice.amount_due = totals.total - invoice.amount_paid - invoice.amount_credited
    invoice.tax_summary = totals.tax_summary_json()


def distribute_amount(*, total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Split ``total`` in proportion to ``weights`` so that the rounded parts add up exactly to ``total``
    (the last non-zero weight takes the rounding remainder). Used for invoice-wide discounts and credit notes
    by amount.

    With non-negative weights no part goes negative: when the parts rounded up more than the last one can give
    back (a tiny last weight), the parts before it give up the rest, from the last backwards."""
    total = round_amount(total, currency)
    weight_sum = sum(weights, ZERO)
    if not weights or weight_sum == 0:
        raise ValueError("cannot distribute over zero weights")
    parts = [round_amount(total * weight / weight_sum, currency) for weight in weights]
    remainder = total - sum(parts, ZERO)
    nonzero = [i for i, weight in enumerate(weights) if weight]
    if remainder >= 0 or total < 0 or any(weight < 0 for weight in weights):
        parts[nonzero[-1]] += remainder
        return parts
    for index in reversed(nonzero):
        taken = max(remainder, -parts[index])
        parts[index] += taken
        remainder -= taken
        if not remainder:
            break
    return parts
