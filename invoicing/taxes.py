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
from customers.models import EU_VAT_COUNTRIES, TaxStatus
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


class TaxRateMissing(NotFound):
    """A taxable customer in the seller's country or the EU has no active tax rate: a configuration error,
    never silently 0 %."""


@dataclass(frozen=True)
class TaxResolution:
    treatment: str  # TaxTreatment value
    rate: TaxRate | None
    note: str = ""

    @property
    def percentage(self) -> Decimal:
        return self.rate.percentage if self.rate is not None and self.treatment == TaxTreatment.STANDARD else ZERO

    @property
    def inclusive(self) -> bool:
        return bool(self.rate is not None and self.treatment == TaxTreatment.STANDARD and self.rate.inclusive)

    @property
    def name(self) -> str:
        if self.treatment == TaxTreatment.STANDARD and self.rate is not None:
            return self.rate.name
        return str(TaxTreatment(self.treatment).label)


class TaxRateTable(dict[str, list[TaxRate]]):
    """Active tax rates by country code, and the seller's country they are applied from (from the seller profile):
    what ``resolve_tax`` needs, loaded once per billing run or chunk."""

    seller_country: str | None = None


def tax_rates_load(*, countries: Iterable[str] | None = None) -> TaxRateTable:
    """Active tax rates grouped by country code, and the seller's country, in two queries; ``countries`` narrows
    the rates."""
    queryset = TaxRate.objects.filter(active=True).order_by("country", "region", "pk")
    if countries is not None:
        queryset = queryset.filter(country__in=sorted({str(c).upper() for c in countries}))
    rates = TaxRateTable()
    for rate in queryset:
        rates.setdefault(str(rate.country), []).append(rate)
    rates.seller_country = seller_country_of_profile()
    return rates


def resolve_tax(
    *, customer: Customer, tax_rates_by_country: Mapping[str, Sequence[TaxRate]], seller_country: str | None = None
) -> TaxResolution:
    """Decide how ``customer`` is taxed. Order: exempt → explicit reverse charge → derived reverse charge (EU
    B2B with a tax id in another EU country than the seller) → the active rate of the customer's region, else
    of the country → outside the scope (customer outside the EU, no rate configured) → ``TaxRateMissing``."""
    if seller_country is None:
        seller_country = getattr(tax_rates_by_country, "seller_country", None)
    seller_country = (seller_country if seller_country is not None else seller_country_of_profile()).upper()
    country = str(customer.country).upper()
    if customer.tax_status == TaxStatus.EXEMPT:
        return TaxResolution(TaxTreatment.EXEMPT, None, EXEMPT_NOTE)
    if customer.tax_status == TaxStatus.REVERSE_CHARGE or (
        customer.tax_id
        and country != seller_country
        and country in EU_VAT_COUNTRIES
        and seller_country in EU_VAT_COUNTRIES
    ):
        eu_cross_border = (
            country in EU_VAT_COUNTRIES and seller_country in EU_VAT_COUNTRIES and country != seller_country
        )
        template = REVERSE_CHARGE_EU_NOTE if eu_cross_border else REVERSE_CHARGE_NOTE
        return TaxResolution(TaxTreatment.REVERSE_CHARGE, None, template.format(tax_id=customer.tax_id))
    rates = tax_rates_by_country.get(country, ())
    region = (customer.region or "").strip().casefold()
    regional = [r for r in rates if r.region and r.region.strip().casefold() == region] if region else []
    national = [r for r in rates if not r.region]
    chosen = next(iter(regional or national), None)
    if chosen is not None:
        return TaxResolution(TaxTreatment.STANDARD, chosen, "")
    if country != seller_country and country not in EU_VAT_COUNTRIES:
        return TaxResolution(TaxTreatment.OUTSIDE_SCOPE, None, OUTSIDE_SCOPE_NOTE.format(seller_country=seller_country))
    raise TaxRateMissing(f"no active tax rate for {country}{'-' + customer.region if customer.region else ''}")


# --- Line and invoice arithmetic ------------------------------------------------------------------------


class LineLike(Protocol):
    """What the arithmetic needs from a line; ``InvoiceLine`` satisfies it."""

    amount: Decimal
    quantity: Decimal
    unit_amount: Decimal
    discount_amount: Decimal
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
    name: str
    percentage: Decimal
    inclusive: bool
    taxable_amount: Decimal
    tax_amount: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
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
    summary: dict[tuple[str, Decimal, bool], list[Decimal]] = {}
    for line, amounts in zip(lines, computed, strict=True):
        key = (line.tax_name, Decimal(line.tax_percentage), bool(line.tax_inclusive))
        bucket = summary.setdefault(key, [ZERO, ZERO])
        bucket[0] += amounts.net_amount
        bucket[1] += amounts.tax_amount
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
        tax_summary=tuple(
            TaxSummaryRow(name=name, percentage=pct, inclusive=incl, taxable_amount=taxable, tax_amount=tax)
            for (name, pct, incl), (taxable, tax) in sorted(summary.items(), key=lambda item: (-item[0][1], item[0][0]))
        ),
    )


def apply_tax_resolution(lines: Iterable[InvoiceLine], resolution: TaxResolution) -> None:
    """Stamp the resolved rate on each line (in memory)."""
    for line in lines:
        line.tax_rate = resolution.rate if resolution.treatment == TaxTreatment.STANDARD else None
        line.tax_name = resolution.name
        line.tax_percentage = resolution.percentage
        if not getattr(line, "price_id", None):  # a catalog price says itself whether it includes tax
            line.tax_inclusive = resolution.inclusive


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
