"""Domain events and their dispatcher (docs/DESIGN.md: "Later steps react to earlier ones through domain events").

A service that changes something records a ``DomainEvent`` row in its own transaction (``event_record`` /
``events_record``): a rolled-back change leaves no event, a committed one always has its event. After commit the
event's handlers run, phase by phase:

- ``settle``  — money first: apply the customer's credit balance, book credit-note credit, automatic collection;
- ``deliver`` — documents and messages: PDF, invoice and credit-note e-mails (they state the settled amounts);
- ``notify``  — outgoing notifications (empty for now; webhooks will read the same rows).

Handlers are registered per event type, with a name and a phase, by the apps that own them (in their
``AppConfig.ready()``), as callables or dotted paths: this module imports no app of the project. Each handler
must be idempotent. Its run is recorded as an ``EventHandlerRun`` row, unique per (event, handler) — for an
``atomic`` handler in the same transaction as the handler's own writes, so either both happen or neither — and a
handler that has run is never run again for that event. A handler that raises does not stop the others of its
phase, but the next phase waits: the event stays ``pending`` and ``events_sweep`` (the "Domain events" periodic
job, ``manage.py process_events``) resumes it where it stopped, until ``DOMAIN_EVENTS_MAX_ATTEMPTS`` dispatches
failed (then it is ``failed`` and shown to staff in the admin).

Events written with ``handlers=False`` (bulk loads, the demo's history) are stored as processed without handlers,
so no sweep ever replays them; types with no handler registered are processed at once. A handler may say when it
has something to do (``applies``: webhooks only when an endpoint subscribes to the type): an event none of whose
handlers applies is processed at once too, and a handler that does not apply is skipped when the event is run.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from core.bulk import copy_insert
from core.models import DomainEvent, EventHandlerRun, EventStatus

logger = logging.getLogger(__name__)

SETTLE = "settle"
DELIVER = "deliver"
NOTIFY = "notify"
PHASES: tuple[str, ...] = (SETTLE, DELIVER, NOTIFY)

EventHandlerFunc = Callable[[DomainEvent], object]


@dataclass(frozen=True)
class Handler:
    """``target`` is the callable or its dotted path (resolved at first use). ``atomic``: run the handler and
    record its run in one transaction. Handlers that call the network or a broker (a charge, a Celery task that
    renders) are not atomic — they must be idempotent by their own keys, and their run is recorded after they
    return."""

    event_type: str
    name: str
    phase: str
    target: EventHandlerFunc | str
    atomic: bool = True
    # A callable (or its dotted path) taking the event type: False when the handler has nothing to do for events
    # of that type now. None: it always applies.
    applies: Callable[[str], bool] | str | None = None

    def __call__(self, event: DomainEvent) -> object:
        target = import_string(self.target) if isinstance(self.target, str) else self.target
        return target(event)

    def applies_to(self, event_type: str) -> bool:
        if self.applies is None:
            return True
        check = import_string(self.applies) if isinstance(self.applies, str) else self.applies
        return bool(check(event_type))


_registry: dict[str, list[Handler]] = {}


def handler_register(
    *,
    event_type: str,
    name: str,
    phase: str,
    handler: EventHandlerFunc | str,
    atomic: bool = True,
    applies: Callable[[str], bool] | str | None = None,
) -> Handler:
    """Register a handler once (at start-up). Registering the same name again for a type replaces it."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}")
    registered = Handler(event_type=event_type, name=name, phase=phase, target=handler, atomic=atomic, applies=applies)
    handlers = [h for h in _registry.get(event_type, []) if h.name != name]
    _registry[event_type] = [*handlers, registered]
    return registered


def handler_unregister(*, event_type: str, name: str) -> None:
    _registry[event_type] = [h for h in _registry.get(event_type, []) if h.name != name]


def handlers_for(event_type: str) -> list[Handler]:
    """In phase order; within a phase, in registration order."""
    return sorted(_registry.get(event_type, []), key=lambda handler: PHASES.index(handler.phase))


