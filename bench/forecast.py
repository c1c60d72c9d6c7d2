"""The forecast's speed (reporting/forecast.py) over N subscriptions, at the horizons of the page; prints figures.

    .venv/bin/python bench/forecast.py [--database-url postgres://postgres@127.0.0.1:5432/billing_bench_forecast]
        [--subscriptions 100000] [--open-invoices 20000] [--days 7,30,90] [--repeat 3] [--small 2000] [--reuse]

The database (its name must contain "bench") is dropped and re-created. The subscriptions are the billing-run
bench's realistic mix (bench/billing_run.py ``make_data``: one template per kind built with the services and billed
for January, then copied in bulk — customers, subscriptions, items, discounts, pending items, usage);
``--open-invoices`` adds the admin bench's bulk invoices (``manage.py seed_scale``: a quarter of them open, most
overdue, so the reminders have work). The forecast is taken as of February 1 (every subscription's next billing
date), uncached, each horizon ``--repeat`` times (the median is printed with every figure); the target is ≤ 5 s for
the 90 days of 100,000 subscriptions.

Beside it, on a second database of ``--small`` subscriptions (same mix, name + "_small"), the same forecast with
every subscription priced on its own (``forecast_compute(grouped=False)``: the run's planning and invoice building
once per subscription, as the forecast did before the pricing signatures) and with the signatures, interleaved.

Each figure comes with the 1-minute load average at its start (the machine is shared), the CPU time of this process
and the CPU time of its PostgreSQL backend (from /proc), so a loaded machine's wall-clock can be read against them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from billing_run import configure, load, make_data, recreate_database, setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/billing_bench_forecast"
FEB_1 = dt.date(2026, 2, 1)


def database_exists(database_url: str) -> bool:
    import psycopg

    parts = urlsplit(database_url)
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres", query=""))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [parts.path.lstrip("/")]).fetchone()
    return found is not None


def backend_cpu() -> float:
    """CPU seconds (user + system) of this connection's PostgreSQL backend so far (same machine)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(days: int, *, grouped: bool) -> tuple[float, float, float, float, object]:
    """(wall, process CPU, backend CPU, load at start, forecast) of one uncached forecast."""
    from reporting.forecast import forecast_compute

    before, cpu, db = load(), time.process_time(), backend_cpu()
    began = time.perf_counter()
    forecast = forecast_compute(days=days, as_of=FEB_1, grouped=grouped)
    wall = time.perf_counter() - began
    return wall, time.process_time() - cpu, backend_cpu() - db, before, forecast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--open-invoices", type=int, default=20_000, help="seed_scale invoices (0: none)")
    parser.add_argument("--days", default="7,30,90")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", type=int, default=2_000, help="N of the side-by-side with the old path (0: none)")
    parser.add_argument("--reuse", action="store_true", help="keep the database a previous run seeded")
    parser.add_argument("--compare", action="store_true", help=argparse.SUPPRESS)  # the small run (a subprocess)
    args = parser.parse_args()

    configure(args.database_url)
    if args.reuse and not database_exists(args.database_url):
        args.reuse = False
    if not args.reuse:
        recreate_database(args.database_url)
    setup_django()
    from django.core.management import call_command

    from invoicing.models import Invoice
    from subscriptions.models import Subscription

    started = time.perf_counter()
    if not args.reuse:
        make_data(args.subscriptions, simple=False)
        if args.open_invoices:
            call_command("seed_scale", "--customers", "1000", "--invoices", str(args.open_invoices), verbosity=0)
    seeded = time.perf_counter() - started
    count = Subscription.objects.count()
    bulk = Invoice.objects.filter(number__startswith="SCL-").count()
    horizons = [int(value) for value in args.days.split(",")]
    if args.compare:
        print(f"  side by side, N={count:,} subscriptions (data in {seeded:.0f} s), uncached, one run each in turn:")
        for days in horizons:
            for grouped, label in ((False, "each subscription priced alone (old path)"), (True, "signatures")):
                wall, cpu, db, before, forecast = measure(days, grouped=grouped)
                invoices = sum(row.invoices for row in forecast.rows)  # type: ignore[attr-defined]
                print(
                    f"    {days:>2} days, {label:<42} {wall:7.2f} s wall, {cpu:6.2f} s CPU + {db:5.2f} s PostgreSQL "
                    f"— {invoices:,} invoices (load {before:.1f})"
                )
        return
    print(
        f"forecast bench — {os.cpu_count()} cores, N={count:,} subscriptions (realistic mix), {bulk:,} bulk "
        f"invoices; data in {seeded:.0f} s; as of {FEB_1}, uncached, median of {args.repeat}"
    )
    for days in horizons:
        walls, cpus, dbs, loads = [], [], [], []
        for _ in range(args.repeat):
            wall, cpu, db, before, forecast = measure(days, grouped=True)
            walls.append(wall)
            cpus.append(cpu)
            dbs.append(db)
            loads.append(before)
        invoices = sum(row.invoices for row in forecast.rows)  # type: ignore[attr-defined]
        reminders = sum(row.reminders for row in forecast.rows)  # type: ignore[attr-defined]
        entries = forecast.entry_count  # type: ignore[attr-defined]
        print(
            f"  {days:>2} days: {statistics.median(walls):6.2f} s wall (runs {', '.join(f'{w:.2f}' for w in walls)}), "
            f"{statistics.median(cpus):5.2f} s CPU + {statistics.median(dbs):5.2f} s PostgreSQL — {invoices:,} "
            f"invoices, {reminders:,} reminders, {entries:,} drill-down entries "
            f"(load {min(loads):.1f}–{max(loads):.1f})"
        )
    if args.small:
        small_url = args.database_url.rstrip("/") + "_small"
        command = [sys.executable, __file__, "--database-url", small_url, "--subscriptions", str(args.small)]
        command += ["--open-invoices", "0", "--days", args.days, "--compare"]
        if args.reuse:
            command.append("--reuse")
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
