"""Billing-run throughput on PostgreSQL, side by side with its floor and its ceiling; prints figures, asserts only
that every run billed the same invoices (see docs/PERFORMANCE.md).

    .venv/bin/python bench/billing_run.py [--database-url postgres://postgres@127.0.0.1:5432/billing_bench_run]
        [--subscriptions 20000] [--workers 1,2] [--repeat 3] [--naive 500] [--chunk-size 1000] [--simple]
        [--code base=/path/to/another/checkout] [--audit-off] [--consolidated 0.1] [--wallets 0.1]

The database named by ``--database-url`` (default ``billing_bench_run``, its own) is dropped and re-created; the
name must contain "bench". PDF and e-mail are excluded (``BILLING_AFTER_FINALIZE_HOOKS=false``).

The data (``--subscriptions N``), a realistic mix by default: monthly subscriptions in EUR (Germany 19 %, France
20 %, Dutch businesses with a VAT number: reverse charge), GBP (UK, 20 %), CHF (8.1 %), USD and JPY (outside the
scope); every one has a flat plan and seats (1–10); half a metered API price with January's usage, 30 % a
graduated tiered price; 20 % a coupon (10 % off forever, 25 % off for 3 months, or a fixed amount once); 10 % changed
their seats on 15 January (proration credit and charge, pending until the February invoice). ``--simple`` is
the old easy case (German VAT, EUR, flat + seats, a metered item on every third). ``--consolidated F`` makes a
fraction F of the customers child accounts billed on their parent's consolidated invoice (groups of 3–5 customers
of one currency, each with a new parent; docs/decisions/parent-accounts.md). The data is made from one
template subscription per kind of mix, built with the services (``subscription_create``, ``discount_create``,
``subscription_change``, ``usage_record_create``) and billed for January, then copied row by row in bulk. Each
measurement bills the February cycle of all N and is undone afterwards.

Measured in the same run, each repeat in turn (the machine is shared: compare figures of one run only):
- ceiling: a set-based SQL insert of the very rows the billing run wrote (invoices, lines, status events,
  domain events, the subscriptions' advance, the counter) in one transaction — the database's own speed;
- inline: ``invoicing.billing_run.billing_run`` in this process, chunks of ``--chunk-size``;
- workers K: an async run (``invoicing.billing_tasks.billing_run_async``, as the beat task starts it) on K real
  Celery worker processes (``tests/reliability/procs.py``: solo pool, a private queue and Redis key prefix);
- naive: a plain one-transaction-per-invoice ORM loop over the first ``--naive`` subscriptions: lock and plan
  one subscription (the same rules), ``save()`` the draft and each line, issue it through the one issue path
  for one invoice (as staff finalizing a draft do), advance the subscription.
Each figure is printed with the 1-minute load average at its start. ``--code LABEL=DIR`` measures the inline and
worker runs of another checkout of the project too (an export of an earlier commit: ``git archive``), on the same
data, interleaved with this one's — the way to compare before and after on a shared machine. ``--audit-off`` adds
an inline run with the audit triggers disabled (``ALTER TABLE … DISABLE TRIGGER USER`` on the audited tables), so
the audit trail's cost shows side by side (docs/decisions/audit.md). The ceiling and the undoing of each run
always run without them: the ceiling stays the database's own speed.

``--wallets F`` gives a fraction F of the customers a wallet with enough free credit (docs/decisions/wallets.md).
Wallet credits are consumed in the settle phase of ``invoice.issued``, after the run's commit — the phase this
bench turns off — so the billing run's figures do not include them. The settle phase's wallet cost is measured
separately, side by side in the same run: ``wallet_consume`` on the February invoices of the wallet customers
(consuming), the same number of ``customer_credit_apply`` on other customers' invoices, given as much customer
credit (the existing settle handler paying as much: the baseline), and ``wallet_consume`` on those invoices
before (what the handler costs an invoice without a wallet).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/billing_bench_run"

JAN_1 = dt.date(2026, 1, 1)
JAN_15 = dt.date(2026, 1, 15)
FEB_1 = dt.date(2026, 2, 1)


def configure(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "billing_project.settings_test"
    os.environ["BILLING_AFTER_FINALIZE_HOOKS"] = "false"
    os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")


def recreate_database(database_url: str) -> None:
    import psycopg

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to drop {name!r}: a bench database's name must contain 'bench'")
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres", query=""))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def load() -> float:
    return os.getloadavg()[0]


# --- data -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    key: str
    currency: str
    country: str
    weight: int  # out of 20
    tax_id: str = ""


REGIONS = [
    Region("de", "EUR", "DE", 8),
    Region("fr", "EUR", "FR", 3),
    Region("nl-b2b", "EUR", "NL", 2, tax_id="NL004495445B01"),
    Region("gb", "GBP", "GB", 2),
    Region("ch", "CHF", "CH", 1),
    Region("us", "USD", "US", 3),
    Region("jp", "JPY", "JP", 1),
]
SCALE = {"EUR": Decimal(1), "GBP": Decimal(1), "CHF": Decimal(1), "USD": Decimal(1), "JPY": Decimal(150)}


@dataclass(frozen=True)
class Kind:
    region: Region
    metered: bool
    tiered: bool
    coupon: int  # 0 none, 1 10 % forever, 2 25 % for 3 months, 3 a fixed amount once
    changed: bool


def kind_of(n: int, simple: bool) -> Kind:
    if simple:
        return Kind(REGIONS[0], metered=n % 3 == 0, tiered=False, coupon=0, changed=False)
    slot = n % 20
    for region in REGIONS:
        if slot < region.weight:
            break
        slot -= region.weight
    coupon = 1 + (n // 20) % 3 if (n // 7) % 5 == 0 else 0  # 20 %
    return Kind(
        region, metered=(n // 3) % 2 == 0, tiered=(n // 11) % 10 < 3, coupon=coupon, changed=(n // 13) % 10 == 0
    )


@dataclass
class Catalog:
    plan: dict[str, Any]
    seats: dict[str, Any]
    calls: dict[str, Any]
    storage: dict[str, Any]
    coupons: dict[tuple[int, str], Any]


def make_catalog(simple: bool) -> Catalog:
    from djmoney.money import Money

    from customers.models import SellerProfile
    from invoicing.models import TaxRate
    from subscriptions.models import Coupon, CouponDuration, Price, PriceTier, Product

    # The seller is a German company: without a country on its profile, a Dutch business with a VAT number is no
    # cross-border EU customer and was taxed at the Dutch rate instead of reverse charge (the mix's own description).
    SellerProfile.objects.update(country="DE")
    for country, name, percentage in (("DE", "VAT 19 %", 19), ("FR", "TVA 20 %", 20), ("NL", "BTW 21 %", 21)):
        TaxRate.objects.create(country=country, region="", active=True, name=name, percentage=percentage)
    TaxRate.objects.create(country="GB", region="", active=True, name="VAT 20 %", percentage=20)
    TaxRate.objects.create(country="CH", region="", active=True, name="MWST 8.1 %", percentage=Decimal("8.1"))
    product = Product.objects.create(name="Cadence plan")
    api = Product.objects.create(name="API calls")
    storage = Product.objects.create(name="Storage")
    catalog = Catalog({}, {}, {}, {}, {})
    for currency in {region.currency for region in REGIONS} if not simple else {"EUR"}:
        k = SCALE[currency]
        catalog.plan[currency] = Price.objects.create(
            product=product, unit_amount=Money(Decimal("29.00") * k, currency)
        )
        catalog.seats[currency] = Price.objects.create(
            product=product, unit_amount=Money(Decimal("9.50") * k, currency), pricing_model="per_unit"
        )
        catalog.calls[currency] = Price.objects.create(
            product=api,
            unit_amount=Money(Decimal("0.0125") * k, currency),
            pricing_model="per_unit",
            usage_type="metered",
        )
        tiered = Price.objects.create(product=storage, unit_amount=Money(0, currency), pricing_model="graduated")
        for up_to, unit, flat in ((10, "2.00", "5.00"), (100, "1.50", "0"), (None, "1.00", "0")):
            PriceTier.objects.create(
                price=tiered, up_to=up_to, unit_amount=Decimal(unit) * k, flat_amount=Decimal(flat) * k
            )
        catalog.storage[currency] = tiered
        catalog.coupons[(3, currency)] = Coupon.objects.create(
            code=f"WELCOME-{currency}", amount_off=Money(Decimal("5.00") * k, currency), duration=CouponDuration.ONCE
        )
    catalog.coupons[(1, "")] = Coupon.objects.create(
        code="LOYAL10", percent_off=Decimal("10"), duration=CouponDuration.FOREVER
    )
    catalog.coupons[(2, "")] = Coupon.objects.create(
        code="SPRING25", percent_off=Decimal("25"), duration=CouponDuration.REPEATING, duration_in_periods=3
    )
    return catalog


def make_template(kind: Kind, catalog: Catalog, index: int) -> int:
    """One subscription of ``kind`` built with the services, billed for January, with January's usage and its
    mid-January change; returns its id."""
    from customers.models import Customer
    from subscriptions.models import SubscriptionItem
    from subscriptions.services import (
        ItemSpec,
        discount_create,
        subscription_change,
        subscription_create,
        usage_record_create,
    )

    currency = kind.region.currency
    customer = Customer.objects.create(
        name=f"Template {index}",
        email=f"template{index}@bench.example",
        country=kind.region.country,
        currency=currency,
        tax_id=kind.region.tax_id,
    )
    seats = 1 + index % 10
    items = [ItemSpec(price=catalog.plan[currency]), ItemSpec(price=catalog.seats[currency], quantity=seats)]
    if kind.tiered:
        items.append(ItemSpec(price=catalog.storage[currency], quantity=5 + 37 * (index % 4)))
    if kind.metered:
        items.append(ItemSpec(price=catalog.calls[currency]))
    subscription = subscription_create(customer=customer, items=items, start_date=JAN_1)
    if kind.coupon:
        coupon = catalog.coupons[(kind.coupon, currency if kind.coupon == 3 else "")]
        discount_create(coupon=coupon, subscription=subscription, as_of=JAN_1)
    from invoicing.billing_run import billing_run

    billing_run(as_of=JAN_1, customer_id=customer.pk)
    subscription.refresh_from_db()
    if kind.metered:
        item = SubscriptionItem.objects.get(subscription=subscription, price=catalog.calls[currency])
        for day in (3, 17, 28):
            usage_record_create(
                subscription_item=item,
                quantity=Decimal(400 + 37 * index % 900),
                timestamp=dt.datetime(2026, 1, day, 12, tzinfo=dt.UTC),
                idempotency_key=f"template-{index}-{day}",
            )
    if kind.changed:
        changed = [ItemSpec(price=catalog.plan[currency]), ItemSpec(price=catalog.seats[currency], quantity=seats + 2)]
        changed += [ItemSpec(price=i.price, quantity=i.quantity) for i in items[2:]]
        subscription_change(subscription=subscription, items=changed, as_of=JAN_15)
    return subscription.pk


def clone(template_id: int, copies: int, tag: str) -> None:
    """``copies`` copies of a template subscription with a customer each: its items (removed ones too), its
    subscription-level discounts, pending invoice items and usage records."""
    from django.db import models

    from customers.models import Customer
    from subscriptions.models import Discount, PendingInvoiceItem, Subscription, SubscriptionItem, UsageEvent

    if copies <= 0:
        return

    def copy_of(obj: models.Model, **changes: Any) -> models.Model:
        values = {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields if not f.primary_key}
        values.update(changes)
        return type(obj)(**values)

    template = Subscription.objects.get(pk=template_id)
    customer = Customer.objects.get(pk=template.customer_id)
    items = list(SubscriptionItem.objects.filter(subscription=template).order_by("pk"))
    discounts = list(Discount.objects.filter(subscription=template))
    pending = list(PendingInvoiceItem.objects.filter(subscription=template))
    usage = list(UsageEvent.objects.filter(subscription_item__subscription=template))
    batch = 5000
    for start in range(0, copies, batch):
        size = min(batch, copies - start)
        customers = Customer.objects.bulk_create(
            [
                copy_of(customer, name=f"Customer {tag}-{start + n}", email=f"c{tag}-{start + n}@bench.example")
                for n in range(size)
            ]
        )
        subs = Subscription.objects.bulk_create([copy_of(template, customer_id=c.pk) for c in customers])
        new_items = SubscriptionItem.objects.bulk_create(
            [copy_of(item, subscription_id=s.pk) for s in subs for item in items]
        )
        item_map = [
            {old.pk: new.pk for old, new in zip(items, new_items[n * len(items) : (n + 1) * len(items)], strict=True)}
            for n in range(size)
        ]
        Discount.objects.bulk_create([copy_of(d, subscription_id=s.pk) for s in subs for d in discounts])
        PendingInvoiceItem.objects.bulk_create(
            [
                copy_of(
                    p, subscription_id=s.pk, subscription_item_id=item_map[n].get(p.subscription_item_id or 0, None)
                )
                for n, s in enumerate(subs)
                for p in pending
            ]
        )
        UsageEvent.objects.bulk_create(
            [
                copy_of(
                    u,
                    customer_id=customers[n].pk,
                    subscription_item_id=item_map[n][u.subscription_item_id],
                    transaction_id=f"{u.transaction_id}-{tag}-{start + n}",
                )
                for n in range(size)
                for u in usage
            ]
        )


def make_data(count: int, simple: bool) -> dict[Kind, int]:
    from invoicing.models import NumberSeries
    from invoicing.numbering import number_series_default

    number_series_default(kind=NumberSeries.Kind.INVOICE)
    catalog = make_catalog(simple)
    per_kind: dict[Kind, int] = defaultdict(int)
    for n in range(count):
        per_kind[kind_of(n, simple)] += 1
    for index, (kind, copies) in enumerate(sorted(per_kind.items(), key=lambda kv: str(kv[0]))):
        template_id = make_template(kind, catalog, index)
        clone(template_id, copies - 1, tag=str(index))
    snapshot_state()
    return dict(per_kind)


def make_consolidated(fraction: float) -> tuple[int, int]:
    """Make ``fraction`` of the customers child accounts billed on their parent's consolidated invoice, in groups
    of 3, 4 and 5 customers of one currency, spread over the whole id range (so every chunk size meets them);
    each group gets a new parent (a copy of its first child). Returns (children, parents)."""
    from customers.models import Customer

    if fraction <= 0:
        return 0, 0
    by_currency: dict[str, list[int]] = defaultdict(list)
    for pk, currency in Customer.objects.order_by("pk").values_list("pk", "currency"):
        by_currency[currency].append(pk)
    step = max(1, round(1 / fraction))
    groups: list[list[int]] = []
    for ids in by_currency.values():
        picked = ids[::step]
        position = 0
        while position + 3 <= len(picked):
            size = 3 + len(groups) % 3
            groups.append(picked[position : position + size])
            position += size
    firsts = Customer.objects.in_bulk([group[0] for group in groups])
    parents = Customer.objects.bulk_create(
        [
            Customer(
                name=f"Parent {n}",
                email=f"parent{n}@bench.example",
                country=firsts[group[0]].country,
                currency=firsts[group[0]].currency,
                payment_terms_days=30,
            )
            for n, group in enumerate(groups)
        ]
    )
    for parent, group in zip(parents, groups, strict=True):
        Customer.objects.filter(pk__in=group).update(parent_id=parent.pk, billing_mode="consolidated")
    execute("ANALYZE customers_customer")
    return sum(len(group) for group in groups), len(parents)


# --- undoing a measured run -----------------------------------------------------------------------------

SNAPSHOTS = {
    "bench_sub": "SELECT id, status, current_period_start, current_period_end, next_billing_date, usage_open_from, "
    "ended_at FROM subscriptions_subscription",
    "bench_counter": "SELECT id, last_number FROM invoicing_numberseriescounter",
    "bench_discount": "SELECT id, periods_applied FROM subscriptions_discount",
    "bench_pending": "SELECT id, billed_at FROM subscriptions_pendinginvoiceitem",
    "bench_marker": "SELECT (SELECT coalesce(max(id), 0) FROM invoicing_invoice) AS invoice, "
    "(SELECT coalesce(max(id), 0) FROM core_domainevent) AS event, "
    "(SELECT coalesce(max(id), 0) FROM subscriptions_subscriptionevent) AS sub_event",
}


def execute(*statements: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def snapshot_state() -> None:
    for table, select in SNAPSHOTS.items():
        execute(f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} AS {select}")
    execute("ANALYZE")


def audit_triggers(*, enabled: bool) -> None:
    """Switch the audit triggers (core/audit.py) of every audited table on or off, for this bench database only."""
    from django.db import connection

    from core.audit import audit_specs

    tables = sorted({spec.model._meta.db_table for spec in audit_specs()})
    execute(
        *(
            f"ALTER TABLE {connection.ops.quote_name(t)} {'ENABLE' if enabled else 'DISABLE'} TRIGGER USER"
            for t in tables
        )
    )


def reset_state() -> None:
    """Undo a measured February run: its invoices, lines, events and subscription events go; the subscriptions,
    discounts, pending items and the counter are put back."""
    from django.db import connection

    audit_triggers(enabled=False)  # undoing is not a change anyone made
    execute(
        "DELETE FROM payments_wallettransaction WHERE invoice_id > (SELECT invoice FROM bench_marker)",
        "DELETE FROM core_eventhandlerrun WHERE event_id > (SELECT event FROM bench_marker)",
        "DELETE FROM payments_creditledgerentry WHERE invoice_id > (SELECT invoice FROM bench_marker) "
        "OR reason = 'bench'",
        "UPDATE payments_walletgrant SET remaining = amount WHERE remaining <> amount",
        "DELETE FROM invoicing_invoiceevent WHERE invoice_id > (SELECT invoice FROM bench_marker)",
        "DELETE FROM invoicing_invoiceline WHERE invoice_id > (SELECT invoice FROM bench_marker)",
        "DELETE FROM invoicing_childaccountperiod WHERE invoice_id > (SELECT invoice FROM bench_marker)",
        "DELETE FROM invoicing_invoice WHERE id > (SELECT invoice FROM bench_marker)",
        "DELETE FROM core_domainevent WHERE id > (SELECT event FROM bench_marker)",
        "DELETE FROM subscriptions_subscriptionevent WHERE id > (SELECT sub_event FROM bench_marker)",
        "UPDATE subscriptions_subscription s SET status = b.status, current_period_start = b.current_period_start, "
        "current_period_end = b.current_period_end, next_billing_date = b.next_billing_date, "
        "usage_open_from = b.usage_open_from, ended_at = b.ended_at FROM bench_sub b WHERE b.id = s.id",
        "UPDATE invoicing_numberseriescounter c SET last_number = b.last_number FROM bench_counter b WHERE b.id = c.id",
        "UPDATE subscriptions_discount d SET periods_applied = b.periods_applied FROM bench_discount b "
        "WHERE b.id = d.id AND d.periods_applied <> b.periods_applied",
        "UPDATE subscriptions_pendinginvoiceitem p SET billed_at = b.billed_at FROM bench_pending b "
        "WHERE b.id = p.id AND p.billed_at IS DISTINCT FROM b.billed_at",
        "VACUUM ANALYZE invoicing_invoice",
        "VACUUM ANALYZE subscriptions_subscription",
    )
    audit_triggers(enabled=True)
    connection.close()


def capture_result() -> None:
    """Keep the rows a run wrote, for the set-based ceiling."""
    execute(
        "DROP TABLE IF EXISTS ceil_invoice, ceil_line, ceil_event, ceil_domain, ceil_sub, ceil_counter, "
        "ceil_discount, ceil_pending, ceil_sub_event, ceil_child",
        "CREATE TABLE ceil_invoice AS SELECT * FROM invoicing_invoice WHERE id > (SELECT invoice FROM bench_marker)",
        "CREATE TABLE ceil_line AS SELECT * FROM invoicing_invoiceline "
        "WHERE invoice_id IN (SELECT id FROM ceil_invoice)",
        "CREATE TABLE ceil_event AS SELECT * FROM invoicing_invoiceevent "
        "WHERE invoice_id IN (SELECT id FROM ceil_invoice)",
        "CREATE TABLE ceil_child AS SELECT * FROM invoicing_childaccountperiod "
        "WHERE invoice_id IN (SELECT id FROM ceil_invoice)",
        "CREATE TABLE ceil_domain AS SELECT * FROM core_domainevent WHERE id > (SELECT event FROM bench_marker)",
        "CREATE TABLE ceil_sub_event AS SELECT * FROM subscriptions_subscriptionevent "
        "WHERE id > (SELECT sub_event FROM bench_marker)",
        f"CREATE TABLE ceil_sub AS {SNAPSHOTS['bench_sub']}",
        f"CREATE TABLE ceil_counter AS {SNAPSHOTS['bench_counter']}",
        f"CREATE TABLE ceil_discount AS {SNAPSHOTS['bench_discount']}",
        f"CREATE TABLE ceil_pending AS {SNAPSHOTS['bench_pending']}",
    )


def measure_ceiling(expected: int) -> float:
    """The same rows, written set-based in one transaction: what the database itself needs."""
    from django.db import connection, transaction

    reset_state()
    audit_triggers(enabled=False)
    started = time.perf_counter()
    with transaction.atomic():
        execute(
            "INSERT INTO invoicing_invoice SELECT * FROM ceil_invoice",
            "INSERT INTO invoicing_invoiceline SELECT * FROM ceil_line",
            "INSERT INTO invoicing_invoiceevent SELECT * FROM ceil_event",
            "INSERT INTO invoicing_childaccountperiod SELECT * FROM ceil_child",
            "INSERT INTO core_domainevent SELECT * FROM ceil_domain",
            "INSERT INTO subscriptions_subscriptionevent SELECT * FROM ceil_sub_event",
            "UPDATE subscriptions_subscription s SET status = b.status, current_period_start = b.current_period_start,"
            " current_period_end = b.current_period_end, next_billing_date = b.next_billing_date, "
            "usage_open_from = b.usage_open_from, ended_at = b.ended_at, updated_at = now() FROM ceil_sub b "
            "WHERE b.id = s.id AND s.next_billing_date IS DISTINCT FROM b.next_billing_date",
            "UPDATE invoicing_numberseriescounter c SET last_number = b.last_number FROM ceil_counter b "
            "WHERE b.id = c.id",
            "UPDATE subscriptions_discount d SET periods_applied = b.periods_applied FROM ceil_discount b "
            "WHERE b.id = d.id AND d.periods_applied <> b.periods_applied",
            "UPDATE subscriptions_pendinginvoiceitem p SET billed_at = b.billed_at FROM ceil_pending b "
            "WHERE b.id = p.id AND p.billed_at IS DISTINCT FROM b.billed_at",
        )
    elapsed = time.perf_counter() - started
    audit_triggers(enabled=True)
    connection.close()
    return expected / elapsed


def check(run: Any, expected: tuple[int, int] | None) -> tuple[int, int]:
    from django.db import connection

    got = (run.invoices_created, run.drafts_created)
    assert run.failed == 0 and run.status == "succeeded", (run.status, run.failed)
    assert expected is None or got == expected, (got, expected)
    with connection.cursor() as cursor:
        # a consolidated invoice (no subscription of its own) bills its children's periods: each once
        cursor.execute(
            "SELECT count(*), count(DISTINCT (subscription_id, period_key)) FILTER (WHERE subscription_id IS NOT NULL)"
            " + count(*) FILTER (WHERE subscription_id IS NULL) FROM invoicing_invoice "
            "WHERE id > (SELECT invoice FROM bench_marker)"
        )
        total, distinct = cursor.fetchone()
        cursor.execute(
            "SELECT count(*), count(DISTINCT (subscription_id, period_key)) FROM invoicing_childaccountperiod "
            "WHERE invoice_id > (SELECT invoice FROM bench_marker)"
        )
        child_periods, distinct_child_periods = cursor.fetchone()
    assert total == distinct == sum(got), (total, distinct, got)
    assert child_periods == distinct_child_periods, (child_periods, distinct_child_periods)
    return got


def measure_inline(
    expected: tuple[int, int] | None, chunk_size: int, *, audit: bool = True
) -> tuple[float, tuple[int, int]]:
    from invoicing.billing_run import billing_run

    reset_state()
    if not audit:
        audit_triggers(enabled=False)
    try:
        started = time.perf_counter()
        run = billing_run(as_of=FEB_1, chunk_size=chunk_size)
        elapsed = time.perf_counter() - started
    finally:
        audit_triggers(enabled=True)
    got = check(run, expected)
    return sum(got) / elapsed, got


WORKER_OPTIONS = ("--pool=solo", "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO")
_INLINE_ELSEWHERE = """
import datetime as dt, os, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
from invoicing.billing_run import billing_run
started = time.perf_counter()
run = billing_run(as_of=dt.date(2026, 2, 1), chunk_size=int(sys.argv[1]))
print(time.perf_counter() - started, run.pk)
"""


def measure_inline_in(code: Path, expected: tuple[int, int], chunk_size: int) -> float:
    """The inline run of another checkout of the project (``--code``), in a process of its own on the same data."""
    import subprocess

    from invoicing.models import BillingRun

    reset_state()
    result = subprocess.run(
        [sys.executable, "-c", _INLINE_ELSEWHERE, str(chunk_size)],
        cwd=code,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed, run_id = result.stdout.split()[-2:]
    check(BillingRun.objects.get(pk=int(run_id)), expected)
    return sum(expected) / float(elapsed)


def measure_workers(
    workers: int, expected: tuple[int, int], chunk_size: int, broker: Any, logs: Path, code: Path = ROOT
) -> float:
    """Wall time from ``billing_run_async`` to the run closed by the chunk that completed it, ``workers`` real
    Celery processes (of the checkout ``code``) on the bench's own queue."""
    import subprocess

    from django.db import connection

    from invoicing.billing_tasks import billing_run_async
    from tests.reliability.procs import Worker, _env, wait_for

    reset_state()
    started_workers = []
    for n in range(workers):
        name, log = f"bench{n}", logs / f"{code.name}-w{n}.log"
        queue, node = broker.queue, f"{name}@%h"
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.procs", "worker", *WORKER_OPTIONS, "-Q", queue, "-n", node],
            cwd=code,
            env=_env(broker=broker, settings_dict=connection.settings_dict, application_name=name, extra={}),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        started_workers.append(Worker(name=name, process=process, log=log))
    try:
        for worker in started_workers:
            wait_for(lambda w=worker: " ready." in w.log_text(), timeout=60, message=f"{worker.name} ready")
        started = time.perf_counter()
        run = billing_run_async(as_of=FEB_1, chunk_size=chunk_size)
        while run.finished_at is None:
            time.sleep(0.02)
            run.refresh_from_db()
            assert all(w.alive() for w in started_workers), [w.log_text()[-2000:] for w in started_workers]
        elapsed = time.perf_counter() - started
        check(run, expected)
    finally:
        for worker in started_workers:
            worker.stop()
    return sum(expected) / elapsed


