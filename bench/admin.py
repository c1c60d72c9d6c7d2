"""Admin page timings on a large dataset: prints figures, asserts nothing (see docs/PERFORMANCE.md).

    .venv/bin/python bench/admin.py [--customers 100000] [--invoices 1000000] [--repeat 7] [--keep]

Uses its own database ``billing_admin_bench`` (or ``$BENCH_ADMIN_DATABASE``; re-created unless --keep and it
already holds the data), fills it with ``manage.py seed_scale``, rebuilds the metrics snapshot the dashboard and the
reports read (``refresh_metrics``, timed: what the "Metrics refresh" job costs) and times each page through
Django's test client as a superuser: median and number of queries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("BENCH_ADMIN_DATABASE", "billing_admin_bench")  # another name: a second dataset
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
os.environ["DJANGO_SETTINGS_MODULE"] = "billing_project.settings_test"

PAGES = [
    ("dashboard", "/admin/"),
    ("invoice list", "/admin/invoicing/invoice/"),
    ("invoice list, page 200", "/admin/invoicing/invoice/?p=200"),
    ("invoice search by number", "/admin/invoicing/invoice/?q=SCL-0500000"),
    ("invoice search by customer e-mail", "/admin/invoicing/invoice/?q=scale4242@scale.example"),
    ("invoices filtered: open", "/admin/invoicing/invoice/?status__exact=open"),
    ("customer list", "/admin/customers/customer/"),
    ("customer search", "/admin/customers/customer/?q=Scale+customer+77777"),
    ("report: revenue, 12 months", "/admin/reports/revenue/"),
    ("report: MRR movements, 12 months", "/admin/reports/mrr/"),
    ("report: MRR movements, XLSX", "/admin/reports/mrr/?format=xlsx"),
    ("report: revenue, CSV", "/admin/reports/revenue/?format=csv"),
    ("report: cohorts", "/admin/reports/cohorts/"),
    ("report: receivables ageing by customer (snapshot)", "/admin/reports/ageing/"),
    ("report: receivables ageing, CSV (snapshot)", "/admin/reports/ageing/?format=csv"),
    ("report: receivables ageing, other as-of (live)", "/admin/reports/ageing/?as_of=2020-01-01"),
]


def database_exists_with_data() -> bool:
    import psycopg

    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}") as conn:
            row = conn.execute("SELECT count(*) FROM invoicing_invoice").fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return False


def recreate_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="reuse the database if it already holds data")
    args = parser.parse_args()

    reuse = args.keep and database_exists_with_data()
    if not reuse:
        recreate_database()
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()
    call_command("migrate", verbosity=0)  # also on a kept database: tables added since it was filled
    if not reuse:
        started = time.monotonic()
        call_command("seed_scale", customers=args.customers, invoices=args.invoices)
        print(f"  data: {time.monotonic() - started:.0f} s")
    from reporting.metrics import metrics_refresh

    started = time.monotonic()
    refresh = metrics_refresh(triggered_by="bench")
    print(
        f"  metrics refresh: {time.monotonic() - started:.1f} s ({refresh.lines_read:,} recurring line groups, "
        f"{refresh.open_invoices_read or 0:,} open invoices)"
    )
    user, _ = User.objects.get_or_create(username="bench", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(user)
    print(f"admin bench — {args.invoices:,} invoices, {args.customers:,} customers, median of {args.repeat}")
    for label, url in PAGES:
        client.get(url)  # warm caches
        timings = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        print(f"  {label:<50} {statistics.median(timings):7.1f} ms   {len(queries)} queries")


if __name__ == "__main__":
    main()
