"""VAT categories of EN 16931 (UNCL 5305), shared by the catalog (subscriptions) and the invoices (invoicing).

A catalog price or a one-off line says what kind of supply it is (``TaxCategory``); ``invoicing.taxes`` resolves
it per line against the customer (country, tax status, VAT id) into the category and rate that apply, and the
invoice keeps one tax-summary row per category and rate (docs/decisions/taxes.md).

``REDUCED`` is stored as "AA" (UNCL 5305 "lower rate") so a reduced rate is told apart from the standard rate in
the catalog, the summary and the reports; EN 16931 (BR-CL-18) does not allow AA in an e-invoice, where a reduced
rate is category S with its own percentage: ``en16931_code()`` gives the code to write there.
"""

from __future__ import annotations

from django.db import models


class TaxCategory(models.TextChoices):
    STANDARD = "S", "Standard rate"
    REDUCED = "AA", "Reduced rate"
    ZERO_RATED = "Z", "Zero rated"
    EXEMPT = "E", "Exempt (with a reason)"
    REVERSE_CHARGE = "AE", "Reverse charge"
    INTRA_COMMUNITY = "K", "Intra-community supply"
    EXPORT = "G", "Export outside the EU"
    OUTSIDE_SCOPE = "O", "Outside the scope of VAT"


# Categories whose percentage comes from a TaxRate of the customer's country (per country and category).
RATED_CATEGORIES = frozenset({TaxCategory.STANDARD, TaxCategory.REDUCED, TaxCategory.ZERO_RATED})
# Categories of a TaxRate row: a configured rate is standard, reduced or zero.
TAX_RATE_CATEGORIES = [
    (TaxCategory.STANDARD.value, TaxCategory.STANDARD.label),
    (TaxCategory.REDUCED.value, TaxCategory.REDUCED.label),
    (TaxCategory.ZERO_RATED.value, TaxCategory.ZERO_RATED.label),
]


def en16931_code(category: str) -> str:
    """The VAT category code an EN 16931 e-invoice carries (BT-118, BT-151): the reduced rate is S there."""
    return TaxCategory.STANDARD.value if category == TaxCategory.REDUCED else category
