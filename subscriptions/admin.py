from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from core.admin_errors import form_application_error
from core.admin_lists import FormattedNumbersMixin, QuickActionCheckbox, badge, boolean_column, status_badge
from core.admin_pages import date_text, money_text
from core.admin_readonly import ReadOnlyMixin
from core.audit import AuditTrailMixin
from core.dates import billing_today
from core.errors import ApplicationError
from core.imports import ImportAdminMixin, ImportReport, ImportUploadForm
from core.money import amount_limit_problem, round_amount
from subscriptions.calendar import format_day
from subscriptions.charges import period_accruals
from subscriptions.models import (
    BillableMetric,
    Coupon,
    Discount,
    PendingInvoiceItem,
    Price,
    PriceTier,
    PricingModel,
    Product,
    Subscription,
    SubscriptionEvent,
    SubscriptionItem,
    SubscriptionStatus,
    UsageEvent,
    UsageType,
)
from subscriptions.selectors import usage_current
from subscriptions.services import (
    USAGE_COLUMNS,
    SubscriptionError,
    coupon_problem,
    discount_create,
    metric_filters_problem,
    subscription_cancel,
    subscription_collection_update,
    subscription_commitments_update,
    subscription_pause,
    subscription_resume,
    usage_import_csv,
    usage_record_create,
)


class PriceTierInline(FormattedNumbersMixin, admin.TabularInline):
    model = PriceTier
    money_fields = dict.fromkeys(("unit_amount", "flat_amount"), "price.currency")
    extra = 0


class PriceInline(FormattedNumbersMixin, admin.TabularInline):
    model = Price
    money_fields = {"unit_amount": ""}
    extra = 0
    fields = (
        "nickname",
        "unit_amount",
        "interval",
        "interval_count",
        "pricing_model",
        "usage_type",
        "tax_category",
        "active",
    )
    show_change_link = True


@admin.register(Product)
class ProductAdmin(AuditTrailMixin, admin.ModelAdmin):
    list_display = ("name", "statement_descriptor", "tax_category", boolean_column("active", "active"), "created_at")
    list_filter = ("active", "tax_category")
    search_fields = ("name", "statement_descriptor")
    show_full_result_count = False
    inlines = (PriceInline,)


class PriceForm(forms.ModelForm):
    """The admin builds the model form from this base; an amount no invoice could bill is refused here."""

    def clean_unit_amount(self) -> Any:
        money = self.cleaned_data["unit_amount"]
        if money is not None and (problem := amount_limit_problem(money.amount, str(money.currency))):
            raise forms.ValidationError(problem)
        return money

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("pricing_model") == PricingModel.PACKAGE and not cleaned.get("package_size"):
            self.add_error("package_size", "A package price needs its package size (units per block).")
        if cleaned.get("metric") is not None and cleaned.get("usage_type") != UsageType.METERED:
            self.add_error("metric", "Only a metered price bills a metric.")
        if cleaned.get("self_service") and cleaned.get("usage_type") == UsageType.METERED:
            self.add_error("self_service", "A metered price is billed by usage: customers cannot choose it as a plan.")
        return cleaned


class BillableMetricForm(forms.ModelForm):
    def clean_filters(self) -> Any:
        filters = self.cleaned_data["filters"]
        problem = metric_filters_problem(filters)
        if problem:
            raise forms.ValidationError(problem)
        return filters


@admin.register(BillableMetric)
class BillableMetricAdmin(AuditTrailMixin, admin.ModelAdmin):
    form = BillableMetricForm
    list_display = ("code", "name", "aggregation", "field_name", "filters")
    list_filter = ("aggregation",)
    search_fields = ("code", "name")
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: BillableMetric | None = None) -> Any:
        # A metric that prices bill is never edited (what was invoiced must stay explainable): create a new one.
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and obj.prices.exists():
            return (*fields, *(f.name for f in BillableMetric._meta.fields))
        return fields


