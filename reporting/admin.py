"""Reporting's part of the admin: the accounting export screen on the invoice list (Invoices → *Accounting
export*), the statement of account on the customer page (*Statement of account*) and the timeline there.
invoicing and customers cannot import reporting, so reporting extends the invoice and customer admins that are
registered."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core.admin_errors import form_application_error
from core.admin_pages import ObjectTool, date_text, money_text, object_action_page
from core.admin_readonly import ReadOnlyMixin
from core.dates import billing_today
from core.errors import ApplicationError
from customers.models import Customer
from invoicing.einvoice.export import einvoices_zip_filename, einvoices_zip_write
from invoicing.models import Invoice
from reporting import statements, test_clock
from reporting.exports import (
    ExportError,
    ExportFormat,
    accounting_export_filename,
    accounting_export_write,
    can_export_accounting,
    export_encoding,
)
from reporting.models import IntegrityCheck
from reporting.timeline import customer_timeline_html
from subscriptions.models import SubscriptionItem


class AccountingExportForm(forms.Form):
    date_from = forms.DateField(label="From", help_text="YYYY-MM-DD, included.")
    date_to = forms.DateField(label="To", help_text="YYYY-MM-DD, included.")
    format = forms.ChoiceField(choices=ExportFormat.choices, initial=ExportFormat.CSV, widget=forms.RadioSelect)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("date_from") and data.get("date_to") and data["date_to"] < data["date_from"]:
            self.add_error("date_to", "The period ends before it starts.")
        return data


def _extend_invoice_admin() -> None:
    base = type(admin.site._registry[Invoice])

    class InvoiceAdmin(base):  # type: ignore[valid-type, misc]
        def get_urls(self) -> list[Any]:
            return [
                path(
                    "accounting-export/",
                    self.admin_site.admin_view(self.accounting_export_view),
                    name="invoicing_invoice_accounting_export",
                ),
                *super().get_urls(),
            ]

        def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
            extra_context = {**(extra_context or {}), "can_export_accounting": can_export_accounting(request.user)}
            return super().changelist_view(request, extra_context)

        def accounting_export_view(self, request: HttpRequest) -> HttpResponse:
            if not can_export_accounting(request.user):
                raise PermissionDenied
            form = AccountingExportForm(request.POST or None)
            if request.method == "POST" and form.is_valid():
                data = form.cleaned_data
                if data["format"] == ExportFormat.EINVOICES:
                    response = HttpResponse(content_type="application/zip")
                    einvoices_zip_write(out=response, date_from=data["date_from"], date_to=data["date_to"])
                    name = einvoices_zip_filename(date_from=data["date_from"], date_to=data["date_to"])
                    response["Content-Disposition"] = f'attachment; filename="{name}"'
                    return response
                filename = accounting_export_filename(
                    export_format=data["format"], date_from=data["date_from"], date_to=data["date_to"]
                )
                encoding = "windows-1252" if export_encoding(data["format"]) == "cp1252" else "utf-8"
                response = HttpResponse(content_type=f"text/csv; charset={encoding}")
                try:
                    accounting_export_write(
                        out=response,
                        export_format=data["format"],
                        date_from=data["date_from"],
                        date_to=data["date_to"],
                        exported_by=request.user.get_username(),
                    )
                except ExportError as exc:
                    form.add_error(None, str(exc))
                else:
                    response["Content-Disposition"] = f'attachment; filename="{filename}"'
                    return response
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Accounting export",
                "submit_label": "Download",
                "form": form,
            }
            return TemplateResponse(request, "admin/invoicing/invoice/accounting_export.html", context)

    admin.site.unregister(Invoice)
    admin.site.register(Invoice, InvoiceAdmin)


_extend_invoice_admin()


# --- the customer page's timeline (reporting/timeline.py) ---------------------------------------------------


class CustomerTimelineMixin:
    """A read-only ``timeline_display`` field on the customer page: domain events and audited changes of the
    account, newest first. It replaces the page's "Audit trail" section, whose rows the timeline includes, and
    appends a "Timeline" section unless the page's fieldsets already place ``timeline_display``."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return (*fields, "timeline_display") if obj is not None and "timeline_display" not in fields else fields

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))  # type: ignore[misc]
        if obj is None:
            return fieldsets
        kept = [(name, options) for name, options in fieldsets if "audit_trail" not in options.get("fields", ())]
        if "timeline_display" in flatten_fieldsets(kept):  # a page layout that places it itself
            return kept
        return [*kept, ("Timeline", {"classes": ("audit",), "fields": ("timeline_display",)})]

    @admin.display(description="events and changes, newest first")
    def timeline_display(self, obj: Customer) -> str:
        return customer_timeline_html(obj)


def _add_customer_timeline() -> None:
    base = type(admin.site._registry[Customer])

    class CustomerAdmin(CustomerTimelineMixin, base):  # type: ignore[valid-type, misc]
        pass

    admin.site.unregister(Customer)
    admin.site.register(Customer, CustomerAdmin)


_add_customer_timeline()


# --- integrity checks (reporting/integrity.py) ------------------------------------------------------------