@contextmanager
def handler_registered(
    *, event_type: str, name: str, phase: str, handler: EventHandlerFunc | str, atomic: bool = True
) -> Iterator[Handler]:
    """Register a handler for the duration of a block (tests, one-off scripts)."""
    registered = handler_register(event_type=event_type, name=name, phase=phase, handler=handler, atomic=atomic)
    try:
        yield registered
    finally:
        handler_unregister(event_type=event_type, name=name)


@contextmanager
def handlers_replaced(registry: Mapping[str, Sequence[Handler]] | None = None) -> Iterator[None]:
    """Run a block with another registry (tests: none at all, or only the handlers under test)."""
    global _registry
    saved = _registry
    _registry = {event_type: list(handlers) for event_type, handlers in (registry or {}).items()}
    try:
        yield
    finally:
        _registry = saved


# --- recording ------------------------------------------------------------------------------------------


def event_new(
    event_type: str,
    *,
    subject_type: str,
    subject_id: int | None,
    payload: dict[str, Any],
    actor_id: int | None = None,
    occurred_at: dt.datetime | None = None,
) -> DomainEvent:
    """An unsaved event (for ``events_record``, which writes many in one statement)."""
    return DomainEvent(
        type=event_type,
        subject_type=subject_type,
        subject_id=subject_id,
        payload=payload,
        actor_id=actor_id,
        occurred_at=occurred_at or timezone.now(),
    )


def events_record(
    events: Sequence[DomainEvent], *, handlers: bool = True, dispatch_after_commit: bool = True
) -> list[DomainEvent]:
    """Write ``events`` in the caller's transaction (one INSERT). With ``dispatch_after_commit`` their handlers
    run in this process once it commits (``events_process``); callers that hand them to a worker instead (the
    billing run, one task per chunk) pass False. ``handlers=False`` stores them processed without handlers."""
    if not events:
        return []
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("domain events must be recorded inside the transaction of the change they describe")
    now = timezone.now()
    wanted: dict[str, bool] = {}  # per type: does any handler apply (one look per type, not per event)
    for event in events:
        if handlers and event.type not in wanted:
            wanted[event.type] = any(handler.applies_to(event.type) for handler in _registry.get(event.type, []))
        if not handlers:
            event.status, event.processed_at = EventStatus.SKIPPED, now
        elif not wanted[event.type]:
            event.status, event.processed_at = EventStatus.PROCESSED, now
    _insert(events)
    pending = [event.pk for event in events if event.status == EventStatus.PENDING]
    if pending and dispatch_after_commit:
        transaction.on_commit(partial(events_process, pending))
    return list(events)


def _insert(events: Sequence[DomainEvent]) -> None:
    """A billing-run chunk writes 1,000 events: ids from the sequence and one COPY (``core.bulk``) —
    ``bulk_create`` spent ~70 ms a chunk preparing and quoting them."""
    if len(events) == 1:
        DomainEvent.objects.bulk_create(events)
        return
    copy_insert(DomainEvent, events, assign_ids=True)
    for event in events:
        event._state.adding, event._state.db = False, connection.alias


def event_record(
    event_type: str,
    *,
    subject_type: str,
    subject_id: int | None,
    payload: dict[str, Any],
    actor_id: int | None = None,
    handlers: bool = True,
) -> DomainEvent:
    """Record one event in the caller's transaction; its handlers run after commit."""
    event = event_new(event_type, subject_type=subject_type, subject_id=subject_id, payload=payload, actor_id=actor_id)
    [created] = events_record([event], handlers=handlers)
    return created


# --- dispatching ----------------------------------------------------------------------------------------


def _claim_seconds() -> int:
    return int(getattr(settings, "DOMAIN_EVENTS_CLAIM_SECONDS", 300))


def _max_attempts() -> int:
    return int(getattr(settings, "DOMAIN_EVENTS_MAX_ATTEMPTS", 10))


def _claimable(now: dt.datetime) -> Q:
    return Q(status=EventStatus.PENDING) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))


