"""Credit notes: read-only (issued from an invoice's page)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core.admin_lists import FormattedNumbersMixin
from core.admin_readonly import ReadOnlyMixin
from invoicing import documents
from invoicing.admin.common import ReadOnlyInline, _amount
from invoicing.models import (
    CreditNote,
    CreditNoteLine,
)

# --- credit notes ---------------------------------------------------------------------------------------


class CreditNoteLineInline(FormattedNumbersMixin, ReadOnlyInline):
    model = CreditNoteLine
    money_fields = dict.fromkeys(("net_amount", "tax_amount", "total_amount"), "credit_note.currency")
    quantity_fields = ("quantity",)
    fields = ("description", "quantity", "tax_category", "tax_name", "net_amount", "tax_amount", "total_amount")
    readonly_fields = fields


@admin.register(CreditNote)
class CreditNoteAdmin(FormattedNumbersMixin, ReadOnlyMixin, admin.ModelAdmin):
    money_fields = dict.fromkeys(
        ("net_total", "tax_total", "total", "amount_applied", "amount_to_customer_credit"), "currency"
    )
    list_display = ("number", "invoice", "customer_display", "issue_date", "total_display", "credit_display")
    list_filter = ("currency", "issue_date")
    search_fields = ("=number", "=invoice__number", "customer__name", "customer__email")
    list_select_related = ("invoice", "customer")
    show_full_result_count = False
    inlines = (CreditNoteLineInline,)
    readonly_fields = (
        "number",
        "invoice",
        "customer",
        "number_series",
        "currency",
        "issue_date",
        "reason",
        "memo",
        "net_total",
        "tax_total",
        "total",
        "amount_applied",
        "amount_to_customer_credit",
        "issued_at",
        "issued_by",
        "pdf_link",
    )
    fields = readonly_fields

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:credit_note_id>/pdf/",
                self.admin_site.admin_view(self.pdf_view),
                name="invoicing_creditnote_pdf",
            ),
            path(
                "<int:credit_note_id>/pdf/new-version/",
                self.admin_site.admin_view(self.new_version_view),
                name="invoicing_creditnote_pdf_new_version",
            ),
            *super().get_urls(),
        ]

    def pdf_view(self, request: HttpRequest, credit_note_id: int) -> HttpResponse:
        credit_note = get_object_or_404(CreditNote, pk=credit_note_id)
        if not self.has_view_permission(request, credit_note):
            raise PermissionDenied
        version = request.GET.get("version", "")
        filename, content = documents.credit_note_pdf_bytes(
            credit_note_id=credit_note.pk, version=int(version) if version.isdigit() else None
        )
        response = HttpResponse(content, content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{filename}"'
        return response

    def new_version_view(self, request: HttpRequest, credit_note_id: int) -> HttpResponse:
        """Render the credit note's PDF again after a template fix, as its next archived version (the reason is
        asked first). Credit notes are read-only rows: whoever may change invoices may do this."""
        credit_note = get_object_or_404(CreditNote.objects.select_related("customer"), pk=credit_note_id)
        if not request.user.has_perm("invoicing.change_invoice"):
            raise PermissionDenied
        reason = request.POST.get("reason", "").strip() if request.method == "POST" else ""
        if reason:
            version = documents.document_pdf_render_version(
                credit_note_id=credit_note.pk, reason=reason, actor=request.user
            )
            self.message_user(
                request, f"Rendered version {version.version} of {credit_note}'s PDF; the original stays."
            )
            return HttpResponseRedirect(reverse("admin:invoicing_creditnote_change", args=[credit_note.pk]))
        if request.method == "POST":
            self.message_user(request, "Give the reason for the new version.", messages.ERROR)
        return TemplateResponse(
            request,
            "admin/invoicing/invoice/render_new_version.html",
            {
                **self.admin_site.each_context(request),
                "title": "Render new PDF version",
                "opts": self.model._meta,
                "documents": [f"{credit_note} — {credit_note.customer}, credits invoice {credit_note.invoice}"],
                "reason": reason,
            },
        )

    @admin.display(description="PDF")
    def pdf_link(self, obj: CreditNote) -> str:
        """The archived PDF and its versions (a credit note has no status that could change)."""
        url = reverse("admin:invoicing_creditnote_pdf", args=[obj.pk])
        files = documents.document_versions(documents.DocumentPdf.objects.filter(credit_note=obj).first())
        versions = format_html_join(
            " · ",
            '<a href="{}?version={}">{}</a>',
            ((url, f.version, "original" if f.version == 1 else f"version {f.version}") for f in files),
        )
        return format_html(
            '<a href="{}">Download PDF</a>{}{} · <a href="{}">Render new version…</a>',
            url,
            " — " if files else "",
            versions,
            reverse("admin:invoicing_creditnote_pdf_new_version", args=[obj.pk]),
        )

    # Issued from an invoice's page ("Create credit note"); read-only afterwards.

    @admin.display(description="total", ordering="total")
    def total_display(self, obj: CreditNote) -> str:
        return _amount(obj.total, obj.currency)

    @admin.display(description="customer", ordering="customer__name")
    def customer_display(self, obj: CreditNote) -> str:
        return format_html('<span class="cell-text" title="{}">{}</span>', obj.customer.name, obj.customer.name)

    @admin.display(description="to credit")
    def credit_display(self, obj: CreditNote) -> str:
        return _amount(obj.amount_to_customer_credit, obj.currency)