@admin.register(IntegrityCheck)
class IntegrityCheckAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("started_at", "ok", "problem_count", "triggered_by", "finished_at")
    list_filter = ("ok", "triggered_by")
    show_full_result_count = False
    fields = ("started_at", "finished_at", "ok", "problem_count", "triggered_by", "rows_checked", "problem_table")
    readonly_fields = fields

    @admin.display(description="Rows checked")
    def rows_checked(self, obj: IntegrityCheck) -> str:
        return ", ".join(f"{name}: {count}" for name, count in obj.checked.items())

    @admin.display(description="Problems")
    def problem_table(self, obj: IntegrityCheck) -> str:
        if not obj.problems:
            return "none"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    p["check"],
                    p["model"],
                    p["id"] if p["id"] is not None else "",
                    p["problem"],
                    p["expected"],
                    p["found"],
                )
                for p in obj.problems
            ),
        )
        return format_html(
            "<table><thead><tr><th>check</th><th>row</th><th>problem</th><th>expected</th><th>found</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )


# --- the customer page: statement of account -------------------------------------------------------------------


class StatementForm(forms.Form):
    start = forms.DateField(label="From", help_text="YYYY-MM-DD, included.")
    end = forms.DateField(label="To", help_text="YYYY-MM-DD, included.")
    currency = forms.ChoiceField(choices=list(Invoice._meta.get_field("currency").choices or []))
    request_key = forms.CharField(widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", "The period ends before it starts.")
        return data


def may_send_statement(user: Any) -> bool:
    return bool(user.has_perm("customers.view_customer") and user.has_perm("notifications.add_outboundemail"))


def _extend_customer_admin() -> None:
    base: Any = type(admin.site._registry[Customer])

    class CustomerAdmin(base):  # type: ignore[valid-type, misc]
        def get_object_tools(self, request: HttpRequest, customer: Customer) -> list[ObjectTool]:
            tools: list[ObjectTool] = super().get_object_tools(request, customer)
            if may_send_statement(request.user):
                url = reverse("admin:customers_customer_statement", args=[customer.pk])
                tools.append(ObjectTool("statement", "Statement of account", url, order=60))
            return tools

        def get_urls(self) -> list[Any]:
            return [
                path(
                    "<int:customer_id>/statement/",
                    self.admin_site.admin_view(self.statement_view),
                    name="customers_customer_statement",
                ),
                *super().get_urls(),
            ]

        def statement_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
            """Choose a period, see the figures, then download the PDF or e-mail it (through the outbox)."""
            if not may_send_statement(request.user):
                raise PermissionDenied
            customer = get_object_or_404(Customer, pk=customer_id)
            today = billing_today()
            first_of_month = today.replace(day=1)
            default_start = (first_of_month - dt.timedelta(days=1)).replace(day=1)
            data = request.POST if request.method == "POST" else None
            form = StatementForm(
                data,
                initial={
                    "start": default_start,
                    "end": today,
                    "currency": customer.currency,
                    "request_key": uuid.uuid4().hex,
                },
            )
            if data is None:  # the default period's figures at once
                form = StatementForm(
                    {
                        "start": default_start,
                        "end": today,
                        "currency": customer.currency,
                        "request_key": uuid.uuid4().hex,
                    }
                )
            statement = None
            if form.is_valid():
                values = form.cleaned_data
                try:
                    statement = statements.statement_of_account(
                        customer=customer, start=values["start"], end=values["end"], currency=values["currency"]
                    )
                except ApplicationError as exc:
                    form_application_error(form, exc)
                if statement is not None and "_download" in request.POST:
                    response = HttpResponse(statements.statement_pdf(statement), content_type="application/pdf")
                    response["Content-Disposition"] = (
                        f'attachment; filename="{statements.statement_filename(statement)}"'
                    )
                    return response
                if statement is not None and "_send" in request.POST:
                    email = statements.statement_email_queue(
                        customer=customer,
                        start=values["start"],
                        end=values["end"],
                        currency=values["currency"],
                        request_key=values["request_key"],
                    )
                    text = (
                        f"Queued the statement of account {date_text(statement.start)} – {date_text(statement.end)} "
                        f"(closing balance {money_text(statement.closing, statement.currency)}) to "
                        f"{', '.join(email.to_emails)}."
                    )
                    self.log_change(request, customer, text)
                    messages.success(request, text)
                    return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[customer.pk]))
            preview = None
            if statement is not None:
                currency = statement.currency
                preview = {
                    "title": f"Statement {date_text(statement.start)} – {date_text(statement.end)} ({currency})",
                    "headers": ["Date", "Document", "Description", "Charges", "Payments and credits", "Balance"],
                    "rows": [
                        ["", "Opening balance", "", "", "", money_text(statement.opening, currency)],
                        *(
                            [
                                date_text(entry.date),
                                f"{statements.LABELS['en'][entry.kind]} {entry.reference}",
                                entry.description,
                                money_text(entry.amount, currency) if entry.amount > 0 else "",
                                money_text(-entry.amount, currency) if entry.amount < 0 else "",
                                money_text(balance, currency),
                            ]
                            for entry, balance in statement.running()
                        ),
                    ],
                    "footer": ["", "Closing balance", "", "", "", money_text(statement.closing, currency)],
                    "note": (
                        f"Opening {money_text(statement.opening, currency)} + invoices "
                        f"{money_text(statement.invoices, currency)} − payments "
                        f"{money_text(statement.payments, currency)}"
                        f" − credit notes and adjustments {money_text(statement.credit_notes, currency)} = closing "
                        f"{money_text(statement.closing, currency)}. Void invoices are left out."
                    ),
                }
            return object_action_page(
                self,
                request,
                original=customer,
                title=f"Statement of account for {customer}",
                intro="The customer's account over a period: opening balance, invoices, payments, credit notes, "
                "closing balance. Change the period and press “Show”, then download the PDF or e-mail it to the "
                "billing address (delivery is tracked on the customer's page).",
                subject_rows=[("Billing e-mail", customer.email or "—")],
                form=form,
                preview=preview,
                submit_label="Show",
                submit_name="_show",
                secondary_submits=[("_download", "Download PDF"), ("_send", "E-mail statement to customer")],
            )

    admin.site.unregister(Customer)
    admin.site.register(Customer, CustomerAdmin)


