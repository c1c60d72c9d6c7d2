"""The demo's replay of the past runs with the clock set to the day it replays.

What the demo does "on" a past day — a billing run, a subscription change, a bank transfer received — is done
with ``timezone.now()`` on that day, so the records carry the times they would have had: invoices are finalized
on their issue date, payments settle invoices on the day the money arrived (the "paid per month" report), and the
audit timeline reads like a year rather than like one busy minute. It also keeps the periodic jobs that look at
recent activity from mistaking the past for today: the e-mail sweep sends invoice e-mails whose finalize hook
"never ran" for invoices finalized in the last three days — the replay skips those hooks on purpose, and without
the clock set back the sweep would e-mail a year of invoices, most of them paid long ago.

The clock is moved with time-machine (a runtime dependency for this reason; the tests use it too)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import time_machine

from core.dates import billing_today, billing_tz


@contextmanager
def on_day(day: dt.date, at: dt.time = dt.time(9)) -> Iterator[None]:
    """Run the body with the clock at ``at`` o'clock (BILLING_TIMEZONE) on ``day``, if ``day`` is in the past."""
    if day >= billing_today():
        yield
        return
    with time_machine.travel(dt.datetime.combine(day, at, tzinfo=billing_tz()), tick=True):
        yield