def measure_naive(sample: int) -> float:
    """A plain ORM loop, one transaction per subscription (its invoice): the rules are the same
    (``plans_for_chunk`` for one subscription, ``invoice_from_period``), the writes are ``save()`` per row and the
    one issue path for one invoice, as a staff finalize."""
    from django.db import transaction

    from invoicing.billing_run import invoice_from_period
    from invoicing.models import InvoiceLine
    from invoicing.services import invoices_issue
    from invoicing.taxes import tax_rates_load
    from subscriptions.charges import plans_for_chunk
    from subscriptions.models import Subscription
    from subscriptions.services import plans_commit

    reset_state()
    ids = list(Subscription.objects.order_by("?").values_list("pk", flat=True)[:sample])
    rates = tax_rates_load()
    started = time.perf_counter()
    invoices = 0
    for subscription_id in ids:
        with transaction.atomic():
            [plan] = plans_for_chunk(subscription_ids=[subscription_id], as_of=FEB_1, lock=True)
            for period in plan.periods:
                assert plan.customer is not None
                invoice, lines = invoice_from_period(period=period, customer=plan.customer, tax_rates=rates, run=None)
                invoice.save()
                for line in lines:
                    InvoiceLine(**{name: getattr(line, name) for name in _LINE_FIELDS}, invoice=invoice).save()
                if invoice.total >= 0:
                    invoices_issue(
                        invoices=[invoice],
                        issue_date=FEB_1,
                        subscription_days_until_due={plan.subscription_id: plan.days_until_due},
                    )
                invoices += 1
            plans_commit(plans=[plan], locked=True)
    return invoices / (time.perf_counter() - started)


