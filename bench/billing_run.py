"""Billing-run throughput on PostgreSQL: prints figures, asserts nothing (see docs/PERFORMANCE.md).

    .venv/bin/python bench/billing_run.py [--sizes 10000,100000] [--repeat 3] [--naive 2000] [--workers 20000]

Uses its own database ``billing_bench`` on the local PostgreSQL (dropped and re-created), monthly subscriptions
with 2–3 lines each (a flat plan, seats, and a metered item with usage on every third), German VAT. PDF and
e-mail are excluded (BILLING_AFTER_FINALIZE_HOOKS=false), as the issue asks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_NAME = "billing_bench"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
os.environ["DJANGO_SETTINGS_MODULE"] = "billing_project.settings_test"
os.environ["BILLING_AFTER_FINALIZE_HOOKS"] = "false"
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")

JAN_1 = dt.date(2026, 1, 1)
FEB_1 = dt.date(2026, 2, 1)


def recreate_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")


def setup_django() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_data(count: int) -> None:
    """``count`` monthly subscriptions, billed for January, so that February is a plain cycle with usage."""
    from django.db import connection
    from djmoney.money import Money

    from customers.models import Customer
    from invoicing.models import NumberSeries, TaxRate
    from invoicing.numbering import number_series_default
    from subscriptions.models import Price, Product, Subscription, SubscriptionItem, UsageRecord
    from subscriptions.services import ItemSpec, subscription_create

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE invoicing_invoiceevent, invoicing_invoiceline, invoicing_invoice, invoicing_billingrunerror, "
            "invoicing_billingrun, subscriptions_usagerecord, subscriptions_subscriptionevent, "
            "subscriptions_subscriptionitem, subscriptions_subscription, customers_customer, "
            "invoicing_numberseriescounter CASCADE"
        )
    number_series_default(kind=NumberSeries.Kind.INVOICE)
    TaxRate.objects.get_or_create(country="DE", region="", active=True, defaults={"name": "VAT 19 %", "percentage": 19})
    product = Product.objects.create(name="Bench plan")
    plan = Price.objects.create(product=product, unit_amount=Money(Decimal("29.00"), "EUR"))
    seats = Price.objects.create(product=product, unit_amount=Money(Decimal("9.50"), "EUR"), pricing_model="per_unit")
    calls = Price.objects.create(
        product=product, unit_amount=Money(Decimal("0.0125"), "EUR"), pricing_model="per_unit", usage_type="metered"
    )
    customers = Customer.objects.bulk_create(
        [
            Customer(name=f"Bench customer {n}", email=f"b{n}@bench.example", country="DE", currency="EUR")
            for n in range(count)
        ],
        batch_size=5000,
    )
    templates = {}
    for with_usage in (False, True):
        items = [ItemSpec(price=plan, quantity=1), ItemSpec(price=seats, quantity=3)]
        if with_usage:
            items.append(ItemSpec(price=calls, quantity=1))
        templates[with_usage] = subscription_create(customer=customers[int(with_usage)], items=items, start_date=JAN_1)
    template_items = {k: list(t.items.all()) for k, t in templates.items()}
    copies = []
    for n, customer in enumerate(customers[2:], start=2):
        template = templates[n % 3 == 0]
        copy = Subscription(
            **{
                f.attname: getattr(template, f.attname)
                for f in Subscription._meta.concrete_fields
                if f.attname not in ("id", "customer_id")
            },
            customer_id=customer.pk,
        )
        copy._with_usage = n % 3 == 0  # type: ignore[attr-defined]
        copies.append(copy)
    created = Subscription.objects.bulk_create(copies, batch_size=5000)
    SubscriptionItem.objects.bulk_create(
        [
            SubscriptionItem(subscription=subscription, price_id=item.price_id, quantity=item.quantity)
            for subscription in created
            for item in template_items[subscription._with_usage]  # type: ignore[attr-defined]
        ],
        batch_size=10000,
    )
    # January: bill once, so that the measured February run has usage in arrears
    from invoicing.billing_run import billing_run

    billing_run(as_of=JAN_1)
    metered = SubscriptionItem.objects.filter(price=calls).values_list("pk", flat=True)
    when = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
    UsageRecord.objects.bulk_create(
        [
            UsageRecord(
                subscription_item_id=item_id,
                quantity=Decimal("1234"),
                timestamp=when,
                usage_date=when.date(),
                billing_date=when.date(),
                idempotency_key=f"bench-{item_id}",
            )
            for item_id in metered
        ],
        batch_size=10000,
    )
    snapshot_state()


def snapshot_state() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_subscription_state")
        cursor.execute(
            "CREATE TABLE bench_subscription_state AS SELECT id, status, current_period_start, current_period_end, "
            "next_billing_date, usage_open_from FROM subscriptions_subscription"
        )
        cursor.execute("DROP TABLE IF EXISTS bench_counter_state")
        cursor.execute("CREATE TABLE bench_counter_state AS SELECT * FROM invoicing_numberseriescounter")
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_marker (max_invoice bigint)")
        cursor.execute("DELETE FROM bench_marker")
        cursor.execute("INSERT INTO bench_marker SELECT coalesce(max(id), 0) FROM invoicing_invoice")


def reset_state() -> None:
    """Undo a measured February run: delete its invoices, put the subscriptions and counter back."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT max_invoice FROM bench_marker")
        (marker,) = cursor.fetchone()
        cursor.execute("DELETE FROM invoicing_invoiceevent WHERE invoice_id > %s", [marker])
        cursor.execute("DELETE FROM invoicing_invoiceline WHERE invoice_id > %s", [marker])
        cursor.execute("DELETE FROM invoicing_invoice WHERE id > %s", [marker])
        cursor.execute("DELETE FROM subscriptions_subscriptionevent WHERE reason <> 'created'")
        cursor.execute(
            "UPDATE subscriptions_subscription s SET status = b.status, current_period_start = b.current_period_start, "
            "current_period_end = b.current_period_end, next_billing_date = b.next_billing_date, "
            "usage_open_from = b.usage_open_from FROM bench_subscription_state b WHERE b.id = s.id"
        )
        cursor.execute(
            "UPDATE invoicing_numberseriescounter c SET last_number = b.last_number FROM bench_counter_state b "
            "WHERE b.id = c.id"
        )
    connection.close()


