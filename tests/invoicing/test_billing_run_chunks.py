"""A chunk the broker delivers again (a lost ack, a killed worker) bills nothing and counts once, so the run
is neither closed early nor given a second finish time (``BillingRunChunk``)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connection
from djmoney.money import Money

from invoicing.billing_run import billing_run
from invoicing.billing_tasks import billing_run_chunk_task
from invoicing.models import BillingRun, BillingRunChunk, BillingRunStatus, Invoice
from subscriptions.models import Subscription
from tests.factories import NumberSeriesFactory, PriceFactory, TaxRateFactory
from tests.factories.subscriptions import bulk_subscriptions

JAN_1 = dt.date(2026, 1, 1)


@pytest.fixture
def subscriptions(monkeypatch):
    from core import events

    monkeypatch.setitem(events._registry, "invoice.issued", [])  # billing only; delivery is tested elsewhere
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    bulk_subscriptions(count=6, items=[(PriceFactory(unit_amount=Money(Decimal("31.00"), "EUR")), 1)], start_date=JAN_1)
    return sorted(Subscription.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_a_chunk_delivered_after_the_run_finished_changes_nothing(subscriptions):
    run = billing_run(as_of=JAN_1, chunk_size=2)
    assert (run.status, run.chunks_total, run.chunks_done, run.invoices_created) == ("succeeded", 3, 3, 6)
    assert BillingRunChunk.objects.filter(run=run).count() == 3
    finished_at = run.finished_at

    assert billing_run_chunk_task(run.pk, subscriptions[:2], JAN_1.isoformat()) == 0

    run.refresh_from_db()
    assert (run.chunks_done, run.invoices_created, run.finished_at) == (3, 6, finished_at)
    assert Invoice.objects.count() == 6


@pytest.mark.django_db
def test_a_redelivered_first_chunk_does_not_close_the_run_early(subscriptions):
    run = BillingRun.objects.create(
        started_at=dt.datetime(2026, 1, 1, 6, tzinfo=dt.UTC), as_of=JAN_1, chunks_total=3, dispatch="celery"
    )
    chunks = [subscriptions[0:2], subscriptions[2:4], subscriptions[4:6]]
    for _ in range(3):  # the first chunk, delivered three times
        billing_run_chunk_task(run.pk, chunks[0], JAN_1.isoformat())
    run.refresh_from_db()
    assert (run.chunks_done, run.status, run.finished_at) == (1, BillingRunStatus.RUNNING, None)
    billing_run_chunk_task(run.pk, chunks[1], JAN_1.isoformat())
    billing_run_chunk_task(run.pk, chunks[2], JAN_1.isoformat())
    run.refresh_from_db()
    assert (run.chunks_done, run.status, run.invoices_created) == (3, BillingRunStatus.SUCCEEDED, 6)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_same_chunk_delivered_twice_at_once_bills_and_counts_once(subscriptions):
    run = BillingRun.objects.create(
        started_at=dt.datetime(2026, 1, 1, 6, tzinfo=dt.UTC), as_of=JAN_1, chunks_total=2, dispatch="celery"
    )
    barrier = threading.Barrier(2)
    billed: list[int] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait(timeout=30)
            billed.append(billing_run_chunk_task(run.pk, subscriptions[:3], JAN_1.isoformat()))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(billed) == [0, 3]
    run.refresh_from_db()
    assert (run.chunks_done, run.status) == (1, BillingRunStatus.RUNNING)
    assert Invoice.objects.count() == 3
    assert not run.errors.exists()
