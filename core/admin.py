"""Read-only screens of core: domain events (what happened, and which handlers have run for it) and the audit
trail (every audited change with its actor, core/audit.py)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from core.admin_readonly import ReadOnlyMixin
from core.audit import (
    ACTOR_KINDS,
    NEEDS_POSTGRESQL,
    actor_html,
    audit_enabled,
    audit_entries,
    audit_specs,
    changes_html,
    when_text,
)
from core.models import AuditEvent, DomainEvent, EventHandlerRun


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


# --- the audit trail: one read-only list of every audited change ------------------------------------------


class AuditModelFilter(admin.SimpleListFilter):
    title = "model"
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # From the registry, not SELECT DISTINCT over every audit table.
        return [(spec.model._meta.label, str(spec.model._meta.verbose_name).capitalize()) for spec in audit_specs()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        return queryset.filter(pgh_obj_model=self.value()) if self.value() else queryset


class AuditActorKindFilter(admin.SimpleListFilter):
    title = "actor kind"
    parameter_name = "actor_kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return ACTOR_KINDS

    def queryset(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        return queryset.filter(actor_kind=self.value()) if self.value() else queryset


class AuditChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # One pass over the page: money of invoice lines needs their invoices' currency (one query per model).
        for row, entry in zip(self.result_list, audit_entries(list(self.result_list)), strict=True):
            row.audit_entry = entry


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Every audit row, newest first: filter by model, actor kind and date; search an object id (exact) or an
    actor's name. Nobody can add, change or delete a row (the tables also refuse it, append-only triggers)."""

    list_display = ("when", "who", "what", "operation", "changes")
    list_filter = (AuditModelFilter, AuditActorKindFilter, ("pgh_created_at", admin.DateFieldListFilter))
    search_fields = ("=pgh_obj_id", "actor")
    search_help_text = "An object id (exact, e.g. 42) or part of an actor's name (a user, a customer, 'billing run')."
    ordering = ("-pgh_created_at", "-pgh_id")
    show_full_result_count = False
    list_per_page = 50
    list_display_links = None
    actions = None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AuditChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        if not audit_enabled():
            return AuditEvent.objects.none()
        return AuditEvent.objects.all()

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if not audit_enabled():
            self.message_user(request, NEEDS_POSTGRESQL.format(vendor=connection.vendor), messages.WARNING)
        return super().changelist_view(request, extra_context)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff and request.user.has_perm("core.view_auditevent"))

    @admin.display(description="when", ordering="pgh_created_at")
    def when(self, row: AuditEvent) -> str:
        return when_text(row.pgh_created_at)

    @admin.display(description="who")
    def who(self, row: AuditEvent) -> str:
        return actor_html(row.audit_entry)  # type: ignore[attr-defined]

    @admin.display(description="what")
    def what(self, row: AuditEvent) -> str:
        entry = row.audit_entry  # type: ignore[attr-defined]
        model = apps.get_model(row.pgh_obj_model)
        if row.pgh_label != "delete" and admin.site.is_registered(model):
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[row.pgh_obj_id])
            return format_html('<a href="{}">{}</a>', url, entry.what)
        return str(entry.what)

    @admin.display(description="operation")
    def operation(self, row: AuditEvent) -> str:
        return str(row.audit_entry.operation)  # type: ignore[attr-defined]

    @admin.display(description="change (old → new)")
    def changes(self, row: AuditEvent) -> str:
        return changes_html(row.audit_entry)  # type: ignore[attr-defined]
