"""The stale-work sweeper: a billing run whose worker died (a run row with an old heartbeat) is marked
``interrupted``, shown on the dashboard, and what it left is billed exactly once by a new run; e-mails a dead
worker left sending are marked failed; live work is left alone (billing_project/sweeper.py)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from djmoney.money import Money

from billing_project.sweeper import stale_work_sweep
from invoicing.billing_run import DISPATCH_CELERY, billing_run_chunk, billing_run_open
from invoicing.models import BillingRun, BillingRunStatus, Invoice
from invoicing.stale_runs import billing_runs_stale
from notifications.models import EmailStatus, OutboundEmail
from subscriptions.models import Subscription
from tests.factories import NumberSeriesFactory, PriceFactory, StaffUserFactory, TaxRateFactory
from tests.factories.subscriptions import bulk_subscriptions

pytestmark = pytest.mark.django_db
JAN_1 = dt.date(2026, 1, 1)


@pytest.fixture
def subscriptions(monkeypatch):
    from core import events

    monkeypatch.setitem(events._registry, "invoice.issued", [])  # billing only; delivery is tested elsewhere
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    bulk_subscriptions(count=6, items=[(PriceFactory(unit_amount=Money(Decimal("31.00"), "EUR")), 1)], start_date=JAN_1)
    return sorted(Subscription.objects.values_list("pk", flat=True))


def _killed_after_one_chunk(*, dispatch: str = "inline", customer_id: int | None = None) -> BillingRun:
    """A run that billed its first chunk, then its process was killed -9 (nothing else happens to the row)."""
    run, chunks = billing_run_open(as_of=JAN_1, chunk_size=2, dispatch=dispatch, customer_id=customer_id)
    billing_run_chunk(run=run, subscription_ids=chunks[0], as_of=JAN_1)
    run.refresh_from_db()
    assert run.status == BillingRunStatus.RUNNING and run.heartbeat_at is not None
    return run


def _age(run: BillingRun, minutes: int) -> None:
    past = timezone.now() - dt.timedelta(minutes=minutes)
    BillingRun.objects.filter(pk=run.pk).update(started_at=past, heartbeat_at=past)


def _assert_each_subscription_billed_once(subscription_ids: list[int]) -> None:
    billed = sorted(Invoice.objects.values_list("subscription_id", flat=True))
    assert billed == subscription_ids
    numbers = sorted(int(number.rsplit("-", 1)[1]) for number in Invoice.objects.values_list("number", flat=True))
    assert numbers == list(range(1, len(subscription_ids) + 1))  # gapless


def test_a_run_whose_worker_died_is_marked_interrupted_and_the_rest_is_billed_once(subscriptions):
    run = _killed_after_one_chunk()
    _age(run, 31)

    report = stale_work_sweep()

    run.refresh_from_db()
    assert run.status == BillingRunStatus.INTERRUPTED
    assert run.finished_at is not None
    assert (run.chunks_done, run.chunks_total, run.invoices_created, run.totals) == (1, 3, 2, {"EUR": "73.78"})
    resumed = run.resumed_by
    assert resumed is not None and resumed.as_of == JAN_1
    assert (resumed.status, resumed.invoices_created) == (BillingRunStatus.SUCCEEDED, 4)
    _assert_each_subscription_billed_once(subscriptions)
    assert [interrupted.run_id for interrupted in report.billing_runs] == [run.pk]
    assert report.billing_runs[0].resumed_by == resumed.pk

    # Nothing is stale any more: a second sweep does nothing.
    again = stale_work_sweep()
    assert again.found == 0
    assert BillingRun.objects.count() == 2


def test_a_run_with_a_recent_heartbeat_is_left_alone(subscriptions, settings):
    settings.BILLING_RUN_STALE_MINUTES = 30
    run = _killed_after_one_chunk()
    _age(run, 29)
    assert stale_work_sweep().found == 0
    run.refresh_from_db()
    assert run.status == BillingRunStatus.RUNNING
    # …and is stale once the threshold passes without a heartbeat.
    assert billing_runs_stale(now=timezone.now() + dt.timedelta(minutes=2)) == [run.pk]


def test_a_run_killed_before_its_first_chunk_is_interrupted_by_its_start_time(subscriptions):
    run, _chunks = billing_run_open(as_of=JAN_1, chunk_size=2)
    assert run.heartbeat_at is None
    BillingRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - dt.timedelta(hours=2))
    stale_work_sweep()
    run.refresh_from_db()
    assert (run.status, run.invoices_created) == (BillingRunStatus.INTERRUPTED, 0)
    assert run.resumed_by.invoices_created == 6
    _assert_each_subscription_billed_once(subscriptions)


def test_a_workers_run_is_resumed_on_the_workers(subscriptions, django_capture_on_commit_callbacks):
    run = _killed_after_one_chunk(dispatch=DISPATCH_CELERY)
    _age(run, 45)
    with django_capture_on_commit_callbacks(execute=True):  # the chunk tasks run eagerly in tests
        stale_work_sweep()
    run.refresh_from_db()
    assert run.status == BillingRunStatus.INTERRUPTED
    assert (run.resumed_by.dispatch, run.resumed_by.status) == (DISPATCH_CELERY, BillingRunStatus.SUCCEEDED)
    _assert_each_subscription_billed_once(subscriptions)


def test_a_one_customer_run_is_resumed_for_that_customer_only(subscriptions):
    first = Subscription.objects.get(pk=subscriptions[0])
    run = _killed_after_one_chunk(customer_id=first.customer_id)
    _age(run, 60)
    stale_work_sweep()
    run.refresh_from_db()
    assert run.resumed_by.customer_id == first.customer_id
    assert set(Invoice.objects.values_list("customer_id", flat=True)) == {first.customer_id}


def test_the_interrupted_run_shows_on_the_dashboard(subscriptions, client):
    run = _killed_after_one_chunk()
    _age(run, 31)
    stale_work_sweep()
    # The resumed run is the last one; the dashboard still names the interruption.
    staff = StaffUserFactory(group="Billing admin")
    client.force_login(staff)
    page = client.get(reverse("admin:index")).content.decode()
    assert "Interrupted billing runs (30 days)" in page
    assert f"resumes interrupted run {run.pk}" in page


def test_the_command_reports_interrupted_runs_and_emails_a_dead_worker_left_sending(subscriptions):
    run = _killed_after_one_chunk()
    _age(run, 31)
    email = OutboundEmail.objects.create(
        kind="other",
        idempotency_key="test:stale-sending",
        customer=Subscription.objects.get(pk=subscriptions[0]).customer,
        from_email="billing@example.com",
        to_emails=["a@example.com"],
        subject="Hello",
        body_text="Hello",
        template="test",
        queued_at=timezone.now() - dt.timedelta(hours=2),
        status=EmailStatus.SENDING,
        attempts=1,
        claimed_at=timezone.now() - dt.timedelta(minutes=61),
    )
    out = StringIO()
    call_command("sweep_stale", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert [entry["run"] for entry in result["billing_runs_interrupted"]] == [run.pk]
    assert result["billing_runs_interrupted"][0]["chunks_done"] == 1
    assert result["emails_marked_failed"] == 1
    assert result["errors"] == []
    email.refresh_from_db()
    assert email.status == EmailStatus.FAILED and "Interrupted while sending" in email.last_error

    text = StringIO()
    call_command("sweep_stale", stdout=text)
    assert "0 billing run(s) interrupted" in text.getvalue()
