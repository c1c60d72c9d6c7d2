"""A handler that says when it applies (core/events.py ``applies``): an event none of whose handlers applies is
processed at once, as a type without handlers; a handler that does not apply is skipped when the event runs."""

from __future__ import annotations

import pytest
from django.db import transaction

from core import events
from core.models import DomainEvent, EventHandlerRun, EventStatus

pytestmark = pytest.mark.django_db


def _record(event_type: str) -> DomainEvent:
    with transaction.atomic():
        return events.event_record(event_type, subject_type="test", subject_id=1, payload={})


def test_an_event_whose_only_handler_does_not_apply_is_processed_at_once_and_never_runs_it():
    ran: list[int] = []
    switch = {"on": False}
    handler = events.Handler("test.happened", "test.notify", events.NOTIFY, lambda e: ran.append(e.pk))
    applies = events.Handler(
        "test.happened", "test.notify", events.NOTIFY, lambda e: ran.append(e.pk), applies=lambda t: switch["on"]
    )
    with events.handlers_replaced({"test.happened": [applies]}):
        quiet = _record("test.happened")
        assert quiet.status == EventStatus.PROCESSED and quiet.processed_at is not None
        switch["on"] = True
        loud = _record("test.happened")
        assert loud.status == EventStatus.PENDING
        assert events.event_process(loud.pk) == EventStatus.PROCESSED
    assert ran == [loud.pk]
    assert list(EventHandlerRun.objects.values_list("event_id", "handler")) == [(loud.pk, "test.notify")]
    assert handler.applies_to("test.happened")  # no ``applies``: always


def test_a_handler_that_stops_applying_before_the_event_runs_is_skipped_and_not_recorded():
    ran: list[str] = []
    switch = {"on": True}
    always = events.Handler("test.happened", "test.deliver", events.DELIVER, lambda e: ran.append("deliver"))
    sometimes = events.Handler(
        "test.happened", "test.notify", events.NOTIFY, lambda e: ran.append("notify"), applies=lambda t: switch["on"]
    )
    with events.handlers_replaced({"test.happened": [always, sometimes]}):
        event = _record("test.happened")
        switch["on"] = False
        assert events.event_process(event.pk) == EventStatus.PROCESSED
    assert ran == ["deliver"]
    assert list(EventHandlerRun.objects.filter(event=event).values_list("handler", flat=True)) == ["test.deliver"]
