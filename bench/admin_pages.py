"""CPU per admin page of the load test's admin mix: prints figures, asserts nothing (docs/PERFORMANCE.md, "Load").

    .venv/bin/python bench/admin_pages.py [--database billing_load_perf] [--repeat 20] [--baseline REF]

The admin mix of ``bench/load.py`` (dashboard, invoice list, an invoice's change page, customer list, invoice search
by number), each page through Django's test client as the load test's superuser, on a database ``bench/load.py
--keep --database NAME`` left behind (or, when ``--database`` does not hold it, filled here as bench/load.py fills
it: 800 customers, 6,000 invoices, 500 subscriptions; the database is kept for the next run). Per page: the median
over ``--repeat`` requests of ``time.process_time()`` — the CPU this process spent, which other processes on a
busy machine do not inflate the way they inflate wall time — the wall-time median beside it, and the number of
queries.

``--baseline REF`` first measures the same pages with the code of git revision ``REF`` (``git archive`` into a
temporary folder, measured in a child process with this interpreter), then with the working tree, and prints both
side by side: before and after in the same run, on the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PAGES = ("dashboard", "invoice list", "invoice page", "customer list", "invoice search")


def _has_load_data(database: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}") as conn:
            row = conn.execute("SELECT count(*) FROM auth_user WHERE username = 'load-admin'").fetchone()
            return bool(row and row[0])
    except psycopg.Error:
        return False


def measure(*, code_root: Path, database: str, repeat: int) -> dict[str, dict[str, float]]:
    """Medians per page, measured with the code under ``code_root`` (this process imports it)."""
    sys.path.insert(0, str(BENCH))
    # bench/load.py: the load test's environment, its data and its staff user
    from load import STAFF_USERNAME, configure, fill, recreate_database

    sys.path.insert(0, str(code_root))  # ahead of the working tree, which bench/load.py puts first
    configure(database, Path(tempfile.mkdtemp(prefix="billing-admin-pages-")) / "media")
    filled = _has_load_data(database)
    if not filled:
        recreate_database(database)
    import django

    django.setup()
    if not filled:  # the load test's data, as bench/load.py fills it (without its billing loop's invoices)
        fill(customers=300, invoices=6000, subscriptions=500)
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from invoicing.models import Invoice

    staff = User.objects.get(username=STAFF_USERNAME)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(staff)
    session = client.session  # signed in with the second factor, as bench/load.py's staff_login leaves it
    session[DEVICE_ID_SESSION_KEY] = TOTPDevice.objects.get(user=staff).persistent_id
    session.save()
    # the invoice bench/load.py opens and searches for (the middle one of the seeded, numbered invoices)
    seeded = Invoice.objects.filter(billing_run__isnull=True)
    invoice = seeded.exclude(number="").order_by("pk")[seeded.count() // 2]
    paths = dict(
        zip(
            PAGES,
            (
                "/admin/",
                "/admin/invoicing/invoice/",
                f"/admin/invoicing/invoice/{invoice.pk}/change/",
                "/admin/customers/customer/",
                f"/admin/invoicing/invoice/?q={invoice.number}",
            ),
            strict=True,
        )
    )
    figures = {}
    for page, path in paths.items():
        for _ in range(3):  # warm: imports, the template cache, the dashboard's cached figures
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}")
        cpu, wall = [], []
        for _ in range(repeat):
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            client.get(path)
            cpu.append((time.process_time() - started_cpu) * 1000)
            wall.append((time.perf_counter() - started_wall) * 1000)
        with CaptureQueriesContext(connection) as queries:
            client.get(path)
        figures[page] = {
            "cpu_ms": round(statistics.median(cpu), 1),
            "wall_ms": round(statistics.median(wall), 1),
            "queries": len(queries.captured_queries),
        }
    return figures


def measure_revision(*, revision: str, database: str, repeat: int) -> dict[str, dict[str, float]]:
    """``measure`` with the code of a git revision, in a child process (Django is set up once per process)."""
    with tempfile.TemporaryDirectory(prefix="billing-admin-pages-base-") as folder:
        archive = subprocess.run(["git", "archive", revision], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--json",
                "--database",
                database,
                "--repeat",
                str(repeat),
                "--code-root",
                folder,
            ],
            cwd=folder,  # the working directory ends up on sys.path too (Celery's loader puts it there)
            check=True,
            capture_output=True,
            text=True,
        )
    figures: dict[str, dict[str, float]] = json.loads(child.stdout.strip().splitlines()[-1])
    return figures


def report(figures: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]] | None, label: str) -> str:
    if baseline is None:
        lines = ["| page | CPU (median) | wall (median) | queries |", "| --- | --- | --- | --- |"]
        for page, row in figures.items():
            lines.append(f"| {page} | {row['cpu_ms']:.1f} ms | {row['wall_ms']:.1f} ms | {row['queries']} |")
        total = sum(row["cpu_ms"] for row in figures.values())
        lines.append(f"| the mix (one of each) | {total:.1f} ms | | |")
        return "\n".join(lines)
    lines = [
        f"| page | CPU before ({label}) | CPU after | change | queries before → after |",
        "| --- | --- | --- | --- | --- |",
    ]
    for page, row in figures.items():
        before = baseline[page]
        change = (row["cpu_ms"] - before["cpu_ms"]) / before["cpu_ms"] * 100 if before["cpu_ms"] else 0.0
        lines.append(
            f"| {page} | {before['cpu_ms']:.1f} ms | {row['cpu_ms']:.1f} ms | {change:+.0f} % | "
            f"{before['queries']} → {row['queries']} |"
        )
    total_before = sum(row["cpu_ms"] for row in baseline.values())
    total_after = sum(row["cpu_ms"] for row in figures.values())
    lines.append(
        f"| the mix (one of each) | {total_before:.1f} ms | {total_after:.1f} ms | "
        f"{(total_after - total_before) / total_before * 100:+.0f} % | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="billing_load_perf", help="a database bench/load.py --keep left")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--baseline", default="", help="git revision to measure first, for before / after")
    parser.add_argument("--code-root", default=str(ROOT), help=argparse.SUPPRESS)  # the baseline's child process
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    options = parser.parse_args()
    baseline = None
    if options.baseline:
        baseline = measure_revision(revision=options.baseline, database=options.database, repeat=options.repeat)
    figures: Any = measure(code_root=Path(options.code_root), database=options.database, repeat=options.repeat)
    if options.json:
        print(json.dumps(figures))
        return
    print(f"load average {os.getloadavg()[0]:.1f}; median of {options.repeat} requests per page, test client")
    print(report(figures, baseline, options.baseline))


if __name__ == "__main__":
    main()
