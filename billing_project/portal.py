"""The customer portal's composition: the overview page (amount due, credit, next invoice, subscriptions), the
billing details and subscription pages, and the URLconf that mounts the apps' portal views under ``/portal/``.

Who may see what is decided once, in ``customers.portal.PortalView`` (every view here derives from it); each
app's portal selectors take that customer. Apps import leftwards, so the pages that need several apps live here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _
from django_countries import countries
from django_countries.fields import LazyTypedChoiceField  # type: ignore[attr-defined]

from core import formatting as fmt
from core.dates import billing_today
from customers import portal as customer_portal
from customers.models import Customer, PortalUser
from customers.portal import PortalView
from customers.portal_services import customer_update_billing_details
from invoicing import portal as invoicing_portal
from invoicing import portal_selfservice
from invoicing.portal import money, portal_amount_due, portal_invoices
from payments import portal as payments_portal
from payments import portal_methods, portal_wallet
from payments.selectors import customer_credit_balances
from subscriptions.models import CancellationReason, Price, Subscription, SubscriptionItem, SubscriptionStatus
from subscriptions.services import (
    CANCELLATION_COMMENT_MAX,
    SubscriptionError,
    subscription_cancel,
    subscription_cancel_undo,
)

CANCELABLE = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
LIVE = (*CANCELABLE, SubscriptionStatus.PAUSED)
SUBSCRIPTION_STATUS_LABELS: dict[str, Any] = {
    SubscriptionStatus.TRIALING: _("Trial"),
    SubscriptionStatus.ACTIVE: _("Active"),
    SubscriptionStatus.PAST_DUE: _("Payment overdue"),
    SubscriptionStatus.PAUSED: _("Paused"),
    SubscriptionStatus.CANCELED: _("Cancelled"),
    SubscriptionStatus.ENDED: _("Ended"),
}


# --- selectors ------------------------------------------------------------------------------------------


def portal_subscriptions(*, customer: Customer) -> QuerySet[Subscription]:
    items = SubscriptionItem.objects.filter(removed_on__isnull=True).select_related("price__product")
    return (
        Subscription.objects.filter(customer=customer)
        .prefetch_related(Prefetch("items", queryset=items, to_attr="current_items"))
        .order_by("-pk")
    )


def portal_subscription_get(*, customer: Customer, subscription_id: int) -> Subscription:
    subscription = portal_subscriptions(customer=customer).filter(pk=subscription_id).first()
    if subscription is None:
        raise Http404("no such subscription")
    return subscription


def portal_next_invoice_date(*, subscriptions: list[Subscription]) -> dt.date | None:
    dates = [s.next_billing_date for s in subscriptions if s.status in LIVE and s.next_billing_date]
    return min(dates) if dates else None


# The portal's words for CancellationReason (its labels are staff's, in English).
CANCELLATION_REASON_LABELS: dict[str, Any] = {
    CancellationReason.TOO_EXPENSIVE: _("It's too expensive"),
    CancellationReason.MISSING_FEATURES: _("Some features are missing"),
    CancellationReason.SWITCHED_SERVICE: _("I'm switching to another service"),
    CancellationReason.UNUSED: _("I don't use it enough"),
    CancellationReason.CUSTOMER_SERVICE: _("Customer service was less than expected"),
    CancellationReason.TOO_COMPLEX: _("It's too complicated"),
    CancellationReason.LOW_QUALITY: _("Quality was less than expected"),
    CancellationReason.OTHER: _("Another reason"),
}


class CancelForm(forms.Form):
    cancellation_reason = forms.ChoiceField(
        label=_("Why do you cancel?"),
        choices=[("", "—"), *CANCELLATION_REASON_LABELS.items()],
    )
    cancellation_comment = forms.CharField(
        label=_("Anything you want to tell us (optional)"),
        required=False,
        max_length=CANCELLATION_COMMENT_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


def _cancel_form(subscription: Subscription, data: Any = None) -> CancelForm:
    return CancelForm(data, auto_id=f"id_cancel_{subscription.pk}_%s")


def _subscription_rows(
    subscriptions: list[Subscription], *, bound_cancel: CancelForm | None = None, bound_for: int | None = None
) -> list[dict[str, Any]]:
    # One query, whatever the number of subscriptions: the currencies the portal offers plans in.
    plan_currencies = set(
        Price.objects.filter(self_service=True, active=True, usage_type="licensed")
        .values_list("unit_amount_currency", flat=True)
        .distinct()
    )
    rows = []
    for subscription in subscriptions:
        current = getattr(subscription, "current_items", [])
        items = [
            f"{item.price.product.public_name}{f' × {item.quantity}' if item.quantity != 1 else ''}" for item in current
        ]
        can_cancel = (
            settings.PORTAL_ALLOW_CANCEL and subscription.status in CANCELABLE and not subscription.cancel_at_period_end
        )
        rows.append(
            {
                "subscription": subscription,
                "items": items,
                "status_label": str(SUBSCRIPTION_STATUS_LABELS.get(subscription.status, subscription.status)),
                "period_last_day": subscription.current_period_end - dt.timedelta(days=1),
                "can_cancel": can_cancel,
                "cancel_form": (bound_cancel if bound_for == subscription.pk else None)
                or (_cancel_form(subscription) if can_cancel else None),
                "can_undo": subscription.cancel_at_period_end and subscription.status in CANCELABLE,
                "can_change": subscription.status in portal_selfservice.CHANGEABLE
                and subscription.currency in plan_currencies
                and sum(1 for item in current if not item.price.is_metered) == 1,
                "ends_on": subscription.current_period_end if subscription.cancel_at_period_end else None,
            }
        )
    return rows


# --- pages ----------------------------------------------------------------------------------------------


class OverviewView(PortalView):
    nav = "overview"

    def get(self, request: HttpRequest) -> HttpResponse:
        subscriptions = list(portal_subscriptions(customer=self.customer))
        due = portal_amount_due(customer=self.customer)
        credit = {c: a for c, a in customer_credit_balances(customer=self.customer).items() if a}
        recent = list(portal_invoices(customer=self.customer)[:5])
        return self.render(
            request,
            "portal/overview.html",
            {
                "amount_due": [money(amount, currency) for currency, amount in sorted(due.items())]
                or [money(0, self.customer.currency)],
                "has_due": bool(due),
                "credit": [money(amount, currency) for currency, amount in sorted(credit.items())]
                or [money(0, self.customer.currency)],
                "next_invoice_date": portal_next_invoice_date(subscriptions=subscriptions),
                "subscriptions": _subscription_rows([s for s in subscriptions if s.status in LIVE]),
                "recent": invoicing_portal.invoice_rows(recent, customer=self.customer),
            },
        )


class SubscriptionListView(PortalView):
    nav = "subscriptions"

    def get(self, request: HttpRequest) -> HttpResponse:
        subscriptions = list(portal_subscriptions(customer=self.customer))
        return self.render(
            request,
            "portal/subscriptions.html",
            {"rows": _subscription_rows(subscriptions), "allow_cancel": settings.PORTAL_ALLOW_CANCEL},
        )


class SubscriptionCancelView(PortalView):
    """Cancel at the end of the period, with the customer's reason (a choice) and comment, stored on the
    subscription for staff (``subscription_cancel``, as the admin's and the API's cancel at period end)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, subscription_id: int) -> HttpResponse:
        if not settings.PORTAL_ALLOW_CANCEL:
            raise Http404("cancelling in the portal is switched off")
        subscription = portal_subscription_get(customer=self.customer, subscription_id=subscription_id)
        assert self.access.portal_user is not None
        form = _cancel_form(subscription, request.POST)
        if not form.is_valid():
            subscriptions = list(portal_subscriptions(customer=self.customer))
            return self.render(
                request,
                "portal/subscriptions.html",
                {
                    "rows": _subscription_rows(subscriptions, bound_cancel=form, bound_for=subscription.pk),
                    "allow_cancel": settings.PORTAL_ALLOW_CANCEL,
                },
                status=400,
            )
        try:
            subscription = subscription_cancel(
                subscription=subscription,
                as_of=billing_today(),
                at_period_end=True,
                reason=f"requested in the customer portal by {self.access.portal_user.email}",
                cancellation_reason=form.cleaned_data["cancellation_reason"],
                cancellation_comment=form.cleaned_data["cancellation_comment"],
            )
        except SubscriptionError:
            messages.error(request, gettext("This subscription cannot be cancelled any more."))
        else:
            messages.success(
                request,
                gettext("Your subscription will end on %(date)s. You will not be billed after that.")
                % {"date": fmt.date(subscription.current_period_end, fmt.document_language(get_language()))},
            )
        return redirect(reverse("portal:subscriptions"))


