"""The PostgreSQL connection dropped in the middle of a billing-run chunk's transaction (pg_terminate_backend from
another connection): the server rolls the whole chunk back — no invoice, line, event or number of it survives —
and the run bills the chunk again one subscription per transaction on a fresh connection, so it completes with
every period billed once and gapless numbers."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from djmoney.money import Money

from invoicing import billing_run as billing_run_module
from invoicing.billing_run import billing_run
from invoicing.models import BillingRun, BillingRunError, Invoice, InvoiceEvent, InvoiceLine, NumberSeriesCounter
from subscriptions.models import Subscription
from tests.factories import NumberSeriesFactory, PriceFactory, TaxRateFactory
from tests.factories.subscriptions import bulk_subscriptions
from tests.reliability.procs import Broker, publish_billing_run, start_worker, wait_for

JAN_1 = dt.date(2026, 1, 1)


def _admin_connection() -> psycopg.Connection:
    """A connection of its own, outside Django, to terminate others' backends from."""
    settings_dict = connection.settings_dict
    return psycopg.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"],
        dbname=settings_dict["NAME"],
        autocommit=True,
    )


def _due(count: int) -> list[int]:
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    base = PriceFactory(unit_amount=Money(Decimal("29.00"), "EUR"))
    seats = PriceFactory(unit_amount=Money(Decimal("9.00"), "EUR"), per_unit=True)
    return bulk_subscriptions(count=count, items=[(base, 1), (seats, 2)], start_date=JAN_1)


def _assert_every_period_once(subscription_ids: list[int]) -> None:
    count = len(subscription_ids)
    per_period = Counter(Invoice.objects.values_list("subscription_id", "period_key"))
    assert {subscription for subscription, _period in per_period} == set(subscription_ids)
    assert set(per_period.values()) == {1}
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [
        f"INV-2026-{n:06d}" for n in range(1, count + 1)
    ]
    assert NumberSeriesCounter.objects.get().last_number == count
    assert InvoiceLine.objects.count() == 2 * count
    assert InvoiceEvent.objects.count() == count
    assert not Subscription.objects.filter(next_billing_date__lte=JAN_1).exists()


@pytest.mark.django_db(transaction=True)
def test_connection_dropped_inside_a_chunk_rolls_it_back_and_the_run_completes(monkeypatch, settings):
    settings.BILLING_AFTER_FINALIZE_HOOKS = False
    ids = _due(30)
    seen_inside: dict[str, int] = {}
    real_invoices_issue = billing_run_module.invoices_issue

    def invoices_issue_then_lose_the_connection(**kwargs):
        """The chunk's last step (its lines are written and its subscriptions advanced before): once the invoices,
        their events and numbers are written too, the first time, the connection is cut from outside before the
        chunk commits."""
        issued = real_invoices_issue(**kwargs)
        if not seen_inside:
            seen_inside["invoices"] = Invoice.objects.count()
            seen_inside["lines"] = InvoiceLine.objects.count()
            seen_inside["counter"] = NumberSeriesCounter.objects.get().last_number
            pid = connection.connection.info.backend_pid
            with _admin_connection() as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [pid])
                wait_for(
                    lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone(),
                    timeout=10,
                    interval=0.05,
                    message="backend gone",
                )
        return issued

    monkeypatch.setattr(billing_run_module, "invoices_issue", invoices_issue_then_lose_the_connection)

    run = billing_run(as_of=JAN_1, chunk_size=10)

    # the first chunk had written its 10 invoices, 20 lines and taken 10 numbers when the connection went …
    assert seen_inside == {"invoices": 10, "lines": 20, "counter": 10}
    # … all of it was rolled back, and the chunk was billed again subscription by subscription
    assert (run.status, run.invoices_created, run.failed, run.chunks_done) == ("succeeded", 30, 0, 3)
    assert not BillingRunError.objects.exists()
    assert run.totals == {"EUR": "1677.90"}  # 30 × 55.93
    _assert_every_period_once(ids)
    # numbers follow commit order: the re-billed first chunk took its numbers after nothing was left of the
    # lost ones (1–10 were handed back by the rollback and handed out again)
    first_chunk = sorted(ids)[:10]
    numbers = sorted(Invoice.objects.filter(subscription_id__in=first_chunk).values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 11)]


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_worker_connection_terminated_mid_chunk_and_the_run_completes(tmp_path):
    """The same with a real worker process on the broker, its backend found by application_name in
    pg_stat_activity and terminated while it holds the chunk's number lock. To be certain to find it there (a
    chunk holds that lock only for its last few milliseconds), another connection holds a SHARE lock on the
    invoice table: the first chunk takes its numbers, then waits to COPY its invoices — inside its open
    transaction, holding the number lock — until the lock is released right after the termination."""
    ids = _due(400)
    broker = Broker()
    settings_dict = connection.settings_dict
    worker = start_worker(name="faults-db-w1", broker=broker, settings_dict=settings_dict, log=tmp_path / "w1.log")
    terminated = False
    try:
        wait_for(lambda: "ready." in worker.log_text(), timeout=30, message="worker ready")
        with _admin_connection() as admin, _admin_connection() as blocker:
            # The SHARE lock is taken before the run is published: the first chunk takes its numbers and then
            # waits at its invoice COPY. (Taken after a first chunk was seen, a fast run could finish every chunk
            # between two polls of a busy test process, and nothing would be left to catch.)
            blocker.execute("BEGIN")
            blocker.execute("LOCK TABLE invoicing_invoice IN SHARE MODE")
            run_id = publish_billing_run(broker=broker, settings_dict=settings_dict, as_of="2026-01-01", chunk_size=50)
            try:
                deadline = time.monotonic() + 60
                while not terminated and time.monotonic() < deadline:
                    assert worker.alive(), worker.log_text()[-3000:]
                    pid = _pid_in_chunk(admin, worker.name, not_committing=True)
                    if pid is not None:
                        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
                        terminated = True
                    time.sleep(0.01)
            finally:
                blocker.execute("ROLLBACK")
        assert terminated, "never saw the worker inside a chunk transaction"
        run = wait_for(
            lambda: BillingRun.objects.filter(pk=run_id, finished_at__isnull=False).first(),
            timeout=60,
            message="run finished: " + worker.log_text()[-2000:],
        )
        assert worker.alive()  # a lost connection costs the worker nothing: the next query reconnects
    finally:
        worker.stop()
        broker.purge()

    assert (run.status, run.invoices_created, run.failed, run.chunks_done) == ("succeeded", 400, 0, 8)
    assert not BillingRunError.objects.exists()
    _assert_every_period_once(ids)
    log = worker.log_text()
    assert "failed as a whole; billing it one by one" in log


def _pid_in_chunk(admin: psycopg.Connection, application_name: str, *, not_committing: bool = False) -> int | None:
    row = admin.execute(
        """
        SELECT a.pid FROM pg_stat_activity a
        JOIN pg_locks l ON l.pid = a.pid
        JOIN pg_class c ON c.oid = l.relation
        WHERE a.application_name = %s AND c.relname = 'invoicing_numberseriescounter'
          AND l.mode = 'RowExclusiveLock' AND l.granted AND NOT (%s AND a.query = 'COMMIT')
        """,
        [application_name, not_committing],
    ).fetchone()
    return row[0] if row else None
