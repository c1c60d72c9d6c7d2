"""The "Staff edits" block of the billing admins' change pages: the ``django.contrib.admin`` LogEntry rows of the
object (who, when, what changed), newest first and read-only. Status changes have their own event tables
(InvoiceEvent, SubscriptionEvent), shown as read-only inlines.

LogEntry is deliberately not registered in the admin, so no screen can change or delete it; this block only
reads it. Shared plumbing, so every app's admin mixes it in directly.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.contenttypes.models import ContentType
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

STAFF_EDITS_SHOWN = 50
_ACTIONS = {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}


def staff_edits(obj: Any, *, limit: int = STAFF_EDITS_SHOWN) -> list[LogEntry]:
    """The admin log of ``obj``, newest first."""
    content_type = ContentType.objects.get_for_model(type(obj), for_concrete_model=False)
    return list(
        LogEntry.objects.filter(content_type=content_type, object_id=str(obj.pk))
        .select_related("user")
        .order_by("-action_time", "-pk")[:limit]
    )


def staff_edits_html(obj: Any) -> str:
    entries = staff_edits(obj)
    if not entries:
        return "No staff edits recorded."
    return format_html(
        '<table class="staff-edits"><thead><tr><th>When</th><th>Who</th><th>What</th><th>Change</th></tr></thead>'
        "<tbody>{}</tbody></table>",
        format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    timezone.localtime(entry.action_time).strftime("%Y-%m-%d %H:%M:%S %Z"),
                    str(entry.user),
                    _ACTIONS.get(entry.action_flag, "?"),
                    entry.get_change_message() or "—",
                )
                for entry in entries
            ),
        ),
    )


class StaffEditsMixin:
    """Adds a read-only "Staff edits" section to the change page of an existing object."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return (*fields, "staff_edits") if obj is not None and "staff_edits" not in fields else fields

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))  # type: ignore[misc]
        if obj is None:
            return fieldsets
        if "staff_edits" in flatten_fieldsets(fieldsets):  # admins without fieldsets list every read-only field
            fieldsets = [(name, {**options, "fields": _without_staff_edits(options)}) for name, options in fieldsets]
        return [*fieldsets, ("Staff edits", {"fields": ("staff_edits",)})]

    @admin.display(description="staff edits (admin log)")
    def staff_edits(self, obj: Any) -> str:
        return staff_edits_html(obj)


def _without_staff_edits(options: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(name for name in options.get("fields", ()) if name != "staff_edits")
