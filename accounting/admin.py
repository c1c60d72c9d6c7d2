from __future__ import annotations

from django.contrib import admin

from accounting.models import ExchangeRate
from core.audit import AuditTrailMixin


@admin.register(ExchangeRate)
class ExchangeRateAdmin(AuditTrailMixin, admin.ModelAdmin):
    """The rates the journals convert with: loaded daily from the ECB, imported from a file, or corrected here."""

    list_display = ("date", "currency", "rate_display", "base", "source", "updated_at")
    list_filter = ("currency", "source")
    date_hierarchy = "date"
    search_fields = ("currency",)
    fields = ("date", "currency", "rate", "base", "source")
    readonly_fields = ("base", "source")
    list_per_page = 50

    @admin.display(description="rate (1 EUR =)", ordering="rate")
    def rate_display(self, obj: ExchangeRate) -> str:
        return f"{obj.rate.normalize():f} {obj.currency}"

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        obj.source = "manual"
        super().save_model(request, obj, form, change)


# The ledger sync's admin (connections, sync log): accounting/ledger/admin.py.
from accounting.ledger import admin as _ledger_admin  # noqa: E402, F401
