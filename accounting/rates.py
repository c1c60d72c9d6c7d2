"""Exchange rates: where they come from and how an amount becomes the company's currency
(docs/decisions/exchange-rates.md).

- Sources: the ECB's euro reference rates (``ecb_load``: the daily file, or the 90-day / full history file for a
  first load, from ``EXCHANGE_RATES_URL``), a CSV file for offline use (``rates_import_csv``), and staff in the
  admin. Stored per day as "1 EUR = x currency" (the ECB's quotation); a later load of the same day replaces it.
- Conversion (``RateBook``): the rate of a day is the latest published on or before it — the ECB publishes on
  TARGET working days, so a Saturday takes Friday's — and at most ``EXCHANGE_RATE_MAX_AGE_DAYS`` old, else the
  conversion refuses naming the currency and the day (never a silent stale or made-up rate). A company currency
  other than EUR converts through the euro: amount / rate(currency) × rate(company currency). The result is
  rounded once, half-up, to the company currency's minor unit.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from django.conf import settings
from django.db import transaction

from accounting.models import ExchangeRate, RateSource
from core.errors import InvalidInput, NotFound, Unavailable
from core.money import round_amount

QUOTE_BASE = "EUR"  # every stored rate is quoted against the euro, as the ECB publishes them
ECB_NAMESPACE = "{http://www.ecb.int/vocabulary/2002-08-01/eurofxref}"


class RateMissing(NotFound):
    """No usable rate for a currency on a day: load or enter it (the message names both)."""


@dataclass(frozen=True)
class Rate:
    date: dt.date
    currency: str
    rate: Decimal


def company_currency() -> str:
    return str(settings.COMPANY_CURRENCY)


# --- storing ---------------------------------------------------------------------------------------------


def rates_store(rates: Iterable[Rate], *, source: str) -> int:
    """Insert or replace the rates (one statement); returns how many. Currencies the product does not know are
    skipped: the ECB publishes some thirty, the product bills in ``CURRENCIES``."""
    known = {code for code, _ in settings.CURRENCY_CHOICES}
    rows = [
        ExchangeRate(date=rate.date, base=QUOTE_BASE, currency=rate.currency, rate=rate.rate, source=source)
        for rate in rates
        if rate.currency in known and rate.currency != QUOTE_BASE
    ]
    if rows:
        ExchangeRate.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["date", "base", "currency"],
            update_fields=["rate", "source", "updated_at"],
        )
    return len(rows)


def ecb_parse(content: bytes) -> list[Rate]:
    """The rates of an ECB ``eurofxref`` file (daily, 90 days or history): every ``Cube time=…`` day."""
    try:
        root = fromstring(content)
    except (ParseError, DefusedXmlException) as exc:
        raise InvalidInput(f"not an ECB reference rate file: {exc}", field="file") from exc
    rates = []
    for day in root.iter(f"{ECB_NAMESPACE}Cube"):
        when = day.get("time")
        if when is None:
            continue
        date = dt.date.fromisoformat(when)
        for quote in day:
            currency, value = quote.get("currency"), quote.get("rate")
            if currency and value:
                rates.append(Rate(date=date, currency=currency.upper(), rate=Decimal(value)))
    if not rates:
        raise InvalidInput("the ECB file holds no rates", field="file")
    return rates


def ecb_load(*, url: str | None = None, timeout: float = 30) -> int:
    """Fetch the ECB file at ``url`` (default ``EXCHANGE_RATES_URL``) and store its rates; the beat job
    "Exchange rates" runs it daily after the ECB publishes (around 16:00 CET)."""
    url = url or settings.EXCHANGE_RATES_URL
    if not url.startswith(("https://", "http://")):
        raise InvalidInput(f"{url!r} is not an http(s) URL", field="EXCHANGE_RATES_URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            content = response.read()
    except OSError as exc:
        raise Unavailable(f"the exchange rates could not be fetched from {url}: {exc}") from exc
    with transaction.atomic():
        return rates_store(ecb_parse(content), source=RateSource.ECB)


def rates_import_csv(text: str) -> int:
    """Import ``date,currency,rate`` rows (1 EUR = rate currency; a header line), all or nothing: every bad row is
    reported with its line number and column, and then nothing is stored."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = {"date", "currency", "rate"} - {name.strip().lower() for name in reader.fieldnames or []}
    if missing:
        raise InvalidInput(f"the file needs the columns date, currency, rate (missing: {', '.join(sorted(missing))})")
    known = {code for code, _ in settings.CURRENCY_CHOICES}
    rates: list[Rate] = []
    problems: list[str] = []
    for line, row in enumerate(reader, start=2):
        values = {key.strip().lower(): (value or "").strip() for key, value in row.items() if key}
        try:
            date = dt.date.fromisoformat(values["date"])
        except ValueError:
            problems.append(f"line {line}, date: {values['date']!r} is not a date (YYYY-MM-DD)")
            continue
        currency = values["currency"].upper()
        if currency not in known or currency == QUOTE_BASE:
            problems.append(f"line {line}, currency: {currency!r} is not a currency the product bills in (or EUR)")
            continue
        try:
            rate = Decimal(values["rate"].replace(",", "."))
        except InvalidOperation:
            rate = Decimal(0)
        if not rate.is_finite() or rate <= 0 or rate >= Decimal("1e10"):
            problems.append(f"line {line}, rate: {values['rate']!r} is not a positive number")
            continue
        rates.append(Rate(date=date, currency=currency, rate=rate.quantize(Decimal("1e-8"))))
    if problems:
        raise InvalidInput("nothing imported: " + "; ".join(problems[:20]) + ("; …" if len(problems) > 20 else ""))
    with transaction.atomic():
        return rates_store(rates, source=RateSource.IMPORT)


