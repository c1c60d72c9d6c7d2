"""The forecast's speed (reporting/forecast.py) over N subscriptions, at the horizons of the page; prints figures.

    .venv/bin/python bench/forecast.py [--database-url postgres://postgres@127.0.0.1:5432/billing_bench_forecast]
        [--subscriptions 100000] [--open-invoices 100000] [--days 7,30,90] [--repeat 2]

The database (its name must contain "bench") is dropped and re-created. The subscriptions are the billing-run
bench's realistic mix (bench/billing_run.py ``make_data``: built with the services, billed for January, copied in
bulk); ``--open-invoices`` adds the admin bench's bulk invoices (``manage.py seed_scale``: a quarter of them
open, most overdue, so the reminders have work). The forecast is taken as of February 1 (every subscription's
next billing date), uncached, each horizon ``--repeat`` times; the target is ≤ 5 s for 100,000 subscriptions.
Each figure is printed with the 1-minute load average at its start (the machine is shared)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from billing_run import configure, load, make_data, recreate_database, setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/billing_bench_forecast"
FEB_1 = dt.date(2026, 2, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--open-invoices", type=int, default=100_000, help="seed_scale invoices (0: none)")
    parser.add_argument("--days", default="7,30,90")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="keep the database a previous run seeded")
    args = parser.parse_args()

    configure(args.database_url)
    if not args.reuse:
        recreate_database(args.database_url)
    setup_django()
    from django.core.management import call_command

    from invoicing.models import Invoice
    from reporting.forecast import forecast_compute
    from subscriptions.models import Subscription

    started = time.perf_counter()
    if not args.reuse:
        make_data(args.subscriptions, simple=False)
        if args.open_invoices:
            call_command("seed_scale", "--customers", "1000", "--invoices", str(args.open_invoices), verbosity=0)
    args.subscriptions = Subscription.objects.count()
    args.open_invoices = Invoice.objects.filter(number__startswith="SCL-").count()
    print(
        f"forecast bench — {os.cpu_count()} cores, N={args.subscriptions:,} subscriptions (realistic mix), "
        f"{args.open_invoices:,} bulk invoices; data in {time.perf_counter() - started:.0f} s"
    )
    for days in (int(value) for value in args.days.split(",")):
        for _ in range(args.repeat):
            before = load()
            began = time.perf_counter()
            forecast = forecast_compute(days=days, as_of=FEB_1)
            elapsed = time.perf_counter() - began
            invoices = sum(row.invoices for row in forecast.rows)
            reminders = sum(row.reminders for row in forecast.rows)
            print(
                f"  {days:>2} days: {elapsed:6.2f} s — {invoices:,} invoices ({elapsed / max(invoices, 1) * 1000:.2f} "
                f"ms each), {reminders:,} reminders, {len(forecast.entries):,} drill-down entries (load {before:.1f})"
            )


if __name__ == "__main__":
    main()
