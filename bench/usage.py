"""Usage events at scale: prints figures side by side with a baseline, asserts nothing (docs/PERFORMANCE.md,
"Usage events").

    .venv/bin/python bench/usage.py [--customers 200] [--one-by-one 1000] [--http-batches 120] [--threads 2]
                                    [--copy-events 300000] [--stored 10000000] [--repeat 3]
                                    [--database billing_bench_usage] [--keep] [--baseline REF] [--only copy]

1. Re-creates its own PostgreSQL database (``--database``, dropped at the end unless ``--keep``), migrates it and
   creates ``--customers`` customers, each with a monthly subscription to a metered price of the metric
   ``api-calls`` (sum of the property ``calls``), started 2026-01-01.
2. HTTP: gunicorn with 2 workers serving ``POST /api/v1/events`` — once with 1 thread per worker, once with
   ``--threads`` (default 2; whether a second thread helps — one request checked while another waits for
   PostgreSQL — depends on the machine's load) — 4 client threads posting batches of 1,000 events (bodies
   encoded beforehand); events/s = events accepted / wall time. Baseline: the same service called in-process
   (no HTTP), and the one-event-per-call path staff and the old CSV use (``usage_record_create``).
   The API's rate limit is off for the run (``API_RATE_LIMIT_PER_MINUTE=0``): it limits requests, not events.
3. COPY: ``manage.py import_usage_events`` of an NDJSON file of ``--copy-events`` events, with the CPU seconds
   it took in this process (decode, checks, COPY text) and in its PostgreSQL backend (COPY, the one
   ``INSERT … SELECT``, commit) — on a busy machine the CPU seconds say more than the wall time. Baseline: the old
   usage CSV import (``import_usage``: every row through the ORM, ``bulk_create``).
   ``--baseline REF`` (e.g. a commit before a change) also puts the import of the code at git ``REF`` side by
   side with this tree's, same file size, same run: the tree at REF is exported (``git archive``) and each
   side imports in a child process of its own (its own database, migrated by its own code, so each has its own
   schema and indexes), the two alternating run by run, so both see the same machine load.
   ``--only copy`` runs this step alone (setup, then the imports).
4. Aggregate: ``--stored`` events in the table (written by ``INSERT … SELECT generate_series``, indexes built
   after, then ``VACUUM ANALYZE``), spread evenly over the customers and over January–October; the median time
   of (a) one customer's March aggregate as the billing run reads it (``usage_totals`` on (item, billing date)
   INCLUDE (usage date, value)), (b) the customer's current usage as the API and the subscription page read it
   (``usage_current``: its items, then the same aggregate — January 1 to March 31, nothing being invoiced),
   (c) baseline: the customer's March by (customer, metric, timestamp) with index scans disabled (a table
   without an index for it; the table has had none since subscriptions 0014). The plan printed is (a)'s.
Each figure is the median of ``--repeat`` runs (the aggregate: of 25 customers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from load import configure, drop_database, free_port, recreate_database, start_gunicorn, wait_until_up  # noqa: E402

BATCH = 1000
START = dt.date(2026, 1, 1)


def setup(customers: int) -> dict[str, Any]:
    from django.core.management import call_command
    from djmoney.money import Money

    from customers.models import Customer
    from subscriptions.models import Aggregation, BillableMetric, Price, PricingModel, Product, UsageType
    from subscriptions.services import ItemSpec, subscription_create

    call_command("migrate", verbosity=0)
    metric = BillableMetric.objects.create(
        code="api-calls", name="API calls", aggregation=Aggregation.SUM, field_name="calls"
    )
    product = Product.objects.create(name="API calls")
    price = Price.objects.create(
        product=product,
        unit_amount=Money(Decimal("0.001"), "EUR"),
        pricing_model=PricingModel.PER_UNIT,
        usage_type=UsageType.METERED,
        metric=metric,
    )
    rows = Customer.objects.bulk_create(
        [
            Customer(name=f"Bench {n}", email=f"b{n}@bench.example", external_id=f"C{n:05d}", country="DE")
            for n in range(customers)
        ]
    )
    subscriptions = [
        subscription_create(customer=customer, items=[ItemSpec(price=price, quantity=0)], start_date=START)
        for customer in rows
    ]
    return {"metric": metric, "price": price, "customers": rows, "subscriptions": subscriptions}


def event_dicts(prefix: str, count: int, customers: int) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"{prefix}-{n}",
            "code": "api-calls",
            "timestamp": f"2026-01-{1 + n % 28:02d}T{n % 24:02d}:00:00Z",
            "external_customer_id": f"C{n % customers:05d}",
            "properties": {"calls": 1 + n % 50, "region": "eu" if n % 3 else "us"},
        }
        for n in range(count)
    ]


def in_process(prefix: str, batches: int, customers: int) -> float:
    import msgspec

    from subscriptions.services import usage_events_ingest
    from subscriptions.usage_schema import event_decoder

    bodies = [
        [event_decoder.decode(msgspec.json.encode(e)) for e in event_dicts(f"{prefix}{b}", BATCH, customers)]
        for b in range(batches)
    ]
    started = time.perf_counter()
    for events in bodies:
        usage_events_ingest(events=events)
    return batches * BATCH / (time.perf_counter() - started)


def one_by_one(prefix: str, count: int, subscriptions: list[Any]) -> float:
    from subscriptions.services import usage_record_create

    items = [s.items.get() for s in subscriptions]
    started = time.perf_counter()
    for n in range(count):
        usage_record_create(
            subscription_item=items[n % len(items)],
            quantity=Decimal(1 + n % 50),
            timestamp=dt.datetime(2026, 1, 1 + n % 28, 12, tzinfo=dt.UTC),
            idempotency_key=f"{prefix}-{n}",
        )
    return count / (time.perf_counter() - started)


def http_rate(port: int, key: str, prefix: str, batches: int, customers: int, threads: int = 4) -> float:
    bodies = [json.dumps({"events": event_dicts(f"{prefix}{b}", BATCH, customers)}).encode() for b in range(batches)]
    accepted = [0] * threads
    failures: list[str] = []

    def client(worker: int) -> None:
        for body in bodies[worker::threads]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request(
                "POST",
                "/api/v1/events",
                body=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            payload = response.read()
            connection.close()
            if response.status not in (200, 202):
                failures.append(f"{response.status}: {payload[:300]!r}")
                continue
            accepted[worker] += json.loads(payload)["accepted"]

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, first: {failures[0]}")
    return sum(accepted) / elapsed


def _backend_cpu_seconds() -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend (same machine: /proc)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def copy_rate(prefix: str, count: int, customers: int, workdir: Path) -> tuple[float, float, float]:
    """(events/s, this process's CPU seconds, the backend's CPU seconds) of one import."""
    from django.core.management import call_command

    path = workdir / f"{prefix}.ndjson"
    with path.open("w", encoding="utf-8") as out:
        for event in event_dicts(prefix, count, customers):
            out.write(json.dumps(event) + "\n")
    backend = _backend_cpu_seconds()
    started, cpu = time.perf_counter(), time.process_time()
    call_command("import_usage_events", str(path), verbosity=0, stdout=open(os.devnull, "w"))  # noqa: SIM115
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return count / elapsed, cpu, _backend_cpu_seconds() - backend


def copy_child(args: argparse.Namespace) -> None:
    """One side of ``--baseline``: the import of the code at ``args.tree`` on ``args.database`` (created and
    set up by that code when ``--fresh``); prints one JSON line: events/s, CPU seconds of this process and of
    its PostgreSQL backend."""
    sys.path.insert(0, args.tree)
    workdir = Path(tempfile.mkdtemp(prefix="bench-usage-child-"))
    configure(args.database, workdir / "media")
    if args.fresh:
        recreate_database(args.database)
    import django

    django.setup()
    if args.fresh:
        setup(args.customers)
    rate, cpu, backend = copy_rate(args.prefix, args.copy_events, args.customers, workdir)
    print(json.dumps({"rate": rate, "cpu": cpu, "backend": backend}))


def copy_side_by_side(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """This tree's import and the one at ``args.baseline``, each in child processes on its own database,
    alternating; medians and CPU seconds per 100,000 events of both."""
    import subprocess

    baseline = workdir / "baseline"
    baseline.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
    sides = {"baseline": (str(baseline), f"{args.database}_base"), "new": (str(ROOT), f"{args.database}_new")}
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "new": []}
    for r in range(args.repeat):
        for side in ("baseline", "new") if r % 2 == 0 else ("new", "baseline"):
            tree, database = sides[side]
            command = [sys.executable, str(Path(__file__).resolve()), "--copy-child", "--tree", tree]
            command += ["--database", database, "--copy-events", str(args.copy_events)]
            command += ["--customers", str(args.customers), "--prefix", f"{side}{r}"]
            if r == 0:
                command.append("--fresh")
            output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=tree).stdout
            runs[side].append(json.loads(output.strip().splitlines()[-1]))
    if not args.keep:
        for _, database in sides.values():
            drop_database(database)
    per = 100_000 / args.copy_events
    return {
        f"copy_{side}": {
            "per_s": statistics.median(run["rate"] for run in side_runs),
            "runs": [round(run["rate"]) for run in side_runs],
            "cpu_per_100k": [(round(run["cpu"] * per, 2), round(run["backend"] * per, 2)) for run in side_runs],
            "cpu_median": (
                round(statistics.median(run["cpu"] for run in side_runs) * per, 2),
                round(statistics.median(run["backend"] for run in side_runs) * per, 2),
            ),
        }
        for side, side_runs in runs.items()
    }


def print_side_by_side(figures: dict[str, Any], ref: str) -> None:
    base, new = figures["copy_baseline"], figures["copy_new"]
    print(f"\n{'import_usage_events, NDJSON':<44}{'baseline (' + ref + ')':>30}{'this tree':>24}")
    print(f"{'events/s (median)':<44}{base['per_s']:>30,.0f}{new['per_s']:>24,.0f}   (target 100,000)")
    print(f"{'  runs':<44}{base['runs']!s:>30}{new['runs']!s:>24}")
    for label, index in (("python", 0), ("postgres", 1)):
        before, after = base["cpu_median"][index], new["cpu_median"][index]
        print(f"{'  CPU s per 100,000, ' + label:<44}{before:>30.2f}{after:>24.2f}")
    total_before, total_after = sum(base["cpu_median"]), sum(new["cpu_median"])
    print(f"{'  CPU s per 100,000, both':<44}{total_before:>30.2f}{total_after:>24.2f}")


def old_csv_rate(prefix: str, count: int, subscriptions: list[Any], workdir: Path) -> float:
    from django.core.management import call_command

    items = [s.items.get().pk for s in subscriptions]
    path = workdir / f"{prefix}.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write("subscription_item_id,quantity,timestamp,idempotency_key\n")
        for n in range(count):
            out.write(f"{items[n % len(items)]},{1 + n % 50},2026-01-{1 + n % 28:02d}T12:00:00Z,{prefix}-{n}\n")
    started = time.perf_counter()
    call_command("import_usage", str(path), stdout=open(os.devnull, "w"))  # noqa: SIM115
    return count / (time.perf_counter() - started)


_INDEXES = ("usage_item_billing_date_idx",)


def store_events(total: int, data: dict[str, Any]) -> float:
    """``total`` events over Jan–Oct for every subscription, written set-based; returns the seconds it took."""
    from django.db import connection

    subscriptions = data["subscriptions"]
    items = {s.pk: s.items.get().pk for s in subscriptions}
    per = total // len(subscriptions)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = ANY(%s)", [list(_INDEXES)])
        definitions = [row[0] for row in cursor.fetchall()]
        for name in _INDEXES:
            cursor.execute(f"DROP INDEX {name}")
        cursor.execute("CREATE TEMPORARY TABLE bench_subs (n int, customer_id bigint, item_id bigint)")
        cursor.execute(
            "INSERT INTO bench_subs SELECT * FROM unnest(%s::int[], %s::bigint[], %s::bigint[])",
            [
                list(range(len(subscriptions))),
                [s.customer_id for s in subscriptions],
                [items[s.pk] for s in subscriptions],
            ],
        )
        # 304 days from Jan 1: the events of subscription s are s's n-th event at Jan 1 + n * 304 days / per.
        cursor.execute(
            """
            INSERT INTO subscriptions_usageevent (transaction_id, customer_id, subscription_item_id, metric_id,
                value, properties, timestamp, usage_date, billing_date, created_at)
            SELECT 'stored-' || s.n || '-' || g, s.customer_id, s.item_id, %s, 1 + g %% 50,
                jsonb_build_object('calls', 1 + g %% 50),
                ts, (ts AT TIME ZONE 'Europe/Berlin')::date, (ts AT TIME ZONE 'Europe/Berlin')::date, now()
            FROM bench_subs s, generate_series(0, %s - 1) g,
                LATERAL (SELECT timestamptz '2026-01-01 00:00+01' + (g * interval '304 days') / %s AS ts) t
            """,
            [data["metric"].pk, per, per],
        )
        for definition in definitions:
            cursor.execute(definition)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE subscriptions_usageevent")
    return time.perf_counter() - started


def aggregate_times(data: dict[str, Any], samples: int = 25) -> dict[str, float]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from subscriptions.selectors import usage_current
    from subscriptions.usage import UsageSpan, usage_totals

    subscriptions = data["subscriptions"][:samples]
    metric = data["metric"]
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    end = dt.datetime(2026, 4, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    sql = (
        "SELECT SUM(value), COUNT(*) FROM subscriptions_usageevent "
        "WHERE customer_id = %s AND metric_id = %s AND timestamp >= %s AND timestamp < %s"
    )
    current_times, billing, seq = [], [], []
    quantities = set()
    with connection.cursor() as cursor:
        for subscription in subscriptions:
            # the customer's current usage as the API (GET /customers/{id}/usage) and the subscription page read
            # it: the customer's metered items, then usage_totals — nothing is invoiced, so January to March 31
            started = time.perf_counter()
            (current,) = usage_current(as_of=dt.date(2026, 3, 31), customer_id=subscription.customer_id)
            current_times.append(time.perf_counter() - started)
            item = subscription.items.get()
            span = UsageSpan(
                item.pk, dt.date(2026, 3, 1), dt.date(2026, 4, 1), dt.date(2026, 3, 1), dt.date(2026, 4, 1)
            )
            started = time.perf_counter()
            with CaptureQueriesContext(connection) as captured:
                result = usage_totals(spans=[span], metrics={item.pk: metric})
            billing.append(time.perf_counter() - started)
            quantities.add((result[span].events, current.events))
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + captured.captured_queries[-1]["sql"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET enable_indexscan = off; SET enable_indexonlyscan = off; SET enable_bitmapscan = off")
        for subscription in subscriptions[:3]:
            started = time.perf_counter()
            cursor.execute(sql, [subscription.customer_id, metric.pk, start, end])
            cursor.fetchone()
            seq.append(time.perf_counter() - started)
        cursor.execute("RESET enable_indexscan; RESET enable_indexonlyscan; RESET enable_bitmapscan")
    return {
        "current_ms": statistics.median(current_times) * 1000,
        "billing_ms": statistics.median(billing) * 1000,
        "no_index_ms": statistics.median(seq) * 1000,
        "events_per_period": sorted(quantities)[0][0],
        "events_to_march_31": sorted(quantities)[0][1],
        "plan": plan,  # type: ignore[dict-item]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--http-batches", type=int, default=120)
    parser.add_argument("--one-by-one", type=int, default=1000, help="events for the one-per-call baseline")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker (besides 1)")
    parser.add_argument("--copy-events", type=int, default=300_000)
    parser.add_argument("--stored", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--database", default="billing_bench_usage")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--baseline", metavar="REF", help="git ref whose import runs side by side with this tree's")
    parser.add_argument("--only", choices=["copy"], help="with --baseline: only the two imports side by side")
    # one side of --baseline (internal)
    parser.add_argument("--copy-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="copy", help=argparse.SUPPRESS)
    parser.add_argument("--fresh", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.copy_child:
        copy_child(args)
        return
    if args.only and not args.baseline:
        parser.error("--only copy needs --baseline REF")

    workdir = Path(tempfile.mkdtemp(prefix="bench-usage-"))
    if args.only == "copy":
        side_by_side(args, workdir)
        return
    configure(args.database, workdir / "media")
    os.environ["API_RATE_LIMIT_PER_MINUTE"] = "0"
    recreate_database(args.database)
    import django

    django.setup()
    from api.keys import api_key_create

    data = setup(args.customers)
    key = api_key_create(name="bench", scope="write").key
    figures: dict[str, Any] = {"customers": args.customers}

    rates = [one_by_one(f"one{r}", args.one_by_one, data["subscriptions"]) for r in range(args.repeat)]
    figures["one_by_one_per_s"] = statistics.median(rates)
    rates = [in_process(f"proc{r}-", 20, args.customers) for r in range(args.repeat)]
    figures["in_process_per_s"] = statistics.median(rates)

    for threads in sorted({1, args.threads}):
        port = free_port()
        server = start_gunicorn(port=port, workers=2, threads=threads, log=workdir / "gunicorn.log")
        try:
            wait_until_up(f"http://127.0.0.1:{port}", server)
            http_rate(port, key, f"warm{threads}-", 8, args.customers)
            rates = [
                http_rate(port, key, f"http{threads}t{r}-", args.http_batches, args.customers)
                for r in range(args.repeat)
            ]
            figures[f"http_{threads}t_per_s"] = statistics.median(rates)
            figures[f"http_{threads}t_runs"] = [round(r) for r in rates]
        finally:
            server.terminate()
            server.wait(timeout=30)

    runs = [copy_rate(f"copy{r}", args.copy_events, args.customers, workdir) for r in range(args.repeat)]
    figures["copy_per_s"] = statistics.median(rate for rate, _, _ in runs)
    figures["copy_runs"] = [round(rate) for rate, _, _ in runs]
    # CPU seconds per 100,000 events: (this process, PostgreSQL backend)
    figures["copy_cpu_per_100k"] = [
        (round(cpu * 100_000 / args.copy_events, 2), round(backend * 100_000 / args.copy_events, 2))
        for _, cpu, backend in runs
    ]
    rates = [old_csv_rate(f"csv{r}", 50_000, data["subscriptions"], workdir) for r in range(args.repeat)]
    figures["old_csv_per_s"] = statistics.median(rates)

    if args.stored:
        figures["store_seconds"] = store_events(args.stored, data)
        from subscriptions.models import UsageEvent

        figures["stored_events"] = UsageEvent.objects.count()
        figures.update(aggregate_times(data))

    plan = figures.pop("plan", "")
    print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in figures.items()}, indent=1))
    load = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} at the end")
    print(f"N: {BATCH} events per batch; medians of {args.repeat} runs")
    print(f"{'ingestion':<44}{'events/s':>12}")
    print(f"{'usage_record_create, one event per call':<44}{figures['one_by_one_per_s']:>12,.0f}")
    print(f"{'usage_events_ingest in-process, 1,000/batch':<44}{figures['in_process_per_s']:>12,.0f}")
    for threads in sorted({1, args.threads}):
        label = f"POST /api/v1/events, 2 workers x {threads} thr"
        print(f"{label:<44}{figures[f'http_{threads}t_per_s']:>12,.0f}   (target 20,000)")
    print(f"{'import_usage (old CSV, ORM rows)':<44}{figures['old_csv_per_s']:>12,.0f}")
    print(f"{'import_usage_events (NDJSON, COPY)':<44}{figures['copy_per_s']:>12,.0f}   (target 100,000)")
    print(f"{'  CPU s per 100,000 (python, postgres)':<44}{figures['copy_cpu_per_100k']}")
    if args.stored:
        print(
            f"\none customer's March over {figures['stored_events']:,} events ({figures['events_per_period']:,} in it)"
        )
        print(f"{'usage_totals (item, billing date) INCLUDE':<44}{figures['billing_ms']:>10.1f} ms   (target 50 ms)")
        label = f"usage_current, Jan 1-Mar 31 ({figures['events_to_march_31']:,})"
        print(f"{label:<44}{figures['current_ms']:>10.1f} ms")
        print(f"{'no index (sequential scan), customer + ts':<44}{figures['no_index_ms']:>10.1f} ms")
        print(plan)
    if not args.keep:
        from django.db import connections

        connections.close_all()
        drop_database(args.database)
    if args.baseline:
        side_by_side(args, workdir)


def side_by_side(args: argparse.Namespace, workdir: Path) -> None:
    load = os.getloadavg()
    figures = copy_side_by_side(args, workdir)
    print(json.dumps(figures, indent=1))
    end = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load[0]:.1f} at the start, {end[0]:.1f} at the end")
    print(f"N: {args.copy_events:,} events per import; medians of {args.repeat} runs, the two sides alternating")
    print_side_by_side(figures, args.baseline)


if __name__ == "__main__":
    main()
