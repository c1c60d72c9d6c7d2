"""Domain events: one row per business fact, written in the same transaction as the change it records, and one
row per handler that has run for it (docs/ARCHITECTURE.md, "Domain events")."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from pghistory import ProxyField
from pghistory.models import EventsQuerySet


class EventStatus(models.TextChoices):
    PENDING = "pending", "pending"  # handlers still to run (the after-commit dispatch or the sweep will)
    PROCESSED = "processed", "processed"  # every handler registered for its type has run
    SKIPPED = "skipped", "processed without handlers"  # written with handlers off (bulk loads, demo history)
    FAILED = "failed", "failed"  # a handler kept failing; the sweep gave up, staff look at last_error


class DomainEvent(models.Model):
    """``payload`` holds ids, the key amounts as strings and the currency — enough for a handler to load what it
    needs and for a later webhook to describe the fact without reading other tables."""

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(max_length=60)
    occurred_at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    subject_type = models.CharField(max_length=40, help_text="What the event is about, e.g. invoice.")
    subject_id = models.BigIntegerField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=EventStatus.choices, default=EventStatus.PENDING)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Dispatches that had a handler fail.")
    last_error = models.TextField(blank=True)
    # A dispatcher claims the event until then (UPDATE … WHERE claimed_until is past), so the after-commit
    # dispatch and a sweep never run its handlers at the same time; a dead worker's claim simply expires.
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["subject_type", "subject_id"], name="core_event_subject"),
            models.Index(fields=["type", "occurred_at"], name="core_event_type_time"),
            models.Index(fields=["occurred_at"], condition=Q(status=EventStatus.PENDING), name="core_event_pending"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=EventStatus.values), name="core_event_status_valid"),
            models.CheckConstraint(
                condition=Q(status=EventStatus.PENDING) | Q(processed_at__isnull=False),
                name="core_event_done_has_processed_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"


class EventHandlerRun(models.Model):
    """A handler ran for an event — at most one row per (event, handler), written in the handler's own
    transaction where it has one, so a handler never runs twice and a crash resumes after the last one."""

    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(DomainEvent, on_delete=models.CASCADE, related_name="handler_runs")
    handler = models.CharField(max_length=100)
    phase = models.CharField(max_length=10)
    ran_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["event", "handler"], name="core_handler_run_once")]

    def __str__(self) -> str:
        return f"{self.handler} for event #{self.event_id}"


class _DecimalJSONDecoder(json.JSONDecoder):
    """Numbers in audit snapshots are amounts: read them as Decimal, never float."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parse_float", Decimal)
        super().__init__(*args, **kwargs)


class AuditEvent(models.Model):
    """Every audit row of every ``@audited`` model (core/audit.py) as one read-only list: django-pghistory's
    aggregate query (a UNION over the ``*Audit`` tables) with the diff against the object's previous snapshot.
    Not a table; ``objects.tracks(obj)`` / ``.references(obj)`` narrow it to one object or what points at it."""

    pgh_slug = models.TextField(primary_key=True)
    pgh_model = models.CharField(max_length=64)
    pgh_id = models.BigIntegerField()
    pgh_created_at = models.DateTimeField("when")
    pgh_label = models.TextField("operation")
    pgh_data = models.JSONField("snapshot", decoder=_DecimalJSONDecoder)
    pgh_diff = models.JSONField("changes", null=True, decoder=_DecimalJSONDecoder)
    pgh_context_id = models.UUIDField(null=True)
    pgh_context = models.JSONField("actor context", null=True, decoder=_DecimalJSONDecoder)
    pgh_obj_model = models.CharField("model", max_length=64)
    pgh_obj_id = models.TextField("object id", null=True)
    actor_kind = ProxyField("pgh_context__actor_kind", models.TextField("actor kind", null=True))
    actor = ProxyField("pgh_context__actor", models.TextField("actor", null=True))

    objects = EventsQuerySet.as_manager()

    class Meta:
        managed = False
        verbose_name = "audit row"
        verbose_name_plural = "audit trail"

    def __str__(self) -> str:
        return f"{self.pgh_obj_model} #{self.pgh_obj_id} {self.pgh_label}"
