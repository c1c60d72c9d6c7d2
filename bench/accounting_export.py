"""Accounting export speed on PostgreSQL: prints figures, asserts nothing (docs/PERFORMANCE.md).

    .venv/bin/python bench/accounting_export.py [--invoices 200] [--repeat 3] [--database billing_bench_export]

One month of invoices (half in EUR, half in USD and JPY) each paid the next month, exported per layout: the plain
CSV (the baseline: the same documents read and written without conversion), the journal in two currencies (every
line converted, the payments' exchange differences), the DATEV Buchungsstapel and the revenue recognition
entries. The database named by ``--database`` on the local PostgreSQL is dropped and re-created.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=200)  # creating them takes ~1 s each (issue, e-mail)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", default="billing_bench_export")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "billing_project.settings_test"
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    recreate_database(args.database)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from accounting.models import ExchangeRate
    from reporting.exports import accounting_export_write
    from tests.factories import CustomerFactory, InvoiceFactory, record_payment
    from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory

    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    march, april = dt.date(2026, 3, 1), dt.date(2026, 4, 1)
    for day in range(31):
        for when, usd, jpy in ((march, "1.08", "160"), (april, "1.10", "165")):
            date = when + dt.timedelta(days=day)
            ExchangeRate.objects.create(date=date, currency="USD", rate=Decimal(usd))
            ExchangeRate.objects.create(date=date, currency="JPY", rate=Decimal(jpy))
    started = time.perf_counter()
    currencies = ("EUR", "EUR", "USD", "JPY")
    amounts = {"EUR": Decimal("100.00"), "USD": Decimal("100.00"), "JPY": Decimal("10000")}
    for number in range(args.invoices):
        currency = currencies[number % 4]
        invoice = InvoiceFactory(
            customer=CustomerFactory(currency=currency),
            lines=[{"unit_amount": amounts[currency]}, {"description": "Extra", "unit_amount": amounts[currency]}],
            finalized=march + dt.timedelta(days=number % 28),
        )
        record_payment(
            customer=invoice.customer,
            amount=str(invoice.total),
            received_on=april + dt.timedelta(days=number % 28),
            currency=currency,
        )
    print(f"{args.invoices} invoices and payments created in {time.perf_counter() - started:.1f} s")

    period = {"date_from": march, "date_to": dt.date(2026, 4, 30)}
    for export_format in ("csv", "journal", "datev", "recognition"):
        timings, rows = [], 0
        for _ in range(args.repeat):
            out = io.StringIO()
            begin = time.perf_counter()
            summary = accounting_export_write(out=out, export_format=export_format, **period)
            timings.append(time.perf_counter() - begin)
            rows = summary.rows
        median = statistics.median(timings)
        print(f"{export_format:12} {rows:6} rows  median {median:6.2f} s  ({rows / median:8.0f} rows/s)")
    print("baseline: csv (no conversion); the machine's load makes these figures indicative only")


if __name__ == "__main__":
    main()
