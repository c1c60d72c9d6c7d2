"""Invoicing's part of the customer page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from notifications.admin import BillingEmailBouncedFilter
from notifications.models import EmailAddressStatus


# --- The customer page: deliverability of the billing e-mail ---------------------------------------------
# customers cannot import the apps above it, so invoicing extends the customer admin that is registered (dunning
# and payments extend it again the same way).
def _extend_customer_admin() -> None:
    from customers.models import Customer

    base = type(admin.site._registry[Customer])

    class CustomerBouncedFilter(BillingEmailBouncedFilter):
        email_path = "email"

    class CustomerAdmin(base):  # type: ignore[valid-type, misc]
        list_filter = (CustomerBouncedFilter, *base.list_filter)

        def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
            fields = tuple(super().get_readonly_fields(request, obj))
            return (*fields, "billing_email_status") if obj is not None else fields

        def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
            fieldsets = list(super().get_fieldsets(request, obj))
            if obj is not None:
                fieldsets.insert(1, ("Deliverability", {"fields": ("billing_email_status",)}))
            return fieldsets

        @admin.display(description="billing e-mail")
        def billing_email_status(self, obj: Any) -> str:
            status = EmailAddressStatus.objects.filter(email=obj.email.lower()).first()
            if status is None or not (status.bounced_at or status.complained_at):
                return "delivering (no bounce or complaint recorded)"
            what = "BOUNCED" if status.bounced_at else "COMPLAINED (marked as spam)"
            when = status.bounced_at or status.complained_at
            return format_html("<strong>{}</strong> on {} — {}", what, f"{when:%Y-%m-%d %H:%M}", status.reason or "")

    admin.site.unregister(Customer)
    admin.site.register(Customer, CustomerAdmin)


_extend_customer_admin()
