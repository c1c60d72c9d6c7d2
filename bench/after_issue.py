"""The after-issue work of a billing run — every new invoice's PDF rendered and stored, its e-mail queued and
sent — spread over K real Celery workers, with a lock-wait sampler beside it; prints figures (docs/PERFORMANCE.md,
"After issue").

    .venv/bin/python bench/after_issue.py [--database-url postgres://postgres@127.0.0.1:5432/billing_bench_after]
        [--subscriptions 10000] [--workers 1,2] [--chunk-size 1000]

The data is ``bench/billing_run.py``'s realistic mix (``--subscriptions N``: one February invoice each; several
currencies and tax rates, coupons, prorations, tiers, usage), in its own database (re-created; its name must
contain "bench"). Each measurement undoes the previous one, then bills February asynchronously on K worker
processes (solo pool, a private queue and Redis key prefix, as ``tests/reliability/procs.py`` starts them) **with
the after-issue hooks on, as in production**: each chunk commits its invoices and hands their ``invoice.issued``
events to the workers (``core.process_event_batch``); the settle phase applies customer credit, the deliver phase
queues the e-mail and a PDF render task, the notify phase sends the e-mail (``invoicing.send_outbound_email``,
Django's in-memory mail backend on the worker) with the PDF attached.

Measured from the run's start to the moment every new invoice has its stored PDF, every domain event is processed
and no e-mail is queued or sending. Meanwhile a sampler reads ``pg_stat_activity`` every 20 ms and counts the
samples in which one of the workers' backends waits for a lock (``wait_event_type = 'Lock'``) — the figure the
issue asks to be zero — naming the statements that waited. Each worker's share of the tasks comes from its log.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import billing_run as bench_run  # noqa: E402 - bench/billing_run.py: the data, the undo, the worker options

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/billing_bench_after"
TASK_LINE = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded")


@dataclass
class LockSampler:
    """Every ``interval`` seconds, the workers' backends (application_name ``after<n>``) that are active, and
    those of them waiting for a lock."""

    dsn: str
    interval: float = 0.02
    samples: int = 0
    busy_samples: int = 0
    lock_samples: int = 0
    waited: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lock-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    # pghistory prefixes each statement with its context (SELECT set_config(…);): skip it
                    "SELECT wait_event_type, left(regexp_replace(regexp_replace(query, '^SELECT set_config[^;]*;', ''),"
                    " '\\s+', ' ', 'g'), 90) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'after%' AND state = 'active'"
                ).fetchall()
                self.samples += 1
                self.busy_samples += bool(rows)
                locked = [query.strip() for wait, query in rows if wait == "Lock"]
                if locked:
                    self.lock_samples += 1
                    self.waited.update(locked)
                time.sleep(self.interval)


def undo_after_issue() -> None:
    """What the after-issue work of a measured run wrote (PDF rows and files stay out of the way: their
    invoices go), before ``bench_run.reset_state`` removes the invoices and events themselves."""
    bench_run.execute(
        "DELETE FROM invoicing_emailevent WHERE outbound_email_id IN (SELECT id FROM invoicing_outboundemail "
        "WHERE invoice_id > (SELECT invoice FROM bench_marker))",
        "DELETE FROM invoicing_outboundemail WHERE invoice_id > (SELECT invoice FROM bench_marker)",
        "DELETE FROM invoicing_documentpdf WHERE invoice_id > (SELECT invoice FROM bench_marker)",
        "DELETE FROM payments_paymentattempt WHERE invoice_id > (SELECT invoice FROM bench_marker)",
        "DELETE FROM core_eventhandlerrun WHERE event_id > (SELECT event FROM bench_marker)",
        "DELETE FROM payments_creditledgerentry WHERE invoice_id > (SELECT invoice FROM bench_marker)",
    )
    bench_run.reset_state()


def progress_counts() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM invoicing_invoice WHERE id > (SELECT invoice FROM bench_marker)), "
            "(SELECT count(*) FROM invoicing_documentpdf WHERE invoice_id > (SELECT invoice FROM bench_marker)), "
            "(SELECT count(*) FROM core_domainevent WHERE id > (SELECT event FROM bench_marker) "
            "   AND status <> 'processed'), "
            "(SELECT count(*) FROM invoicing_outboundemail WHERE invoice_id > (SELECT invoice FROM bench_marker)), "
            "(SELECT count(*) FROM invoicing_outboundemail WHERE invoice_id > (SELECT invoice FROM bench_marker) "
            "   AND status IN ('queued', 'sending'))"
        )
        invoices, pdfs, events_open, emails, emails_open = cursor.fetchone()
    return {
        "invoices": invoices,
        "pdfs": pdfs,
        "events_open": events_open,
        "emails": emails,
        "emails_open": emails_open,
    }


def measure(workers: int, expected: int, chunk_size: int, broker: Any, logs: Path, dsn: str) -> dict[str, Any]:
    from django.db import connection

    from invoicing.billing_tasks import billing_run_async
    from tests.reliability.procs import Worker, _env, wait_for

    undo_after_issue()
    started_workers = []
    for n in range(workers):
        name, log = f"after{n}", logs / f"k{workers}-w{n}.log"
        env = _env(broker=broker, settings_dict=connection.settings_dict, application_name=name, extra={})
        env["BILLING_AFTER_FINALIZE_HOOKS"] = "true"
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.procs", "worker", *bench_run.WORKER_OPTIONS,
             "-Q", broker.queue, "-n", f"{name}@%h"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        started_workers.append(Worker(name=name, process=process, log=log))
    sampler = LockSampler(dsn)
    try:
        for worker in started_workers:
            wait_for(lambda w=worker: " ready." in w.log_text(), timeout=60, message=f"{worker.name} ready")
        sampler.start()
        started = time.perf_counter()
        run = billing_run_async(as_of=bench_run.FEB_1, chunk_size=chunk_size)
        billed_at = None
        while True:
            time.sleep(0.25)
            assert all(w.alive() for w in started_workers), [w.log_text()[-2000:] for w in started_workers]
            if billed_at is None:
                run.refresh_from_db()
                if run.finished_at is not None:
                    billed_at = time.perf_counter() - started
            counts = progress_counts()
            if (
                billed_at is not None
                and counts["invoices"] == expected
                and counts["pdfs"] == expected
                and counts["events_open"] == 0
                and counts["emails_open"] == 0
            ):
                break
            if time.perf_counter() - started > 3600:
                raise RuntimeError(f"not done after an hour: {counts}")
        elapsed = time.perf_counter() - started
    finally:
        if sampler._thread is not None:
            sampler.stop()
        for worker in started_workers:
            worker.stop()
    tasks = {w.name: Counter(TASK_LINE.findall(w.log_text())) for w in started_workers}
    return {
        "workers": workers,
        "billed_s": billed_at,
        "done_s": elapsed,
        "counts": counts,
        "tasks": tasks,
        "samples": sampler.samples,
        "busy_samples": sampler.busy_samples,
        "lock_samples": sampler.lock_samples,
        "waited": sampler.waited.most_common(5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--subscriptions", type=int, default=10000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--chunk-size", type=int, default=1000)
    args = parser.parse_args()
    worker_counts = [int(k) for k in args.workers.split(",") if int(k) > 0]

    bench_run.configure(args.database_url)
    bench_run.recreate_database(args.database_url)
    media = Path(tempfile.mkdtemp(prefix="bench-after-media-"))
    os.environ["MEDIA_ROOT"] = str(media)  # the workers inherit it: their PDFs go to a throwaway folder
    bench_run.setup_django()
    from billing_project.celery import app
    from tests.reliability.procs import Broker

    started = time.perf_counter()
    bench_run.make_data(args.subscriptions, simple=False)
    print(
        f"after-issue bench — {os.cpu_count()} cores, N={args.subscriptions:,} subscriptions (realistic mix), chunks "
        f"of {args.chunk_size:,}; data in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    broker = Broker()
    app.conf.update(
        task_always_eager=False,
        task_default_queue=broker.queue,
        broker_transport_options={**(app.conf.broker_transport_options or {}), "global_keyprefix": broker.keyprefix},
    )
    logs = Path(tempfile.mkdtemp(prefix=f"bench-{broker.queue}-"))
    dsn = args.database_url.replace("postgres://", "postgresql://", 1)
    results = []
    try:
        for k in worker_counts:
            load = bench_run.load()
            result = measure(k, args.subscriptions, args.chunk_size, broker, logs, dsn)
            result["load"] = load
            results.append(result)
            counts = result["counts"]
            print(
                f"  {k} worker{'s' if k > 1 else ''} (load {load:.2f}): billed in {result['billed_s']:.1f} s, "
                f"everything after issue done in {result['done_s']:.1f} s = "
                f"{counts['invoices'] / result['done_s']:,.0f} invoices/s end to end; "
                f"{counts['pdfs']:,} PDFs, {counts['emails']:,} e-mails sent",
                flush=True,
            )
            for name, tasks in result["tasks"].items():
                print(f"    {name}: " + ", ".join(f"{task} {n:,}" for task, n in sorted(tasks.items())))
            print(
                f"    lock waits: {result['lock_samples']} of {result['busy_samples']:,} samples with a worker's "
                f"backend active ({result['samples']:,} samples in all, every 20 ms)"
                + (f"; waited on: {result['waited']}" if result["waited"] else "")
            )
    finally:
        broker.purge()
        undo_after_issue()
    if len(results) >= 2:
        one, two = results[0], results[1]
        print(f"  {two['workers']} workers vs {one['workers']}: {one['done_s'] / two['done_s']:.2f}× (end to end)")


if __name__ == "__main__":
    main()
