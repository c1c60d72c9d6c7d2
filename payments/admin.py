"""Staff screens of the payments app. Records are read-only here: every write goes through a service, from a
process screen (``get_urls``) or an action. Large tables: no full counts, related rows selected up front."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin_lists import FormattedNumbersMixin, QuickActionCheckbox, boolean_column, money_display, status_badge
from core.admin_pages import date_text, money_text
from core.admin_readonly import ReadOnlyMixin
from core.audit import AuditTrailMixin
from core.dates import billing_today
from core.imports import ImportAdminMixin, ImportReport, ImportUploadForm
from core.money import CurrencyMismatch, round_amount
from customers.models import Customer
from invoicing.models import Invoice, InvoiceStatus
from payments.bank_import import (
    ReconciliationError,
    bank_statement_import,
    bank_transaction_assign,
    bank_transaction_ignore,
    format_of,
    parse_mapping,
)
from payments.models import (
    QUEUE_STATUSES,
    BankStatement,
    BankTransaction,
    CreditLedgerEntry,
    Dispute,
    GatewayFee,
    Payment,
    PaymentAllocation,
    PaymentAttempt,
    PaymentMethod,
    PaymentMethodKind,
    Refund,
    WebhookEvent,
)
from payments.selectors import customer_credit_balances
from payments.services import (
    AllocationSpec,
    PaymentError,
    customer_credit_adjust,
    payment_method_set_default,
    payment_record,
    payment_refund,
)


def _customer_widget(model: Any, field: str = "customer") -> AutocompleteSelect:
    return AutocompleteSelect(model._meta.get_field(field), admin.site)


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    show_full_result_count = False
    list_per_page = 50


# --- forms ----------------------------------------------------------------------------------------------


class RecordPaymentForm(forms.Form):
    customer = forms.ModelChoiceField(
        queryset=Customer.objects.all(), widget=_customer_widget(Payment), help_text="Who paid."
    )
    amount = forms.DecimalField(max_digits=18, decimal_places=3, min_value=Decimal("0.001"))
    currency = forms.ChoiceField(
        choices=[("", "customer's currency"), *list(Payment._meta.get_field("currency").choices or [])], required=False
    )
    method = forms.ChoiceField(choices=PaymentMethodKind.choices, initial=PaymentMethodKind.BANK_TRANSFER)
    received_on = forms.DateField(initial=billing_today, help_text="YYYY-MM-DD")
    reference = forms.CharField(max_length=255, required=False)
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    record_again = forms.BooleanField(
        required=False,
        label="Record it again",
        help_text="Only if the same payment (customer, amount, date, method, reference) really came in twice.",
    )


class AllocationForm(forms.Form):
    invoice = forms.ModelChoiceField(
        queryset=Invoice.objects.filter(status__in=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)),
        to_field_name="number",
        widget=forms.TextInput(attrs={"size": 24, "placeholder": "invoice number"}),
        required=False,
    )
    amount = forms.DecimalField(max_digits=18, decimal_places=3, min_value=Decimal("0.001"), required=False)


AllocationFormSet = forms.formset_factory(AllocationForm, extra=4)


class RefundForm(forms.Form):
    amount = forms.DecimalField(
        max_digits=18, decimal_places=3, min_value=Decimal("0.001"), required=False, help_text="Empty: all of it."
    )
    reason = forms.CharField(max_length=500)


class AssignForm(forms.Form):
    customer = forms.ModelChoiceField(queryset=Customer.objects.all(), widget=_customer_widget(Payment))
    invoice = forms.ModelChoiceField(
        queryset=Invoice.objects.exclude(number=""),
        to_field_name="number",
        required=False,
        widget=forms.TextInput(attrs={"size": 24, "placeholder": "invoice number"}),
        help_text="Empty: the customer's open invoices, oldest first; the rest becomes credit.",
    )


class IgnoreForm(forms.Form):
    note = forms.CharField(max_length=500, help_text="Why this is not a customer payment.")


class AdjustmentForm(forms.Form):
    customer = forms.ModelChoiceField(queryset=Customer.objects.all(), widget=_customer_widget(CreditLedgerEntry))
    amount = forms.DecimalField(max_digits=18, decimal_places=3, help_text="Positive adds credit, negative removes.")
    currency = forms.ChoiceField(choices=Payment._meta.get_field("currency").choices or [])
    reason = forms.CharField(max_length=500)


def _form_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, *, title: str, form: forms.Form, **extra: Any
) -> TemplateResponse:
    media = form.media
    if extra.get("formset") is not None:
        media += extra["formset"].media
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": title,
        "form": form,
        "media": model_admin.media + media,
        "submit_label": "Save",
        **extra,
    }
    return TemplateResponse(request, "admin/payments/form_page.html", context)


# --- payments -------------------------------------------------------------------------------------------


class PaymentAllocationInline(FormattedNumbersMixin, admin.TabularInline):
    model = PaymentAllocation
    money_fields = {"amount": "currency", "amount_refunded": "currency"}
    extra = 0
    fields = ("invoice", "amount", "amount_refunded", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RefundInline(FormattedNumbersMixin, admin.TabularInline):
    model = Refund
    money_fields = {"amount": "currency", "amount_from_credit": "currency", "amount_reopened": "currency"}
    fk_name = "payment"
    extra = 0
    fields = ("amount", "status", "reason", "amount_from_credit", "amount_reopened", "gateway_reference", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Payment)
class PaymentAdmin(QuickActionCheckbox, FormattedNumbersMixin, AuditTrailMixin, admin.ModelAdmin):
    money_fields = {"amount": "currency", "amount_refunded": "currency"}
    # Columns that fit 1280 px beside the filter (static/admin/billing/admin.css).
    list_display = (
        "number_display",
        "customer_display",
        "amount_display",
        "method",
        "status_display",
        "received_display",
        "reference_display",
    )
    list_filter = ("status", "method", "currency", "gateway", "received_on")
    search_fields = ("=id", "customer__name", "customer__email", "reference", "=gateway_reference")
    list_select_related = ("customer",)
    show_full_result_count = False
    list_per_page = 50
    date_hierarchy = "received_on"
    inlines = (PaymentAllocationInline, RefundInline)
    actions = ("refund_in_full",)
    readonly_fields = [f.name for f in Payment._meta.fields]

    @admin.display(description="payment", ordering="pk")
    def number_display(self, obj: Payment) -> str:
        return f"#{obj.pk}"

    @admin.display(description="customer", ordering="customer__name")
    def customer_display(self, obj: Payment) -> str:
        return format_html('<span class="cell-text" title="{}">{}</span>', obj.customer.name, obj.customer.name)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Payment) -> str:
        return money_text(obj.amount, obj.currency)

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Payment) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="received", ordering="received_on")
    def received_display(self, obj: Payment) -> str:
        return date_text(obj.received_on)

    @admin.display(description="reference", ordering="reference")
    def reference_display(self, obj: Payment) -> str:
        if not obj.reference:
            return "—"
        return format_html('<span class="cell-text narrow" title="{}">{}</span>', obj.reference, obj.reference)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a payment is a record; corrections are refunds

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_refund_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.refund_payment")

    def get_urls(self) -> list[Any]:
        return [
            path("<int:pk>/refund/", self.admin_site.admin_view(self.refund_view), name="payments_payment_refund"),
            *super().get_urls(),
        ]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """One screen: the payment and how to split it over invoices (empty rows: oldest invoices first)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = RecordPaymentForm(request.POST or None)
        formset = AllocationFormSet(request.POST or None, prefix="allocations")
        if request.method == "POST" and form.is_valid() and formset.is_valid():
            data = form.cleaned_data
            specs = [
                AllocationSpec(invoice=row["invoice"], amount=row["amount"])
                for row in formset.cleaned_data
                if row.get("invoice") and row.get("amount")
            ]
            try:
                payment = payment_record(
                    customer=data["customer"],
                    amount=data["amount"],
                    currency=data["currency"] or None,
                    method=data["method"],
                    received_on=data["received_on"],
                    reference=data["reference"],
                    notes=data["notes"],
                    allocations=specs or None,
                    actor=request.user,
                    refuse_duplicate=not data["record_again"],
                )
            except (PaymentError, CurrencyMismatch) as exc:
                form.add_error(None, str(exc))
            else:
                self.log_addition(
                    request,
                    payment,
                    f"Recorded {round_amount(payment.amount, payment.currency)} {payment.currency} ({payment.method}).",
                )
                self.message_user(request, f"{payment} recorded.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:payments_payment_change", args=[payment.pk]))
        return _form_page(
            self,
            request,
            title="Record a payment",
            form=form,
            formset=formset,
            formset_title="Allocations",
            formset_help="Invoice numbers and amounts. Leave empty to settle the customer's open invoices oldest "
            "first. Whatever is not allocated becomes the customer's credit.",
            submit_label="Record payment",
        )

    def refund_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_refund_permission(request):
            raise PermissionDenied
        payment = get_object_or_404(Payment, pk=pk)
        form = RefundForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                refund = payment_refund(
                    payment=payment,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    actor=request.user,
                )
            except PaymentError as exc:
                form.add_error(None, str(exc))
            else:
                self.log_change(
                    request,
                    payment,
                    f"Refund #{refund.pk}: {round_amount(refund.amount, refund.currency)} {refund.currency}, "
                    f"{refund.status}.",
                )
                level = messages.SUCCESS if refund.status == "succeeded" else messages.WARNING
                self.message_user(request, f"{refund}: {refund.get_status_display()}.", level)
                return HttpResponseRedirect(reverse("admin:payments_payment_change", args=[payment.pk]))
        return _form_page(
            self,
            request,
            title=f"Refund {payment}",
            form=form,
            subject_rows=[
                ("Customer", payment.customer),
                ("Amount", f"{payment.amount} {payment.currency}"),
                ("Refunded so far", f"{payment.amount_refunded} {payment.currency}"),
                ("Method", payment.get_method_display()),
            ],
            intro="Card payments are refunded through their gateway; others are recorded as paid back. The refund "
            "first takes back credit this payment left, then re-opens the invoices it settled.",
            submit_label="Refund",
        )

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        extra_context = extra_context or {}
        if self.has_refund_permission(request):
            extra_context["refund_url"] = reverse("admin:payments_payment_refund", args=[object_id])
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Refund selected payments in full", permissions=["refund"])
    def refund_in_full(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        done, failed = 0, []
        for payment in queryset.order_by("pk"):
            try:
                payment_refund(payment=payment, reason="refunded in full from the admin", actor=request.user)
                done += 1
            except PaymentError as exc:
                failed.append(f"{payment}: {exc}")
        if done:
            self.message_user(request, f"{done} payment(s) refunded.", messages.SUCCESS)
        if failed:
            self.message_user(request, "Not refunded — " + "; ".join(failed[:10]), messages.WARNING)


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(FormattedNumbersMixin, ReadOnlyAdmin):
    money_fields = {"amount": "currency"}
    list_display = (
        "__str__",
        "invoice",
        "customer",
        "amount",
        "currency",
        "status",
        "decline_code",
        "decline_type",
        "attempted_on",
        "next_retry_on",
        boolean_column("final_failure", "final", yes="Final", no="No", quiet_no=True),
    )
    list_filter = ("status", "decline_type", "final_failure", "gateway", "attempted_on", "next_retry_on")
    search_fields = ("=invoice__number", "customer__name", "=gateway_reference", "=idempotency_key")
    list_select_related = ("invoice", "customer")
    date_hierarchy = "attempted_on"


@admin.register(PaymentMethod)
class PaymentMethodAdmin(AuditTrailMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "customer",
        "gateway",
        "type",
        boolean_column("is_default", "default"),
        boolean_column("is_active", "active"),
        "created_at",
    )
    list_filter = ("gateway", "type", "is_default", "is_active", "brand")
    search_fields = ("customer__name", "customer__email", "=token", "last4", "=mandate_reference")
    list_select_related = ("customer",)
    autocomplete_fields = ("customer",)
    show_full_result_count = False
    readonly_fields = ("is_default", "created_at")
    actions = ("make_default",)

    @admin.action(description="Make the default payment method of its customer", permissions=["change"])
    def make_default(self, request: HttpRequest, queryset: QuerySet[PaymentMethod]) -> None:
        for method in queryset:
            payment_method_set_default(payment_method=method)
        self.message_user(request, "Default payment method updated.", messages.SUCCESS)


@admin.register(Refund)
class RefundAdmin(FormattedNumbersMixin, ReadOnlyAdmin):
    money_fields = {"amount": "currency", "amount_from_credit": "currency", "amount_reopened": "currency"}
    list_display = ("__str__", "customer", "payment", "amount", "currency", "status", "reason", "created_at")
    list_filter = ("status", "method", "currency")
    search_fields = ("customer__name", "=payment__id", "=gateway_reference")
    list_select_related = ("customer", "payment")


@admin.register(Dispute)
class DisputeAdmin(FormattedNumbersMixin, ReadOnlyAdmin):
    """Chargebacks from Stripe (``charge.dispute.*`` webhooks); answered in the Stripe dashboard."""

    money_fields = {"amount": "currency"}
    list_display = ("gateway_reference", "payment", "invoice", "amount", "currency", "reason", "status", "opened_at")
    list_filter = ("status", "gateway")
    search_fields = ("=gateway_reference", "=invoice__number", "payment__customer__name")
    list_select_related = ("payment", "invoice")
    show_full_result_count = False


@admin.register(GatewayFee)
class GatewayFeeAdmin(FormattedNumbersMixin, ReadOnlyAdmin):
    money_fields = {"amount": "currency"}
    list_display = ("__str__", "kind", "customer", "invoice", "amount", "currency", "source_reference", "booked_on")
    list_filter = ("kind", "gateway", "currency")
    search_fields = ("=source_reference", "customer__name", "=invoice__number")
    list_select_related = ("customer", "invoice")
    show_full_result_count = False


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "gateway", "event_type", "received_at", "processed_at", "outcome")
    list_filter = ("gateway", "event_type")
    search_fields = ("=event_id",)


