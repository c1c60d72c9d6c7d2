"""Two real Celery worker processes on the Redis broker share one billing run: every subscription is billed
exactly once and both workers take chunks."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from djmoney.money import Money

from billing_project.celery import app as celery_app
from invoicing.billing_tasks import billing_run_async
from invoicing.models import BillingRun, Invoice
from subscriptions.models import Subscription
from tests.factories import NumberSeriesFactory, PriceFactory, TaxRateFactory
from tests.factories.subscriptions import bulk_subscriptions

ROOT = Path(__file__).resolve().parents[2]
JAN_1 = dt.date(2026, 1, 1)


def _start_worker(name: str, queue: str, log: Path) -> subprocess.Popen[bytes]:
    settings_dict = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "billing_project.settings_test",
        # the workers use the test database this test filled
        "DATABASE_URL": (
            f"postgres://{settings_dict['USER']}@{settings_dict['HOST'] or '127.0.0.1'}:"
            f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
        ),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        # billing is under test here; PDFs and e-mails of the new invoices are not
        "BILLING_AFTER_FINALIZE_HOOKS": "false",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "billing_project",
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            queue,
            "-n",
            f"{name}@%h",
            "--loglevel=INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def celery_queue():
    """Send this test's tasks to a queue of its own on the real broker instead of running them eagerly."""
    queue = f"billing-test-{uuid.uuid4().hex[:8]}"
    saved = {key: celery_app.conf[key] for key in ("task_always_eager", "task_default_queue")}
    celery_app.conf.update(task_always_eager=False, task_default_queue=queue)
    yield queue
    celery_app.conf.update(saved)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_two_celery_workers_share_a_run_and_bill_each_subscription_once(celery_queue, tmp_path, monkeypatch):
    from core import events

    monkeypatch.setitem(events._registry, "invoice.issued", [])
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    base = PriceFactory(unit_amount=Money(Decimal("29.00"), "EUR"))
    seats = PriceFactory(unit_amount=Money(Decimal("9.00"), "EUR"), per_unit=True)
    ids = bulk_subscriptions(count=1200, items=[(base, 1), (seats, 2)], start_date=JAN_1)

    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
    workers = [_start_worker(f"w{n}", celery_queue, log) for n, log in enumerate(logs, start=1)]
    try:
        run = billing_run_async(as_of=JAN_1, chunk_size=50)
        assert run.chunks_total == 24
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.finished_at is not None:
                break
            assert all(w.poll() is None for w in workers), [log.read_text()[-2000:] for log in logs]
            time.sleep(0.5)
        else:
            pytest.fail("the run did not finish: " + " | ".join(log.read_text()[-1500:] for log in logs))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)

    run = BillingRun.objects.get(pk=run.pk)
    assert (run.status, run.invoices_created, run.failed, run.chunks_done) == ("succeeded", 1200, 0, 24)
    # per invoice 29.00 + 2 × 9.00 + VAT (5.51 + 3.42) = 55.93
    assert run.totals == {"EUR": "67116.00"}
    assert Invoice.objects.count() == 1200
    assert Invoice.objects.values("subscription_id").distinct().count() == 1200
    assert set(Invoice.objects.values_list("subscription_id", flat=True)) == set(ids)
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [f"INV-2026-{n:06d}" for n in range(1, 1201)]
    assert not Subscription.objects.filter(next_billing_date__lte=JAN_1).exists()
    chunks_per_worker = [log.read_text().count("invoicing.billing_run_chunk[") for log in logs]
    assert all(count > 0 for count in chunks_per_worker), chunks_per_worker