_extend_customer_admin()


# --- the customer page: the test clock ("Simulate") -----------------------------------------------------------


SIMULATE_PERMISSIONS = ("customers.view_customer", "invoicing.view_invoice")


class SimulateForm(forms.Form):
    as_of = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    days = forms.IntegerField(label="Days", min_value=1, max_value=test_clock.MAX_DAYS, initial=30)
    subscription = forms.TypedChoiceField(label="Change subscription", coerce=int, required=False, empty_value=None)
    price = forms.TypedChoiceField(label="Price", coerce=int, required=False, empty_value=None)
    quantity = forms.IntegerField(label="New quantity", min_value=1, required=False)
    change_on = forms.DateField(label="On", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        items = SubscriptionItem.objects.filter(subscription__customer=customer, removed_on=None).select_related(
            "price", "subscription"
        )
        subscriptions = sorted(
            {(item.subscription_id, f"#{item.subscription_id} ({item.subscription.status})") for item in items}
        )
        prices = sorted({(item.price_id, f"{item.price} (now × {item.quantity})") for item in items})
        cast(forms.TypedChoiceField, self.fields["subscription"]).choices = [("", "— no change —"), *subscriptions]
        cast(forms.TypedChoiceField, self.fields["price"]).choices = [("", "—"), *prices]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        wanted = [data.get(name) for name in ("subscription", "price", "quantity", "change_on")]
        if any(value is not None for value in wanted) and not all(value is not None for value in wanted):
            raise forms.ValidationError("A change needs its subscription, price, new quantity and day.")
        return data

    def change(self) -> test_clock.SeatChange | None:
        data = self.cleaned_data
        if data.get("subscription") is None:
            return None
        return test_clock.SeatChange(data["subscription"], data["price"], data["quantity"], data["change_on"])


def _extend_customer_admin_simulate() -> None:
    base: Any = type(admin.site._registry[Customer])

    class CustomerAdmin(base):  # type: ignore[valid-type, misc]
        def get_object_tools(self, request: HttpRequest, customer: Customer) -> list[ObjectTool]:
            tools: list[ObjectTool] = super().get_object_tools(request, customer)
            if request.user.has_perms(SIMULATE_PERMISSIONS):
                url = reverse("admin:customers_customer_simulate", args=[customer.pk])
                tools.append(
                    ObjectTool(
                        "simulate",
                        "Simulate",
                        url,
                        kind="view",
                        title="Test clock: what the next days bring",
                        order=65,
                    )
                )
            return tools

        def get_urls(self) -> list[Any]:
            return [
                path(
                    "<int:customer_id>/simulate/",
                    self.admin_site.admin_view(self.simulate_view),
                    name="customers_customer_simulate",
                ),
                *super().get_urls(),
            ]

        def simulate_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
            """The test clock: a form (GET), then the simulation (POST), whose rows are all rolled back."""
            if not request.user.has_perms(SIMULATE_PERMISSIONS):
                raise PermissionDenied
            customer = get_object_or_404(Customer, pk=customer_id)
            initial = {"as_of": billing_today(), "days": 30}
            form = SimulateForm(request.POST or None, initial=initial, customer=customer)
            simulation = None
            if request.method == "POST" and form.is_valid():
                try:
                    simulation = test_clock.customer_simulate(
                        customer=customer,
                        as_of=form.cleaned_data["as_of"],
                        days=form.cleaned_data["days"],
                        change=form.change(),
                    )
                except ApplicationError as exc:
                    form_application_error(form, exc)
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": customer,
                "title": f"Simulate {customer}",
                "form": form,
                "simulation": simulation,
                "cancel_url": reverse("admin:customers_customer_change", args=[customer.pk]),
            }
            return TemplateResponse(request, "admin/customers/customer/simulate.html", context)

    admin.site.unregister(Customer)
    admin.site.register(Customer, CustomerAdmin)


_extend_customer_admin_simulate()
