"""Staff screens of dunning: policies and their steps, customer settings, what each step did; and dunning's
part of the invoice and customer pages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.admin_lists import boolean_column
from core.admin_readonly import ReadOnlyMixin
from core.audit import AuditTrailMixin
from core.dates import billing_today
from customers.models import Customer
from dunning import services as dunning
from dunning.models import CustomerDunningSettings, DunningAction, DunningActionStatus, DunningPolicy, DunningStep
from invoicing.admin.common import ReadOnlyInline, _actor
from invoicing.models import Invoice, InvoiceStatus


class DunningActionInline(ReadOnlyInline):
    model = DunningAction
    fk_name = "invoice"
    verbose_name_plural = "reminder history (dunning)"
    fields = ("at", "as_of", "scheduled_for", "step", "action", "status", "email_link", "late_fee_invoice", "detail")
    readonly_fields = fields
    ordering = ("at", "pk")

    def get_queryset(self, request: HttpRequest) -> QuerySet[DunningAction]:
        return super().get_queryset(request).select_related("step", "outbound_email", "late_fee_invoice")

    @admin.display(description="e-mail")
    def email_link(self, obj: DunningAction) -> str:
        if obj.outbound_email is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:notifications_outboundemail_change", args=[obj.outbound_email_id]),
            obj.outbound_email.get_status_display(),
        )


def _latest_dunning_step() -> Subquery:
    return Subquery(
        DunningAction.objects.filter(invoice=OuterRef("pk"), status=DunningActionStatus.DONE, step__isnull=False)
        .order_by("-scheduled_for", "-pk")
        .values("step_id")[:1]
    )


class DunningStageFilter(admin.SimpleListFilter):
    """Invoices by the last dunning step that took effect (or: none yet, or on hold)."""

    title = "dunning stage"
    parameter_name = "dunning"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        steps = DunningStep.objects.select_related("policy").order_by("policy__name", "offset_days", "pk")
        return [
            ("held", "On hold"),
            ("none", "Overdue, no step yet"),
            *((str(step.pk), f"{step.policy.name}: {step}") for step in steps),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "held":
            return queryset.filter(Q(hold_reminders=True) | Q(customer__dunning_settings__hold_reminders=True))
        if value == "none":
            return queryset.filter(status=InvoiceStatus.OPEN, due_date__lt=billing_today()).exclude(
                Exists(DunningAction.objects.filter(invoice=OuterRef("pk"), status=DunningActionStatus.DONE))
            )
        if value and value.isdigit():
            return queryset.annotate(dunning_step=_latest_dunning_step()).filter(dunning_step=int(value))
        return queryset


class DunningStepInline(admin.TabularInline):
    model = DunningStep
    extra = 0
    fields = ("offset_days", "action", "template", "late_fee_amount", "late_fee_currency", "late_fee_percent")
    ordering = ("offset_days", "pk")


@admin.register(DunningPolicy)
class DunningPolicyAdmin(AuditTrailMixin, admin.ModelAdmin):
    audit_include_related = True
    list_display = ("name", boolean_column("is_default", "default"), "steps_display", "updated_at")
    search_fields = ("name",)
    inlines = (DunningStepInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[DunningPolicy]:
        return super().get_queryset(request).prefetch_related("steps")

    @admin.display(description="steps")
    def steps_display(self, obj: DunningPolicy) -> str:
        steps = sorted(obj.steps.all(), key=lambda step: (step.offset_days, step.pk))
        return format_html_join("", "<div>{}</div>", ((str(step),) for step in steps)) or "—"

    def has_delete_permission(self, request: HttpRequest, obj: DunningPolicy | None = None) -> bool:
        # A policy whose steps have been applied keeps its history; make another policy the default instead.
        if obj is not None and DunningAction.objects.filter(step__policy=obj).exists():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(CustomerDunningSettings)
class CustomerDunningSettingsAdmin(AuditTrailMixin, admin.ModelAdmin):
    list_display = (
        "customer",
        "policy",
        boolean_column("hold_reminders", "reminders held", yes="Held"),
        "note",
        "updated_at",
    )
    list_filter = ("hold_reminders", "policy")
    search_fields = ("customer__name", "customer__email")
    list_select_related = ("customer", "policy")
    autocomplete_fields = ("customer",)
    fields = ("customer", "policy", "hold_reminders", "note")


@admin.register(DunningAction)
class DunningActionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Read-only log of every dunning step that happened (or was superseded / skipped)."""

    list_display = ("at", "invoice", "step", "action", "status", "as_of", "scheduled_for", "detail")
    list_filter = ("action", "status")
    search_fields = ("=invoice__number",)
    list_select_related = ("invoice", "step", "step__policy")
    show_full_result_count = False
    date_hierarchy = "as_of"
    readonly_fields = (
        "invoice",
        "step",
        "action",
        "status",
        "as_of",
        "scheduled_for",
        "at",
        "outbound_email",
        "late_fee_invoice",
        "detail",
        "actor",
    )
    fields = readonly_fields


