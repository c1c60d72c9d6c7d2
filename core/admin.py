"""Domain events, read-only: what happened, and which handlers have run for it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core.models import DomainEvent, EventHandlerRun


class EventHandlerRunInline(admin.TabularInline):
    model = EventHandlerRun
    extra = 0
    can_delete = False
    fields = ("handler", "phase", "ran_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DomainEvent)
class DomainEventAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "subject_type", "subject_id", "occurred_at", "status", "attempts")
    list_filter = ("type", "status")
    list_select_related = ("actor",)
    show_full_result_count = False
    ordering = ("-id",)
    fields = (
        "type",
        "subject_type",
        "subject_id",
        "occurred_at",
        "actor",
        "payload",
        "status",
        "processed_at",
        "attempts",
        "last_error",
        "claimed_until",
    )
    readonly_fields = fields
    inlines = [EventHandlerRunInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
