"""A Celery worker killed with SIGKILL in the middle of an asynchronous billing run (real worker processes on the
Redis broker): the chunk it was billing is rolled back by PostgreSQL, handed out again by the broker once it is
older than the visibility timeout, and billed by the restarted worker — every period once, numbers gapless.

Recovery path (the product relies on both, in this order):
1. The broker: tasks are acknowledged late, so the killed worker's chunk stays in Redis' unacked set; a running
   worker re-queues it once it is older than ``BROKER_VISIBILITY_TIMEOUT_SECONDS`` (default 3600, here 3).
2. The next billing run: whatever is still due (say Redis itself lost the message) is due the next day as well —
   ``test_next_billing_run_bills_what_a_killed_worker_left_unbilled`` proves that path without the broker.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import time
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection
from djmoney.money import Money

from customers.models import Customer
from invoicing.billing_run import billing_run
from invoicing.models import BillingRun, Invoice, InvoiceEvent, InvoiceLine, NumberSeriesCounter
from subscriptions.models import Subscription
from tests.factories import NumberSeriesFactory, PriceFactory, TaxRateFactory
from tests.factories.customers import CustomerFactory
from tests.reliability.procs import (
    Broker,
    backends,
    publish_billing_run,
    start_worker,
    wait_for,
)

JAN_1 = dt.date(2026, 1, 1)
SUBSCRIPTIONS = 2000
CHUNK = 100
VISIBILITY_TIMEOUT = 3
WORKER_ENV = {"BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_TIMEOUT)}


@pytest.fixture
def broker():
    broker = Broker()
    yield broker
    broker.purge()


@pytest.fixture
def due_subscriptions(db):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    base = PriceFactory(unit_amount=Money(Decimal("29.00"), "EUR"))
    seats = PriceFactory(unit_amount=Money(Decimal("9.00"), "EUR"), per_unit=True)
    return _bulk_due_subscriptions(count=SUBSCRIPTIONS, items=[(base, 1), (seats, 2)])


def _bulk_due_subscriptions(*, count: int, items) -> list[int]:
    """``bulk_subscriptions`` with the customers written in one ``bulk_create`` (the factory saves them one by
    one: 7 s of the test's setup for 2,000)."""
    from subscriptions.models import SubscriptionItem
    from subscriptions.services import ItemSpec, subscription_create

    customers = Customer.objects.bulk_create(CustomerFactory.build_batch(count, currency="EUR"), batch_size=2000)
    template = subscription_create(
        customer=customers[0], items=[ItemSpec(price=p, quantity=q) for p, q in items], start_date=JAN_1
    )
    template_items = list(template.items.all())
    stored = Subscription.objects.get(pk=template.pk)
    fields = {f.attname: getattr(stored, f.attname) for f in Subscription._meta.concrete_fields if not f.primary_key}
    created = Subscription.objects.bulk_create(
        [Subscription(**{**fields, "customer_id": customer.pk}) for customer in customers[1:]], batch_size=2000
    )
    SubscriptionItem.objects.bulk_create(
        [
            SubscriptionItem(subscription=subscription, price=item.price, quantity=item.quantity)
            for subscription in created
            for item in template_items
        ],
        batch_size=5000,
    )
    return [template.pk, *(subscription.pk for subscription in created)]


def _counter() -> int:
    return NumberSeriesCounter.objects.get().last_number


def _chunk_transaction_open(cursor, application_name: str) -> bool:
    """The worker's backend holds the number counter's row lock: it is inside a chunk's transaction, after
    taking the chunk's numbers and before commit (nothing else in the worker writes the counter)."""
    cursor.execute(
        """
        SELECT 1 FROM pg_stat_activity a
        JOIN pg_locks l ON l.pid = a.pid
        JOIN pg_class c ON c.oid = l.relation
        WHERE a.application_name = %s AND c.relname = 'invoicing_numberseriescounter'
          AND l.mode = 'RowExclusiveLock' AND l.granted
        """,
        [application_name],
    )
    return cursor.fetchone() is not None


def _kill_inside_a_chunk(worker, cursor, *, after_invoices: int, timeout: float = 60) -> None:
    """Freeze the worker (SIGSTOP) the moment its backend is seen inside a chunk's transaction, check that it
    is still inside (it may have committed between the look and the stop: then let it go and try the next
    chunk), then SIGKILL it — so the kill lands inside an open transaction every time."""
    wait_for(lambda: Invoice.objects.count() >= after_invoices, timeout=timeout, interval=0.05, message="progress")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive(), worker.log_text()[-3000:]
        if _chunk_transaction_open(cursor, worker.name):
            os.kill(worker.process.pid, signal.SIGSTOP)
            if _chunk_transaction_open(cursor, worker.name):
                worker.kill()
                return
            os.kill(worker.process.pid, signal.SIGCONT)
        time.sleep(0.002)
    pytest.fail("never saw the worker inside a chunk transaction: " + worker.log_text()[-3000:])


def _task_ids(log: str, state: str) -> list[str]:
    return re.findall(rf"Task invoicing\.billing_run_chunk\[([0-9a-f-]+)\] {state}", log)


def _assert_billed_exactly_once(subscription_ids: list[int]) -> None:
    per_period = Counter(Invoice.objects.values_list("subscription_id", "period_key"))
    assert len(per_period) == SUBSCRIPTIONS and set(per_period.values()) == {1}
    assert {subscription for subscription, _period in per_period} == set(subscription_ids)
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, SUBSCRIPTIONS + 1)]  # consecutive, no gap
    assert _counter() == SUBSCRIPTIONS
    assert InvoiceLine.objects.count() == 2 * SUBSCRIPTIONS  # base + seats, no orphans of the killed chunk
    assert InvoiceEvent.objects.count() == SUBSCRIPTIONS
    assert not Subscription.objects.filter(next_billing_date__lte=JAN_1).exists()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_chunk_is_billed_exactly_once_after_restart(due_subscriptions, broker, tmp_path):
    settings_dict = connection.settings_dict
    first = start_worker(
        name="faults-kill-w1", broker=broker, settings_dict=settings_dict, log=tmp_path / "w1.log", env=WORKER_ENV
    )
    second = None
    try:
        wait_for(lambda: "ready." in first.log_text(), timeout=30, message="worker 1 ready")
        run_id = publish_billing_run(broker=broker, settings_dict=settings_dict, as_of="2026-01-01", chunk_size=CHUNK)
        with connection.cursor() as cursor:
            _kill_inside_a_chunk(first, cursor, after_invoices=3 * CHUNK)
            killed_at = time.monotonic()
            # PostgreSQL sees the socket close and rolls the chunk back: nothing of it is left, not even a number
            wait_for(lambda: not backends(cursor, first.name), timeout=10, message="killed worker's backend gone")
        billed_before_restart = Invoice.objects.count()
        assert 3 * CHUNK <= billed_before_restart < SUBSCRIPTIONS
        assert billed_before_restart % CHUNK == 0  # whole chunks only
        assert _counter() == billed_before_restart  # the killed chunk's numbers were given back
        assert InvoiceLine.objects.count() == 2 * billed_before_restart
        [killed_task] = set(_task_ids(first.log_text(), "received")) - set(_task_ids(first.log_text(), "succeeded"))

        # the restart: a new worker, once the dead worker's message is older than the visibility timeout
        time.sleep(max(0.0, VISIBILITY_TIMEOUT + 0.5 - (time.monotonic() - killed_at)))
        second = start_worker(
            name="faults-kill-w2", broker=broker, settings_dict=settings_dict, log=tmp_path / "w2.log", env=WORKER_ENV
        )
        run = wait_for(
            lambda: BillingRun.objects.filter(pk=run_id, finished_at__isnull=False).first(),
            timeout=60,
            message="run finished; worker 2: " + second.log_text()[-2000:],
        )
        # the chunk that closes the run logs its success only after the run's figures are written
        wait_for(
            lambda: re.search(rf"billing_run_chunk\[{killed_task}\] succeeded", second.log_text()),
            timeout=30,
            message="the killed chunk's task succeeded on worker 2",
        )
    finally:
        first.kill()
        if second is not None:
            second.stop()

    assert (run.status, run.invoices_created, run.failed, run.chunks_total, run.chunks_done) == (
        "succeeded",
        SUBSCRIPTIONS,
        0,
        SUBSCRIPTIONS // CHUNK,
        SUBSCRIPTIONS // CHUNK,
    )
    # 29.00 + 2 × 9.00 + 19 % VAT = 55.93 per invoice
    assert run.totals == {"EUR": f"{Decimal('55.93') * SUBSCRIPTIONS:.2f}"}
    _assert_billed_exactly_once(due_subscriptions)
    # the killed chunk was handed out again and billed by the new worker, in full
    log = second.log_text()
    assert killed_task in _task_ids(log, "received")
    # Billed in full by the new worker — or, when the SIGKILL landed after the chunk's commit but before its
    # acknowledgement (the SIGSTOP/SIGKILL window on a loaded machine), found done already and not counted again.
    # Either way the run's figures and the exactly-once checks above hold.
    outcome = re.search(rf"billing_run_chunk\[{killed_task}\] succeeded in [0-9.]+s: (\d+)\b", log)
    assert outcome, "\n".join(line for line in log.splitlines() if killed_task in line)
    assert int(outcome.group(1)) == CHUNK or "was done already" in log, outcome.group(0)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_next_billing_run_bills_what_a_killed_worker_left_unbilled(due_subscriptions, broker, settings, tmp_path):
    """Without the broker's redelivery (the message is gone, or the visibility timeout is still an hour
    away): the next run — the next day's beat task, or staff running ``billing_run`` — bills exactly what is
    still due, and a late redelivery of the killed chunk then finds nothing left to bill."""
    settings.BILLING_AFTER_FINALIZE_HOOKS = False  # the inline run below bills; delivery is not under test
    settings_dict = connection.settings_dict
    worker = start_worker(name="faults-kill-w3", broker=broker, settings_dict=settings_dict, log=tmp_path / "w3.log")
    try:
        wait_for(lambda: "ready." in worker.log_text(), timeout=30, message="worker ready")
        run_id = publish_billing_run(broker=broker, settings_dict=settings_dict, as_of="2026-01-01", chunk_size=CHUNK)
        with connection.cursor() as cursor:
            _kill_inside_a_chunk(worker, cursor, after_invoices=2 * CHUNK)
            wait_for(lambda: not backends(cursor, worker.name), timeout=10, message="killed worker's backend gone")
    finally:
        worker.kill()
    billed_by_first_run = Invoice.objects.count()
    assert billed_by_first_run < SUBSCRIPTIONS and _counter() == billed_by_first_run
    first_run = BillingRun.objects.get(pk=run_id)
    assert first_run.finished_at is None  # left running: its remaining chunks sit in the broker

    next_run = billing_run(as_of=JAN_1)  # inline, as `manage.py billing_run --as-of 2026-01-01` does

    assert next_run.subscriptions_seen == SUBSCRIPTIONS - billed_by_first_run
    assert (next_run.status, next_run.invoices_created, next_run.failed) == (
        "succeeded",
        SUBSCRIPTIONS - billed_by_first_run,
        0,
    )
    _assert_billed_exactly_once(due_subscriptions)
