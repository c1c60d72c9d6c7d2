"""Two billing runs at the same time, on separate database connections, bill every period exactly once and
leave a gapless number sequence (real PostgreSQL row locks, SKIP LOCKED and the counter row)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connection
from djmoney.money import Money

from invoicing.billing_run import billing_run
from invoicing.models import BillingRun, Invoice
from subscriptions.models import Subscription
from tests.factories import NumberSeriesFactory, PriceFactory, TaxRateFactory
from tests.factories.subscriptions import bulk_subscriptions

JAN_1 = dt.date(2026, 1, 1)


def _subscriptions(count: int) -> None:
    price = PriceFactory(unit_amount=Money(Decimal("31.00"), "EUR"))
    seats = PriceFactory(unit_amount=Money(Decimal("7.50"), "EUR"), per_unit=True)
    bulk_subscriptions(count=count, items=[(price, 1), (seats, 3)], start_date=JAN_1)


@pytest.fixture
def no_delivery(monkeypatch):
    """These tests are about billing; PDFs and e-mails (after-commit hooks) are tested on their own."""
    from core import events

    monkeypatch.setitem(events._registry, "invoice.issued", [])


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_bill_each_period_once_with_gapless_numbers(no_delivery):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    _subscriptions(500)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            billing_run(as_of=JAN_1, chunk_size=50)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert not errors, errors
    assert Invoice.objects.count() == 500
    assert Invoice.objects.values("subscription_id").distinct().count() == 500
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 501)]
    runs = list(BillingRun.objects.all())
    assert len(runs) == 2
    assert sum(r.invoices_created for r in runs) == 500
    assert all(r.failed == 0 and r.status == "succeeded" for r in runs)
    assert not Subscription.objects.filter(next_billing_date__lte=JAN_1).exists()
