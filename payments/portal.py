"""Portal pages of payments: payment history and receipts, pay now, saved payment methods.

Reads go through the selectors below, which take the customer (ownership in one place). Writes go through
``payments.services`` (``payment_method_add``, ``payment_method_set_default``, ``invoice_charge_now``), plus the
one portal-only write here, ``portal_payment_method_remove``.

Pay now charges the card the payer chose (a saved one, or a new card entered in the form, saved first: the gateway
keeps the card, we keep its id). The chosen card becomes the customer's default — the card automatic collection
charges — only after it was charged successfully, and only for a signed-in customer: a declined card never becomes
the default, and a deep-link visitor (anyone the invoice e-mail reached) never changes it; their new card is kept
as a non-default saved card the customer can make default (docs/decisions/portal.md). With the sandbox gateway the
"card form" offers the sandbox's test cards (see ``SANDBOX_CARDS``); with Stripe, customers pay with the cards
already saved at Stripe — collecting a new card needs Stripe.js (Stripe Elements), which is loaded from Stripe's
servers and is not part of this offline build.
"""

from __future__ import annotations

import datetime as dt
import uuid
from functools import partial
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.dates import billing_today
from customers.models import Customer
from customers.portal import PortalView
from invoicing.portal import invoice_is_payable, money, portal_invoice_get
from payments.gateways.sandbox import CARD_DETAILS, DECLINE_TOKENS, SUCCESS_TOKENS
from payments.locks import lock_in_order
from payments.models import (
    AttemptStatus,
    Gateway,
    Payment,
    PaymentAllocation,
    PaymentMethod,
    PaymentMethodKind,
    PaymentStatus,
)
from payments.services import invoice_charge_now, payment_method_add, payment_method_set_default
from payments.stripe_methods import attempt_awaiting_action

# The sandbox's test cards, in the order the form lists them: (token, label).
SANDBOX_CARDS: tuple[tuple[str, Any], ...] = (
    ("pm_card_visa", _("Visa •••• 4242 — succeeds")),
    ("pm_card_mastercard", _("Mastercard •••• 4444 — succeeds")),
    ("pm_card_amex", _("American Express •••• 8431 — succeeds")),
    ("pm_card_chargeDeclined", _("Visa •••• 0002 — declined")),
    ("pm_card_chargeDeclinedInsufficientFunds", _("Visa •••• 9995 — insufficient funds")),
    ("pm_card_chargeDeclinedExpiredCard", _("Visa •••• 0069 — expired card")),
)
assert {token for token, _label in SANDBOX_CARDS} <= SUCCESS_TOKENS | set(DECLINE_TOKENS)

METHOD_LABELS: dict[str, Any] = {
    PaymentMethodKind.BANK_TRANSFER: _("Bank transfer"),
    PaymentMethodKind.CARD: _("Card"),
    PaymentMethodKind.DIRECT_DEBIT: _("SEPA Direct Debit"),
    PaymentMethodKind.CASH: _("Cash"),
    PaymentMethodKind.CHEQUE: _("Cheque"),
    PaymentMethodKind.OTHER: _("Other"),
}
PAYMENT_STATUS_LABELS: dict[str, Any] = {
    PaymentStatus.PENDING: _("Pending"),
    PaymentStatus.SUCCEEDED: _("Received"),
    PaymentStatus.FAILED: _("Failed"),
    PaymentStatus.REFUNDED: _("Refunded"),
    PaymentStatus.PARTIALLY_REFUNDED: _("Partially refunded"),
}

DECLINE_MESSAGES = {
    "generic_decline": _("Your card was declined."),
    "insufficient_funds": _("Your card has insufficient funds."),
    "expired_card": _("Your card has expired."),
    "processing_error": _("An error occurred while processing your card. Please try again."),
    "no_payment_method": _("There is no usable payment method."),
}


# --- selectors ------------------------------------------------------------------------------------------


def portal_payments(*, customer: Customer) -> QuerySet[Payment]:
    return (
        Payment.objects.filter(customer=customer)
        .prefetch_related(
            Prefetch(
                "allocations",
                queryset=PaymentAllocation.objects.select_related("invoice").only(
                    "pk", "payment_id", "amount", "amount_refunded", "currency", "invoice__number"
                ),
            )
        )
        .order_by("-received_on", "-pk")
    )


def portal_payment_get(*, customer: Customer, payment_id: int) -> Payment:
    payment = portal_payments(customer=customer).filter(pk=payment_id).first()
    if payment is None:
        raise Http404("no such payment")
    return payment


def portal_payment_methods(*, customer: Customer) -> QuerySet[PaymentMethod]:
    return PaymentMethod.objects.filter(customer=customer, is_active=True).order_by("-is_default", "-pk")