# --- credit ---------------------------------------------------------------------------------------------


@admin.register(CreditLedgerEntry)
class CreditLedgerEntryAdmin(FormattedNumbersMixin, admin.ModelAdmin):
    """The customers' credit ledgers. Filter one customer with ``?customer__id__exact=<id>`` (linked from the
    customer's page); the balance per currency is shown above the list then."""

    list_display = ("created_at", "customer", "kind", "amount", "currency", "reason", "payment", "invoice")
    money_fields = {"amount": "currency"}
    list_filter = ("kind", "currency")
    search_fields = ("customer__name", "customer__email", "=customer__external_id", "reason")
    list_select_related = ("customer", "payment", "invoice")
    show_full_result_count = False
    readonly_fields = [f.name for f in CreditLedgerEntry._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        customer_id = request.GET.get("customer__id__exact")
        if customer_id and customer_id.isdigit():
            customer = Customer.objects.filter(pk=int(customer_id)).first()
            if customer is not None:
                balances = customer_credit_balances(customer=customer)
                text = ", ".join(money_display(amount, currency) for currency, amount in balances.items()) or "none"
                self.message_user(request, f"Credit balance of {customer}: {text}", messages.INFO)
        return super().changelist_view(request, extra_context)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """A manual adjustment with a reason — the only entry staff write directly."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = AdjustmentForm(request.POST or None, initial={"customer": request.GET.get("customer")})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                entry = customer_credit_adjust(
                    customer=data["customer"],
                    amount=data["amount"],
                    currency=data["currency"],
                    reason=data["reason"],
                    actor=request.user,
                )
            except (PaymentError, TypeError) as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"{entry} booked.", messages.SUCCESS)
                url = reverse("admin:payments_creditledgerentry_changelist")
                return HttpResponseRedirect(f"{url}?customer__id__exact={entry.customer_id}")
        return _form_page(self, request, title="Adjust a customer's credit", form=form, submit_label="Book adjustment")


class CustomerCreditLedgerInline(FormattedNumbersMixin, admin.TabularInline):
    """For the customer admin: ``inlines = [..., CustomerCreditLedgerInline]`` (read-only, newest first)."""

    model = CreditLedgerEntry
    fk_name = "customer"
    extra = 0
    max_num = 0
    fields = ("created_at", "kind", "amount", "currency", "reason", "payment", "invoice")
    readonly_fields = fields
    can_delete = False
    ordering = ("-created_at", "-pk")
    verbose_name_plural = "credit ledger (balance = sum per currency)"
    money_fields = {"amount": "currency"}

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CustomerPaymentMethodInline(admin.TabularInline):
    """For the customer admin: the saved payment methods (read-only; edit them under Payment methods)."""

    model = PaymentMethod
    extra = 0
    max_num = 0
    fields = ("brand", "last4", "exp_month", "exp_year", "gateway", "is_default", "is_active")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- bank reconciliation --------------------------------------------------------------------------------


class QueueFilter(admin.SimpleListFilter):
    title = "reconciliation"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "To reconcile"), ("done", "Reconciled")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "open":
            return queryset.filter(status__in=QUEUE_STATUSES)
        if self.value() == "done":
            return queryset.exclude(status__in=QUEUE_STATUSES)
        return queryset


@admin.register(BankTransaction)
class BankTransactionAdmin(FormattedNumbersMixin, ReadOnlyAdmin):
    """The reconciliation queue: ``?queue=open`` lists what staff still have to assign."""

    money_fields = {"amount": "currency"}
    list_display = (
        "booking_date",
        "amount",
        "currency",
        "counterparty_name",
        "remittance",
        "status",
        "match_note",
        "suggested_invoice",
        "resolve_link",
    )
    list_filter = (QueueFilter, "status", "currency", "booking_date")
    search_fields = ("=transaction_id", "counterparty_name", "remittance", "=counterparty_iban")
    list_select_related = ("suggested_invoice", "payment")
    date_hierarchy = "booking_date"

    @admin.display(description="")
    def resolve_link(self, obj: BankTransaction) -> str:
        if obj.status not in QUEUE_STATUSES:
            return (
                format_html('<a href="{}">payment</a>', reverse("admin:payments_payment_change", args=[obj.payment_id]))
                if obj.payment_id
                else ""
            )
        return format_html(
            '<a href="{}">assign</a> · <a href="{}">ignore</a>',
            reverse("admin:payments_banktransaction_assign", args=[obj.pk]),
            reverse("admin:payments_banktransaction_ignore", args=[obj.pk]),
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/assign/", self.admin_site.admin_view(self.assign_view), name="payments_banktransaction_assign"
            ),
            path(
                "<int:pk>/ignore/", self.admin_site.admin_view(self.ignore_view), name="payments_banktransaction_ignore"
            ),
            *super().get_urls(),
        ]

    def _may_resolve(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.add_payment")

    def _rows(self, row: BankTransaction) -> list[tuple[str, Any]]:
        return [
            ("Booked", row.booking_date),
            ("Amount", f"{row.amount} {row.currency}"),
            ("From", f"{row.counterparty_name} {row.counterparty_iban}".strip()),
            ("Remittance", row.remittance),
            ("Why queued", row.match_note),
        ]

    def assign_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self._may_resolve(request):
            raise PermissionDenied
        row = get_object_or_404(BankTransaction, pk=pk)
        initial: dict[str, Any] = {}
        if row.suggested_invoice_id:
            suggested = row.suggested_invoice
            initial = {"customer": suggested.customer_id, "invoice": suggested.number} if suggested else {}
        form = AssignForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                payment = bank_transaction_assign(
                    bank_transaction=row,
                    customer=form.cleaned_data["customer"],
                    invoice=form.cleaned_data["invoice"],
                    actor=request.user,
                )
            except (PaymentError, CurrencyMismatch) as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, f"Assigned: {payment} recorded.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:payments_banktransaction_changelist") + "?queue=open")
        return _form_page(
            self,
            request,
            title="Assign bank transaction",
            form=form,
            subject_rows=self._rows(row),
            submit_label="Assign",
        )

    def ignore_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self._may_resolve(request):
            raise PermissionDenied
        row = get_object_or_404(BankTransaction, pk=pk)
        form = IgnoreForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                bank_transaction_ignore(bank_transaction=row, note=form.cleaned_data["note"], actor=request.user)
            except ReconciliationError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, "Ignored.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:payments_banktransaction_changelist") + "?queue=open")
        return _form_page(
            self,
            request,
            title="Ignore bank transaction",
            form=form,
            subject_rows=self._rows(row),
            submit_label="Ignore",
        )


class BankStatementUploadForm(ImportUploadForm):
    field_order = ("file", "format", "mapping", "dry_run")

    file = forms.FileField(label="Statement file", help_text="CSV export of your bank, or ISO 20022 CAMT.053 XML.")
    format = forms.ChoiceField(
        choices=[("", "From the file name (.xml = CAMT.053, else CSV)"), ("csv", "CSV"), ("camt053", "CAMT.053")],
        required=False,
    )
    mapping = forms.CharField(
        required=False,
        label="CSV columns",
        help_text="Only if your bank's headers differ from the configured ones, e.g. "
        "amount=Betrag,booking_date=Buchungstag,currency_default=EUR",
    )


@admin.register(BankStatement)
class BankStatementAdmin(ImportAdminMixin, ReadOnlyAdmin):
    list_display = ("imported_at", "format", "filename", "statement_id", "transactions_new", "matched", "queued")
    list_filter = ("format",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[BankStatement]:
        return super().get_queryset(request).select_related("imported_by")

    # --- statement import (core.imports) ---

    import_title = "Import a bank statement"
    import_template = "admin/payments/bankstatement/import.html"
    import_form_class = BankStatementUploadForm

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("payments.add_payment")

    def run_import(self, request: HttpRequest, form: ImportUploadForm) -> ImportReport:
        """Matched transactions become payments, the rest go to the reconciliation queue; the same statement
        twice creates nothing; a bad file is refused whole with its problems listed."""
        upload = form.cleaned_data["file"]
        return bank_statement_import(
            data=upload.read(),
            format=form.cleaned_data["format"] or format_of(upload.name),
            filename=upload.name,
            mapping=parse_mapping(form.cleaned_data["mapping"]),
            dry_run=form.cleaned_data["dry_run"],
            actor=request.user,
        )

    def import_done_url(self, report: ImportReport) -> str:
        return reverse("admin:payments_banktransaction_changelist")


# The payment side of the invoice and customer pages (buttons, account blocks): payments/admin_pages.py, which
# extends the admins registered by then (customers', invoicing's).
from payments import (  # noqa: E402
    admin_pages,  # noqa: F401
    admin_subscriptions,  # noqa: F401 — registers the subscription page's "Cancel now"
    admin_wallets,  # noqa: F401 — the wallets' page and buttons
)
