"""Billing runs: read-only, with their per-subscription errors."""

from __future__ import annotations

from django.contrib import admin

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
    list_display = ("started_at", "as_of", "dry_run", "status", "subscriptions_seen", "invoices_created", "failed")
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