def portal_payment_method_get(*, customer: Customer, payment_method_id: int) -> PaymentMethod:
    method = portal_payment_methods(customer=customer).filter(pk=payment_method_id).first()
    if method is None:
        raise Http404("no such payment method")
    return method


def sandbox_enabled() -> bool:
    return bool(settings.PAYMENTS_DEFAULT_GATEWAY == Gateway.SANDBOX)


# --- writes ---------------------------------------------------------------------------------------------


def portal_sandbox_card_add(
    *, customer: Customer, card: str, today: dt.date | None = None, make_default: bool = True
) -> PaymentMethod:
    """Save a sandbox test card for the customer, as its default method unless ``make_default=False`` (the token
    gets a unique suffix, as the sandbox allows, so several customers can save "the same" test card)."""
    if card not in CARD_DETAILS or not sandbox_enabled():
        raise ValueError(f"not a sandbox test card: {card}")
    brand, last4 = CARD_DETAILS[card]
    year = (today or billing_today()).year + 3
    return payment_method_add(
        customer=customer,
        token=f"{card}:portal-{customer.pk}-{uuid.uuid4().hex[:12]}",
        gateway=Gateway.SANDBOX,
        brand=brand,
        last4=last4,
        exp_month=12,
        exp_year=year,
        make_default=make_default,
        default_if_first=make_default,
    )


def portal_payment_method_remove(*, payment_method: PaymentMethod) -> None:
    """Deactivate (never delete: past payments point at it); if it was the default, the newest other active
    method becomes the default."""
    with transaction.atomic():
        lock_in_order(customer_id=payment_method.customer_id)
        PaymentMethod.objects.filter(pk=payment_method.pk).update(is_active=False, is_default=False)
        successor = (
            PaymentMethod.objects.filter(customer_id=payment_method.customer_id, is_active=True).order_by("-pk").first()
        )
        has_default = PaymentMethod.objects.filter(
            customer_id=payment_method.customer_id, is_active=True, is_default=True
        ).exists()
        if successor is not None and not has_default:
            payment_method_set_default(payment_method=successor)
        if payment_method.gateway == Gateway.STRIPE:
            from payments.stripe_methods import stripe_method_detach

            transaction.on_commit(partial(stripe_method_detach, payment_method_id=payment_method.pk))


# --- views ----------------------------------------------------------------------------------------------


class PaymentListView(PortalView):
    nav = "payments"

    def get(self, request: HttpRequest) -> HttpResponse:
        page = Paginator(portal_payments(customer=self.customer), 25).get_page(request.GET.get("page"))
        rows = [
            {
                "payment": payment,
                "amount": money(payment.amount, payment.currency),
                "method_label": str(METHOD_LABELS.get(payment.method, payment.method)),
                "status_label": str(PAYMENT_STATUS_LABELS.get(payment.status, payment.status)),
                "invoices": [allocation.invoice.number for allocation in payment.allocations.all()],
            }
            for payment in page.object_list
        ]
        return self.render(request, "portal/payments/payment_list.html", {"page": page, "rows": rows})


class PaymentDetailView(PortalView):
    nav = "payments"

    def get(self, request: HttpRequest, payment_id: int) -> HttpResponse:
        payment = portal_payment_get(customer=self.customer, payment_id=payment_id)
        allocations = [
            {"invoice_number": allocation.invoice.number, "amount": money(allocation.net_amount, allocation.currency)}
            for allocation in payment.allocations.all()
        ]
        return self.render(
            request,
            "portal/payments/payment_detail.html",
            {
                "payment": payment,
                "amount": money(payment.amount, payment.currency),
                "method_label": str(METHOD_LABELS.get(payment.method, payment.method)),
                "status_label": str(PAYMENT_STATUS_LABELS.get(payment.status, payment.status)),
                "refunded": money(payment.amount_refunded, payment.currency) if payment.amount_refunded else "",
                "allocations": allocations,
            },
        )


