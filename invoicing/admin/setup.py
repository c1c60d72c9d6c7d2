"""Number series and tax rates."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from core.audit import AuditTrailMixin
from invoicing.admin.common import ReadOnlyInline
from invoicing.models import (
    NumberSeries,
    NumberSeriesCounter,
    TaxRate,
)

# --- number series and tax rates ------------------------------------------------------------------------


class NumberSeriesCounterInline(ReadOnlyInline):
    model = NumberSeriesCounter
    fields = ("year", "last_number")
    readonly_fields = fields


@admin.register(NumberSeries)
class NumberSeriesAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "kind", "prefix", "format", "yearly_reset", "is_default")
    list_filter = ("kind",)
    inlines = (NumberSeriesCounterInline,)

    def has_delete_permission(self, request: HttpRequest, obj: NumberSeries | None = None) -> bool:
        if obj is not None and obj.counters.exists():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(TaxRate)
class TaxRateAdmin(AuditTrailMixin, admin.ModelAdmin):
    list_display = ("name", "country", "region", "category", "percentage", "inclusive", "active")
    list_filter = ("active", "category", "inclusive", "country")
    search_fields = ("name", "country", "region")
    list_editable = ("active",)
