"""Import throughput on PostgreSQL: prints figures, asserts nothing (docs/PERFORMANCE.md, "Imports").

    .venv/bin/python bench/imports.py [--rows 1000] [--repeat 3] [--database billing_bench_imports]

Side by side in one run: the customer CSV import (each row validated like the admin form, one transaction) and
the bank-statement CSV import (each transaction matched against the open invoices), against the database's own
speed for the same rows (``bulk_create`` of the customers, of the bank transactions). The database named by
``--database`` on the local PostgreSQL is dropped and re-created.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
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
    parser.add_argument("--rows", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", default="billing_bench_imports")
    args = parser.parse_args()

    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{args.database}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "billing_project.settings_test"
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
    recreate_database(args.database)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)

    from customers.models import Customer
    from customers.services import customers_import_csv
    from payments.bank_import import bank_statement_import
    from payments.models import BankStatement, BankTransaction

    def clear() -> None:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE payments_banktransaction, payments_bankstatement, customers_customer CASCADE")

    def timed(call: object) -> float:
        started = time.perf_counter()
        call()  # type: ignore[operator]
        return time.perf_counter() - started

    n = args.rows
    customer_csv = "name,email,country,currency\n" + "".join(
        f"Customer {i},c{i}@example.com,DE,EUR\n" for i in range(n)
    )
    statement_csv = "Transaction id;Booking date;Amount;Currency;Payer;IBAN;Remittance information\n" + "".join(
        f"TX-{i};2026-03-12;{i % 500 + 1},00;EUR;Payer {i};;membership {i}\n" for i in range(n)
    )
    results: dict[str, list[float]] = {k: [] for k in ("customers", "customers_bulk", "bank", "bank_bulk")}
    for _ in range(args.repeat):
        clear()
        results["customers"].append(timed(lambda: customers_import_csv(stream=io.BytesIO(customer_csv.encode()))))
        clear()
        results["customers_bulk"].append(
            timed(
                lambda: Customer.objects.bulk_create(
                    Customer(name=f"Customer {i}", email=f"c{i}@example.com", country="DE", currency="EUR")
                    for i in range(n)
                )
            )
        )
        clear()
        results["bank"].append(timed(lambda: bank_statement_import(data=statement_csv.encode(), format="csv")))
        clear()

        def bank_bulk() -> None:
            statement = BankStatement.objects.create(
                filename="bench.csv", format="csv", sha256=f"{time.time_ns():064d}"
            )
            BankTransaction.objects.bulk_create(
                BankTransaction(
                    statement=statement,
                    transaction_id=f"TX-{i}",
                    booking_date="2026-03-12",
                    amount=i % 500 + 1,
                    currency="EUR",
                    counterparty_name=f"Payer {i}",
                    remittance=f"membership {i}",
                    status="unmatched",
                )
                for i in range(n)
            )

        results["bank_bulk"].append(timed(bank_bulk))

    def rate(key: str) -> float:
        return n / statistics.median(results[key])

    print(f"rows per file: {n}, runs: {args.repeat} (median)")
    print(
        f"customer import   {rate('customers'):8.0f} rows/s   bulk_create baseline {rate('customers_bulk'):8.0f} rows/s"
    )
    print(f"bank import       {rate('bank'):8.0f} rows/s   bulk_create baseline {rate('bank_bulk'):8.0f} rows/s")
    print(
        f"a full file of {10_000} rows (IMPORT_MAX_ROWS): customers ≈ {10_000 / rate('customers'):.1f} s, "
        f"bank ≈ {10_000 / rate('bank'):.1f} s"
    )


if __name__ == "__main__":
    main()
