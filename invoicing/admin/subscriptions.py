"""The subscription lifecycle from the admin: create with a preview of its first invoice and renewal, change
items with a preview of the prorations and of what is invoiced now and next, coupons, cancel at period end and
undo, pause and resume, extend a trial, and "Bill now" for a subscription or a customer.

subscriptions cannot import invoicing, so invoicing extends the registered subscription and customer admins
(docs/ARCHITECTURE.md, "Extending a page from above"); payments extends the subscription admin again with
"Cancel now" (it may refund). Every screen only parses input, calls one service and shows its result; each
is allowed to staff who may change subscriptions (Billing admin, Billing clerk) and refused (403) to others.
Every operation writes its ``SubscriptionEvent`` (with the actor) in the service and a LogEntry here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core.admin_errors import form_application_error
from core.dates import billing_today
from core.errors import ApplicationError
from core.money import round_amount
from customers.models import Customer
from invoicing.admin.common import _amount
from invoicing.models import Invoice
from invoicing.subscription_billing import (
    BillNowResult,
    ChangePreviewFull,
    CreatePreview,
    InvoicePreview,
    billing_run_for_customer,
    subscription_change_invoice,
    subscription_change_preview_full,
    subscription_create_preview,
)
from subscriptions.models import (
    CollectionMethod,
    Coupon,
    Discount,
    PauseMode,
    Price,
    Subscription,
    SubscriptionStatus,
)
from subscriptions.services import (
    MAX_ITEM_QUANTITY,
    ItemSpec,
    ProrationBehavior,
    discount_create,
    discount_remove,
    subscription_cancel,
    subscription_cancel_undo,
    subscription_create,
    subscription_pause,
    subscription_resume,
    subscription_trial_extend,
)

OPERATION_TEMPLATE = "admin/subscriptions/subscription/operation.html"
DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


def _money(amount: Decimal, currency: str) -> str:
    return _amount(amount, currency)


def _day(value: dt.date | None) -> str:
    return value.strftime("%d %b %Y") if value else "—"


# --- forms ----------------------------------------------------------------------------------------------


class PriceChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        price: Price = obj
        amount = _money(price.unit_amount.amount, price.currency) if not price.is_tiered else "tiered"
        kind = "metered" if price.is_metered else price.get_pricing_model_display().lower()
        return f"{price.display_name} — {amount} / {price.interval_label} ({kind})"


def _active_prices() -> Any:
    return Price.objects.filter(active=True).select_related("product").order_by("product__name", "pk")


class ItemForm(forms.Form):
    price = PriceChoiceField(queryset=_active_prices(), required=False, label="Price")
    quantity = forms.IntegerField(
        min_value=0, max_value=MAX_ITEM_QUANTITY, required=False, label="Quantity", help_text="Empty for metered."
    )
    remove = forms.BooleanField(required=False, label="Remove")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["price"].queryset = _active_prices()  # type: ignore[attr-defined]


class BaseItemFormSet(forms.BaseFormSet):  # type: ignore[type-arg]
    def items(self) -> list[ItemSpec]:
        """The items the rows describe (rows without a price or ticked "Remove" are left out)."""
        specs = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None) or {}
            price = data.get("price")
            if price is None or data.get("remove"):
                continue
            quantity = data.get("quantity")
            if quantity is None:
                quantity = 0 if price.is_metered else 1
            elif price.is_metered and quantity > 0:
                form.add_error(
                    "quantity",
                    f"{price.display_name} is metered: it is billed by the usage recorded; leave the quantity empty",
                )
                continue
            specs.append(ItemSpec(price=price, quantity=quantity))
        return specs


def item_formset(*, extra: int, can_remove: bool) -> type[BaseItemFormSet]:
    formset = forms.formset_factory(ItemForm, formset=BaseItemFormSet, extra=extra)
    if not can_remove:

        class NoRemove(formset):  # type: ignore[valid-type, misc]
            def add_fields(self, form: forms.Form, index: Any) -> None:
                super().add_fields(form, index)
                form.fields.pop("remove", None)

        return NoRemove
    return formset  # type: ignore[return-value]


class CouponCodeField(forms.ModelChoiceField):  # type: ignore[type-arg]
    default_error_messages = {"invalid_choice": "there is no coupon with this code"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            queryset=Coupon.objects.all(),
            to_field_name="code",
            widget=forms.TextInput(attrs={"size": 20}),
            **kwargs,
        )


class SubscriptionCreateForm(forms.Form):
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.filter(is_archived=False),
        widget=ForeignKeyRawIdWidget(Subscription._meta.get_field("customer").remote_field, admin.site),
        label="Customer",
        help_text="The customer's id; the magnifier opens the customer list.",
    )
    coupon = CouponCodeField(required=False, label="Coupon code")
    start_date = forms.DateField(label="Start date", widget=DATE_INPUT)
    trial_days = forms.IntegerField(min_value=0, max_value=730, required=False, label="Trial days")
    trial_end = forms.DateField(required=False, label="Trial end", widget=DATE_INPUT, help_text="Or the trial's days.")
    billing_cycle_anchor = forms.DateField(
        required=False,
        label="Billing anchor",
        widget=DATE_INPUT,
        help_text="Optional: a day within the first period; the first period is then prorated up to it.",
    )
    collection_method = forms.ChoiceField(
        choices=CollectionMethod.choices,
        initial=CollectionMethod.SEND_INVOICE,
        widget=forms.RadioSelect,
        label="Collection method",
    )
    days_until_due = forms.IntegerField(
        min_value=0, max_value=365, required=False, label="Days until due", help_text="Empty: the customer's terms."
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("trial_days") and data.get("trial_end"):
            self.add_error("trial_end", "give the trial's days or its end date, not both")
        return data


class ChangeItemsForm(forms.Form):
    as_of = forms.DateField(label="Change date", widget=DATE_INPUT, help_text="Within the current period.")
    proration_behavior = forms.ChoiceField(
        label="Proration",
        widget=forms.RadioSelect,
        initial=ProrationBehavior.CREATE_PRORATIONS.value,
        choices=[
            (ProrationBehavior.CREATE_PRORATIONS.value, "Create prorations: on the next invoice"),
            (ProrationBehavior.ALWAYS_INVOICE.value, "Always invoice: issue and send an invoice now"),
            (ProrationBehavior.NONE.value, "None: no proration, the new items from the next period"),
        ],
        help_text="A change to prices of another interval (monthly ↔ yearly) restarts the billing cycle on the "
        "change date and is always invoiced now; the proration choice only decides whether the unused time "
        "is credited on that invoice (none: no credit).",
    )
    reason = forms.CharField(required=False, max_length=200, label="Reason")


class CouponForm(forms.Form):
    coupon = CouponCodeField(label="Coupon code")
    as_of = forms.DateField(label="From", widget=DATE_INPUT)


class CancelAtPeriodEndForm(forms.Form):
    reason = forms.CharField(required=False, max_length=200, label="Reason")


class ReasonForm(forms.Form):
    as_of = forms.DateField(label="Date", widget=DATE_INPUT)
    reason = forms.CharField(required=False, max_length=200, label="Reason")


class PauseForm(forms.Form):
    mode = forms.ChoiceField(
        label="What to pause",
        widget=forms.RadioSelect,
        initial=PauseMode.BILLING,
        choices=[
            (
                PauseMode.BILLING,
                "Pause billing — no invoices while paused (a seasonal break); the status becomes Paused",
            ),
            (
                PauseMode.COLLECTION,
                "Pause collection — keep invoicing, but do not charge the card and send no payment reminders "
                "(a dispute, a payment plan); the status stays",
            ),
        ],
    )
    as_of = forms.DateField(label="Pause from", widget=DATE_INPUT)
    resumes_on = forms.DateField(
        required=False,
        label="Resume on",
        widget=DATE_INPUT,
        help_text="Optional: the daily billing run resumes it that day. Empty: until someone resumes it.",
    )
    reason = forms.CharField(required=False, max_length=200, label="Reason")


class TrialForm(forms.Form):
    trial_end = forms.DateField(label="New trial end", widget=DATE_INPUT)
    reason = forms.CharField(required=False, max_length=200, label="Reason")


class BillNowForm(forms.Form):
    as_of = forms.DateField(label="Bill as of", widget=DATE_INPUT, help_text="Periods due on or before this date.")


# --- previews as rows -----------------------------------------------------------------------------------


def invoice_preview_rows(preview: InvoicePreview) -> dict[str, Any]:
    """An invoice preview as the templates show it: every amount as money with its currency."""
    invoice, currency = preview.invoice, preview.currency
    lines = []
    for line in preview.lines:
        rounded = round_amount(line.unit_amount, currency)
        # 49.00 rather than 49.000000; a unit price finer than the currency (0.0125 per call) is shown as it is.
        unit = rounded if rounded == line.unit_amount else line.unit_amount.normalize()
        arithmetic = f"{line.quantity.normalize():f} × {unit:f}"
        lines.append(
            {
                "description": line.description,
                "period": f"{_day(line.period_start)} – {_day(line.period_end - dt.timedelta(days=1))}",
                "arithmetic": arithmetic,
                "amount": _money(line.amount, currency),
                "discount": _money(-line.discount_amount, currency) if line.discount_amount else "",
                "tax": f"{line.tax_percentage.normalize():f} %: {_money(line.tax_amount, currency)}"
                if line.tax_amount or line.tax_percentage
                else "—",
                "total": _money(line.total_amount, currency),
            }
        )
    return {
        "title": invoice.get_billing_reason_display(),
        "period": f"{_day(invoice.period_start)} – {_day(invoice.period_end - dt.timedelta(days=1))}"
        if invoice.period_start and invoice.period_end
        else "",
        "issue_date": _day(preview.issue_date),
        "due_date": _day(preview.due_date),
        "lines": lines,
        "subtotal": _money(invoice.subtotal, currency),
        "discount": _money(-invoice.discount_total, currency) if invoice.discount_total else "",
        "tax": _money(invoice.tax_total, currency),
        "total": _money(invoice.total, currency),
        "tax_note": invoice.tax_note,
        "held_reason": preview.held_reason,
    }


def _fingerprint(data: Any) -> str:
    """A short hash of the submitted values (minus tokens and buttons): "Create" is only done for the values
    the preview on the page was made from."""
    items = sorted(
        (key, data.getlist(key))
        for key in data
        if key not in ("csrfmiddlewaretoken", "_preview", "_create", "_apply", "preview_of")
    )
    return hashlib.sha256(json.dumps(items, default=str).encode()).hexdigest()[:16]


# --- the subscription admin, extended -------------------------------------------------------------------


def _extend_subscription_admin() -> None:
    base = type(admin.site._registry[Subscription])

    class SubscriptionAdmin(base):  # type: ignore[valid-type, misc]
        change_form_template = "admin/subscriptions/subscription/change_form.html"

        def has_add_permission(self, request: HttpRequest) -> bool:
            # Created through subscription_create by the screen below (add_view), never as a bare row.
            return admin.ModelAdmin.has_add_permission(self, request)

        def get_urls(self) -> list[Any]:
            def view(name: str, route: str, func: Any) -> Any:
                return path(
                    f"<int:object_id>/{route}/",
                    self.admin_site.admin_view(func),
                    name=f"subscriptions_subscription_{name}",
                )

            return [
                view("change_plan", "change-plan", self.change_plan_view),
                view("coupon", "coupon", self.coupon_view),
                path(
                    "<int:object_id>/coupon/<int:discount_id>/remove/",
                    self.admin_site.admin_view(self.coupon_remove_view),
                    name="subscriptions_subscription_coupon_remove",
                ),
                view("cancel_at_period_end", "cancel-at-period-end", self.cancel_at_period_end_view),
                view("undo_cancel", "undo-cancel", self.undo_cancel_view),
                view("pause", "pause", self.pause_view),
                view("resume", "resume", self.resume_view),
                view("extend_trial", "extend-trial", self.extend_trial_view),
                view("bill_now", "bill-now", self.bill_now_view),
                *super().get_urls(),
            ]

        # --- helpers ---

        def _operable(self, request: HttpRequest, object_id: int) -> Subscription:
            subscription = get_object_or_404(Subscription.objects.select_related("customer"), pk=object_id)
            if not self.has_change_permission(request, subscription):
                raise PermissionDenied
            return subscription

        def _page(
            self,
            request: HttpRequest,
            subscription: Subscription | None,
            *,
            title: str,
            form: forms.Form | None,
            buttons: Sequence[tuple[str, str]],
            intro: Sequence[str] = (),
            **extra: Any,
        ) -> TemplateResponse:
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": subscription,
                "title": title,
                "form": form,
                "buttons": buttons,
                "intro": intro,
                "subject_rows": self._subject_rows(subscription) if subscription is not None else [],
                **extra,
            }
            return TemplateResponse(request, OPERATION_TEMPLATE, context)

        def _subject_rows(self, subscription: Subscription) -> list[tuple[str, Any]]:
            items = subscription.items.filter(removed_on__isnull=True).select_related("price__product")
            return [
                ("Customer", f"{subscription.customer} (#{subscription.customer_id})"),
                ("Status", self.status_statement(subscription)),
                (
                    "Current period",
                    f"{_day(subscription.current_period_start)} – "
                    f"{_day(subscription.current_period_end - dt.timedelta(days=1))}",
                ),
                ("Next billing date", _day(subscription.next_billing_date)),
                ("Items", ", ".join(str(item) for item in items) or "—"),
                (
                    "Collection",
                    f"{subscription.get_collection_method_display()}, due in "
                    f"{subscription.effective_days_until_due} days",
                ),
            ]

        def _back(self, subscription: Subscription) -> HttpResponseRedirect:
            return HttpResponseRedirect(reverse("admin:subscriptions_subscription_change", args=[subscription.pk]))

        # --- the change page ---

        @admin.display(description="state")
        def status_statement(self, obj: Subscription) -> str:
            until = f" until {_day(obj.resumes_on)}" if obj.resumes_on else ""
            if obj.status == SubscriptionStatus.PAUSED:
                return (
                    f"Paused since {_day(obj.paused_at)}{until} — billing paused: no invoices are issued while "
                    "paused; open invoices are still collected."
                )
            if obj.pause_mode == PauseMode.COLLECTION:
                return (
                    f"{obj.get_status_display()} — collection paused since {_day(obj.paused_at)}{until}: invoices "
                    f"are issued (next on {_day(obj.next_billing_date)}) but not charged and not reminded."
                )
            if obj.status == SubscriptionStatus.TRIALING:
                return f"Trial until {_day(obj.trial_end)}: the first invoice is issued that day."
            if obj.cancel_at_period_end:
                return (
                    f"{obj.get_status_display()} — cancels at the end of the period, on {_day(obj.current_period_end)}."
                )
            if obj.status in (SubscriptionStatus.CANCELED, SubscriptionStatus.ENDED):
                return f"{obj.get_status_display()} on {_day(obj.ended_at)}."
            return f"{obj.get_status_display()} — renews on {_day(obj.next_billing_date)}."

        def get_readonly_fields(self, request: HttpRequest, obj: Subscription | None = None) -> Any:
            fields = tuple(super().get_readonly_fields(request, obj))
            return ("status_statement", *fields) if obj is not None else fields

        def get_fields(self, request: HttpRequest, obj: Subscription | None = None) -> Any:
            # What the subscription is doing comes first: the state, then whose it is.
            fields = list(super().get_fields(request, obj))
            first = [name for name in ("status_statement", "customer") if name in fields]
            return [*first, *(name for name in fields if name not in first)]

        def tools_for(self, request: HttpRequest, subscription: Subscription) -> list[tuple[str, str]]:
            """The object tools of the change page, each one only when the state allows it (an auditor: none)."""
            if not self.has_change_permission(request, subscription):
                return []

            def url(name: str) -> str:
                return reverse(f"admin:subscriptions_subscription_{name}", args=[subscription.pk])

            status = subscription.status
            live = status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
            tools: list[tuple[str, str]] = []
            if live:
                tools.append((url("change_plan"), "Change items"))
                tools.append((url("coupon"), "Apply coupon"))
            if status == SubscriptionStatus.TRIALING:
                tools.append((url("extend_trial"), "Extend trial"))
            if live and not subscription.cancel_at_period_end:
                tools.append((url("cancel_at_period_end"), "Cancel at period end"))
            if subscription.cancel_at_period_end and live:
                tools.append((url("undo_cancel"), "Undo cancel at period end"))
            collection_paused = subscription.pause_mode == PauseMode.COLLECTION
            if status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE) and not collection_paused:
                tools.append((url("pause"), "Pause"))
            if status == SubscriptionStatus.PAUSED:
                tools.append((url("resume"), "Resume"))
            if collection_paused:
                tools.append((url("resume"), "Resume collection"))
            if subscription.next_billing_date is not None and status != SubscriptionStatus.PAUSED:
                tools.append((url("bill_now"), "Bill now"))
            return tools

        def change_view(
            self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
        ) -> HttpResponse:
            subscription = Subscription.objects.filter(pk=object_id).first()
            extra = dict(extra_context or {})
            if subscription is not None:
                extra["subscription_tools"] = [
                    *extra.get("subscription_tools", []),
                    *self.tools_for(request, subscription),
                ]
                can = self.has_change_permission(request, subscription)
                extra["discounts"] = [
                    {
                        "text": f"{d.coupon} — from {_day(d.start)}"
                        + (f" until {_day(d.end - dt.timedelta(days=1))}" if d.end else "")
                        + f", applied to {d.periods_applied} period(s)",
                        "remove_url": reverse(
                            "admin:subscriptions_subscription_coupon_remove", args=[subscription.pk, d.pk]
                        )
                        if can and (d.end is None or d.end > billing_today())
                        else None,
                    }
                    for d in Discount.objects.filter(
                        Q(subscription=subscription) | Q(customer_id=subscription.customer_id)
                    ).select_related("coupon")
                ]
            return super().change_view(request, object_id, form_url, extra)

        # --- create ---

        def add_view(
            self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
        ) -> HttpResponse:
            if not self.has_add_permission(request):
                raise PermissionDenied
            Formset = item_formset(extra=3, can_remove=False)
            initial: dict[str, Any] = {
                "start_date": billing_today(),
                "collection_method": CollectionMethod.SEND_INVOICE,
            }
            customer_id = request.GET.get("customer", "")
            if customer_id.isdigit():
                initial["customer"] = int(customer_id)
            post = request.POST if request.method == "POST" else None
            form = SubscriptionCreateForm(post, initial=initial)
            formset = Formset(post, prefix="items")
            preview: CreatePreview | None = None
            preview_of = ""
            if post is not None and form.is_valid() and formset.is_valid():
                data = form.cleaned_data
                items = formset.items()
                arguments = {
                    "customer": data["customer"],
                    "items": items,
                    "start_date": data["start_date"],
                    "trial_days": data["trial_days"],
                    "trial_end": data["trial_end"],
                    "billing_cycle_anchor": data["billing_cycle_anchor"],
                    "collection_method": data["collection_method"],
                    "days_until_due": data["days_until_due"],
                    "coupon": data["coupon"],
                }
                if not any(f.errors for f in formset.forms):
                    try:
                        if not items:
                            raise ApplicationError("add at least one item: a price and its quantity", field="items")
                        fingerprint = _fingerprint(post)
                        if "_create" in post and post.get("preview_of") == fingerprint:
                            subscription = subscription_create(actor=request.user, **arguments)
                            self.log_addition(request, subscription, "Created with subscription_create.")
                            self.message_user(
                                request,
                                format_html(
                                    "Subscription #{} created for {}. The first invoice is issued on {} by the "
                                    "billing run, or now with “Bill now”.",
                                    subscription.pk,
                                    subscription.customer,
                                    _day(subscription.next_billing_date),
                                ),
                                messages.SUCCESS,
                            )
                            return self._back(subscription)
                        if "_create" in post:
                            self.message_user(
                                request,
                                "The form changed since its preview: check the new preview, then create.",
                                messages.WARNING,
                            )
                        preview = subscription_create_preview(**arguments)
                        preview_of = fingerprint
                    except ApplicationError as exc:
                        self._form_error(form, formset, exc)
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "New subscription",
                "form": form,
                "formset": formset,
                "preview": self._create_preview_context(preview) if preview else None,
                "preview_of": preview_of,
            }
            return TemplateResponse(request, "admin/subscriptions/subscription/create.html", context)

        def _form_error(self, form: forms.Form, formset: BaseItemFormSet, exc: ApplicationError) -> None:
            if exc.field in ("price", "quantity"):
                for row in formset.forms:
                    if (getattr(row, "cleaned_data", None) or {}).get("price") is not None:
                        name = str(row.cleaned_data["price"].display_name)
                        if name in exc.message:
                            row.add_error(exc.field, exc.message)
                            return
                formset.forms[0].add_error(exc.field, exc.message)
                return
            if exc.field == "items":
                formset.forms[0].add_error("price", exc.message)
                return
            form_application_error(form, exc)

        def _create_preview_context(self, preview: CreatePreview) -> dict[str, Any]:
            return {
                "first": [invoice_preview_rows(p) for p in preview.first],
                "renewal": invoice_preview_rows(preview.renewal) if preview.renewal else None,
                "first_billing_date": _day(preview.first_billing_date),
                "trial_end": _day(preview.trial_end) if preview.trial_end else "",
                "period": f"{_day(preview.current_period_start)} – "
                f"{_day(preview.current_period_end - dt.timedelta(days=1))}",
            }

        # --- change items ---

        def change_plan_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            subscription = self._operable(request, object_id)
            current = list(subscription.items.filter(removed_on__isnull=True).select_related("price__product"))
            Formset = item_formset(extra=2, can_remove=True)
            post = request.POST if request.method == "POST" else None
            form = ChangeItemsForm(post, initial={"as_of": billing_today()})
            formset = Formset(
                post,
                prefix="items",
                initial=[
                    {"price": item.price, "quantity": item.quantity if not item.price.is_metered else None}
                    for item in current
                ],
            )
            preview: ChangePreviewFull | None = None
            preview_of = ""
            if post is not None and form.is_valid() and formset.is_valid():
                data = form.cleaned_data
                items = formset.items()
                behavior = ProrationBehavior(data["proration_behavior"])
                if not any(f.errors for f in formset.forms):
                    try:
                        if not items:
                            raise ApplicationError(
                                "keep at least one item; to stop the subscription, cancel it", field="items"
                            )
                        fingerprint = _fingerprint(post)
                        if "_apply" in post and post.get("preview_of") == fingerprint:
                            outcome = subscription_change_invoice(
                                subscription=subscription,
                                items=items,
                                as_of=data["as_of"],
                                proration_behavior=behavior,
                                actor=request.user,
                                reason=data["reason"],
                            )
                            self.log_change(request, subscription, f"Items changed ({behavior.value}).")
                            self._change_message(request, outcome.invoice, outcome.note)
                            return self._back(subscription)
                        if "_apply" in post:
                            self.message_user(
                                request,
                                "The form changed since its preview: check the new preview, then apply.",
                                messages.WARNING,
                            )
                        preview = subscription_change_preview_full(
                            subscription=subscription, items=items, as_of=data["as_of"], proration_behavior=behavior
                        )
                        preview_of = fingerprint
                    except ApplicationError as exc:
                        self._form_error(form, formset, exc)
            return self._page(
                request,
                subscription,
                title=f"Change items of subscription #{subscription.pk}",
                form=form,
                buttons=[("_preview", "Preview"), *([("_apply", "Apply this change")] if preview else [])],
                intro=[
                    "Change a price (upgrade, downgrade) or a quantity, add a row for a new item, tick “Remove” to "
                    "drop one. Items you leave as they are stay on the subscription.",
                    "Prorations are by days: fraction = (period end − change date) / (period end − period start), "
                    "the change day counting as remaining.",
                ],
                formset=formset,
                formset_title="Items",
                change_preview=self._change_preview_context(preview, subscription) if preview else None,
                preview_of=preview_of,
            )

        def _change_message(self, request: HttpRequest, invoice: Invoice | None, note: str) -> None:
            if invoice is not None and invoice.number:
                self.message_user(
                    request,
                    format_html(
                        'Items changed. Invoice <a href="{}">{}</a> of {} issued now.',
                        reverse("admin:invoicing_invoice_change", args=[invoice.pk]),
                        invoice.number,
                        _money(invoice.total, invoice.currency),
                    ),
                    messages.SUCCESS,
                )
            elif invoice is not None:
                self.message_user(
                    request,
                    format_html(
                        'Items changed. The invoice of the change is a <a href="{}">draft held for review</a>: {}',
                        reverse("admin:invoicing_invoice_change", args=[invoice.pk]),
                        invoice.memo,
                    ),
                    messages.WARNING,
                )
            else:
                self.message_user(request, f"Items changed. {note}".strip(), messages.SUCCESS)

        def _change_preview_context(self, preview: ChangePreviewFull, subscription: Subscription) -> dict[str, Any]:
            currency = subscription.currency
            return {
                "lines": [
                    {
                        "description": line.description,
                        "period": f"{_day(line.period_start)} – {_day(line.period_end - dt.timedelta(days=1))}",
                        "amount": _money(line.amount.amount, currency),
                    }
                    for line in preview.proration_lines
                ],
                "total": _money(preview.proration_total, currency),
                "now": invoice_preview_rows(preview.now) if preview.now else None,
                "next": invoice_preview_rows(preview.next_invoice) if preview.next_invoice else None,
                "note": preview.note,
                "interval_change": (
                    f"Interval change: the billing cycle restarts on {_day(preview.new_period_start)}. The new period "
                    f"{_day(preview.new_period_start)} – "
                    f"{_day(preview.new_period_end - dt.timedelta(days=1))} is invoiced now, whatever the proration "
                    "choice; the unused time of the current period is credited on that invoice (not with “None”). "
                    "Renewals then follow the new interval."
                    if preview.interval_change and preview.new_period_start and preview.new_period_end
                    else ""
                ),
            }

        # --- coupons ---

        def coupon_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            subscription = self._operable(request, object_id)
            form = CouponForm(request.POST or None, initial={"as_of": billing_today()})
            if request.method == "POST" and form.is_valid():
                try:
                    discount = discount_create(
                        coupon=form.cleaned_data["coupon"],
                        subscription=subscription,
                        as_of=form.cleaned_data["as_of"],
                        actor=request.user,
                    )
                except ApplicationError as exc:
                    form_application_error(form, exc)
                else:
                    self.log_change(request, subscription, f"Coupon {discount.coupon.code} applied.")
                    self.message_user(request, f"Coupon {discount.coupon} applied.", messages.SUCCESS)
                    return self._back(subscription)
            return self._page(
                request,
                subscription,
                title=f"Apply a coupon to subscription #{subscription.pk}",
                form=form,
                buttons=[("_apply", "Apply coupon")],
                intro=[
                    "The coupon is checked as at redemption: active, not expired, under its redemption limit, in the "
                    "subscription's currency and valid for one of its products. It discounts invoices issued from "
                    "the date given."
                ],
            )

        def coupon_remove_view(self, request: HttpRequest, object_id: int, discount_id: int) -> HttpResponse:
            subscription = self._operable(request, object_id)
            discount = get_object_or_404(Discount.objects.select_related("coupon"), pk=discount_id)
            if discount.subscription_id != subscription.pk:
                raise PermissionDenied  # a customer-wide discount is removed from the customer
            form = ReasonForm(request.POST or None, initial={"as_of": billing_today()})
            if request.method == "POST" and form.is_valid():
                try:
                    discount_remove(discount=discount, as_of=form.cleaned_data["as_of"], actor=request.user)
                except ApplicationError as exc:
                    form_application_error(form, exc)
                else:
                    self.log_change(request, subscription, f"Coupon {discount.coupon.code} removed.")
                    self.message_user(request, f"Coupon {discount.coupon.code} removed.", messages.SUCCESS)
                    return self._back(subscription)
            return self._page(
                request,
                subscription,
                title=f"Remove coupon {discount.coupon.code} from subscription #{subscription.pk}",
                form=form,
                buttons=[("_apply", "Remove coupon")],
                intro=["Invoices issued on or after the date get no discount from it."],
            )

        # --- cancel at period end, undo, pause, resume, trial ---

        def _simple(
            self,
            request: HttpRequest,
            object_id: int,
            *,
            title: str,
            intro: list[str],
            button: str,
            form_class: type[forms.Form],
            run: Any,
            done: str,
            initial: dict[str, Any] | None = None,
        ) -> HttpResponse:
            subscription = self._operable(request, object_id)
            form = form_class(request.POST or None, initial=initial or {"as_of": billing_today()})
            if request.method == "POST" and form.is_valid():
                try:
                    run(subscription, form.cleaned_data)
                except ApplicationError as exc:
                    form_application_error(form, exc)
                else:
                    self.log_change(request, subscription, done)
                    self.message_user(request, done, messages.SUCCESS)
                    return self._back(subscription)
            return self._page(
                request,
                subscription,
                title=title.format(pk=subscription.pk),
                form=form,
                buttons=[("_apply", button)],
                intro=intro,
            )

        def cancel_at_period_end_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            subscription = self._operable(request, object_id)
            return self._simple(
                request,
                object_id,
                title="Cancel subscription #{pk} at period end",
                intro=[
                    f"The subscription runs to the end of the period it is paid for and ends on "
                    f"{_day(subscription.current_period_end)}: nothing more is billed then (usage so far is). "
                    "You can undo this until then."
                ],
                button="Cancel at period end",
                form_class=CancelAtPeriodEndForm,
                run=lambda s, d: subscription_cancel(
                    subscription=s, as_of=billing_today(), at_period_end=True, actor=request.user, reason=d["reason"]
                ),
                done="Set to cancel at period end.",
                initial={},
            )

        def undo_cancel_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            return self._simple(
                request,
                object_id,
                title="Undo the cancellation of subscription #{pk}",
                intro=["The subscription renews at the end of its period as before."],
                button="Undo cancel at period end",
                form_class=CancelAtPeriodEndForm,
                run=lambda s, d: subscription_cancel_undo(subscription=s, actor=request.user, reason=d["reason"]),
                done="Cancellation at period end undone: the subscription renews.",
                initial={},
            )

        def pause_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            return self._simple(
                request,
                object_id,
                title="Pause subscription #{pk}",
                intro=[
                    "Pause billing: no invoices are issued while the subscription is paused. The period already "
                    "billed runs to its end; open invoices are still collected and reminded. On resume within the "
                    "paid period nothing changes; later, the cycle restarts on the resume day and the months in "
                    "between are not billed.",
                    "Pause collection: the subscription renews and its invoices are issued and sent as usual, but "
                    "none of its invoices is charged to the saved card (first charge or retry) and dunning sends "
                    "no reminder, fee or suspension for them. Customer credit still applies. On resume the open "
                    "invoices are charged at once and dunning catches up with the latest reminder due.",
                ],
                button="Pause",
                form_class=PauseForm,
                run=lambda s, d: subscription_pause(
                    subscription=s,
                    as_of=d["as_of"],
                    mode=d["mode"],
                    resumes_on=d["resumes_on"],
                    actor=request.user,
                    reason=d["reason"],
                ),
                done="Paused.",
            )

        def resume_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            subscription = self._operable(request, object_id)
            collection = subscription.pause_mode == PauseMode.COLLECTION
            return self._simple(
                request,
                object_id,
                title="Resume collection of subscription #{pk}" if collection else "Resume subscription #{pk}",
                intro=[
                    "Collection resumes: the open invoices of the subscription are charged now (charge "
                    "automatically), failed charges follow their retry schedule, and dunning reminds them again."
                    if collection
                    else "Back within the period already billed: nothing else changes. Later: the cycle restarts "
                    "on the resume day, which is billed at once (with usage not billed yet)."
                ],
                button="Resume collection" if collection else "Resume",
                form_class=ReasonForm,
                run=lambda s, d: subscription_resume(
                    subscription=s, as_of=d["as_of"], actor=request.user, reason=d["reason"]
                ),
                done="Collection resumed." if collection else "Resumed.",
            )

        def extend_trial_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            subscription = self._operable(request, object_id)
            return self._simple(
                request,
                object_id,
                title="Extend the trial of subscription #{pk}",
                intro=[
                    f"The trial ends on {_day(subscription.trial_end)}. Nothing is billed until the new end, "
                    "where the billing cycle is anchored."
                ],
                button="Extend trial",
                form_class=TrialForm,
                run=lambda s, d: subscription_trial_extend(
                    subscription=s,
                    trial_end=d["trial_end"],
                    as_of=billing_today(),
                    actor=request.user,
                    reason=d["reason"],
                ),
                done="Trial extended.",
                initial={},
            )

        # --- bill now ---

        def bill_now_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            subscription = self._operable(request, object_id)
            return bill_now_page(self, request, subscription=subscription)

    admin.site.unregister(Subscription)
    admin.site.register(Subscription, SubscriptionAdmin)


def bill_now_page(
    model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    *,
    customer: Customer | None = None,
    subscription: Subscription | None = None,
) -> HttpResponse:
    """ "Bill now" for a customer or a subscription: a dry run first ("will issue …"), then the run itself."""
    form = BillNowForm(request.POST or None, initial={"as_of": billing_today()})
    result: BillNowResult | None = None
    as_of = billing_today()
    if request.method == "POST" and form.is_valid():
        as_of = form.cleaned_data["as_of"]
        if "_bill" in request.POST:
            result = billing_run_for_customer(
                as_of=as_of, customer=customer, subscription=subscription, dry_run=False, actor=request.user
            )
            target = subscription or customer
            assert target is not None
            _bill_now_message(model_admin, request, result)
            model_admin.log_change(
                request, target, f"Billed now as of {as_of}: billing run {result.run.pk if result.run else ''}."
            )
            back = (
                reverse("admin:subscriptions_subscription_change", args=[subscription.pk])
                if subscription is not None
                else reverse("admin:customers_customer_change", args=[customer.pk if customer else 0])
            )
            return HttpResponseRedirect(back)
    if request.method != "POST" or form.is_valid():
        result = billing_run_for_customer(as_of=as_of, customer=customer, subscription=subscription, dry_run=True)
    what = f"subscription #{subscription.pk}" if subscription is not None else f"{customer}"
    to_issue = result.to_issue if result else []
    drafts = result.drafts if result else []
    summary = [
        f"Will issue an invoice of {_money(p.total, p.currency)} for subscription #{p.invoice.subscription_id}, "
        f"{invoice_preview_rows(p)['period']}, due {_day(p.due_date)}"
        for p in to_issue
    ] + [
        f"Will hold a draft of {_money(p.total, p.currency)} for subscription #{p.invoice.subscription_id} — "
        f"{p.held_reason}"
        for p in drafts
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "original": subscription or customer,
        "title": f"Bill {what} now",
        "form": form,
        "buttons": [("_dry_run", "Preview (dry run)"), *([("_bill", "Bill now")] if to_issue or drafts else [])],
        "intro": [
            f"Runs the billing run for {what} as of the date given: every period due on or before it is invoiced, "
            "exactly once, as the daily run would.",
            *(summary or ["Nothing is due on that date: the run would issue nothing."]),
        ],
        "bill_now_previews": [
            {**invoice_preview_rows(p), "heading": f"Invoice for subscription #{p.invoice.subscription_id}"}
            for p in [*to_issue, *drafts]
        ],
        "subject_rows": [],
    }
    return TemplateResponse(request, OPERATION_TEMPLATE, context)


def _bill_now_message(model_admin: admin.ModelAdmin, request: HttpRequest, result: BillNowResult) -> None:  # type: ignore[type-arg]
    issued = [invoice for invoice in result.invoices if invoice.number]
    held = [invoice for invoice in result.invoices if not invoice.number]
    if not result.invoices:
        model_admin.message_user(request, f"Billed as of {result.as_of}: nothing was due.", messages.INFO)
        return
    links = format_html_join(
        ", ",
        '<a href="{}">{}</a> {}',
        (
            (
                reverse("admin:invoicing_invoice_change", args=[invoice.pk]),
                invoice.number or "draft",
                _money(invoice.total, invoice.currency),
            )
            for invoice in [*issued, *held]
        ),
    )
    model_admin.message_user(
        request,
        format_html(
            "Billed as of {}: {} invoice(s) issued, {} draft(s) held for review — {}",
            result.as_of,
            len(issued),
            len(held),
            links,
        ),
        messages.SUCCESS if not (result.run and result.run.failed) else messages.WARNING,
    )


# --- the customer admin: "Bill now" and the "new subscription" link ---------------------------------------


def _extend_customer_admin() -> None:
    base = type(admin.site._registry[Customer])

    class CustomerAdmin(base):  # type: ignore[valid-type, misc]
        def get_urls(self) -> list[Any]:
            return [
                path(
                    "<int:object_id>/bill-now/",
                    self.admin_site.admin_view(self.bill_now_view),
                    name="customers_customer_bill_now",
                ),
                *super().get_urls(),
            ]

        def bill_now_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            customer = get_object_or_404(Customer, pk=object_id)
            # Billing a customer changes their subscriptions: the same permission as changing one.
            if not request.user.has_perm("subscriptions.change_subscription"):
                raise PermissionDenied
            return bill_now_page(self, request, customer=customer)

    admin.site.unregister(Customer)
    admin.site.register(Customer, CustomerAdmin)


_extend_subscription_admin()
_extend_customer_admin()
