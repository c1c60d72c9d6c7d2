"""Billing runs: read-only, with their per-subscription errors."""

from __future__ import annotations

from django.contrib import admin

from core.admin_lists import boolean_column, status_badge
from core.admin_readonly import ReadOnlyMixin
from invoicing.admin.common import ReadOnlyInline
from invoicing.models import (
    BillingRun,
    BillingRunError,
)

# --- billing runs ---------------------------------------------------------------------------------------


class BillingRunErrorInline(ReadOnlyInline):
    model = BillingRunError
    fields = ("subscription_id", "message", "traceback", "created_at")
    readonly_fields = fields


@admin.register(BillingRun)
class BillingRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "started_at",
        "as_of",
        boolean_column("dry_run", "dry run", yes="Dry run", no="Real"),
        "status_display",
        "subscriptions_seen",
        "invoices_created",
        "failed",
    )
    list_filter = ("status", "dry_run")
    date_hierarchy = "as_of"
    show_full_result_count = False
    inlines = (BillingRunErrorInline,)
    readonly_fields = (
        "started_at",
        "finished_at",
        "as_of",
        "dry_run",
        "status",
        "subscriptions_seen",
        "invoices_created",
        "failed",
        "totals",
        "triggered_by",
    )
    fields = readonly_fields

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: BillingRun) -> str:
        return status_badge(obj.status, obj.get_status_display())
