"""Demo exchange rates: a year and a month of ECB-style daily rates (weekdays), around realistic mid rates with a
small deterministic drift, so the journals' company-currency amounts have a rate for every document date."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from accounting.models import RateSource
from accounting.rates import Rate, rates_store
from core.dates import billing_today

# 1 EUR = … (late-2026 orders of magnitude)
MID_RATES = {
    "USD": Decimal("1.0850"),
    "GBP": Decimal("0.8420"),
    "CHF": Decimal("0.9380"),
    "PLN": Decimal("4.2900"),
    "SEK": Decimal("11.2800"),
    "JPY": Decimal("162.40"),
    "BHD": Decimal("0.40900"),
}


def demo_rates(*, until: dt.date, days: int = 400) -> list[Rate]:
    rates = []
    for offset in range(days, -1, -1):
        day = until - dt.timedelta(days=offset)
        if day.weekday() >= 5:  # the ECB publishes on working days
            continue
        drift = Decimal((day.toordinal() * 37) % 41 - 20) / 1000  # within ±2 %
        for currency, mid in MID_RATES.items():
            rate = (mid * (1 + drift)).quantize(Decimal("1e-4") if mid < 100 else Decimal("1e-2"))
            rates.append(Rate(date=day, currency=currency, rate=rate))
    return rates


def seed_exchange_rates() -> int:
    return rates_store(demo_rates(until=billing_today()), source=RateSource.IMPORT)
