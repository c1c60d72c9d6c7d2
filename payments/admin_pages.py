"""The payment side of the invoice and customer pages. invoicing and customers cannot import payments (apps import
downwards only), so payments extends the admins registered by then:

- the invoice page's buttons Record payment (with the allocation previewed before saving), Apply customer credit
  and Charge saved card now;
- the customer page's balance (due, overdue, credit), payments, payment methods and credit ledger blocks, and its
  quick actions Record payment (on account, allocated oldest invoice first) and Adjust credit.

Every write goes through ``payments.services`` with the acting user; the view adds the admin log entry and a
message naming the amounts as money."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin_errors import form_application_error
from core.admin_pages import ObjectTool, date_text, money_text, object_action_page
from core.dates import billing_today
from core.errors import ApplicationError
from core.links import method_link_url
from customers.models import Customer
from invoicing.admin.customers import ACCOUNT_ROWS, account_table, see_all
from invoicing.models import Invoice, InvoiceStatus
from payments.models import (
    AttemptStatus,
    CreditLedgerEntry,
    Dispute,
    DisputeStatus,
    Payment,
    PaymentMethod,
    PaymentMethodKind,
)
from payments.notifications import add_method_link_email_send
from payments.selectors import customer_balances, customer_credit_balance, payment_allocations
from payments.services import (
    AllocationPreview,
    customer_credit_adjust,
    customer_credit_apply,
    invoice_charge_now,
    payment_allocation_preview,
    payment_record,
)

PAYABLE_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
CURRENCY_CHOICES = list(Payment._meta.get_field("currency").choices or [])


# --- Record payment (invoice page and customer page) -------------------------------------------------------


class RecordPaymentForm(forms.Form):
    amount = forms.DecimalField(max_digits=18, decimal_places=3, min_value=Decimal("0.001"))
    currency = forms.ChoiceField(choices=CURRENCY_CHOICES)
    received_on = forms.DateField(label="Date received", initial=billing_today, help_text="YYYY-MM-DD")
    method = forms.ChoiceField(choices=PaymentMethodKind.choices, initial=PaymentMethodKind.BANK_TRANSFER)
    reference = forms.CharField(max_length=255, required=False, help_text="The bank's or payer's reference.")
    notes = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    record_again = forms.BooleanField(
        required=False,
        label="Record it again",
        help_text="Only if the same payment (amount, date, method, reference) really came in twice.",
    )

    def __init__(self, *args: Any, invoice: Invoice | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if invoice is not None:  # the invoice's currency; the payment settles this invoice, the rest is credit
            self.fields["currency"].disabled = True

    def fingerprint(self) -> str:
        """What the preview was shown for: recording needs a preview of exactly these values."""
        data = self.cleaned_data
        return f"{data['amount']}|{data['currency']}|{data['received_on']}|{data['method']}"


def _preview_table(preview: AllocationPreview, *, invoice: Invoice | None) -> dict[str, Any]:
    currency = preview.currency
    rows = [
        [
            str(target),
            date_text(target.due_date),
            money_text(target.amount_due, currency),
            money_text(share, currency),
            money_text(target.amount_due - share, currency),
        ]
        for target, share in preview.allocations
    ]
    rows.append(["To the customer's credit", "", "", money_text(preview.to_credit, currency), ""])
    return {
        "title": "Allocation (what will be saved)",
        "headers": ["Invoice", "Due date", "Amount due now", "Allocated", "Amount due after"],
        "rows": rows,
        "footer": ["Payment", "", "", money_text(preview.amount, currency), ""],
        "note": (
            f"The payment settles {invoice}; what is left becomes the customer's credit."
            if invoice is not None
            else "Allocated to the customer's open invoices in this currency, oldest due date first; what is left "
            "becomes the customer's credit."
        ),
    }


def _allocation_text(allocations: list[tuple[Invoice, Decimal]], to_credit: Decimal, currency: str) -> str:
    parts = [f"{money_text(share, currency)} to {target}" for target, share in allocations]
    if to_credit > 0 or not parts:
        parts.append(f"{money_text(to_credit, currency)} to customer credit")
    return ", ".join(parts)


def record_payment_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, *, customer: Customer, invoice: Invoice | None
) -> HttpResponse:
    """Enter → preview the allocation → record. ``payment_allocation_preview`` is ``payment_record``'s own plan in
    dry-run, so what is shown is what is saved (a change to the invoices in between is reported)."""
    original: Any = invoice if invoice is not None else customer
    back = reverse(f"admin:{original._meta.app_label}_{original._meta.model_name}_change", args=[original.pk])
    currency = invoice.currency if invoice is not None else customer.currency
    initial = {"currency": currency, "amount": invoice.amount_due if invoice is not None else None}
    form = RecordPaymentForm(request.POST or None, initial=initial, invoice=invoice)
    preview: AllocationPreview | None = None
    previewed = ""
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            preview = payment_allocation_preview(
                customer=customer,
                amount=data["amount"],
                currency=data["currency"],
                method=data["method"],
                invoice=invoice,
            )
        except ApplicationError as exc:
            form_application_error(form, exc)
        else:
            previewed = form.fingerprint()
            if "_confirm" in request.POST and request.POST.get("previewed") == previewed:
                try:
                    payment = payment_record(
                        customer=customer,
                        amount=data["amount"],
                        currency=data["currency"],
                        method=data["method"],
                        received_on=data["received_on"],
                        reference=data["reference"],
                        notes=data["notes"],
                        invoice=invoice,
                        actor=request.user,
                        refuse_duplicate=not data["record_again"],
                    )
                except ApplicationError as exc:
                    form_application_error(form, exc)
                else:
                    saved = payment_allocations(payment=payment)
                    to_credit = payment.amount - sum((share for _, share in saved), Decimal(0))
                    text = (
                        f"Recorded {payment} — {money_text(payment.amount, payment.currency)} "
                        f"({payment.get_method_display()}{', ' + payment.reference if payment.reference else ''}): "
                        f"{_allocation_text(saved, to_credit, payment.currency)}."
                    )
                    model_admin.log_addition(request, payment, text)
                    model_admin.log_change(request, original, text)
                    messages.success(request, text)
                    shown = [(target.pk, share) for target, share in preview.allocations]
                    if shown != [(target.pk, share) for target, share in saved]:
                        messages.warning(
                            request, "The invoices changed after the preview: the allocation above is what was saved."
                        )
                    return HttpResponseRedirect(back)
            elif "_confirm" in request.POST:
                messages.warning(
                    request, "The payment changed since the preview: check the allocation, then record it."
                )
    if invoice is not None:
        title = f"Record a payment for {invoice}"
        rows = [
            ("Customer", customer.name),
            ("Invoice total", money_text(invoice.total, invoice.currency)),
            ("Paid so far", money_text(invoice.amount_paid, invoice.currency)),
            ("Amount due", money_text(invoice.amount_due, invoice.currency)),
        ]
    else:
        title = f"Record a payment from {customer}"
        balances = customer_balances(customer=customer, as_of=billing_today())
        rows = [
            ("Customer", customer.name),
            *((f"Amount due ({b.currency})", money_text(b.due, b.currency)) for b in balances.values() if b.due),
        ]
    return object_action_page(
        model_admin,
        request,
        original=original,
        title=title,
        intro="Enter the payment as received, then preview how it is allocated; nothing is saved until you record it.",
        subject_rows=rows,
        preview=_preview_table(preview, invoice=invoice) if preview is not None and previewed else None,
        form=form,
        hidden={"previewed": previewed} if previewed else None,
        submit_label="Record payment" if previewed else "Preview allocation",
        submit_name="_confirm" if previewed else "_preview",
        secondary_submits=[("_preview", "Preview again")] if previewed else None,
    )


# --- the invoice page ----------------------------------------------------------------------------------------


def _extend_invoice_admin() -> None:
    base: Any = type(admin.site._registry[Invoice])

    class InvoiceAdmin(base):  # type: ignore[valid-type, misc]
        def may(self, request: HttpRequest, tool: str) -> bool:
            payment_tools = {
                "record_payment": "payments.add_payment",
                "apply_credit": "payments.add_creditledgerentry",
                "charge_now": "payments.add_paymentattempt",
            }
            if tool in payment_tools:
                return bool(request.user.has_perm(payment_tools[tool]))
            return bool(super().may(request, tool))

        def get_object_tools(self, request: HttpRequest, invoice: Invoice) -> list[ObjectTool]:
            tools: list[ObjectTool] = super().get_object_tools(request, invoice)
            if invoice.status not in PAYABLE_STATUSES or invoice.amount_due <= 0:
                return tools
            mine = []

            def add(name: str, label: str) -> None:
                mine.append(ObjectTool(name, label, reverse(f"admin:invoicing_invoice_{name}", args=[invoice.pk])))

            if self.may(request, "record_payment"):
                add("record_payment", "Record payment")
            if (
                self.may(request, "apply_credit")
                and customer_credit_balance(customer=invoice.customer, currency=invoice.currency) > 0
            ):
                add("apply_credit", "Apply customer credit")
            if (
                self.may(request, "charge_now")
                and PaymentMethod.objects.filter(
                    customer_id=invoice.customer_id, is_active=True, is_default=True
                ).exists()
            ):
                add("charge_now", "Charge saved card now")
            # after Finalize / Send, before the credit note and the rest
            at = next((i for i, tool in enumerate(tools) if tool.name not in ("finalize", "send_email")), len(tools))
            return [*tools[:at], *mine, *tools[at:]]

        def change_view(
            self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
        ) -> HttpResponse:
            # The invoice is flagged while a chargeback of its payment is open (charge.dispute.created).
            if request.method == "GET" and str(object_id).isdigit():
                for dispute in Dispute.objects.filter(invoice_id=int(object_id), status=DisputeStatus.OPEN):
                    messages.warning(
                        request,
                        f"Disputed: the customer's bank opened dispute {dispute.gateway_reference} over "
                        f"{money_text(dispute.amount, dispute.currency)} ({dispute.reason or 'no reason given'}); "
                        "answer it in the Stripe dashboard.",
                    )
            response: HttpResponse = super().change_view(request, object_id, form_url, extra_context)
            return response

        def invoice_page_urls(self) -> list[Any]:
            def route(suffix: str, view: Any, name: str) -> Any:
                return path(f"<int:invoice_id>/{suffix}/", self.admin_site.admin_view(view), name=name)

            return [
                *super().invoice_page_urls(),
                route("record-payment", self.record_payment_view, "invoicing_invoice_record_payment"),
                route("apply-credit", self.apply_credit_view, "invoicing_invoice_apply_credit"),
                route("charge-now", self.charge_now_view, "invoicing_invoice_charge_now"),
            ]

        def payable_invoice(self, request: HttpRequest, invoice_id: int, tool: str) -> Invoice:
            invoice: Invoice = self.invoice_for_tool(request, invoice_id, tool)
            return invoice

        def record_payment_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
            invoice = self.payable_invoice(request, invoice_id, "record_payment")
            if invoice.status not in PAYABLE_STATUSES or invoice.amount_due <= 0:
                return self.refuse(request, invoice, "nothing is due: it takes no payment")
            return record_payment_page(self, request, customer=invoice.customer, invoice=invoice)

        def apply_credit_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
            invoice = self.payable_invoice(request, invoice_id, "apply_credit")
            credit = customer_credit_balance(customer=invoice.customer, currency=invoice.currency)
            if invoice.status not in PAYABLE_STATUSES or invoice.amount_due <= 0:
                return self.refuse(request, invoice, "nothing is due: no credit to apply")
            if request.method == "POST":
                applied = customer_credit_apply(invoice=invoice, actor=request.user, once=False)
                invoice.refresh_from_db()
                if applied <= 0:
                    messages.info(request, f"{invoice}: no customer credit applied (none left in {invoice.currency}).")
                else:
                    text = (
                        f"Applied {money_text(applied, invoice.currency)} of customer credit to {invoice}: "
                        f"amount due now {money_text(invoice.amount_due, invoice.currency)}."
                    )
                    self.log_change(request, invoice, text)
                    messages.success(request, text)
                return HttpResponseRedirect(reverse("admin:invoicing_invoice_change", args=[invoice.pk]))
            applied = min(credit, invoice.amount_due)
            return object_action_page(
                self,
                request,
                original=invoice,
                title=f"Apply customer credit to {invoice}",
                intro="The customer's credit in the invoice's currency settles as much of the amount due as it covers.",
                subject_rows=[
                    *self.invoice_rows(invoice),
                    (f"Customer credit ({invoice.currency})", money_text(credit, invoice.currency)),
                    ("Will apply", money_text(max(applied, Decimal(0)), invoice.currency)),
                    ("Amount due after", money_text(invoice.amount_due - max(applied, Decimal(0)), invoice.currency)),
                ],
                submit_label="Apply credit",
            )

        def charge_now_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
            invoice = self.payable_invoice(request, invoice_id, "charge_now")
            if invoice.status not in PAYABLE_STATUSES or invoice.amount_due <= 0:
                return self.refuse(request, invoice, "nothing is due: nothing to charge")
            method = (
                PaymentMethod.objects.filter(customer_id=invoice.customer_id, is_active=True, is_default=True)
                .order_by("pk")
                .first()
            )
            if request.method == "POST":
                due = invoice.amount_due
                attempt = invoice_charge_now(invoice=invoice, as_of=billing_today())
                invoice.refresh_from_db()
                if attempt is None:
                    messages.warning(
                        request, f"{invoice}: not charged — nothing due, or a charge is already under way."
                    )
                elif attempt.status == AttemptStatus.SUCCEEDED:
                    text = (
                        f"Charged {money_text(attempt.amount, attempt.currency)} "
                        f"to {attempt.payment_method or 'the card'} "
                        f"for {invoice}: amount due now {money_text(invoice.amount_due, invoice.currency)}."
                    )
                    self.log_change(request, invoice, text)
                    messages.success(request, text)
                elif attempt.status == AttemptStatus.FAILED:
                    text = (
                        f"The charge of {money_text(due, invoice.currency)} for {invoice} failed: "
                        f"{attempt.failure_message or attempt.decline_code}."
                    )
                    self.log_change(request, invoice, text)
                    messages.error(request, text)
                else:
                    text = (
                        f"Charging {money_text(attempt.amount, attempt.currency)} for {invoice}: "
                        "the gateway has not answered yet."
                    )
                    self.log_change(request, invoice, text)
                    messages.warning(request, text)
                return HttpResponseRedirect(reverse("admin:invoicing_invoice_change", args=[invoice.pk]))
            return object_action_page(
                self,
                request,
                original=invoice,
                title=f"Charge the saved card for {invoice}",
                intro="Charges the amount due to the customer's default saved payment method now. A declined card is "
                "recorded and the customer is told, as with automatic collection.",
                subject_rows=[
                    *self.invoice_rows(invoice),
                    ("Card", str(method) if method else "— no saved default method: the charge will fail"),
                    ("Will charge", money_text(invoice.amount_due, invoice.currency)),
                ],
                submit_label=f"Charge {money_text(invoice.amount_due, invoice.currency)} now",
            )

    admin.site.unregister(Invoice)
    admin.site.register(Invoice, InvoiceAdmin)


# --- the customer page ---------------------------------------------------------------------------------------


class AdjustCreditForm(forms.Form):
    amount = forms.DecimalField(
        max_digits=18, decimal_places=3, help_text="Positive adds credit, negative removes it (never below zero)."
    )
    currency = forms.ChoiceField(choices=CURRENCY_CHOICES)
    reason = forms.CharField(max_length=500, help_text="Kept in the credit ledger and shown to auditors.")


def _extend_customer_admin() -> None:
    base: Any = type(admin.site._registry[Customer])

    class CustomerAdmin(base):  # type: ignore[valid-type, misc]
        # the balance first: it is what a clerk looks at before anything else
        account_fields = (
            "account_balance",
            *base.account_fields,
            "payments_display",
            "payment_methods_display",
            "credit_ledger_display",
        )

        def get_object_tools(self, request: HttpRequest, customer: Customer) -> list[ObjectTool]:
            tools: list[ObjectTool] = super().get_object_tools(request, customer)
            if request.user.has_perm("payments.add_payment"):
                url = reverse("admin:customers_customer_record_payment", args=[customer.pk])
                tools.append(ObjectTool("record_payment", "Record payment", url, order=30))
            if request.user.has_perm("payments.add_creditledgerentry"):
                url = reverse("admin:customers_customer_adjust_credit", args=[customer.pk])
                tools.append(ObjectTool("adjust_credit", "Adjust credit", url, order=40))
            if request.user.has_perm("payments.add_paymentmethod") and customer.email:
                url = reverse("admin:customers_customer_send_method_link", args=[customer.pk])
                tools.append(ObjectTool("send_method_link", "Send add-card link", url, order=45))
            return tools

        def get_urls(self) -> list[Any]:
            def route(suffix: str, view: Any, name: str) -> Any:
                return path(f"<int:customer_id>/{suffix}/", self.admin_site.admin_view(view), name=name)

            return [
                route("record-payment", self.record_payment_view, "customers_customer_record_payment"),
                route("adjust-credit", self.adjust_credit_view, "customers_customer_adjust_credit"),
                route("send-method-link", self.send_method_link_view, "customers_customer_send_method_link"),
                *super().get_urls(),
            ]

        def record_payment_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
            if not request.user.has_perm("payments.add_payment"):
                raise PermissionDenied
            customer = get_object_or_404(Customer, pk=customer_id)
            return record_payment_page(self, request, customer=customer, invoice=None)

        def send_method_link_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
            """E-mail the customer a signed link (valid PAYMENTS_METHOD_LINK_MAX_AGE_DAYS) to the portal's
            add-a-card / SEPA mandate pages; no sign-in needed, nothing else of the customer reachable."""
            if not request.user.has_perm("payments.add_paymentmethod"):
                raise PermissionDenied
            customer = get_object_or_404(Customer, pk=customer_id)
            if request.method == "POST":
                email = add_method_link_email_send(
                    customer=customer, link_url=method_link_url(customer_id=customer.pk), sent_by=request.user
                )
                text = f"Add-card link e-mailed to {', '.join(email.to_emails) or customer.email}."
                self.log_change(request, customer, text)
                messages.success(request, text)
                return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[customer.pk]))
            return object_action_page(
                self,
                request,
                original=customer,
                title=f"Send {customer} a link to add a card",
                intro="The customer receives an e-mail (in their language) with a signed link to the portal page "
                f"where they save a card (3-D Secure) or a SEPA Direct Debit mandate. The link expires after "
                f"{settings.PAYMENTS_METHOD_LINK_MAX_AGE_DAYS} days.",
                subject_rows=[("E-mail", customer.email)],
                form=forms.Form(),
                submit_label="Send link",
            )

        def adjust_credit_view(self, request: HttpRequest, customer_id: int) -> HttpResponse:
            if not request.user.has_perm("payments.add_creditledgerentry"):
                raise PermissionDenied
            customer = get_object_or_404(Customer, pk=customer_id)
            form = AdjustCreditForm(request.POST or None, initial={"currency": customer.currency})
            if request.method == "POST" and form.is_valid():
                data = form.cleaned_data
                try:
                    entry = customer_credit_adjust(
                        customer=customer,
                        amount=data["amount"],
                        currency=data["currency"],
                        reason=data["reason"],
                        actor=request.user,
                    )
                except ApplicationError as exc:
                    form_application_error(form, exc)
                else:
                    balance = customer_credit_balance(customer=customer, currency=entry.currency)
                    verb = "Added" if entry.amount > 0 else "Removed"
                    text = (
                        f"{verb} {money_text(abs(entry.amount), entry.currency)} of credit "
                        f"({entry.reason}): credit balance now {money_text(balance, entry.currency)}."
                    )
                    self.log_change(request, customer, text)
                    messages.success(request, text)
                    return HttpResponseRedirect(reverse("admin:customers_customer_change", args=[customer.pk]))
            balances = customer_balances(customer=customer, as_of=billing_today())
            return object_action_page(
                self,
                request,
                original=customer,
                title=f"Adjust the credit of {customer}",
                intro="A manual entry in the customer's credit ledger, with its reason. Credit settles the customer's "
                "next invoices automatically.",
                subject_rows=[(f"Credit ({b.currency})", money_text(b.credit, b.currency)) for b in balances.values()],
                form=form,
                submit_label="Book adjustment",
            )

        @admin.display(description="balance")
        def account_balance(self, obj: Customer) -> str:
            balances = customer_balances(customer=obj, as_of=billing_today())
            rows = [
                (
                    balance.currency,
                    money_text(balance.due, balance.currency),
                    balance.open_count,
                    money_text(balance.overdue, balance.currency),
                    balance.overdue_count,
                    money_text(balance.credit, balance.currency),
                    money_text(balance.net, balance.currency),
                )
                for balance in balances.values()
            ]
            return account_table(
                ["Currency", "Due", "Open invoices", "Overdue", "Overdue invoices", "Credit", "Balance (due − credit)"],
                rows,
                '<tr><td>{}</td><td class="money" data-testid="balance-due">{}</td><td>{}</td>'
                '<td class="money" data-testid="balance-overdue">{}</td><td>{}</td>'
                '<td class="money" data-testid="balance-credit">{}</td><td class="money">{}</td></tr>',
                "Nothing due, no credit.",
            )

        @admin.display(description="payments")
        def payments_display(self, obj: Customer) -> str:
            payments = list(Payment.objects.filter(customer=obj).order_by("-received_on", "-pk")[:ACCOUNT_ROWS])
            rows = [
                (
                    reverse("admin:payments_payment_change", args=[payment.pk]),
                    f"#{payment.pk}",
                    date_text(payment.received_on),
                    money_text(payment.amount, payment.currency),
                    payment.get_method_display(),
                    payment.reference or "—",
                    payment.get_status_display(),
                )
                for payment in payments
            ]
            table = account_table(
                ["Payment", "Received", "Amount", "Method", "Reference", "Status"],
                rows,
                '<tr><td><a href="{}">{}</a></td><td>{}</td><td class="money">{}</td><td>{}</td><td>{}</td>'
                "<td>{}</td></tr>",
                "No payments yet.",
            )
            url = reverse("admin:payments_payment_changelist") + f"?customer__id__exact={obj.pk}"
            return format_html("{}{}", table, see_all(url, "All payments of this customer"))

        @admin.display(description="payment methods")
        def payment_methods_display(self, obj: Customer) -> str:
            methods = list(
                PaymentMethod.objects.filter(customer=obj, is_active=True).order_by("-is_default", "-pk")[:ACCOUNT_ROWS]
            )
            rows = [
                (
                    reverse("admin:payments_paymentmethod_change", args=[method.pk]),
                    str(method),
                    method.get_gateway_display(),
                    "default" if method.is_default else "",
                )
                for method in methods
            ]
            table = account_table(
                ["Method", "Gateway", ""],
                rows,
                '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
                "No saved payment method.",
            )
            url = reverse("admin:payments_paymentmethod_changelist") + f"?customer__id__exact={obj.pk}"
            return format_html("{}{}", table, see_all(url, "All payment methods"))

        @admin.display(description="credit ledger")
        def credit_ledger_display(self, obj: Customer) -> str:
            entries = list(CreditLedgerEntry.objects.filter(customer=obj).order_by("-created_at", "-pk")[:ACCOUNT_ROWS])
            rows = [
                (
                    f"{entry.created_at:%Y-%m-%d}",
                    entry.get_kind_display(),
                    money_text(entry.amount, entry.currency),
                    entry.reason,
                )
                for entry in entries
            ]
            table = account_table(
                ["Date", "Kind", "Amount", "Reason"],
                rows,
                '<tr><td>{}</td><td>{}</td><td class="money">{}</td><td>{}</td></tr>',
                "No credit entries.",
            )
            url = reverse("admin:payments_creditledgerentry_changelist") + f"?customer__id__exact={obj.pk}"
            return format_html("{}{}", table, see_all(url, "The whole credit ledger"))

    admin.site.unregister(Customer)
    admin.site.register(Customer, CustomerAdmin)


_extend_invoice_admin()
_extend_customer_admin()
