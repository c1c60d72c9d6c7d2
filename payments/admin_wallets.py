"""The wallets' staff screens (docs/decisions/wallets.md): the wallet page (balance, grants, ledger, the automatic
top-up settings) and its buttons "Grant free credits", "Top up" and "Refund paid credits", each a screen that
calls one service of ``payments.wallets`` with the acting user. Grants and ledger rows are records: read-only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin_errors import form_application_error
from core.admin_lists import FormattedNumbersMixin
from core.admin_pages import ObjectTool, date_text, money_text, object_action_page
from core.audit import AuditTrailMixin
from core.dates import billing_today
from core.errors import ApplicationError
from core.money import round_amount
from payments.models import PaymentMethodKind, Wallet, WalletGrant, WalletTransaction
from payments.selectors import wallet_balance
from payments.wallets import wallet_configure, wallet_grant_free, wallet_refund, wallet_top_up

AMOUNT_FIELD = {"max_digits": 18, "decimal_places": 3, "min_value": Decimal("0.001")}


class GrantForm(forms.Form):
    amount = forms.DecimalField(**AMOUNT_FIELD)  # type: ignore[arg-type]
    reason = forms.CharField(max_length=500, help_text="The promotion, e.g. “launch offer”.")
    expires_on = forms.DateField(required=False, help_text="YYYY-MM-DD, usable through this day; empty: never.")


class TopUpForm(forms.Form):
    amount = forms.DecimalField(**AMOUNT_FIELD)  # type: ignore[arg-type]
    expires_on = forms.DateField(required=False, help_text="YYYY-MM-DD, usable through this day; empty: never.")
    charge = forms.BooleanField(required=False, label="Charge the saved default payment method")


class RefundForm(forms.Form):
    amount = forms.DecimalField(**AMOUNT_FIELD)  # type: ignore[arg-type]
    reason = forms.CharField(max_length=500)
    method = forms.ChoiceField(choices=PaymentMethodKind.choices, initial=PaymentMethodKind.BANK_TRANSFER)


class WalletGrantInline(FormattedNumbersMixin, admin.TabularInline):
    model = WalletGrant
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("kind", "status", "amount", "remaining", "granted_on", "expires_on", "invoice", "reason")
    readonly_fields = fields
    ordering = ("-pk",)
    verbose_name_plural = "grants"
    money_fields = {"amount": "wallet.currency", "remaining": "wallet.currency"}

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class WalletLedgerInline(FormattedNumbersMixin, admin.TabularInline):
    model = WalletTransaction
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("booked_on", "kind", "credit_kind", "amount", "balance_after", "invoice", "reason")
    readonly_fields = fields
    ordering = ("-pk",)
    verbose_name_plural = "ledger (newest first)"
    money_fields = {"amount": "wallet.currency", "balance_after": "wallet.currency"}

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[WalletTransaction]:
        return super().get_queryset(request).select_related("invoice", "wallet")


@admin.register(Wallet)
class WalletAdmin(AuditTrailMixin, admin.ModelAdmin):
    change_form_template = "admin/billing/change_form_with_tools.html"
    list_display = ("customer", "currency", "applies_to", "auto_top_up_display")
    list_filter = ("currency", "applies_to")
    search_fields = ("customer__name", "customer__email", "=customer__external_id")
    list_select_related = ("customer",)
    show_full_result_count = False
    list_per_page = 50
    autocomplete_fields = ("customer",)
    fields = ("customer", "currency", "balance_display", "applies_to", "auto_top_up_threshold", "auto_top_up_amount")
    inlines = (WalletGrantInline, WalletLedgerInline)

    def get_readonly_fields(self, request: HttpRequest, obj: Wallet | None = None) -> list[str]:
        own = ["customer", "currency", "balance_display"] if obj is not None else ["balance_display"]
        return [*super().get_readonly_fields(request, obj), *own]

    def has_delete_permission(self, request: HttpRequest, obj: Wallet | None = None) -> bool:
        return False  # the ledger is kept; turn the automatic top-up off instead

    def get_form(self, request: HttpRequest, obj: Wallet | None = None, change: bool = False, **kwargs: Any) -> Any:
        base = super().get_form(request, obj, change, **kwargs)

        class WalletForm(base):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                for name in ("auto_top_up_threshold", "auto_top_up_amount"):  # 20.00, not the column's 20.000
                    value = self.initial.get(name)
                    if value is not None and self.instance.pk is not None:
                        self.initial[name] = round_amount(value, self.instance.currency)

        return WalletForm

    @admin.display(description="automatic top-up")
    def auto_top_up_display(self, obj: Wallet) -> str:
        if not obj.auto_top_up_enabled:
            return "—"
        amount = money_text(obj.auto_top_up_amount, obj.currency)
        return f"{amount} below {money_text(obj.auto_top_up_threshold, obj.currency)}"

    @admin.display(description="balance")
    def balance_display(self, obj: Wallet | None) -> str:
        if obj is None or obj.pk is None:
            return "—"
        balance = wallet_balance(wallet=obj)
        return format_html(
            '<span data-testid="wallet-balance">{}</span> (free {}, paid {}; pending top-ups {})',
            money_text(balance.total, obj.currency),
            money_text(balance.free, obj.currency),
            money_text(balance.paid, obj.currency),
            money_text(balance.pending, obj.currency),
        )

    def save_model(self, request: HttpRequest, obj: Wallet, form: Any, change: bool) -> None:
        """Through the service (validation, the customer's lock, the automatic top-up re-armed)."""
        saved = wallet_configure(
            customer=obj.customer,
            currency=obj.currency,
            applies_to=obj.applies_to,
            auto_top_up_threshold=obj.auto_top_up_threshold,
            auto_top_up_amount=obj.auto_top_up_amount,
            actor=request.user,
        )
        obj.pk = saved.pk

    # --- the buttons ---

    def get_object_tools(self, request: HttpRequest, wallet: Wallet) -> list[ObjectTool]:
        tools = []
        if request.user.has_perm("payments.grant_wallet"):
            url = reverse("admin:payments_wallet_grant", args=[wallet.pk])
            tools.append(ObjectTool("grant", "Grant free credits", url, order=10))
        if request.user.has_perm("payments.top_up_wallet"):
            url = reverse("admin:payments_wallet_top_up", args=[wallet.pk])
            tools.append(ObjectTool("top_up", "Top up", url, order=20))
        if request.user.has_perm("payments.refund_wallet"):
            url = reverse("admin:payments_wallet_refund", args=[wallet.pk])
            tools.append(ObjectTool("refund", "Refund paid credits", url, order=30))
        return tools

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        wallet = Wallet.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        tools = self.get_object_tools(request, wallet) if wallet is not None else []
        extra_context = {**(extra_context or {}), "object_tools": sorted(tools, key=lambda tool: tool.order)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:wallet_id>/grant/", view(self.grant_view), name="payments_wallet_grant"),
            path("<int:wallet_id>/top-up/", view(self.top_up_view), name="payments_wallet_top_up"),
            path("<int:wallet_id>/refund/", view(self.refund_view), name="payments_wallet_refund"),
            *super().get_urls(),
        ]

    def _wallet(self, request: HttpRequest, wallet_id: int, perm: str) -> Wallet:
        if not request.user.has_perm(perm):
            raise PermissionDenied
        return get_object_or_404(Wallet.objects.select_related("customer"), pk=wallet_id)

    def _done(self, request: HttpRequest, wallet: Wallet, text: str) -> HttpResponse:
        self.log_change(request, wallet, text)
        messages.success(request, text)
        return HttpResponseRedirect(reverse("admin:payments_wallet_change", args=[wallet.pk]))

    def _rows(self, wallet: Wallet) -> list[tuple[str, Any]]:
        balance = wallet_balance(wallet=wallet)
        return [
            ("Customer", wallet.customer),
            ("Balance", money_text(balance.total, wallet.currency)),
            ("Free credits", money_text(balance.free, wallet.currency)),
            ("Paid credits", money_text(balance.paid, wallet.currency)),
            ("Pending top-ups", money_text(balance.pending, wallet.currency)),
        ]

    def grant_view(self, request: HttpRequest, wallet_id: int) -> HttpResponse:
        wallet = self._wallet(request, wallet_id, "payments.grant_wallet")
        form = GrantForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                grant = wallet_grant_free(
                    customer=wallet.customer,
                    currency=wallet.currency,
                    amount=data["amount"],
                    reason=data["reason"],
                    expires_on=data["expires_on"],
                    actor=request.user,
                )
            except ApplicationError as exc:
                form_application_error(form, exc)
            else:
                until = f", usable through {date_text(grant.expires_on)}" if grant.expires_on else ""
                return self._done(
                    request, wallet, f"Granted {money_text(grant.amount, wallet.currency)} free credits{until}."
                )
        return object_action_page(
            self,
            request,
            original=wallet,
            title=f"Grant free credits to {wallet.customer}",
            intro="Promotional credits, usable at once and before paid ones. They are not revenue and are never "
            "refunded; unused credits expire on the expiry day.",
            subject_rows=self._rows(wallet),
            form=form,
            submit_label="Grant credits",
        )

    def top_up_view(self, request: HttpRequest, wallet_id: int) -> HttpResponse:
        wallet = self._wallet(request, wallet_id, "payments.top_up_wallet")
        form = TopUpForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                grant = wallet_top_up(
                    customer=wallet.customer,
                    currency=wallet.currency,
                    amount=data["amount"],
                    expires_on=data["expires_on"],
                    charge=data["charge"],
                    as_of=billing_today(),
                    actor=request.user,
                )
            except ApplicationError as exc:
                form_application_error(form, exc)
            else:
                return self._done(
                    request,
                    wallet,
                    f"Top-up invoice {grant.invoice} issued for {money_text(grant.amount, wallet.currency)}: the "
                    "credits become available when it is paid.",
                )
        return object_action_page(
            self,
            request,
            original=wallet,
            title=f"Top up the wallet of {wallet.customer}",
            intro="Issues a top-up invoice (a prepayment, outside the scope of VAT: the VAT is on the invoices the "
            "credits pay). The credits become available when the invoice is paid.",
            subject_rows=self._rows(wallet),
            form=form,
            submit_label="Issue top-up invoice",
        )

    def refund_view(self, request: HttpRequest, wallet_id: int) -> HttpResponse:
        wallet = self._wallet(request, wallet_id, "payments.refund_wallet")
        form = RefundForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                refund = wallet_refund(
                    customer=wallet.customer,
                    currency=wallet.currency,
                    amount=data["amount"],
                    reason=data["reason"],
                    method=data["method"],
                    actor=request.user,
                )
            except ApplicationError as exc:
                form_application_error(form, exc)
            else:
                return self._done(
                    request, wallet, f"Refunded {money_text(refund.amount, wallet.currency)} of paid credits."
                )
        return object_action_page(
            self,
            request,
            original=wallet,
            title=f"Refund paid credits of {wallet.customer}",
            intro="Pays unused paid credits back (record the transfer you make). Free credits are never refunded.",
            subject_rows=self._rows(wallet),
            form=form,
            submit_label="Refund",
        )
