"""Exchange rates for the company's books (docs/decisions/exchange-rates.md)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.audit import audited


class RateSource(models.TextChoices):
    ECB = "ecb", "ECB reference rate"
    IMPORT = "import", "Imported file"
    MANUAL = "manual", "Entered by staff"


@audited()
class ExchangeRate(models.Model):
    """One reference rate of one day: 1 ``base`` = ``rate`` ``currency`` (the ECB's convention: 1 EUR = 1.0512
    USD). Rates are kept for every day a source published them; a day without one (a weekend, a TARGET holiday)
    takes the latest rate before it (``accounting.rates.rate_on``)."""

    date = models.DateField()
    base = models.CharField(max_length=3, default="EUR", help_text="The currency the rate is quoted against.")
    currency = models.CharField(max_length=3, choices=settings.CURRENCY_CHOICES)
    rate = models.DecimalField(max_digits=18, decimal_places=8, help_text="Units of the currency per 1 base unit.")
    source = models.CharField(max_length=10, choices=RateSource.choices, default=RateSource.MANUAL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-date", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["date", "base", "currency"], name="exchange_rate_one_per_day"),
            models.CheckConstraint(condition=Q(rate__gt=0), name="exchange_rate_positive"),
            models.CheckConstraint(condition=~Q(currency=models.F("base")), name="exchange_rate_two_currencies"),
        ]
        indexes = [models.Index(fields=["base", "currency", "-date"], name="exchange_rate_lookup_idx")]

    def __str__(self) -> str:
        return f"{self.date}: 1 {self.base} = {self.rate.normalize():f} {self.currency}"


# The ledger sync's models (Xero, QuickBooks Online) live in their own module: accounting/ledger/models.py.
from accounting.ledger.models import LedgerConnection, SyncRecord  # noqa: E402, F401
