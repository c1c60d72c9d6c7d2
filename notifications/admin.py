"""Staff screens of the outbox: customer e-mails (read-only, with their tracking events) and address
deliverability. ``BillingEmailBouncedFilter`` is reused by the invoice and customer lists."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.db.models.functions import Lower
from django.http import HttpRequest

from core.admin_readonly import ReadOnlyMixin
from notifications.models import EmailAddressStatus, EmailEvent, EmailStatus, OutboundEmail


def _bounced(email_path: str) -> Exists:
    return Exists(EmailAddressStatus.objects.filter(email=Lower(OuterRef(email_path)), bounced_at__isnull=False))


class BillingEmailBouncedFilter(admin.SimpleListFilter):
    title = "billing e-mail bounced"
    parameter_name = "email_bounced"
    email_path = "customer__email"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Bounced"), ("no", "Not bounced")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(_bounced(self.email_path))
        if self.value() == "no":
            return queryset.exclude(_bounced(self.email_path))
        return queryset


class EmailEventInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    model = EmailEvent
    fields = ("received_at", "occurred_at", "event_type", "recipient", "description", "event_id")
    readonly_fields = fields


class RecipientBouncedFilter(BillingEmailBouncedFilter):
    title = "billing e-mail bounced"
    email_path = "customer__email"


@admin.register(OutboundEmail)
class OutboundEmailAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Read-only history of customer e-mails; failed ones show their last error."""

    list_display = ("queued_at", "kind", "customer", "invoice", "recipients", "status", "attempts", "last_error_short")
    list_filter = ("status", "kind", RecipientBouncedFilter)
    search_fields = ("=invoice__number", "customer__name", "customer__email", "=provider_message_id")
    list_select_related = ("customer", "invoice")
    show_full_result_count = False
    date_hierarchy = "queued_at"
    inlines = (EmailEventInline,)
    readonly_fields = (
        "kind",
        "status",
        "customer",
        "invoice",
        "credit_note",
        "recipients",
        "from_email",
        "subject",
        "language",
        "template",
        "attach_pdf",
        "attempts",
        "last_error",
        "esp_name",
        "provider_message_id",
        "idempotency_key",
        "queued_at",
        "claimed_at",
        "sent_at",
        "delivered_at",
        "opened_at",
        "bounced_at",
        "failed_at",
        "body_text",
    )
    fields = readonly_fields

    @admin.display(description="recipients")
    def recipients(self, obj: OutboundEmail) -> str:
        return ", ".join([*obj.to_emails, *(f"cc {address}" for address in obj.cc_emails)])

    @admin.display(description="last error")
    def last_error_short(self, obj: OutboundEmail) -> str:
        if obj.status != EmailStatus.FAILED and not obj.last_error:
            return ""
        return obj.last_error[:120]


@admin.register(EmailAddressStatus)
class EmailAddressStatusAdmin(admin.ModelAdmin):
    list_display = ("email", "bounced_at", "complained_at", "reason", "updated_at")
    list_filter = (("bounced_at", admin.EmptyFieldListFilter), ("complained_at", admin.EmptyFieldListFilter))
    search_fields = ("email",)
    readonly_fields = ("email", "bounced_at", "complained_at", "reason", "updated_at")
    actions = ("clear_flags",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Clear bounce / complaint flags (address fixed or confirmed)", permissions=["change"])
    def clear_flags(self, request: HttpRequest, queryset: QuerySet[EmailAddressStatus]) -> None:
        changed = queryset.update(bounced_at=None, complained_at=None, reason="")
        self.message_user(request, f"Cleared {changed} address(es).", messages.SUCCESS)