class PayForm(forms.Form):
    method = forms.ChoiceField(label=_("Pay with"), widget=forms.RadioSelect)

    def __init__(self, *args: Any, saved: list[PaymentMethod], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices: list[tuple[str, Any]] = [
            (f"saved:{method.pk}", gettext("Saved card: %(card)s") % {"card": method}) for method in saved
        ]
        if sandbox_enabled():
            choices += [(f"sandbox:{token}", label) for token, label in SANDBOX_CARDS]
        field = self.fields["method"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices
        if choices:
            field.initial = choices[0][0]


class InvoicePayView(PortalView):
    """Pay an open invoice now. A deep-link visitor may pay the invoice of the link (with a new card only: the
    customer's saved cards are not theirs to see)."""

    nav = "invoices"
    link_allowed = True

    def _saved(self) -> list[PaymentMethod]:
        if self.access.is_link:
            return []
        return list(portal_payment_methods(customer=self.customer))

    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        invoice = portal_invoice_get(customer=self.customer, number=number, only_invoice_id=self.access.invoice_id)
        if not invoice_is_payable(invoice):
            return redirect(reverse("portal:invoice_detail", args=[invoice.number]))
        if attempt_awaiting_action(invoice_id=invoice.pk) is not None:
            # a charge of it waits for the customer's 3-D Secure: confirming it is the way to pay
            return redirect(reverse("portal:invoice_authenticate", args=[invoice.number]))
        form = PayForm(saved=self._saved())
        return self._page(request, invoice, form)

    def _page(self, request: HttpRequest, invoice: Any, form: PayForm, status: int = 200) -> HttpResponse:
        return self.render(
            request,
            "portal/payments/pay.html",
            {
                "invoice": invoice,
                "form": form,
                "amount_due": money(invoice.amount_due, invoice.currency),
                "sandbox": sandbox_enabled(),
            },
            status=status,
        )

    def post(self, request: HttpRequest, number: str) -> HttpResponse:
        invoice = portal_invoice_get(customer=self.customer, number=number, only_invoice_id=self.access.invoice_id)
        detail_url = reverse("portal:invoice_detail", args=[invoice.number])
        if not invoice_is_payable(invoice):
            messages.info(request, gettext("This invoice has nothing left to pay."))
            return redirect(detail_url)
        saved = self._saved()
        form = PayForm(request.POST, saved=saved)
        if not form.is_valid():
            return self._page(request, invoice, form, status=400)
        kind, _sep, value = form.cleaned_data["method"].partition(":")
        if kind == "saved":
            method = next(m for m in saved if str(m.pk) == value)
        else:
            method = portal_sandbox_card_add(customer=self.customer, card=value, make_default=False)
        attempt = invoice_charge_now(invoice=invoice, payment_method=method)
        if (
            attempt is not None
            and attempt.status == AttemptStatus.SUCCEEDED
            and not self.access.is_link
            and not method.is_default
        ):
            payment_method_set_default(payment_method=method)  # charged: it works, and the customer chose it
        if attempt is None:
            messages.info(request, gettext("Nothing was charged: the invoice is paid or a payment is in progress."))
        elif attempt.status == AttemptStatus.SUCCEEDED:
            messages.success(request, gettext("Thank you! Your payment was successful."))
        elif attempt.status == AttemptStatus.FAILED:
            reason = DECLINE_MESSAGES.get(attempt.decline_code) or attempt.failure_message or ""
            messages.error(request, gettext("The payment failed: %(reason)s") % {"reason": reason})
            return redirect(reverse("portal:invoice_pay", args=[invoice.number]))
        else:
            messages.info(request, gettext("Your payment is being processed. This page will show it when it is done."))
        return redirect(detail_url)


class SandboxCardForm(forms.Form):
    card = forms.ChoiceField(label=_("Test card"), choices=SANDBOX_CARDS)


class PaymentMethodListView(PortalView):
    nav = "payment_methods"

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._page(request, SandboxCardForm())

    def _page(self, request: HttpRequest, form: SandboxCardForm, status: int = 200) -> HttpResponse:
        return self.render(
            request,
            "portal/payments/payment_methods.html",
            {
                "methods": list(portal_payment_methods(customer=self.customer)),
                "form": form,
                "sandbox": sandbox_enabled(),
                "stripe": settings.PAYMENTS_DEFAULT_GATEWAY == Gateway.STRIPE,
            },
            status=status,
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        if not sandbox_enabled():
            raise Http404("cards are added with the gateway's own form")
        form = SandboxCardForm(request.POST)
        if not form.is_valid():
            return self._page(request, form, status=400)
        method = portal_sandbox_card_add(customer=self.customer, card=form.cleaned_data["card"])
        messages.success(request, gettext("Saved %(card)s as your default payment method.") % {"card": method})
        return redirect(reverse("portal:payment_methods"))


class PaymentMethodDefaultView(PortalView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, payment_method_id: int) -> HttpResponse:
        method = portal_payment_method_get(customer=self.customer, payment_method_id=payment_method_id)
        payment_method_set_default(payment_method=method)
        messages.success(request, gettext("%(card)s is now your default payment method.") % {"card": method})
        return redirect(reverse("portal:payment_methods"))


class PaymentMethodRemoveView(PortalView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, payment_method_id: int) -> HttpResponse:
        method = portal_payment_method_get(customer=self.customer, payment_method_id=payment_method_id)
        portal_payment_method_remove(payment_method=method)
        messages.success(request, gettext("Removed %(card)s.") % {"card": method})
        return redirect(reverse("portal:payment_methods"))
