"""Portal pages for saving payment methods at Stripe and for completing 3-D Secure of an off-session charge.

- Add a card: a SetupIntent (the customer at Stripe created if missing) confirmed by Stripe.js's Payment Element
  in the browser (``static/payments/portal-stripe.js``; Stripe.js from ``STRIPE_JS_URL``). Stripe sends the browser
  back to the return page with the SetupIntent id; the server reads the SetupIntent from Stripe and saves its
  method (``payments.stripe_methods.setup_intent_complete``) — the browser's word is never taken for anything.
- SEPA Direct Debit: IBAN, account holder and e-mail in a form of ours; the IBAN is checked (python-stdnum)
  before Stripe is called; the mandate text is shown above the button and e-mailed with the mandate reference.
- Staff's "send add-card link" (admin) e-mails ``/portal/method-link/<token>/``: a signed, expiring link that
  opens these two pages for that one customer without a sign-in (nothing else of the customer).
- Authenticate: the link in the "please confirm the payment" e-mail (an invoice deep link, purpose
  ``authenticate``) opens a page that runs ``stripe.confirmCardPayment`` on that invoice's pending PaymentIntent;
  its return page reads the intent and books the outcome (the webhook does the same; whichever is second finds it
  done).

Default method (switch between card and SEPA) and remove are the existing views of ``payments.portal``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from core import formatting as fmt
from core.audit import audit_as_customer
from core.errors import ApplicationError, InvalidInput
from core.links import InvalidLink, method_link_verify
from customers.models import Customer
from customers.portal import PortalAccess, PortalView, activate_customer_language, client_ip, portal_access
from invoicing.portal import portal_invoice_get
from payments.models import AttemptStatus, Gateway, MethodType, PaymentAttempt
from payments.notifications import sepa_mandate_text
from payments.stripe_methods import (
    attempt_awaiting_action,
    payment_intent_client_secret,
    payment_intent_refresh,
    sepa_mandate_create,
    setup_intent_complete,
    setup_intent_start,
)

SESSION_METHOD_LINK_KEY = "portal_method_link"
METHOD_LINK_GRANT_SECONDS = 3600


def stripe_enabled() -> bool:
    return bool(settings.PAYMENTS_DEFAULT_GATEWAY == Gateway.STRIPE)


def method_link(request: HttpRequest, token: str) -> HttpResponse:
    """Staff's e-mailed link: verify it, remember this customer's add-a-method pages for this browser for an
    hour, and open the card page."""
    try:
        customer_id = method_link_verify(token)
    except InvalidLink:
        return render(request, "portal/link_invalid.html", status=404)
    if not Customer.objects.filter(pk=customer_id).exists():
        return render(request, "portal/link_invalid.html", status=404)
    access = portal_access(request)
    if access is not None and not access.is_link and access.customer.pk == customer_id:
        return redirect(reverse("portal:payment_method_add_card"))
    request.session.cycle_key()
    request.session[SESSION_METHOD_LINK_KEY] = {
        "customer_id": customer_id,
        "expires": timezone.now().timestamp() + METHOD_LINK_GRANT_SECONDS,
    }
    return redirect(reverse("portal:payment_method_add_card"))


class MethodPortalView(PortalView):
    """A signed-in portal user, or a visitor of staff's add-a-method link (this customer's method pages only)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not stripe_enabled():
            raise Http404("payment methods are saved with the sandbox's own form")
        access = portal_access(request)
        if access is None or access.is_link:
            grant = request.session.get(SESSION_METHOD_LINK_KEY)
            if isinstance(grant, dict) and grant.get("expires", 0) > timezone.now().timestamp():
                customer = Customer.objects.filter(pk=int(grant.get("customer_id") or 0)).first()
                if customer is not None:
                    return self._dispatch_as(request, PortalAccess(customer=customer), *args, **kwargs)
        return super().dispatch(request, *args, **kwargs)

    def _dispatch_as(self, request: HttpRequest, access: PortalAccess, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.access = access
        activate_customer_language(request, access.customer)
        with audit_as_customer(access.customer, portal_user=None):
            try:
                handler = getattr(self, request.method.lower() if request.method else "get", None)
                if handler is None or request.method is None or request.method.lower() not in self.http_method_names:
                    return self.http_method_not_allowed(request, *args, **kwargs)
                response: HttpResponseBase = handler(request, *args, **kwargs)
                return response
            except ApplicationError as exc:
                return self.application_error(request, exc)

    def done_url(self) -> str:
        return reverse("portal:payment_methods") if not self.access.is_link else reverse("portal:payment_method_added")


class AddCardView(MethodPortalView):
    nav = "payment_methods"

    def get(self, request: HttpRequest) -> HttpResponse:
        intent = setup_intent_start(customer=self.customer, method_type=MethodType.CARD)
        return self.render(
            request,
            "portal/payments/add_card.html",
            {
                "client_secret": intent["client_secret"],
                "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
                "stripe_js_url": settings.STRIPE_JS_URL,
                "return_url": request.build_absolute_uri(reverse("portal:payment_method_setup_return")),
                "language": get_language(),
            },
        )


class SetupReturnView(MethodPortalView):
    """Where Stripe.js sends the browser after confirming (``?setup_intent=seti_…``, Stripe's own parameter)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        setup_intent_id = request.GET.get("setup_intent", "")
        try:
            method = setup_intent_complete(customer=self.customer, setup_intent_id=setup_intent_id)
        except InvalidInput as exc:
            messages.error(request, gettext("The card was not saved: %(reason)s") % {"reason": exc.message})
            return redirect(reverse("portal:payment_method_add_card"))
        messages.success(request, gettext("Saved %(card)s as your default payment method.") % {"card": method})
        return redirect(self.done_url())


class SepaMandateForm(forms.Form):
    account_holder = forms.CharField(label=_("Account holder"), max_length=200)
    iban = forms.CharField(label=_("IBAN"), max_length=42, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    email = forms.EmailField(label=_("E-mail address"), max_length=254)


class AddSepaView(MethodPortalView):
    nav = "payment_methods"

    def _page(self, request: HttpRequest, form: SepaMandateForm, status: int = 200) -> HttpResponse:
        return self.render(
            request,
            "portal/payments/add_sepa.html",
            {"form": form, "mandate_text": sepa_mandate_text(get_language() or "en")},
            status=status,
        )

    def get(self, request: HttpRequest) -> HttpResponse:
        customer = self.customer
        return self._page(
            request,
            SepaMandateForm(
                initial={"account_holder": customer.display_legal_name or customer.name, "email": customer.email}
            ),
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        form = SepaMandateForm(request.POST)
        if not form.is_valid():
            return self._page(request, form, status=400)
        try:
            method = sepa_mandate_create(
                customer=self.customer,
                iban=form.cleaned_data["iban"],
                account_holder=form.cleaned_data["account_holder"],
                email=form.cleaned_data["email"],
                ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", ""),
            )
        except InvalidInput as exc:
            if exc.field in form.fields:
                form.add_error(exc.field, gettext("This IBAN is not valid.") if exc.field == "iban" else exc.message)
            else:
                form.add_error(None, exc.message)
            return self._page(request, form, status=400)
        messages.success(
            request,
            gettext("SEPA Direct Debit is now your default payment method. Mandate reference: %(reference)s")
            % {"reference": method.mandate_reference},
        )
        return redirect(self.done_url())


class MethodAddedView(MethodPortalView):
    """The end of a link visitor's visit (they have no method list to go back to)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render(request, "portal/payments/method_added.html", {})


# --- 3-D Secure of an off-session charge ----------------------------------------------------------------


class InvoiceAuthenticateView(PortalView):
    nav = "invoices"
    link_allowed = True

    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        invoice = portal_invoice_get(customer=self.customer, number=number, only_invoice_id=self.access.invoice_id)
        attempt = attempt_awaiting_action(invoice_id=invoice.pk)
        if attempt is None or attempt.payment_method is None:
            messages.info(request, gettext("There is no payment waiting for your confirmation."))
            return redirect(reverse("portal:invoice_detail", args=[invoice.number]))
        return self.render(
            request,
            "portal/payments/authenticate.html",
            {
                "invoice": invoice,
                "amount": _money(attempt.amount, attempt.currency),
                "method": attempt.payment_method,
                "client_secret": payment_intent_client_secret(attempt=attempt),
                "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
                "stripe_js_url": settings.STRIPE_JS_URL,
                "return_url": request.build_absolute_uri(
                    reverse("portal:invoice_authenticate_return", args=[invoice.number])
                ),
            },
        )


class InvoiceAuthenticateReturnView(PortalView):
    link_allowed = True

    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        invoice = portal_invoice_get(customer=self.customer, number=number, only_invoice_id=self.access.invoice_id)
        attempt = attempt_awaiting_action(invoice_id=invoice.pk)
        if attempt is not None:
            attempt = payment_intent_refresh(attempt=attempt)
            if attempt.status == AttemptStatus.SUCCEEDED:
                messages.success(request, gettext("Thank you! Your payment was successful."))
            elif attempt.status == AttemptStatus.FAILED:
                messages.error(request, gettext("The payment was not confirmed. Please pay with another card."))
            else:
                messages.info(request, gettext("The payment still waits for your confirmation."))
        return redirect(reverse("portal:invoice_detail", args=[invoice.number]))


def invoice_debit_notes(invoice: Any) -> list[str]:
    """The portal invoice page's note for a SEPA debit in flight: "will be debited on or after …" with the
    mandate reference (one query)."""
    attempt = (
        PaymentAttempt.objects.filter(
            invoice_id=invoice.pk, status=AttemptStatus.PROCESSING, debit_on_or_after__isnull=False
        )
        .select_related("payment_method")
        .first()
    )
    if attempt is None or attempt.payment_method is None or attempt.debit_on_or_after is None:
        return []
    language = fmt.document_language(get_language())
    return [
        gettext(
            "%(amount)s will be debited on or after %(date)s from your account •••• %(last4)s "
            "(SEPA Direct Debit, mandate reference %(reference)s)."
        )
        % {
            "amount": fmt.money(attempt.amount, attempt.currency, language),
            "date": fmt.date(attempt.debit_on_or_after, language),
            "last4": attempt.payment_method.last4,
            "reference": attempt.payment_method.mandate_reference,
        }
    ]


def _money(amount: Any, currency: str) -> str:
    from invoicing.portal import money

    return str(money(amount, currency))