_LINE_FIELDS = (
    "position", "kind", "description", "quantity", "unit_amount", "amount", "discount_amount", "net_amount",
    "tax_rate", "tax_name", "tax_percentage", "tax_inclusive", "tax_amount", "total_amount", "period_start",
    "period_end", "proration", "price_id", "subscription_item_id", "supply_tax_category", "tax_category",
    "tax_exemption_reason_code", "tax_exemption_reason",
)  # fmt: skip


def profile_inline(chunk_size: int) -> None:
    """cProfile of one inline run: where the time of a chunk goes (docs/decisions/billing-run.md)."""
    import cProfile
    import pstats

    from invoicing.billing_run import billing_run

    reset_state()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    billing_run(as_of=FEB_1, chunk_size=chunk_size)
    profiler.disable()
    print(f"  profiled inline run: {time.perf_counter() - started:.2f} s (under the profiler)")
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)


def make_wallets(fraction: float) -> int:
    """A wallet with 1,000,000.00 free credit (never expiring) for every 1/fraction-th customer with a
    subscription; through the service, so its rows are the product's own."""
    from payments.wallets import wallet_grant_free
    from subscriptions.models import Subscription

    customers = sorted({s.customer for s in Subscription.objects.select_related("customer")}, key=lambda c: c.pk)
    step = max(1, round(1 / fraction))
    chosen = customers[::step]
    for customer in chosen:
        wallet_grant_free(customer=customer, amount=Decimal("1000000.00"), reason="bench", as_of=JAN_1)
    return len(chosen)