class CustomerDunningSettingsInline(admin.StackedInline):
    model = CustomerDunningSettings
    fk_name = "customer"
    fields = ("policy", "hold_reminders", "note")
    extra = 0
    max_num = 1
    verbose_name = "dunning settings"
    verbose_name_plural = "dunning settings"


# --- dunning's part of the invoice and customer pages ------------------------------------------------------
# invoicing and customers cannot import dunning (apps import downwards only), so dunning extends the admins
# that are registered: the reminder history, the dunning-stage filter and the reminder actions on invoices, the
# dunning settings on customers.


def _extend_invoice_admin() -> None:
    base: Any = type(admin.site._registry[Invoice])

    class InvoiceAdmin(base):  # type: ignore[valid-type, misc]
        inlines = (*base.inlines, DunningActionInline)
        history_inlines = (*base.history_inlines, DunningActionInline)
        list_filter = tuple(
            item for f in base.list_filter for item in ((DunningStageFilter, f) if f == "hold_reminders" else (f,))
        )
        actions = (*base.actions, "send_reminder_now", "hold_reminders_selected", "release_reminders_selected")

        def has_send_reminder_permission(self, request: HttpRequest) -> bool:
            return request.user.has_perm("dunning.add_dunningaction")

        @admin.action(description="Send a payment reminder now", permissions=["send_reminder"])
        def send_reminder_now(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
            sent = 0
            for invoice in queryset.select_related("customer").order_by("pk"):
                try:
                    dunning.dunning_reminder_send_now(invoice=invoice, actor=_actor(request))
                except dunning.DunningError as exc:
                    self.message_user(request, f"{invoice}: no reminder — {exc}", messages.ERROR)
                else:
                    sent += 1
            if sent:
                self.message_user(request, f"Queued {sent} reminder(s).", messages.SUCCESS)

        def has_hold_permission(self, request: HttpRequest) -> bool:
            return request.user.has_perm("invoicing.change_invoice")

        @admin.action(description="Hold reminders (disputed)", permissions=["hold"])
        def hold_reminders_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
            for invoice in queryset:
                dunning.invoice_hold_reminders_set(invoice=invoice, hold=True)
                self.log_change(request, invoice, "Reminders held.")
            self.message_user(request, f"Reminders held for {len(queryset)} invoice(s).", messages.SUCCESS)

        @admin.action(description="Release the reminder hold", permissions=["hold"])
        def release_reminders_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
            for invoice in queryset:
                dunning.invoice_hold_reminders_set(invoice=invoice, hold=False)
                self.log_change(request, invoice, "Reminder hold released.")
            self.message_user(request, f"Reminders released for {len(queryset)} invoice(s).", messages.SUCCESS)

    admin.site.unregister(Invoice)
    admin.site.register(Invoice, InvoiceAdmin)


def _extend_customer_admin() -> None:
    base = type(admin.site._registry[Customer])

    class CustomerAdmin(base):  # type: ignore[valid-type, misc]
        inlines = [*base.inlines, CustomerDunningSettingsInline]

    admin.site.unregister(Customer)
    admin.site.register(Customer, CustomerAdmin)


_extend_invoice_admin()
_extend_customer_admin()
