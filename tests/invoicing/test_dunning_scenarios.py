"""Dunning over a calendar: the service runs every day (twice), invoices are paid, disputed or never paid; and the
beat task across the daylight-saving switches in Europe/Berlin."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine

from dunning import services as dunning
from dunning.models import DunningAction
from dunning.tasks import send_reminders as send_reminders_task
from invoicing.billing_run import billing_run
from invoicing.models import Invoice, InvoiceStatus
from invoicing.services import invoice_apply_payment
from subscriptions.models import SubscriptionStatus
from tests.factories import InvoiceFactory, SubscriptionFactory

ISSUE = dt.date(2026, 3, 2)
DUE = dt.date(2026, 3, 16)
UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")

pytestmark = [pytest.mark.django_db, pytest.mark.scenario]


@pytest.fixture(autouse=True)
def _setup(series, vat_de):
    dunning.seed_dunning()


def _day(offset: int) -> dt.date:
    return DUE + dt.timedelta(days=offset)


def _history(invoice: Invoice) -> list[tuple[int, str]]:
    """(days from the due date on which it happened, what) for every step that took effect."""
    rows = DunningAction.objects.filter(invoice=invoice, status="done").select_related("outbound_email")
    return [
        (
            (row.as_of - DUE).days,
            row.outbound_email.template.removeprefix("reminders/") if row.outbound_email else row.action,
        )
        for row in rows.order_by("at", "pk")
    ]


def test_calendar_of_five_invoices_day_by_day():
    on_time = InvoiceFactory(finalized=ISSUE)
    late = InvoiceFactory(finalized=ISSUE)
    middle = InvoiceFactory(finalized=ISSUE)
    disputed = InvoiceFactory(finalized=ISSUE)
    dunning.invoice_hold_reminders_set(invoice=disputed, hold=True)
    subscription = SubscriptionFactory(start_date=ISSUE)
    billing_run(as_of=ISSUE)
    never = Invoice.objects.get(subscription=subscription)
    payments = {_day(-1): on_time, _day(10): late, _day(3): middle}

    day = ISSUE
    while day <= _day(70):
        if day in payments:
            invoice_apply_payment(invoice=payments[day], amount=payments[day].amount_due)
        first = dunning.send_reminders(as_of=day)
        again = dunning.send_reminders(as_of=day)
        assert again.steps == [] or {step.outcome for step in again.steps} == {"already_done"}, day
        assert first.failed == 0
        day += dt.timedelta(days=1)

    assert _history(on_time) == [(-3, "friendly")]
    assert _history(late) == [(-3, "friendly"), (1, "reminder"), (7, "reminder")]
    assert _history(middle) == [(-3, "friendly"), (1, "reminder")]
    assert _history(disputed) == []
    assert _history(never) == [
        (-3, "friendly"),
        (1, "reminder"),
        (7, "reminder"),
        (14, "final"),
        (30, "subscription_pause"),
        (60, "invoice_uncollectible"),
    ]
    never.refresh_from_db()
    subscription.refresh_from_db()
    assert never.status == InvoiceStatus.UNCOLLECTIBLE
    assert subscription.status == SubscriptionStatus.PAUSED
    assert DunningAction.objects.filter(invoice__in=[on_time, late, middle]).exclude(status="done").count() == 0


def _hourly(start: dt.datetime, end: dt.datetime):
    moment = start
    while moment <= end:
        yield moment
        moment += dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("due_date", "dst_day"),
    [(dt.date(2026, 3, 28), dt.date(2026, 3, 29)), (dt.date(2026, 10, 24), dt.date(2026, 10, 25))],
    ids=["spring-forward", "fall-back"],
)
def test_beat_task_every_hour_across_the_dst_switch_sends_each_step_once_on_its_berlin_day(due_date, dst_day):
    """The +1 reminder falls on the switch day (23 or 25 hours long). Running the task every hour for a week,
    it goes out once, at the first run whose date in Berlin is that day — not the UTC date."""
    issue = due_date - dt.timedelta(days=14)
    invoice = InvoiceFactory(finalized=issue)
    start = dt.datetime.combine(due_date - dt.timedelta(days=5), dt.time(0), tzinfo=UTC)
    for moment in _hourly(start, start + dt.timedelta(days=7)):
        with time_machine.travel(moment, tick=False):
            send_reminders_task.delay()

    plus_one = DunningAction.objects.get(invoice=invoice, step__offset_days=1)
    assert plus_one.as_of == dst_day
    # the first hourly run on the Berlin date: 23:00 UTC the day before in winter time, 22:00 in summer time
    assert plus_one.at.astimezone(BERLIN).date() == dst_day
    assert plus_one.at.astimezone(BERLIN).hour == 0
    assert plus_one.at.astimezone(UTC).date() == dst_day - dt.timedelta(days=1)
    rows = list(DunningAction.objects.filter(invoice=invoice).values_list("step__offset_days", "as_of"))
    assert sorted(rows) == [(-3, due_date - dt.timedelta(days=3)), (1, dst_day)]  # each once, on its day
    assert invoice.outbound_emails.filter(kind="reminder").count() == 2