def measure_wallet_settle(expected: tuple[int, int], chunk_size: int) -> dict[str, float]:
    """After a billing run (settle phase off, as measured): the settle phase's wallet cost per invoice, in
    invoices/s, each figure over the same invoices."""
    from core import events
    from invoicing.models import Invoice
    from payments.models import Wallet

    measure_inline(expected, chunk_size)
    february = Invoice.objects.filter(issue_date=FEB_1).exclude(number="").order_by("pk")
    holders = set(Wallet.objects.values_list("customer_id", flat=True))
    with_wallet = [invoice for invoice in february if invoice.customer_id in holders]
    without = [invoice for invoice in february if invoice.customer_id not in holders][: len(with_wallet)]
    figures: dict[str, float] = {}
    # The handlers' own work, not what their events start (the invoice.paid handlers, e-mails): no handlers.
    with events.handlers_replaced():
        _time_settle(figures, with_wallet, without)
    consumed = Invoice.objects.filter(pk__in=[i.pk for i in with_wallet], status="paid").count()
    assert consumed == len(with_wallet), f"{consumed} of {len(with_wallet)} wallet invoices paid by credits"
    return figures


def _time_settle(figures: dict[str, float], with_wallet: list[Any], without: list[Any]) -> None:
    """In this order: the wallet handler on invoices of customers without a wallet (it finds none), the wallet
    consumption, then the baseline — customer credit applied (the existing settle handler, paying as much) on the
    invoices without a wallet, their customers given credit first."""
    from payments.models import CreditEntryKind, CreditLedgerEntry
    from payments.services import customer_credit_apply
    from payments.wallets import wallet_consume

    def timed(label: str, invoices: list[Any], work: Callable[[Any], object]) -> None:
        started = time.perf_counter()
        for invoice in invoices:
            work(invoice)
        figures[label] = len(invoices) / (time.perf_counter() - started) if invoices else 0.0

    timed("settle: wallet handler, no wallet", without, lambda i: wallet_consume(invoice=i))
    timed("settle: wallet consumption", with_wallet, lambda i: wallet_consume(invoice=i))
    CreditLedgerEntry.objects.bulk_create(
        CreditLedgerEntry(
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            amount=Decimal("1000000.00"),
            kind=CreditEntryKind.MANUAL_ADJUSTMENT,
            reason="bench",
        )
        for invoice in without
    )
    timed("settle: customer credit (baseline)", without, lambda i: customer_credit_apply(invoice=i))