def event_process(event_id: int, *, now: dt.datetime | None = None) -> str:
    """Run the handlers of one event that have not run yet, phase by phase; returns the event's status after
    the run, or "" when another dispatcher holds it (or it is not pending). Never raises for a handler."""
    now = now or timezone.now()
    claimed = DomainEvent.objects.filter(_claimable(now), pk=event_id).update(
        claimed_until=now + dt.timedelta(seconds=_claim_seconds())
    )
    if claimed != 1:
        return ""
    event = DomainEvent.objects.get(pk=event_id)
    done = set(EventHandlerRun.objects.filter(event_id=event_id).values_list("handler", flat=True))
    errors: list[str] = []
    for phase in PHASES:
        for handler in handlers_for(event.type):
            if handler.phase != phase or handler.name in done or not handler.applies_to(event.type):
                continue
            try:
                _run(handler, event)
            except Exception as exc:
                logger.exception("event %s (%s): handler %s failed", event.pk, event.type, handler.name)
                errors.append(f"{handler.name}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
        if errors:
            break  # a later phase never runs before every handler of this one has run
    finished = timezone.now()
    if not errors:
        DomainEvent.objects.filter(pk=event_id).update(
            status=EventStatus.PROCESSED, processed_at=finished, claimed_until=None
        )
        return EventStatus.PROCESSED
    attempts = event.attempts + 1
    gave_up = attempts >= _max_attempts()
    DomainEvent.objects.filter(pk=event_id).update(
        status=EventStatus.FAILED if gave_up else EventStatus.PENDING,
        processed_at=finished if gave_up else None,
        attempts=attempts,
        last_error="\n".join(errors)[:5000],
        claimed_until=None,
    )
    if gave_up:
        logger.error("event %s (%s): handlers failed %s times; left for staff", event.pk, event.type, attempts)
    return EventStatus.FAILED if gave_up else EventStatus.PENDING


def _run(handler: Handler, event: DomainEvent) -> None:
    if not handler.atomic:
        handler(event)
        EventHandlerRun.objects.bulk_create(
            [EventHandlerRun(event=event, handler=handler.name, phase=handler.phase, ran_at=timezone.now())],
            ignore_conflicts=True,
        )
        return
    try:
        with transaction.atomic():
            handler(event)
            EventHandlerRun.objects.create(
                event=event, handler=handler.name, phase=handler.phase, ran_at=timezone.now()
            )
    except IntegrityError:
        if not EventHandlerRun.objects.filter(event=event, handler=handler.name).exists():
            raise
        # Another dispatcher ran it meanwhile (its claim had expired): our effects were rolled back with the
        # duplicate run row, theirs stand.
        logger.info("event %s: handler %s had run already", event.pk, handler.name)


def events_process(event_ids: Iterable[int]) -> int:
    """Dispatch each event (after the commit that wrote them, or in a worker); returns how many finished."""
    return sum(1 for event_id in event_ids if event_process(event_id) == EventStatus.PROCESSED)


@dataclass(frozen=True)
class EventSweepOutcome:
    processed: int = 0
    pending: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"processed": self.processed, "pending": self.pending, "failed": self.failed}


def events_sweep(*, now: dt.datetime | None = None, limit: int = 500) -> EventSweepOutcome:
    """Resume the events whose handlers did not all run: written more than ``DOMAIN_EVENTS_SWEEP_AFTER_MINUTES``
    ago (their after-commit dispatch or chunk task may still be on its way before that), still pending and not
    claimed by a live dispatcher. Oldest first, at most ``limit``."""
    now = now or timezone.now()
    grace = dt.timedelta(minutes=int(getattr(settings, "DOMAIN_EVENTS_SWEEP_AFTER_MINUTES", 5)))
    event_ids = list(
        DomainEvent.objects.filter(_claimable(now), occurred_at__lt=now - grace)
        .order_by("occurred_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    counts = {EventStatus.PROCESSED: 0, EventStatus.PENDING: 0, EventStatus.FAILED: 0, "": 0}
    for event_id in event_ids:
        counts[event_process(event_id, now=now)] += 1
    return EventSweepOutcome(
        processed=counts[EventStatus.PROCESSED], pending=counts[EventStatus.PENDING], failed=counts[EventStatus.FAILED]
    )