# --- converting ------------------------------------------------------------------------------------------


class RateBook:
    """The rates of a period in memory (one query), for converting many amounts: journals, reports."""

    def __init__(self, rates: Sequence[tuple[str, dt.date, Decimal]]) -> None:
        by_currency: dict[str, list[tuple[dt.date, Decimal]]] = defaultdict(list)
        for currency, date, rate in sorted(rates, key=lambda row: (row[0], row[1])):
            by_currency[currency].append((date, rate))
        self._dates = {currency: [date for date, _ in rows] for currency, rows in by_currency.items()}
        self._rates = {currency: [rate for _, rate in rows] for currency, rows in by_currency.items()}

    @classmethod
    def load(cls, *, date_from: dt.date, date_to: dt.date) -> RateBook:
        earliest = date_from - dt.timedelta(days=settings.EXCHANGE_RATE_MAX_AGE_DAYS)
        rows = ExchangeRate.objects.filter(base=QUOTE_BASE, date__range=(earliest, date_to)).values_list(
            "currency", "date", "rate"
        )
        return cls(list(rows))

    def rate(self, currency: str, day: dt.date) -> Decimal:
        """1 EUR = this many ``currency`` on ``day`` (the latest rate on or before it)."""
        if currency == QUOTE_BASE:
            return Decimal(1)
        dates = self._dates.get(currency, [])
        index = bisect.bisect_right(dates, day) - 1
        if index < 0 or (day - dates[index]).days > settings.EXCHANGE_RATE_MAX_AGE_DAYS:
            raise RateMissing(
                f"no exchange rate for {currency} on {day.isoformat()} (nor in the "
                f"{settings.EXCHANGE_RATE_MAX_AGE_DAYS} days before): load the ECB rates or enter one",
                field="currency",
            )
        return self._rates[currency][index]

    def factor(self, currency: str, day: dt.date, *, into: str | None = None) -> Decimal:
        """Multiply an amount in ``currency`` by this to get ``into`` (default: the company currency)."""
        into = into or company_currency()
        if currency == into:
            return Decimal(1)
        return self.rate(into, day) / self.rate(currency, day)

    def convert(self, amount: Decimal, currency: str, day: dt.date, *, into: str | None = None) -> Decimal:
        into = into or company_currency()
        if currency == into:
            return amount
        return round_amount(amount * self.factor(currency, day, into=into), into)


def to_company_currency(amount: Decimal, currency: str, day: dt.date) -> Decimal:
    """One amount (each call queries); use a ``RateBook`` for many."""
    return RateBook.load(date_from=day, date_to=day).convert(amount, currency, day)