def describe_mix() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE tax_treatment = 'reverse_charge'), "
            "count(*) FILTER (WHERE tax_treatment = 'outside_scope'), count(*) FILTER (WHERE discount_total > 0), "
            "count(DISTINCT currency), count(DISTINCT tax_summary::text) FROM invoicing_invoice "
            "WHERE id > (SELECT invoice FROM bench_marker)"
        )
        n, reverse, outside, discounted, currencies, summaries = cursor.fetchone()
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE proration), count(*) FILTER (WHERE kind = 'usage'), "
            "count(*) FILTER (WHERE price_id IN "
            "(SELECT id FROM subscriptions_price WHERE pricing_model = 'graduated')) "
            "FROM invoicing_invoiceline WHERE invoice_id > (SELECT invoice FROM bench_marker)"
        )
        lines, prorations, usage, tiered = cursor.fetchone()
    return (
        f"{n:,} invoices in {currencies} currencies ({reverse:,} reverse charge, {outside:,} outside scope, "
        f"{discounted:,} discounted, {summaries} distinct tax summaries), {lines:,} lines ({lines / max(n, 1):.1f} "
        f"per invoice: {prorations:,} prorations, {usage:,} usage, {tiered:,} tiered)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--subscriptions", type=int, default=20000)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (0: none)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive", type=int, default=500, help="subscriptions for the naive loop (0: skip)")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--no-inline", action="store_true", help="skip the in-process run (after the first)")
    parser.add_argument("--simple", action="store_true", help="the old easy data instead of the realistic mix")
    parser.add_argument("--profile", action="store_true", help="profile one inline run (cProfile) and stop")
    parser.add_argument(
        "--consolidated",
        type=float,
        default=0.0,
        help="fraction of customers billed on a parent's consolidated invoice (0.1: 10 %%, groups of 3-5)",
    )
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also measure the inline and worker runs of another checkout (e.g. base=/tmp/base), side by side",
    )
    parser.add_argument(
        "--audit-off", action="store_true", help="also measure the inline run with the audit triggers disabled"
    )
    parser.add_argument(
        "--wallets", type=float, default=0.0, help="fraction of customers with a wallet (e.g. 0.1; 0: none)"
    )
    args = parser.parse_args()
    worker_counts = [int(k) for k in args.workers.split(",") if int(k) > 0]

    configure(args.database_url)
    recreate_database(args.database_url)
    setup_django()
    from tests.reliability.procs import Broker

    started = time.perf_counter()
    kinds = make_data(args.subscriptions, args.simple)
    children, parents = make_consolidated(args.consolidated)
    wallets = make_wallets(args.wallets) if args.wallets > 0 else 0
    print(
        f"billing run bench — {urlsplit(args.database_url).path.lstrip('/')}, {os.cpu_count()} cores, "
        f"N={args.subscriptions:,} ({'simple' if args.simple else 'realistic mix'}, {len(kinds)} kinds), "
        f"chunks of {args.chunk_size:,}; {children:,} customers billed on {parents:,} parents' consolidated "
        f"invoices; data in {time.perf_counter() - started:.0f} s"
    )
    # The first run fixes what every later one must bill, and its rows are the ceiling's.
    rate, expected = measure_inline(None, args.chunk_size)
    print(f"  {describe_mix()}")
    if wallets:
        print(f"  {wallets:,} customers with a wallet (settle phase off in the run: measured separately below)")
    capture_result()
    print(f"  warm-up inline run: {rate:,.0f} invoices/s")
    n = sum(expected)
    if args.profile:
        profile_inline(args.chunk_size)
        return

    broker = Broker()
    from billing_project.celery import app

    app.conf.update(
        task_always_eager=False,
        task_default_queue=broker.queue,
        broker_transport_options={**(app.conf.broker_transport_options or {}), "global_keyprefix": broker.keyprefix},
    )
    logs = Path(tempfile.mkdtemp(prefix=f"bench-{broker.queue}-"))
    results: dict[str, list[tuple[float, float]]] = defaultdict(list)
    measures: list[tuple[str, Callable[[], float]]] = [("ceiling (set-based SQL)", lambda: measure_ceiling(n))]
    others = [(label, Path(path).resolve()) for label, path in (item.split("=", 1) for item in args.code)]
    for label, code in others:
        if not args.no_inline:
            measures.append(
                (f"{label}: billing run, inline", lambda c=code: measure_inline_in(c, expected, args.chunk_size))
            )
    if not args.no_inline:
        measures.append(("billing run, inline", lambda: measure_inline(expected, args.chunk_size)[0]))
    if args.audit_off:
        measures.append(
            ("inline, audit triggers off", lambda: measure_inline(expected, args.chunk_size, audit=False)[0])
        )
    for k in worker_counts:
        suffix = f"billing run, {k} worker{'s' if k > 1 else ''}"
        for label, code in others:
            measures.append(
                (
                    f"{label}: {suffix}",
                    lambda k=k, c=code: measure_workers(k, expected, args.chunk_size, broker, logs, c),
                )
            )
        measures.append((suffix, lambda k=k: measure_workers(k, expected, args.chunk_size, broker, logs)))
    if args.naive:
        measures.append((f"naive ORM loop ({args.naive})", lambda: measure_naive(args.naive)))
    settle: dict[str, list[tuple[float, float]]] = defaultdict(list)
    try:
        for repeat in range(args.repeat):
            for label, measure in measures:
                before = load()
                value = measure()
                results[label].append((value, before))
                print(
                    f"  [{repeat + 1}/{args.repeat}] {label}: {value:,.0f} invoices/s (load {before:.2f})", flush=True
                )
            if wallets:
                before = load()
                for label, value in measure_wallet_settle(expected, args.chunk_size).items():
                    settle[label].append((value, before))
                    print(f"  [{repeat + 1}/{args.repeat}] {label}: {value:,.0f} invoices/s (load {before:.2f})")
    finally:
        broker.purge()
        reset_state()
    print(f"\nmedians of {args.repeat} (load = 1-min load average before each), N={n:,}:")
    medians = {label: statistics.median(v for v, _ in runs) for label, runs in results.items()}
    ceiling = medians["ceiling (set-based SQL)"]
    for label, runs in results.items():
        loads = ", ".join(f"{b:.1f}" for _, b in runs)
        ratio = medians[label] / ceiling
        print(f"  {label:32} {medians[label]:>9,.0f} invoices/s  {ratio:6.2f}× ceiling  (loads {loads})")
    for label, runs in settle.items():
        loads = ", ".join(f"{b:.1f}" for _, b in runs)
        print(f"  {label:36} {statistics.median(v for v, _ in runs):>9,.0f} invoices/s  (loads {loads})")
    if 1 in worker_counts and 2 in worker_counts:
        for prefix in ["", *(f"{label}: " for label, _ in others)]:
            one, two = medians[f"{prefix}billing run, 1 worker"], medians[f"{prefix}billing run, 2 workers"]
            print(f"  {prefix or 'this checkout: '}2 workers vs 1: {two / one:.2f}×")


if __name__ == "__main__":
    main()
