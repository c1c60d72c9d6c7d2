"""Reporting's part of the admin: the accounting export screen on the invoice list (Invoices → *Accounting
export*) and the timeline on the customer page. The lower apps cannot import reporting, so reporting extends the
invoice and customer admins that are registered."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join

from core.admin_readonly import ReadOnlyMixin
from customers.models import Customer
from invoicing.models import Invoice
from reporting.exports import (
    ExportError,
    ExportFormat,
    accounting_export_filename,
    accounting_export_write,
    can_export_accounting,
)
from reporting.models import IntegrityCheck
from reporting.timeline import customer_timeline_html


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
                filename = accounting_export_filename(
                    export_format=data["format"], date_from=data["date_from"], date_to=data["date_to"]
                )
                response = HttpResponse(content_type="text/csv; charset=utf-8")
                try:
                    accounting_export_write(
                        out=response, export_format=data["format"], date_from=data["date_from"], date_to=data["date_to"]
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


def _extend_customer_admin() -> None:
    base = type(admin.site._registry[Customer])

    class CustomerAdmin(CustomerTimelineMixin, base):  # type: ignore[valid-type, misc]
        pass

    admin.site.unregister(Customer)
    admin.site.register(Customer, CustomerAdmin)


_extend_customer_admin()


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