@admin.register(Price)
class PriceAdmin(FormattedNumbersMixin, AuditTrailMixin, admin.ModelAdmin):
    money_fields = {"unit_amount": ""}
    audit_include_related = True
    form = PriceForm
    list_display = (
        "__str__",
        "product",
        "pricing_model",
        "usage_type",
        "interval",
        "tax_behavior",
        "tax_category",
        boolean_column("active", "active"),
        boolean_column("self_service", "self-service"),
    )
    list_filter = (
        "active",
        "self_service",
        "pricing_model",
        "usage_type",
        "interval",
        "unit_amount_currency",
        "tax_category",
    )
    list_select_related = ("product",)
    search_fields = ("product__name", "nickname")
    autocomplete_fields = ("metric",)
    show_full_result_count = False
    inlines = (PriceTierInline,)

    def get_readonly_fields(self, request: HttpRequest, obj: Price | None = None) -> Any:
        # A price that is in use is never edited: archive it and create a new one.
        fields = tuple(super().get_readonly_fields(request, obj))  # the audit trail, on existing ones
        if obj is not None and obj.subscription_items.exists():
            # What the portal offers is not what the price bills: staff may still switch it.
            editable = ("active", "self_service", "self_service_max_quantity")
            return (*fields, *(f.name for f in Price._meta.fields if f.name not in editable))
        return fields

    def get_inlines(self, request: HttpRequest, obj: Price | None) -> Any:
        return () if obj is not None and obj.subscription_items.exists() else self.inlines


class SubscriptionItemInline(FormattedNumbersMixin, admin.TabularInline):
    model = SubscriptionItem
    quantity_fields = ("quantity",)
    extra = 0
    fields = ("price", "quantity", "removed_on")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SubscriptionEventInline(ReadOnlyMixin, admin.TabularInline):
    """The status history (who, when, from, to, why): written by the services, never edited."""

    model = SubscriptionEvent
    extra = 0
    fields = ("at", "actor", "from_status", "to_status", "reason")
    readonly_fields = fields
    can_delete = False


