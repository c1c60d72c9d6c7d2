"""Staff screens for invoices. Drafts are edited here; everything else (finalize, void, uncollectible, credit
notes) goes through ``invoicing.services``. Finalized invoices are read-only. Dunning (reminder history, stage
filter, reminder actions) and the accounting export extend this admin from their own apps."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Case, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core import formatting as fmt
from core.admin_lists import FormattedNumbersMixin, QuickActionCheckbox, badge, percentage_display, status_badge, yes_no
from core.admin_pages import date_text, money_text
from core.audit import AuditTrailMixin
from core.dates import billing_today
from core.money import amount_limit_problem, round_amount
from core.tax_categories import TaxCategory
from customers.admin_search import NumberOrCustomerSearchMixin
from customers.models import Customer
from invoicing import delivery, documents
from invoicing.admin.common import ReadOnlyInline, _actor, _amount
from invoicing.admin.invoice_page import InvoicePageMixin
from invoicing.models import (
    BillingReason,
    CreditNote,
    Invoice,
    InvoiceEvent,
    InvoiceLine,
    InvoiceStatus,
)
from invoicing.selectors import invoice_child_groups, invoice_creditable_amount
from invoicing.services import (
    BulkOutcome,
    CreditNoteLineSpec,
    InvoiceError,
    credit_note_issue,
    credit_note_preview,
    invoice_recompute,
    invoices_finalize_many,
    invoices_mark_uncollectible_many,
    invoices_void_many,
)
from notifications.admin import BillingEmailBouncedFilter
from notifications.models import OutboundEmail
from subscriptions.models import PricingModel, TaxBehavior

# --- invoices -------------------------------------------------------------------------------------------


class InvoiceLineForm(forms.ModelForm):
    """A manual line whose quantity × unit amount (or discount) no invoice column can hold is a form error here,
    before anything is saved — not a database error when the totals are recomputed. (The admin builds the
    model form from this base with the inline's fields.)

    A line from the catalog: choose a price and leave the description and unit amount empty — they are taken
    from the price (its product's name, its unit amount). Free text: no price, a description and a unit amount."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("description", "unit_amount", "supply_tax_category"):
            if name in self.fields:
                self.fields[name].required = False

    def clean_supply_tax_category(self) -> str:
        # Not sent (a line added by a script, an older form): a standard-rated line, as the model's default.
        return self.cleaned_data.get("supply_tax_category") or TaxCategory.STANDARD

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        price = data.get("price")
        if price is not None:
            if price.is_metered or price.pricing_model not in (PricingModel.FLAT, PricingModel.PER_UNIT):
                self.add_error(
                    "price",
                    f"{price.display_name} is a {price.get_pricing_model_display().lower()}"
                    f"{' metered' if price.is_metered else ''} price: a one-off line takes a flat or "
                    "per-unit price (or type the line as free text)",
                )
            if not data.get("description"):
                data["description"] = price.display_name
                self.instance.description = price.display_name
            if data.get("unit_amount") is None:
                data["unit_amount"] = price.unit_amount.amount
                self.instance.unit_amount = price.unit_amount.amount
        for name, message in (
            ("description", "Enter a description (or choose a price)."),
            ("unit_amount", "Enter the unit amount (or choose a price)."),
        ):
            if name in self.fields and data.get(name) in (None, "") and name not in self.errors:
                self.add_error(name, message)
        quantity, unit_amount = data.get("quantity"), data.get("unit_amount")
        if (
            quantity is not None
            and unit_amount is not None
            and (problem := amount_limit_problem(quantity * unit_amount))
        ):
            self.add_error("unit_amount", f"quantity × unit amount = {problem}")
        if data.get("discount_amount") is not None and (problem := amount_limit_problem(data["discount_amount"])):
            self.add_error("discount_amount", problem)
        if (
            data.get("supply_tax_category") == TaxCategory.EXEMPT
            and not data.get("price")
            and not (data.get("tax_exemption_reason") or "").strip()
        ):
            self.add_error("tax_exemption_reason", "An exempt line needs the exemption reason printed on the invoice.")
        return data


class InvoiceLineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        currency = getattr(self.instance, "currency", "")
        for form in self.forms:
            data = getattr(form, "cleaned_data", {})
            price = data.get("price")
            if price is None or data.get("DELETE"):
                continue
            if currency and price.currency != currency:
                form.add_error(
                    "price", f"{price.display_name} is priced in {price.currency}, the invoice in {currency}"
                )
                continue
            # A line that carries a price keeps the amount computed for it (invoicing.taxes): quantity × the
            # unit amount here, rounded once; whether tax is included is the price's.
            if currency and data.get("quantity") is not None and data.get("unit_amount") is not None:
                form.instance.amount = round_amount(data["quantity"] * data["unit_amount"], currency)
            form.instance.tax_inclusive = price.tax_behavior == TaxBehavior.INCLUSIVE
            # and what it sells, for VAT: the price's category (else its product's), resolved per customer
            category, code, reason = price.tax_category_effective
            form.instance.supply_tax_category = category
            form.instance.tax_exemption_reason_code = code
            form.instance.tax_exemption_reason = reason


class InvoiceLineInline(FormattedNumbersMixin, admin.TabularInline):
    model = InvoiceLine
    form = InvoiceLineForm
    formset = InvoiceLineFormSet
    extra = 0
    autocomplete_fields = ("price",)
    fields = (
        "position",
        "kind",
        "price",
        "description",
        "quantity",
        "unit_amount",
        "discount_amount",
        "period_start",
        "period_end",
        "proration",
        "supply_tax_category",
        "tax_exemption_reason_code",
        "tax_exemption_reason",
        "tax_name",
        "tax_amount",
        "total_amount",
    )
    readonly_fields = ("tax_name", "tax_amount", "total_amount", "proration_words")
    money_fields = {
        "unit_amount": "invoice.currency",
        "amount": "invoice.currency",
        "discount_amount": "invoice.currency",
        "tax_amount": "invoice.currency",
        "total_amount": "invoice.currency",
    }
    quantity_fields = ("quantity",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[InvoiceLine]:
        # a line's price is shown as its name (the product's): with the lines, not two queries per line
        return super().get_queryset(request).select_related("price__product")

    def get_extra(self, request: HttpRequest, obj: Invoice | None = None, **kwargs: Any) -> int:
        return 1 if obj is None or obj.is_draft else 0

    def get_fields(self, request: HttpRequest, obj: Invoice | None = None) -> Any:
        if obj is None:  # a new one-off invoice: a price from the catalog or free text (the rest on its draft page)
            return (
                "position",
                "price",
                "description",
                "quantity",
                "unit_amount",
                "discount_amount",
                "supply_tax_category",
                "tax_exemption_reason",
            )
        fields = super().get_fields(request, obj)
        if not self._editable(obj):  # read-only: a word, not the admin's ✔/✖ icon
            return [("proration_words" if name == "proration" else name) for name in fields]
        return fields

    @admin.display(description="proration")
    def proration_words(self, line: InvoiceLine) -> str:
        return yes_no(line.proration)

    def _editable(self, obj: Invoice | None) -> bool:
        return obj is None or obj.is_draft

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._editable(obj) and super().has_delete_permission(request, obj)


class InvoiceEventInline(ReadOnlyInline):
    model = InvoiceEvent
    fields = ("at", "from_status", "to_status", "actor", "reason")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[InvoiceEvent]:
        return super().get_queryset(request).select_related("actor")  # shown by name: not a query per event


class CreditNoteInline(FormattedNumbersMixin, ReadOnlyInline):
    model = CreditNote
    money_fields = {"total": "currency", "amount_applied": "currency", "amount_to_customer_credit": "currency"}
    fields = ("number", "issue_date", "reason", "total", "amount_applied", "amount_to_customer_credit")
    readonly_fields = fields
    show_change_link = True


class OutboundEmailInline(ReadOnlyInline):
    model = OutboundEmail
    fk_name = "invoice"
    verbose_name_plural = "e-mail history"
    fields = ("queued_at", "kind", "recipients", "subject", "status", "attempts", "sent_at", "last_error")
    readonly_fields = fields
    show_change_link = True
    ordering = ("-queued_at", "-pk")

    @admin.display(description="recipients")
    def recipients(self, obj: OutboundEmail) -> str:
        return ", ".join([*obj.to_emails, *(f"cc {address}" for address in obj.cc_emails)])


class OverdueFilter(admin.SimpleListFilter):
    """Open invoices past their due date (in the billing timezone), by how late: what a clerk chases first."""

    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Overdue"), ("30", "More than 30 days"), ("90", "More than 90 days"), ("no", "Not overdue")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        today = billing_today()
        late = {"yes": 0, "30": 30, "90": 90}.get(self.value() or "")
        if late is not None:
            return queryset.filter(status=InvoiceStatus.OPEN, due_date__lt=today - dt.timedelta(days=late))
        if self.value() == "no":
            return queryset.exclude(status=InvoiceStatus.OPEN, due_date__lt=today)
        return queryset


class PdfStateFilter(admin.SimpleListFilter):
    title = "PDF"
    parameter_name = "pdf"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(documents.PdfState.MISSING, "Missing"), (documents.PdfState.CURRENT, "Archived")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in (documents.PdfState.MISSING, documents.PdfState.CURRENT):
            return queryset.filter(pdf_state=self.value())
        return queryset


_DRAFT_FIELDS = (
    "customer",
    "currency",
    "billing_reason",
    "number_series",
    ("period_start", "period_end"),
    "memo",
    "footer",
)
_COMPUTED_FIELDS = (
    "status",
    "status_display",
    "hold_reminders_display",
    "number",
    "issue_date",
    "due_date",
    "finalized_at",
    "paid_at",
    "voided_at",
    "subtotal",
    "discount_total",
    "tax_total",
    "total",
    "amount_paid",
    "amount_credited",
    "amount_due",
    "tax_treatment",
    "tax_note",
    "tax_summary_display",
    "child_accounts_display",
    "customer_snapshot_display",
    "seller_snapshot_display",
    "documents_display",
)


@admin.register(Invoice)
class InvoiceAdmin(
    QuickActionCheckbox,
    FormattedNumbersMixin,
    InvoicePageMixin,
    NumberOrCustomerSearchMixin,
    AuditTrailMixin,
    admin.ModelAdmin,
):
    money_fields = dict.fromkeys(
        ("subtotal", "discount_total", "tax_total", "total", "amount_paid", "amount_credited", "amount_due"),
        "currency",
    )
    audit_include_related = True
    # Columns that fit 1440 px and a 13" laptop's 1280 px beside the filter (static/admin/billing/admin.css).
    list_display = (
        "__str__",
        "customer_display",
        "status_display",
        "issue_date",
        "due_date",
        "total_display",
        "amount_due_display",
        "pdf_display",
    )
    list_filter = (
        "status",
        "currency",
        "billing_reason",
        "issue_date",
        OverdueFilter,
        "hold_reminders",
        PdfStateFilter,
        BillingEmailBouncedFilter,
    )
    search_fields = ("=number", "customer__name", "customer__email")
    search_help_text = "Invoice number (exact), or the customer's name, e-mail, VAT number or external id."
    date_hierarchy = "issue_date"  # drill-down without scans: templates/admin/invoicing/invoice/change_list.html
    list_select_related = ("customer",)
    show_full_result_count = False
    list_per_page = 50
    autocomplete_fields = ("customer",)
    readonly_fields = _COMPUTED_FIELDS
    inlines = (InvoiceLineInline, CreditNoteInline, InvoiceEventInline, OutboundEmailInline)
    actions = (
        "finalize_selected",
        "void_selected",
        "mark_uncollectible_selected",
        "resend_email_selected",
        "render_new_pdf_version_selected",
    )
    # Inlines shown only on finalized invoices (drafts are never e-mailed or chased); dunning adds its own.
    history_inlines: tuple[Any, ...] = (OutboundEmailInline,)

    def get_fieldsets(self, request: HttpRequest, obj: Invoice | None = None) -> Any:
        return self.formatted_fieldsets(request, obj, self._fieldsets(obj))

    def _fieldsets(self, obj: Invoice | None) -> Any:
        draft: Any = [(None, {"fields": _DRAFT_FIELDS})]
        if obj is None:  # a new one-off invoice: who and in which currency; the rest is rarely needed
            return [
                (None, {"fields": ("customer", "currency", "billing_reason")}),
                (
                    "Number series, period, memo and footer",
                    {"classes": ("collapse",), "fields": _DRAFT_FIELDS[3:]},
                ),
            ]
        return [
            *draft,
            (
                "Status",
                {
                    "fields": (
                        "status_display",
                        "number",
                        ("issue_date", "due_date"),
                        "finalized_at",
                        "paid_at",
                        "voided_at",
                        "hold_reminders_display",
                        "documents_display",
                    )
                },
            ),
            (
                "Amounts",
                {
                    "fields": (
                        ("subtotal", "discount_total", "tax_total", "total"),
                        ("amount_paid", "amount_credited", "amount_due"),
                        "tax_treatment",
                        "tax_note",
                        "tax_summary_display",
                    )
                },
            ),
            *(
                [("Child accounts (lines per child)", {"fields": ("child_accounts_display",)})]
                if obj.child_periods.exists()
                else []
            ),
            (
                "Snapshots",
                {"classes": ("collapse",), "fields": ("customer_snapshot_display", "seller_snapshot_display")},
            ),
            # this method replaces AuditTrailMixin.get_fieldsets, so the section is named here
            ("Audit trail", {"classes": ("audit",), "fields": ("audit_trail",)}),
        ]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """``?customer=<id>`` (the customer page's "New one-off invoice"): the customer, their currency, a
        one-off invoice."""
        initial = {"currency": settings.DEFAULT_CURRENCY, **super().get_changeform_initial_data(request)}
        customer_id = str(request.GET.get("customer", ""))
        customer = Customer.objects.filter(pk=int(customer_id)).first() if customer_id.isdigit() else None
        if customer is not None:
            initial.setdefault("billing_reason", BillingReason.ONE_OFF)
            if "currency" not in request.GET:
                initial["currency"] = customer.currency
        return initial

    def response_add(self, request: HttpRequest, obj: Invoice, post_url_continue: str | None = None) -> HttpResponse:
        """A new draft opens on its own page, where its Finalize button is (unless "Save and add another")."""
        if "_addanother" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        obj.refresh_from_db()
        self.message_user(
            request,
            f"Saved the draft {obj} for {obj.customer}: total {money_text(obj.total, obj.currency)}. "
            "Check it, then Finalize.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:invoicing_invoice_change", args=[obj.pk]))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invoice]:
        # One LEFT JOIN to the stored PDF: the column and the filter read the state without a query per row.
        return (
            super()
            .get_queryset(request)
            .annotate(
                pdf_state=Case(
                    When(status=InvoiceStatus.DRAFT, then=Value("")),
                    When(pdf__isnull=True, then=Value(documents.PdfState.MISSING)),
                    default=Value(documents.PdfState.CURRENT),
                )
            )
        )

    @admin.display(description="PDF", ordering="pdf_state")
    def pdf_display(self, obj: Invoice) -> str:
        state = getattr(obj, "pdf_state", "")
        if not state:
            return "—"
        if state == documents.PdfState.CURRENT:
            return format_html('<a href="{}">PDF</a>', reverse("admin:invoicing_invoice_pdf", args=[obj.pk]))
        return badge(state, "danger")

    @admin.display(description="hold reminders")
    def hold_reminders_display(self, obj: Invoice) -> str:
        return yes_no(obj.hold_reminders, yes="Held", no="No")

    @admin.display(description="customer", ordering="customer__name")
    def customer_display(self, obj: Invoice) -> str:
        return format_html('<span class="cell-text" title="{}">{}</span>', obj.customer.name, obj.customer.name)

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Invoice) -> str:
        if obj.status == InvoiceStatus.OPEN and obj.due_date is not None and obj.due_date < billing_today():
            return status_badge("overdue", "Overdue", title=f"Open, due {date_text(obj.due_date)}")
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="documents")
    def documents_display(self, obj: Invoice) -> str:
        """The archived PDF and its versions, with the invoice's current status beside them (never in them)."""
        if obj.pk is None:
            return "—"
        links = format_html(
            '<a href="{}">Download PDF</a> · <a href="{}" target="_blank" rel="noopener">HTML preview</a>',
            reverse("admin:invoicing_invoice_pdf", args=[obj.pk]),
            reverse("admin:invoicing_invoice_preview", args=[obj.pk]),
        )
        if not obj.is_finalized:
            return links
        links = format_html(
            '{} · <a href="{}" target="_blank" rel="noopener">as the customer sees it</a>',
            links,
            reverse("admin:invoicing_invoice_portal_preview", args=[obj.pk]),
        )
        files = documents.document_versions(documents.DocumentPdf.objects.filter(invoice=obj).first())
        if not files:
            return format_html("{} · archived PDF: <strong>missing</strong> (rendered on first download)", links)
        url = reverse("admin:invoicing_invoice_pdf", args=[obj.pk])
        rows = format_html_join(
            "",
            '<li><a href="{}?version={}">{}</a> — {}, SHA-256 {}…{}</li>',
            (
                (
                    url,
                    file.version,
                    "original" if file.version == 1 else f"version {file.version}",
                    timezone.localtime(file.rendered_at).strftime("%Y-%m-%d %H:%M"),
                    file.sha256[:12],
                    f" — by {file.rendered_by or 'unknown'}: {file.reason}" if file.version > 1 else "",
                )
                for file in files
            ),
        )
        return format_html(
            "{} · status now: <strong>{}</strong> (shown here, never printed in the archived file)<ul>{}</ul>",
            links,
            obj.get_status_display(),
            rows,
        )

    def get_inlines(self, request: HttpRequest, obj: Invoice | None) -> Any:
        if obj is None:
            return (InvoiceLineInline,)
        if obj.is_draft:  # drafts are never e-mailed or chased: no history to show (and no formset to post)
            return tuple(inline for inline in self.inlines if inline not in self.history_inlines)
        return self.inlines

    # Finalized invoices are read-only: Django then renders the view-only page and refuses a POST (403).
    def has_change_permission(self, request: HttpRequest, obj: Invoice | None = None) -> bool:
        if obj is not None and obj.is_finalized:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Invoice | None = None) -> bool:
        if obj is not None and obj.is_finalized:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        kept = list(queryset.exclude(status=InvoiceStatus.DRAFT))
        if kept:
            self.message_user(
                request,
                f"Not deleted — finalized invoices are kept (void them instead): {', '.join(map(str, kept[:10]))}",
                messages.WARNING,
            )
        queryset.filter(status=InvoiceStatus.DRAFT).delete()

    def has_finalize_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("invoicing.finalize_invoice")

    def has_void_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("invoicing.void_invoice")

    def has_mark_uncollectible_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("invoicing.mark_uncollectible_invoice")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        try:
            invoice_recompute(invoice=form.instance)
        except InvoiceError as exc:
            self.message_user(request, f"Totals not recomputed: {exc}", messages.ERROR)

    @admin.display(description="total", ordering="total")
    def total_display(self, obj: Invoice) -> str:
        return _amount(obj.total, obj.currency)

    @admin.display(description="amount due", ordering="amount_due")
    def amount_due_display(self, obj: Invoice) -> str:
        return _amount(obj.amount_due, obj.currency)

    @admin.display(description="tax summary")
    def tax_summary_display(self, obj: Invoice) -> str:
        if not obj.tax_summary:
            return "—"
        # One row per VAT category and rate, as the PDF prints it (the exemption reason of an exempt row).
        return format_html_join(
            "",
            '<div class="tax-summary-row">{} {} · {} ({}): taxable {}, tax {}{}</div>',
            (
                (
                    row.get("category") or "—",
                    TaxCategory(row["category"]).label if row.get("category") in TaxCategory.values else "",
                    row["name"],
                    percentage_display(row["percentage"]),
                    _amount(Decimal(row["taxable_amount"]), obj.currency),
                    _amount(Decimal(row["tax_amount"]), obj.currency),
                    " — " + " ".join(filter(None, (row.get("exemption_reason_code"), row.get("exemption_reason"))))
                    if row.get("exemption_reason")
                    else "",
                )
                for row in obj.tax_summary
            ),
        )

    @admin.display(description="per child account")
    def child_accounts_display(self, obj: Invoice) -> str:
        """An invoice to a parent: each child's lines (positions) and subtotals, as the PDF groups them."""
        groups = invoice_child_groups(invoice=obj)
        if not groups:
            return "—"
        return format_html_join(
            "",
            '<div class="child-account-group"><a href="{}">{}</a> {} {} · lines {}: net {}, tax {}, total {}</div>',
            (
                (
                    reverse("admin:customers_customer_change", args=[group.account_id]),
                    group.name,
                    group.country,
                    group.tax_id,
                    ", ".join(str(line.position) for line in group.lines) or "—",
                    _amount(group.net, obj.currency),
                    _amount(group.tax, obj.currency),
                    _amount(group.total, obj.currency),
                )
                for group in groups
            ),
        )

    @admin.display(description="customer (as invoiced)")
    def customer_snapshot_display(self, obj: Invoice) -> str:
        return _snapshot_html(obj.customer_snapshot)

    @admin.display(description="seller (as invoiced)")
    def seller_snapshot_display(self, obj: Invoice) -> str:
        return _snapshot_html(obj.seller_snapshot)

    def _report(self, request: HttpRequest, outcome: BulkOutcome, verb: str) -> None:
        if outcome.succeeded:
            self.message_user(request, f"{verb} {len(outcome.succeeded)} invoice(s).", messages.SUCCESS)
        for invoice, message in outcome.failed:
            self.message_user(request, f"{invoice}: not {verb.lower()} — {message}", messages.ERROR)

    @admin.action(description="Finalize selected draft invoices", permissions=["finalize"])
    def finalize_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        self._report(request, invoices_finalize_many(invoices=queryset, actor=_actor(request)), "Finalized")

    @admin.action(description="Void selected invoices", permissions=["void"])
    def void_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        self._report(request, invoices_void_many(invoices=queryset, actor=_actor(request)), "Voided")

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("notifications.add_outboundemail")

    @admin.action(description="Resend invoice e-mail (with PDF)", permissions=["resend"])
    def resend_email_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        sent = 0
        for invoice in queryset.select_related("customer").order_by("pk"):
            if invoice.is_draft:
                self.message_user(request, f"{invoice}: not sent — drafts are not e-mailed", messages.ERROR)
                continue
            delivery.invoice_email_resend(invoice=invoice)
            sent += 1
        if sent:
            self.message_user(request, f"Queued {sent} invoice e-mail(s).", messages.SUCCESS)

    @admin.action(description="Render new PDF version (after a template fix)", permissions=["change"])
    def render_new_pdf_version_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> Any:
        """Asks for the reason first (an intermediate page), then renders each finalized invoice's PDF again as
        its next archived version; the original stays."""
        invoices = list(queryset.exclude(status=InvoiceStatus.DRAFT).order_by("pk"))
        reason = request.POST.get("reason", "").strip()
        if "apply" not in request.POST or not reason:
            if "apply" in request.POST:
                self.message_user(request, "Give the reason for the new version.", messages.ERROR)
            return TemplateResponse(
                request,
                "admin/invoicing/invoice/render_new_version.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Render new PDF version",
                    "opts": self.model._meta,
                    "documents": [f"{i} — {i.customer}, {i.get_status_display()}" for i in invoices],
                    "skipped": queryset.count() - len(invoices),
                    "action": "render_new_pdf_version_selected",
                    "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                    "reason": reason,
                },
            )
        done, failed = 0, []
        for invoice in invoices:
            try:
                documents.document_pdf_render_version(invoice_id=invoice.pk, reason=reason, actor=request.user)
                done += 1
            except Exception as exc:
                failed.append(f"{invoice}: {exc}")
        if done:
            self.message_user(
                request, f"Rendered a new PDF version of {done} invoice(s); the originals stay.", messages.SUCCESS
            )
        for problem in failed:
            self.message_user(request, problem, messages.ERROR)
        return None

    @admin.action(description="Mark selected invoices uncollectible", permissions=["mark_uncollectible"])
    def mark_uncollectible_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        outcome = invoices_mark_uncollectible_many(invoices=queryset, actor=_actor(request))
        self._report(request, outcome, "Marked uncollectible")

    # --- credit note screen ---

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:invoice_id>/credit-note/",
                self.admin_site.admin_view(self.credit_note_view),
                name="invoicing_invoice_credit_note",
            ),
            path("<int:invoice_id>/pdf/", self.admin_site.admin_view(self.pdf_view), name="invoicing_invoice_pdf"),
            *self.invoice_page_urls(),
            path(
                "<int:invoice_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="invoicing_invoice_preview",
            ),
            *super().get_urls(),
        ]

    def pdf_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
        invoice = get_object_or_404(Invoice, pk=invoice_id)
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        version = request.GET.get("version", "")
        filename, content = documents.invoice_pdf_bytes(
            invoice_id=invoice.pk, version=int(version) if version.isdigit() else None
        )
        response = HttpResponse(content, content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{filename}"'
        return response

    def preview_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
        invoice = get_object_or_404(Invoice.objects.select_related("customer"), pk=invoice_id)
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        return HttpResponse(documents.render_invoice_html(invoice=invoice))

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Invoice | None:
        # The page shows the customer and the number series as links: read with the invoice, not a query each.
        # A GET of the change page reads the invoice once, for its buttons and its form (``change_view``).
        shown = getattr(request, "_invoice_page_object", None)
        if shown is not None and from_field is None and str(shown.pk) == str(object_id):
            return shown  # type: ignore[no-any-return]
        queryset = self.get_queryset(request).select_related("customer", "number_series")
        field = Invoice._meta.pk if from_field is None else Invoice._meta.get_field(from_field)
        try:
            return queryset.get(**{field.name: field.to_python(object_id)})  # type: ignore[union-attr]
        except (Invoice.DoesNotExist, ValidationError, ValueError):
            return None

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        invoice = self.get_object(request, object_id) if object_id.isdigit() else None
        if invoice is not None and request.method == "GET":
            request._invoice_page_object = invoice  # type: ignore[attr-defined]
        tools = self.get_object_tools(request, invoice) if invoice is not None else []
        extra_context = {**(extra_context or {}), "object_tools": tools}
        return super().change_view(request, object_id, form_url, extra_context)

    def credit_note_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
        """Choose what to credit → preview the credit note (``credit_note_preview``: the issuing code, rolled
        back) → create it. Creating needs a preview of exactly the values submitted."""
        invoice = self.invoice_for_tool(request, invoice_id, "credit_note")
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
            return self.refuse(request, invoice, f"no credit note — it is {invoice.get_status_display().lower()}")
        form = CreditNoteIssueForm(request.POST or None, invoice=invoice)
        preview, previewed = None, ""
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            what: dict[str, Any] = {
                "invoice": invoice,
                "reason": data["reason"],
                "amount": data["amount"] if data["mode"] == "amount" else None,
                "lines": [CreditNoteLineSpec(invoice_line_id=line.pk) for line in data["lines"]]
                if data["mode"] == "lines"
                else None,
            }
            previewed = form.fingerprint()
            try:
                if "_confirm" in request.POST and request.POST.get("previewed") == previewed:
                    credit_note = credit_note_issue(**what, memo=data["memo"], actor=_actor(request))
                    text = (
                        f"Issued credit note {credit_note} for {money_text(credit_note.total, credit_note.currency)}: "
                        f"{money_text(credit_note.amount_applied, credit_note.currency)} off the amount due of "
                        f"{invoice}, {money_text(credit_note.amount_to_customer_credit, credit_note.currency)} to "
                        "customer credit."
                    )
                    self.log_change(request, invoice, f"{text} Reason: {data['reason']}")
                    self.message_user(request, text, messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:invoicing_creditnote_change", args=[credit_note.pk]))
                preview = credit_note_preview(**what)
            except InvoiceError as exc:
                form.add_error(None, str(exc))
                previewed = ""
        currency = invoice.currency
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": invoice,
            "title": f"Create a credit note for {invoice}",
            "form": form,
            "invoice": invoice,
            "total_text": money_text(invoice.total, currency),
            "amount_due_text": money_text(invoice.amount_due, currency),
            "creditable_text": money_text(invoice_creditable_amount(invoice=invoice), currency),
            "previewed": previewed if preview is not None else "",
            "preview": None
            if preview is None
            else {
                "lines": [
                    (description, "" if quantity is None else fmt.quantity(quantity, "en"), money_text(total, currency))
                    for description, quantity, total in preview.lines
                ],
                "net_total": money_text(preview.net_total, currency),
                "tax_total": money_text(preview.tax_total, currency),
                "total": money_text(preview.total, currency),
                "applied": money_text(preview.amount_applied, currency),
                "to_credit": money_text(preview.amount_to_customer_credit, currency),
                "due_after": money_text(invoice.amount_due - preview.amount_applied, currency),
            },
        }
        return TemplateResponse(request, "admin/invoicing/invoice/credit_note.html", context)


def _snapshot_html(snapshot: dict[str, Any]) -> str:
    if not snapshot:
        return "—"
    return format_html(
        "<table>{}</table>",
        format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", ((k, v) for k, v in snapshot.items())),
    )


class CreditNoteIssueForm(forms.Form):
    mode = forms.ChoiceField(
        choices=[
            ("full", "Full — everything still creditable"),
            ("amount", "An amount (gross, tax included)"),
            ("lines", "Selected lines (whole lines)"),
        ],
        widget=forms.RadioSelect,
        initial="full",
    )
    amount = forms.DecimalField(required=False, min_value=Decimal("0.001"), decimal_places=3)
    lines = forms.ModelMultipleChoiceField(
        queryset=InvoiceLine.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )
    reason = forms.CharField(max_length=500)
    memo = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, invoice: Invoice, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lines_field = self.fields["lines"]
        assert isinstance(lines_field, forms.ModelMultipleChoiceField)
        lines_field.queryset = invoice.lines.all()
        lines_field.label_from_instance = lambda line: (  # type: ignore[method-assign,assignment]
            f"{line.description} — {_amount(line.total_amount, invoice.currency)}"
        )

    def fingerprint(self) -> str:
        """What the preview was shown for: creating the credit note needs a preview of exactly these values."""
        data = self.cleaned_data
        lines = ",".join(str(line.pk) for line in data["lines"]) if data["mode"] == "lines" else ""
        amount = data["amount"] if data["mode"] == "amount" else ""
        return f"{data['mode']}|{amount}|{lines}|{data['reason']}"

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("mode") == "amount" and not data.get("amount"):
            self.add_error("amount", "Enter the amount to credit.")
        if data.get("mode") == "lines" and not data.get("lines"):
            self.add_error("lines", "Choose at least one line.")
        return data
