"""The company-currency side of a journal entry (docs/decisions/accounting-export.md, "Base currency").

A journal entry is written in its document's currency; each of its lines also carries the amount in the company
currency (``COMPANY_CURRENCY``) at the rate of the line's *rate date*: the document's date, except for a line that
clears an invoice's receivable (a payment, a credit note, customer credit applied), which is converted at the
invoice's issue date so the receivable leaves the books at the value it entered them. The entry must balance in
the company currency too, so two kinds of line are added, in the company currency only:

- **realised FX gain / loss**: for each line converted at another date than the document's, the difference between
  its value at the document's rate and at its own rate (``fx_gain`` / ``fx_loss`` accounts);
- **rounding**: what is left, the cents lost by converting each line on its own instead of the whole entry
  (``rounding`` account) — at most a few minor units per entry.

Rates come from ``accounting.rates.RateBook``, loaded lazily: an export of company-currency documents reads no rate,
and one whose payments settle older invoices loads the older rates once, in one more query. A missing rate raises
``RateMissing`` naming the currency and the day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from accounting.rates import QUOTE_BASE, RateBook, company_currency
from core.money import round_amount

ZERO = Decimal(0)
# Digits of a cross rate (neither side the euro) in the ``rate`` column; a euro rate is written as stored.
CROSS_RATE_PLACES = Decimal("0.000001")


class LazyRates:
    """A ``RateBook`` for ``[date_from, date_to]`` read on the first conversion that needs a rate; a date before the
    loaded range (an old invoice a payment settles) widens it with one query for the missing days."""

    def __init__(self, *, date_from: dt.date, date_to: dt.date) -> None:
        self.into = company_currency()
        self._range = (date_from, date_to)
        self._books: list[tuple[dt.date, dt.date, RateBook]] = []

    def _book(self, day: dt.date) -> RateBook:
        for start, end, book in self._books:
            if start <= day <= end:
                return book
        if not self._books:
            start, end = min(day, self._range[0]), max(day, self._range[1])
        else:  # the loaded days stay one contiguous range: load only the gap up to ``day``
            low, high = min(s for s, _, _ in self._books), max(e for _, e, _ in self._books)
            start, end = (day, low - dt.timedelta(days=1)) if day < low else (high + dt.timedelta(days=1), day)
        book = RateBook.load(date_from=start, date_to=end)
        self._books.append((start, end, book))
        return book

    def rate(self, currency: str, day: dt.date) -> Decimal:
        """Units of ``currency`` per one unit of the company currency on ``day`` (1 EUR = 1.05 USD → 1.05)."""
        if currency == self.into:
            return Decimal(1)
        book = self._book(day)
        rate = book.rate(currency, day) / book.rate(self.into, day)
        return rate if QUOTE_BASE in (currency, self.into) else rate.quantize(CROSS_RATE_PLACES)

    def convert(self, amount: Decimal, currency: str, day: dt.date) -> Decimal:
        if currency == self.into or not amount:
            return round_amount(amount, self.into) if currency == self.into else ZERO
        return self._book(day).convert(amount, currency, day, into=self.into)


@dataclass(frozen=True)
class BaseLine:
    """One line of an entry for conversion: ``amount`` signed (debit +, credit −) in the document currency."""

    amount: Decimal
    rate_date: dt.date


@dataclass(frozen=True)
class BaseAmounts:
    """The company-currency amount of each line (signed, in order), its rate, and the lines that make the entry
    balance: the realised FX difference (+ debit: a loss, − credit: a gain) and the rounding difference."""

    amounts: list[Decimal]
    rates: list[Decimal]
    fx_difference: Decimal
    rounding: Decimal


def base_amounts(lines: Sequence[BaseLine], *, currency: str, document_date: dt.date, rates: LazyRates) -> BaseAmounts:
    amounts = [rates.convert(line.amount, currency, line.rate_date) for line in lines]
    line_rates = [rates.rate(currency, line.rate_date) for line in lines]
    fx_difference = ZERO
    for line, amount in zip(lines, amounts, strict=True):
        if line.rate_date != document_date and currency != rates.into:
            # booked at its own (older) rate; at the document's rate it would be worth this much more
            fx_difference += rates.convert(line.amount, currency, document_date) - amount
    imbalance = sum(amounts, ZERO) + fx_difference
    return BaseAmounts(amounts=amounts, rates=line_rates, fx_difference=fx_difference, rounding=-imbalance)


def fx_accounts(accounts: dict[str, object]) -> tuple[str, str, str]:
    """The accounts of realised FX gains, FX losses and conversion rounding (``ACCOUNTING_ACCOUNTS``)."""
    return str(accounts["fx_gain"]), str(accounts["fx_loss"]), str(accounts["rounding"])