def _bulk(
    label: str, service: Callable[..., Any], **kwargs: Any
) -> Callable[[admin.ModelAdmin, HttpRequest, QuerySet[Subscription]], None]:
    def action(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        done, failed = 0, []
        for subscription in queryset.order_by("pk"):
            try:
                service(subscription=subscription, as_of=billing_today(), actor=request.user, **kwargs)
                done += 1
            except SubscriptionError as exc:
                failed.append(f"#{subscription.pk}: {exc}")
        model_admin.message_user(request, f"{label}: {done} subscription(s).", messages.SUCCESS)
        if failed:
            model_admin.message_user(request, "Not done — " + "; ".join(failed[:10]), messages.WARNING)

    return action


class SubscriptionAdminForm(forms.ModelForm):  # type: ignore[type-arg]
    usage_thresholds = forms.CharField(
        required=False,
        help_text="Progressive billing: amounts of the period's usage, separated by commas (1000.00, 2500.00); "
        "when usage crosses one, the usage so far is invoiced at once and deducted from the period's invoice.",
    )

    class Meta:
        model = Subscription
        fields = (
            "customer",
            "collection_method",
            "days_until_due",
            "minimum_commitment",
            "usage_thresholds",
            "metadata",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial["usage_thresholds"] = ", ".join(self.instance.usage_thresholds or [])
            if self.instance.minimum_commitment is not None:  # 500.00, not the column's 500.000
                self.initial["minimum_commitment"] = round_amount(
                    self.instance.minimum_commitment, self.instance.currency
                )

    def clean_usage_thresholds(self) -> list[str]:
        """Decimal strings: the model field is JSON (the service rounds them to the currency)."""
        text: str = self.cleaned_data.get("usage_thresholds") or ""
        amounts: list[str] = []
        for part in (piece.strip() for piece in text.split(",")):
            if not part:
                continue
            try:
                amount = Decimal(part)
            except InvalidOperation:
                raise forms.ValidationError(f"{part!r} is not an amount") from None
            problem = amount_limit_problem(amount) if amount.is_finite() else f"{part!r} is not an amount"
            if problem or amount <= 0:
                raise forms.ValidationError(problem or "every threshold must be more than zero")
            amounts.append(f"{amount:f}")
        return amounts

    def clean_days_until_due(self) -> int | None:
        days: int | None = self.cleaned_data.get("days_until_due")
        if days is not None and days > 365:
            raise forms.ValidationError("days until due must be between 0 and 365")
        return days


@admin.register(Subscription)
class SubscriptionAdmin(QuickActionCheckbox, AuditTrailMixin, admin.ModelAdmin):
    audit_include_related = True
    # Columns that fit 1280 px beside the filter (static/admin/billing/admin.css).
    list_display = (
        "number_display",
        "customer_display",
        "status_display",
        "currency",
        "interval_display",
        "period_end_display",
        "next_billing_display",
    )
    list_filter = ("status", "currency", "interval", "collection_method", "items__price__product")
    list_select_related = ("customer",)
    search_fields = ("customer__name", "customer__email", "=id")
    raw_id_fields = ("customer",)
    show_full_result_count = False
    list_per_page = 50
    inlines = (SubscriptionItemInline, SubscriptionEventInline)
    readonly_fields = (
        "status",
        "currency",
        "interval",
        "interval_count",
        "start_date",
        "billing_cycle_anchor",
        "current_period_start",
        "current_period_end",
        "next_billing_date",
        "usage_open_from",
        "trial_end",
        "cancel_at_period_end",
        "canceled_at",
        "cancellation_reason",
        "cancellation_comment",
        "ended_at",
        "paused_at",
        "pause_mode",
        "resumes_on",
        "interval_changes",
        "created_at",
        "updated_at",
    )
    actions = ("cancel_at_period_end", "cancel_now", "pause", "resume")
    form = SubscriptionAdminForm
    change_form_template = "admin/subscriptions/subscription/change_form.html"

    @admin.display(description="subscription", ordering="pk")
    def number_display(self, obj: Subscription) -> str:
        return f"#{obj.pk}"

    @admin.display(description="customer", ordering="customer__name")
    def customer_display(self, obj: Subscription) -> str:
        return format_html('<span class="cell-text" title="{}">{}</span>', obj.customer.name, obj.customer.name)

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Subscription) -> str:
        if obj.cancel_at_period_end and obj.status not in (SubscriptionStatus.CANCELED, SubscriptionStatus.ENDED):
            ends = badge("ends", "warning", title="Canceled at the end of the current period")
            return format_html("{} {}", status_badge(obj.status, obj.get_status_display()), ends)
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="billed", ordering="interval")
    def interval_display(self, obj: Subscription) -> str:
        unit = obj.get_interval_display().lower()
        return f"every {unit}" if obj.interval_count == 1 else f"every {obj.interval_count} {unit}s"

    @admin.display(description="period end", ordering="current_period_end")
    def period_end_display(self, obj: Subscription) -> str:
        return date_text(obj.current_period_end)

    @admin.display(description="next invoice", ordering="next_billing_date")
    def next_billing_display(self, obj: Subscription) -> str:
        return date_text(obj.next_billing_date)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Never a bare row: invoicing's admin (invoicing/admin/subscriptions.py) adds the create screen, which
        # goes through subscription_create with a preview of the first invoice.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Subscription | None = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Subscription | None = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # the audit trail, on existing ones
        return (*fields, "customer", "current_usage", "commitment_status") if obj is not None else fields

    @admin.display(description="Commitment and thresholds")
    def commitment_status(self, obj: Subscription) -> str:
        """The current period's usage so far against the minimum commitment and the progressive-billing
        thresholds, priced by the billing plan's own code (subscriptions.charges.period_accruals)."""
        if obj.minimum_commitment is None and not obj.usage_thresholds:
            return "No minimum commitment, no usage thresholds."
        accruals = period_accruals(subscription_ids=[obj.pk], as_of=billing_today(), only_with_thresholds=False)
        if not accruals:
            return "No open period."
        accrual = accruals[0]
        currency = accrual.currency
        rows: list[tuple[str, str]] = [
            (
                f"Usage {format_day(accrual.window_start)} – {format_day(accrual.window_end - dt.timedelta(days=1))}",
                money_text(accrual.usage_amount, currency),
            ),
            ("Recurring fees billed for the period", money_text(obj.period_recurring_net, currency)),
        ]
        if accrual.commitment is not None:
            spent = accrual.usage_amount + obj.period_recurring_net
            rows.append(
                (
                    "Minimum commitment for the period",
                    f"{money_text(accrual.commitment, currency)} — "
                    + (
                        f"{money_text(accrual.commitment - spent, currency)} short so far"
                        if spent < accrual.commitment
                        else "reached"
                    ),
                )
            )
        if accrual.thresholds:
            rows.append(("Usage thresholds", ", ".join(money_text(t, currency) for t in accrual.thresholds)))
            rows.append(("Billed during the period", money_text(accrual.billed_amount, currency)))
            due = accrual.threshold_due
            if due is not None:
                rows.append(("Threshold crossed, invoiced at the next hourly job", money_text(due, currency)))
        return format_html(
            '<table class="commitment-status"><tbody>{}</tbody></table>',
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows),
        )

    @admin.display(description="Current usage")
    def current_usage(self, obj: Subscription) -> str:
        """Each metered item's usage so far in its open period, as the next invoice will bill it (the same
        aggregate as the billing run: subscriptions.usage.usage_totals)."""
        rows = usage_current(subscription_id=obj.pk, as_of=billing_today())
        if not rows:
            return "No metered prices."
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    row.price.display_name,
                    f"{row.metric_name} ({row.metric_code})" if row.metric_code else row.metric_name,
                    row.aggregation.replace("_", " "),
                    format_day(row.period_start),
                    format_day(row.period_end - dt.timedelta(days=1)),
                    f"{row.quantity.normalize():f}",
                    row.events,
                )
                for row in rows
            ),
        )
        return format_html(
            '<table class="current-usage"><thead><tr><th>Price</th><th>Metric</th><th>Aggregation</th>'
            "<th>Period so far</th><th>Quantity</th><th>Events</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    def save_model(self, request: HttpRequest, obj: Subscription, form: Any, change: bool) -> None:
        """The page edits how invoices are collected (and the metadata): the collection through its service, which
        records the change with its actor, never as a bare row write."""
        data = form.cleaned_data
        if {"collection_method", "days_until_due"} & set(form.changed_data):
            subscription_collection_update(
                subscription=obj,
                collection_method=data["collection_method"],
                days_until_due=data["days_until_due"],
                actor=request.user,
            )
        if {"minimum_commitment", "usage_thresholds"} & set(form.changed_data):
            subscription_commitments_update(
                subscription=obj,
                minimum_commitment=data["minimum_commitment"],
                usage_thresholds=data["usage_thresholds"],
                actor=request.user,
            )
        if "metadata" in form.changed_data:
            Subscription.objects.filter(pk=obj.pk).update(metadata=data["metadata"])

    @admin.action(description="Cancel at period end", permissions=["change"])
    def cancel_at_period_end(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        _bulk("Canceled at period end", subscription_cancel, at_period_end=True)(self, request, queryset)

    @admin.action(description="Cancel now (prorated credit)", permissions=["change"])
    def cancel_now(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        _bulk("Canceled", subscription_cancel, prorate_credit=True)(self, request, queryset)

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        _bulk("Paused", subscription_pause)(self, request, queryset)

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        _bulk("Resumed", subscription_resume)(self, request, queryset)


@admin.register(SubscriptionEvent)
class SubscriptionEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("at", "subscription", "actor", "from_status", "to_status", "reason")
    list_filter = ("to_status",)
    list_select_related = ("subscription", "actor")
    show_full_result_count = False


@admin.register(Coupon)
class CouponAdmin(FormattedNumbersMixin, AuditTrailMixin, admin.ModelAdmin):
    money_fields = {"amount_off": ""}
    percentage_fields = ("percent_off",)
    list_display = (
        "code", "name", "percent_off", "amount_off", "duration", "duration_in_periods", "times_redeemed", "active"
    )  # fmt: skip
    list_filter = ("active", "duration")
    search_fields = ("code", "name")
    readonly_fields = ("times_redeemed",)
    filter_horizontal = ("products",)
    show_full_result_count = False


class DiscountForm(forms.ModelForm):
    """A coupon applied in the admin passes the checks ``discount_create`` makes, each named on its field."""

    class Meta:
        model = Discount
        fields = ("coupon", "customer", "subscription", "start", "end")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        coupon, subscription, customer = data.get("coupon"), data.get("subscription"), data.get("customer")
        if coupon is None or data.get("start") is None:
            return data
        if (subscription is None) == (customer is None):
            raise forms.ValidationError("apply the coupon to a subscription or to a customer, not both")
        currency = subscription.currency if subscription is not None else customer.currency  # type: ignore[union-attr]
        try:
            coupon_problem(
                coupon=coupon,
                as_of=data["start"],
                currency=currency,
                product_ids=set(
                    subscription.items.filter(removed_on__isnull=True).values_list("price__product_id", flat=True)
                )
                if subscription is not None
                else set(),
            )
        except ApplicationError as exc:
            form_application_error(self, exc)
        return data


@admin.register(Discount)
class DiscountAdmin(AuditTrailMixin, admin.ModelAdmin):
    form = DiscountForm
    list_display = ("coupon", "customer", "subscription", "start", "end", "periods_applied")
    list_select_related = ("coupon", "customer", "subscription")
    raw_id_fields = ("customer", "subscription")
    readonly_fields = ("periods_applied",)
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Discount | None = None) -> Any:
        # Redeemed through discount_create; ended from the subscription page ("Remove coupon"), never edited.
        fields = tuple(super().get_readonly_fields(request, obj))  # periods_applied, and the audit trail
        if obj is not None:
            return ("coupon", "customer", "subscription", "start", "end", *fields)
        return fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Discount, form: Any, change: bool) -> None:
        if change:
            return
        discount = discount_create(
            coupon=obj.coupon,
            as_of=obj.start,
            subscription=obj.subscription,
            customer=obj.customer,
            end=obj.end,
            actor=request.user,
        )
        obj.pk = discount.pk
        obj.periods_applied = discount.periods_applied


@admin.register(PendingInvoiceItem)
class PendingInvoiceItemAdmin(FormattedNumbersMixin, admin.ModelAdmin):
    money_fields = {"amount": "", "unit_amount": ""}
    quantity_fields = ("quantity",)
    list_display = ("subscription", "description", "amount", "effective_on", "billed_at")
    list_filter = ("kind", "proration")
    list_select_related = ("subscription",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class UsageEventForm(forms.ModelForm):
    class Meta:
        model = UsageEvent
        fields = ("subscription_item", "value", "timestamp", "transaction_id")
        labels = {"value": "Quantity", "transaction_id": "Idempotency key"}


class UsageImportUploadForm(ImportUploadForm):
    file = forms.FileField(label="CSV file", help_text="UTF-8, with a header row. See the columns below.")


@admin.register(UsageEvent)
class UsageEventAdmin(FormattedNumbersMixin, ImportAdminMixin, admin.ModelAdmin):
    quantity_fields = ("value",)
    form = UsageEventForm
    list_display = ("timestamp", "subscription_item", "metric", "value", "usage_date", "billing_date", "key_display")
    list_select_related = ("subscription_item__price__product", "metric")
    raw_id_fields = ("subscription_item",)
    search_fields = ("=transaction_id",)
    date_hierarchy = "usage_date"
    show_full_result_count = False

    @admin.display(description="transaction id", ordering="transaction_id")
    def key_display(self, obj: UsageEvent) -> str:
        return format_html('<span class="cell-text" title="{}">{}</span>', obj.transaction_id, obj.transaction_id)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: UsageEvent, form: Any, change: bool) -> None:
        try:
            record, created = usage_record_create(
                subscription_item=obj.subscription_item,
                quantity=obj.value,
                timestamp=obj.timestamp,
                idempotency_key=obj.transaction_id,
            )
        except SubscriptionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk = record.pk
        if not created:
            self.message_user(request, "Already recorded (same idempotency key): ignored.", messages.WARNING)

    # --- CSV import (core.imports) ---

    import_title = "Import usage records from CSV"
    import_template = "admin/subscriptions/usageevent/import.html"
    import_form_class = UsageImportUploadForm

    def run_import(self, request: HttpRequest, form: ImportUploadForm) -> ImportReport:
        return usage_import_csv(stream=form.cleaned_data["file"], dry_run=form.cleaned_data["dry_run"])

    def import_context(self, request: HttpRequest) -> dict[str, Any]:
        return {"columns": USAGE_COLUMNS}