class SubscriptionCancelUndoView(PortalView):
    """Take back a cancellation at period end before the period ends (``subscription_cancel_undo``)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, subscription_id: int) -> HttpResponse:
        subscription = portal_subscription_get(customer=self.customer, subscription_id=subscription_id)
        assert self.access.portal_user is not None
        try:
            subscription_cancel_undo(
                subscription=subscription,
                reason=f"taken back in the customer portal by {self.access.portal_user.email}",
            )
        except SubscriptionError:
            messages.error(request, gettext("This subscription cannot be renewed any more."))
        else:
            messages.success(request, gettext("Your subscription continues. Thank you for staying."))
        return redirect(reverse("portal:subscriptions"))


class BillingDetailsForm(forms.Form):
    legal_name = forms.CharField(label=_("Company or full name"), max_length=200, required=False)
    email = forms.EmailField(label=_("Billing e-mail"), max_length=254)
    cc_emails = forms.CharField(
        label=_("Further invoice recipients"),
        required=False,
        help_text=_("Comma-separated e-mail addresses."),
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    address_line1 = forms.CharField(label=_("Address line 1"), max_length=200, required=False)
    address_line2 = forms.CharField(label=_("Address line 2"), max_length=200, required=False)
    postal_code = forms.CharField(label=_("Postal code"), max_length=20, required=False)
    city = forms.CharField(label=_("City"), max_length=100, required=False)
    region = forms.CharField(label=_("Region / state"), max_length=100, required=False)
    country = LazyTypedChoiceField(label=_("Country"), choices=countries)
    tax_id = forms.CharField(
        label=_("VAT number"),
        max_length=40,
        required=False,
        help_text=_("EU VAT numbers are checked (format and check digit)."),
    )
    language = forms.ChoiceField(
        label=_("Language"),
        choices=settings.LANGUAGES,
        required=False,  # left out: the language stays as it is
        help_text=_("Of this portal, your invoices, credit notes and our e-mails."),
    )


class BillingDetailsView(PortalView):
    nav = "billing"

    def _page(self, request: HttpRequest, form: BillingDetailsForm, status: int = 200) -> HttpResponse:
        return self.render(request, "portal/billing_details.html", {"form": form}, status=status)

    def get(self, request: HttpRequest) -> HttpResponse:
        initial = {name: getattr(self.customer, name) for name in BillingDetailsForm.base_fields}
        initial["country"] = str(self.customer.country)
        return self._page(request, BillingDetailsForm(initial=initial))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = BillingDetailsForm(request.POST)
        if form.is_valid():
            try:
                data = {name: value for name, value in form.cleaned_data.items() if name != "language" or value}
                updated = customer_update_billing_details(customer=self.customer, data=data)
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                customer_portal.activate_customer_language(request, updated)  # the message in the chosen language
                messages.success(request, gettext("Your billing details were saved. New invoices will use them."))
                return redirect(reverse("portal:billing_details"))
        return self._page(request, form, status=400)


# --- demo -----------------------------------------------------------------------------------------------

DEMO_PORTAL_EMAIL = "portal@demo.example"


def seed_portal() -> int:
    """Give the first demo customer with invoices a portal user (``DEMO_PORTAL_EMAIL``); returns its id."""
    from invoicing.models import Invoice

    customer_id = (
        Invoice.objects.finalized().order_by("customer_id").values_list("customer_id", flat=True).first()
        or Customer.objects.order_by("pk").values_list("pk", flat=True).first()
    )
    if customer_id is None:
        raise RuntimeError("seed customers first")
    portal_user, _created = PortalUser.objects.update_or_create(
        email=DEMO_PORTAL_EMAIL, defaults={"customer_id": customer_id, "is_active": True}
    )
    return portal_user.pk


# --- URLs -----------------------------------------------------------------------------------------------

app_name = "portal"
urlpatterns = [
    path("", OverviewView.as_view(), name="overview"),
    path("login/", customer_portal.login_request, name="login"),
    path("login/sent/", customer_portal.login_sent, name="login_sent"),
    path("login/<str:token>/", customer_portal.login_confirm, name="login_confirm"),
    path("logout/", customer_portal.logout, name="logout"),
    path("link/<str:token>/", invoicing_portal.invoice_link, name="invoice_link"),
    path("invoices/", invoicing_portal.InvoiceListView.as_view(), name="invoices"),
    path("invoices/<str:number>/", invoicing_portal.InvoiceDetailView.as_view(), name="invoice_detail"),
    path("invoices/<str:number>/pdf/", invoicing_portal.InvoicePdfView.as_view(), name="invoice_pdf"),
    path("invoices/<str:number>/einvoice/", invoicing_portal.InvoiceEInvoiceView.as_view(), name="invoice_einvoice"),
    path("invoices/<str:number>/pay/", payments_portal.InvoicePayView.as_view(), name="invoice_pay"),
    path("credit-notes/", invoicing_portal.CreditNoteListView.as_view(), name="credit_notes"),
    path("quotes/", invoicing_portal.QuoteListView.as_view(), name="quotes"),
    path("quotes/<str:number>/", invoicing_portal.QuoteDetailView.as_view(), name="quote_detail"),
    path("quotes/<str:number>/pdf/", invoicing_portal.QuotePdfView.as_view(), name="quote_pdf"),
    path("credit-notes/<str:number>/pdf/", invoicing_portal.CreditNotePdfView.as_view(), name="credit_note_pdf"),
    path("payments/", payments_portal.PaymentListView.as_view(), name="payments"),
    path("credits/", portal_wallet.WalletView.as_view(), name="wallet"),
    path("payments/<int:payment_id>/", payments_portal.PaymentDetailView.as_view(), name="payment_detail"),
    path("payment-methods/", payments_portal.PaymentMethodListView.as_view(), name="payment_methods"),
    path(
        "payment-methods/<int:payment_method_id>/default/",
        payments_portal.PaymentMethodDefaultView.as_view(),
        name="payment_method_default",
    ),
    path(
        "payment-methods/<int:payment_method_id>/remove/",
        payments_portal.PaymentMethodRemoveView.as_view(),
        name="payment_method_remove",
    ),
    path("subscriptions/", SubscriptionListView.as_view(), name="subscriptions"),
    path("subscriptions/<int:subscription_id>/cancel/", SubscriptionCancelView.as_view(), name="subscription_cancel"),
    path("billing/", BillingDetailsView.as_view(), name="billing_details"),
    path(
        "subscriptions/<int:subscription_id>/cancel/undo/",
        SubscriptionCancelUndoView.as_view(),
        name="subscription_cancel_undo",
    ),
    path(
        "subscriptions/<int:subscription_id>/change/",
        portal_selfservice.SubscriptionChangeView.as_view(),
        name="subscription_change",
    ),
    path("documents/zip/", portal_selfservice.DocumentsZipView.as_view(), name="documents_zip"),
]
# Saving methods at Stripe (SetupIntents, SEPA mandates) and 3-D Secure of a pending charge (payments.portal_methods).
urlpatterns += [
    path("method-link/<str:token>/", portal_methods.method_link, name="payment_method_link"),
    path("payment-methods/add/card/", portal_methods.AddCardView.as_view(), name="payment_method_add_card"),
    path("payment-methods/add/sepa/", portal_methods.AddSepaView.as_view(), name="payment_method_add_sepa"),
    path("payment-methods/add/return/", portal_methods.SetupReturnView.as_view(), name="payment_method_setup_return"),
    path("payment-methods/added/", portal_methods.MethodAddedView.as_view(), name="payment_method_added"),
    path(
        "invoices/<str:number>/authenticate/",
        portal_methods.InvoiceAuthenticateView.as_view(),
        name="invoice_authenticate",
    ),
    path(
        "invoices/<str:number>/authenticate/return/",
        portal_methods.InvoiceAuthenticateReturnView.as_view(),
        name="invoice_authenticate_return",
    ),
]
