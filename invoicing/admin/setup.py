"""Number series and tax rates."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from core.admin_lists import FormattedNumbersMixin, boolean_column
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
    list_display = (
        "code",
        "name",
        "kind",
        "prefix",
        "format",
        boolean_column("yearly_reset", "yearly reset"),
        boolean_column("is_default", "default"),
    )
    list_filter = ("kind",)
    inlines = (NumberSeriesCounterInline,)

    def has_delete_permission(self, request: HttpRequest, obj: NumberSeries | None = None) -> bool:
        if obj is not None and obj.counters.exists():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(TaxRate)
class TaxRateAdmin(FormattedNumbersMixin, AuditTrailMixin, admin.ModelAdmin):
    percentage_fields = ("percentage",)
    list_display = (
        "name",
        "country",
        "region",
        "category",
        "percentage",
        boolean_column("inclusive", "inclusive"),
        "active",  # editable in the list (a checkbox)
    )
    list_filter = ("active", "category", "inclusive", "country")
    search_fields = ("name", "country", "region")
    list_editable = ("active",)