def measure_inline(count: int) -> float:
    from invoicing.billing_run import billing_run

    reset_state()
    started = time.perf_counter()
    run = billing_run(as_of=FEB_1)
    elapsed = time.perf_counter() - started
    assert run.invoices_created == count and run.failed == 0, (run.invoices_created, run.failed)
    return count / elapsed


def measure_naive(sample: int) -> float:
    """The one-invoice-at-a-time ORM loop: per subscription, plan it, create a draft with the service, add each
    line, finalize it (its own number lock), advance the subscription — one transaction each."""
    from django.db import transaction

    from invoicing.services import InvoiceLineSpec, invoice_create_draft, invoice_finalize
    from subscriptions.charges import plans_for_chunk
    from subscriptions.models import Subscription
    from subscriptions.services import plans_commit

    reset_state()
    ids = list(Subscription.objects.order_by("pk").values_list("pk", flat=True)[:sample])
    started = time.perf_counter()
    for subscription_id in ids:
        with transaction.atomic():
            [plan] = plans_for_chunk(subscription_ids=[subscription_id], as_of=FEB_1, lock=True)
            for period in plan.periods:
                invoice = invoice_create_draft(
                    customer=plan.customer,
                    currency=period.currency,
                    billing_reason="subscription_cycle",
                    period_start=period.period_start,
                    period_end=period.period_end,
                    lines=[
                        InvoiceLineSpec(
                            description=line.description,
                            unit_amount=line.unit_amount.amount,
                            quantity=line.quantity,
                            kind=line.kind,
                            period_start=line.period_start,
                            period_end=line.period_end,
                        )
                        for line in period.lines
                    ],
                )
                invoice_finalize(invoice=invoice, issue_date=FEB_1)
            plans_commit(plans=[plan])
    return len(ids) / (time.perf_counter() - started)


def measure_workers(workers: int, count: int) -> float:
    """Wall time for ``count`` subscriptions billed by ``workers`` Celery processes (chunks of 1,000)."""
    from billing_project.celery import app
    from invoicing.billing_tasks import billing_run_async

    reset_state()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    app.conf.update(task_always_eager=False, task_default_queue=queue)
    env = {**os.environ, "CELERY_TASK_ALWAYS_EAGER": "false", "CELERY_TASK_DEFAULT_QUEUE": queue}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "billing_project",
                "worker",
                "--pool=solo",
                "-Q",
                queue,
                "-n",
                f"bench{n}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(workers)
    ]
    try:
        time.sleep(4)  # let the workers connect before the clock starts
        started = time.perf_counter()
        run = billing_run_async(as_of=FEB_1, chunk_size=1000)
        while True:
            run.refresh_from_db()
            if run.finished_at is not None:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        assert run.invoices_created == count, run.invoices_created
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        app.conf.update(task_always_eager=True)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive", type=int, default=2000, help="subscriptions for the naive loop")
    parser.add_argument("--workers", type=int, default=20000, help="subscriptions for the 1 vs 2 worker run (0: skip)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    recreate_database()
    setup_django()
    print(f"billing run bench — PostgreSQL, {os.cpu_count()} cores, median of {args.repeat}")
    rates: dict[int, float] = {}
    for size in sizes:
        t = time.perf_counter()
        make_data(size)
        print(f"  data: {size:,} subscriptions in {time.perf_counter() - t:.0f} s")
        runs = [measure_inline(size) for _ in range(args.repeat)]
        rates[size] = statistics.median(runs)
        print(
            f"  set-based run, N={size:,}: {rates[size]:,.0f} invoices/s (runs: {', '.join(f'{r:,.0f}' for r in runs)})"
        )
        if size == sizes[0] and args.naive:
            naive = measure_naive(min(args.naive, size))
            print(f"  naive one-at-a-time ORM loop, N={min(args.naive, size):,}: {naive:,.0f} invoices/s")
    if len(sizes) > 1:
        print(f"  throughput at {sizes[-1]:,} vs {sizes[0]:,}: {rates[sizes[-1]] / rates[sizes[0]]:.0%}")
    if args.workers:
        make_data(args.workers)
        one = statistics.median([measure_workers(1, args.workers) for _ in range(args.repeat)])
        two = statistics.median([measure_workers(2, args.workers) for _ in range(args.repeat)])
        print(f"  Celery, N={args.workers:,}, chunks of 1,000: 1 worker {one:,.0f}/s, 2 workers {two:,.0f}/s")
        print(f"  two workers vs one: {two / one:.2f}×")


if __name__ == "__main__":
    main()
