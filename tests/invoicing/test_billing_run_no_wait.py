"""Two chunks of one run, on two connections, bill side by side: neither waits for the other's commit until the
very end, where the gapless invoice numbers are taken (the counter row is the one lock chunks must share, and it
is held only for the last writes).

This pins the fix for the workers taking turns: the chunk used to update the run's row (its chunk counter) at the
START of its transaction, so every other chunk waited on that row lock for a whole chunk and two workers billed
as fast as one. Here each thread runs its chunk with ``SET LOCAL lock_timeout = '2s'`` and stops just before the
numbers, holding its transaction open, until the other thread has got there too: with a shared hot row the
second chunk would wait (and time out) before the barrier and the first would wait for it forever.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from djmoney.money import Money

import invoicing.billing_run as billing_run_module
from invoicing.billing_run import RunContext, billing_run_chunk, billing_run_finish, billing_run_open
from invoicing.models import BillingRun, BillingRunChunk, BillingRunStatus, Invoice
from invoicing.numbering import number_series_default
from invoicing.taxes import tax_rates_load
from tests.factories import NumberSeriesFactory, PriceFactory, TaxRateFactory
from tests.factories.subscriptions import bulk_subscriptions

JAN_1 = dt.date(2026, 1, 1)


@pytest.mark.django_db(transaction=True)
def test_two_chunks_transactions_do_not_wait_on_each_other(monkeypatch):
    from core import events

    monkeypatch.setitem(events._registry, "invoice.issued", [])  # billing only
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    price = PriceFactory(unit_amount=Money(Decimal("31.00"), "EUR"))
    bulk_subscriptions(count=20, items=[(price, 1)], start_date=JAN_1)
    run, chunks = billing_run_open(as_of=JAN_1, chunk_size=10, dispatch="celery")
    assert len(chunks) == 2

    # Both threads stop inside their chunk's transaction just before the numbers are taken, i.e. after the chunk
    # is marked done, its subscriptions locked and planned and everything but the numbered invoices written.
    both_inside = threading.Barrier(2)
    real_issue = billing_run_module.invoices_issue

    def issue_after_the_other_chunk_got_here(**kwargs: Any) -> Any:
        both_inside.wait(timeout=15)
        return real_issue(**kwargs)

    monkeypatch.setattr(billing_run_module, "invoices_issue", issue_after_the_other_chunk_got_here)
    outcomes: list[Any] = []
    errors: list[BaseException] = []

    def bill(chunk: list[int]) -> None:
        try:
            context = RunContext(tax_rates=tax_rates_load(), series=number_series_default(kind="invoice"))
            # The chunk's transaction (billing_run_chunk's own atomic block becomes a savepoint in it), every lock
            # wait in it bounded: a wait on the other chunk fails it after 2 s instead of hanging.
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '2s'")
                outcome = billing_run_chunk(run=run, subscription_ids=chunk, as_of=JAN_1, context=context)
            outcomes.append(outcome)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=bill, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert not both_inside.broken, "a chunk waited on the other one's transaction before taking its numbers"
    assert sorted(outcome.invoices for outcome in outcomes) == [10, 10]
    assert not BillingRun.objects.get(pk=run.pk).errors.exists()  # no chunk fell back to one-by-one
    # at least one of them saw the run complete (the one that counted last), and the run closes
    assert sum(outcome.run_complete for outcome in outcomes) >= 1
    run = billing_run_finish(run_id=run.pk)
    assert (run.status, run.chunks_done, run.invoices_created) == (BillingRunStatus.SUCCEEDED, 2, 20)
    assert BillingRunChunk.objects.filter(run=run).count() == 2
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [f"INV-2026-{n:06d}" for n in range(1, 21)]
