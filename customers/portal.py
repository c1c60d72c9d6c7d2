"""The customer portal's sign-in, and the one place that decides who a portal request is for.

Who: ``portal_access(request)`` reads the session and returns a ``PortalAccess`` — a signed-in portal user
(the whole customer), or a deep-link visitor (one invoice of one customer, no sign-in) — or None. Every portal
view derives from ``PortalView``, which resolves it once, 302s to the sign-in page without it, and hands
``self.access.customer`` to the selectors of each app, which filter by it (and by ``access.invoice_id`` for a
deep link). Portal state lives under its own session keys, apart from the staff admin's login.

Sign-in e-mail: sent by the task ``customers.send_login_link`` with Django's ``EmailMultiAlternatives``, not
through the outbox (``notifications.services.email_queue``), which stores each message's body in ``OutboundEmail``
— a stored sign-in link would defeat keeping only the token's hash. The request only queues the task, with the
address, for known and unknown addresses alike (the worker looks the address up and makes the token), so the
answer's time does not tell whether an address has portal access. A lost sign-in e-mail is not retried; the
customer asks for a new link (they expire in 15 minutes anyway).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views import View

from core.audit import audit_as_customer
from core.errors import ApplicationError, Unavailable, log_application_error
from customers.login_email import LANGUAGES
from customers.models import Customer, PortalUser
from customers.portal_services import (
    portal_login_consume,
    portal_login_rate_allows,
    portal_login_token_is_valid,
)
from customers.tasks import send_login_link

logger = logging.getLogger(__name__)

SESSION_USER_KEY = "portal_user_id"
SESSION_LINK_KEY = "portal_link"
SESSION_NEXT_KEY = "portal_next"
# A deep link's visit lasts this long in the session; the signed link itself lives PORTAL_LINK_MAX_AGE_DAYS.
LINK_GRANT_SECONDS = 3600


@dataclass(frozen=True)
class PortalAccess:
    customer: Customer
    portal_user: PortalUser | None = None
    invoice_id: int | None = None  # a deep-link visit: this invoice only

    @property
    def is_link(self) -> bool:
        return self.portal_user is None


def portal_access(request: HttpRequest) -> PortalAccess | None:
    user_id = request.session.get(SESSION_USER_KEY)
    if user_id is not None:
        portal_user = PortalUser.objects.select_related("customer").filter(pk=user_id, is_active=True).first()
        if portal_user is not None:
            return PortalAccess(customer=portal_user.customer, portal_user=portal_user)
        portal_session_end(request)  # deactivated meanwhile: the portal session ends now
        return None
    grant = request.session.get(SESSION_LINK_KEY)
    if isinstance(grant, dict) and grant.get("expires", 0) > timezone.now().timestamp():
        customer = Customer.objects.filter(pk=int(grant.get("customer_id") or 0)).first()
        if customer is not None:
            return PortalAccess(customer=customer, invoice_id=int(grant["invoice_id"]))
    return None


def portal_session_end(request: HttpRequest) -> None:
    """End the portal's part of the session only: the same browser may be signed in to the staff admin under the
    same session (django.contrib.auth's keys), and flushing it logged the staff member out of the admin too."""
    for key in (SESSION_USER_KEY, SESSION_LINK_KEY, SESSION_NEXT_KEY):
        request.session.pop(key, None)
    request.session.cycle_key()


def portal_link_grant(request: HttpRequest, *, invoice_id: int, customer_id: int) -> None:
    """Remember a verified deep link for this browser: that invoice, for ``LINK_GRANT_SECONDS``."""
    request.session.cycle_key()
    request.session[SESSION_LINK_KEY] = {
        "invoice_id": invoice_id,
        "customer_id": customer_id,
        "expires": timezone.now().timestamp() + LINK_GRANT_SECONDS,
    }


def activate_customer_language(request: HttpRequest, customer: Customer) -> None:
    language = customer.language if customer.language in LANGUAGES else settings.LANGUAGE_CODE
    translation.activate(language)
    request.LANGUAGE_CODE = language  # type: ignore[attr-defined]


class PortalView(View):
    """Base of every page behind the sign-in. ``link_allowed`` views also serve a deep-link visitor (the
    invoice views check that it is *their* invoice through the selectors)."""

    link_allowed = False
    access: PortalAccess
    nav = ""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        access = portal_access(request)
        if access is None or (access.is_link and not self.link_allowed):
            if request.method == "GET":
                request.session[SESSION_NEXT_KEY] = request.get_full_path()
            return redirect(reverse("portal:login"))
        self.access = access
        activate_customer_language(request, access.customer)
        # Whatever the customer changes here (billing details, cards, pay now) is audited with them as the actor,
        # even when the same browser is signed in to the staff admin (core/audit.py).
        with audit_as_customer(access.customer, portal_user=access.portal_user):
            try:
                return super().dispatch(request, *args, **kwargs)
            except ApplicationError as exc:
                return self.application_error(request, exc)

    def application_error(self, request: HttpRequest, exc: ApplicationError) -> HttpResponse:
        """A service's refusal as a page with its message and status (400, 404, 409), not a 500. The message is
        the service's own; a failure of ours (``Unavailable``: the gateway, the PDF renderer) is logged and shown
        without its details, which are for staff."""
        log_application_error(exc, where=request.path)
        message = (
            gettext("A service we depend on is not available; please try again later.")
            if isinstance(exc, Unavailable)
            else exc.message
        )
        return self.render(request, "portal/error.html", {"message": message}, status=exc.http_status)

    @property
    def customer(self) -> Customer:
        return self.access.customer

    def render(self, request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
        return render(
            request,
            template,
            {"access": self.access, "customer": self.access.customer, "nav": self.nav, **context},
            status=status,
        )


# --- sign-in --------------------------------------------------------------------------------------------


class LoginRequestForm(forms.Form):
    email = forms.EmailField(
        label=_("E-mail address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR: behind a reverse proxy it must be the client's address (gunicorn with
    ``--forwarded-allow-ips`` and a proxy that sets it), or every visitor shares the proxy's IP limit."""
    return request.META.get("REMOTE_ADDR") or None


def _safe_next(request: HttpRequest) -> str:
    target = request.session.pop(SESSION_NEXT_KEY, "") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False):
        return str(target)
    return reverse("portal:overview")


def login_request(request: HttpRequest) -> HttpResponse:
    """Ask for a sign-in link. The answer is the same page whether or not the address has portal access."""
    if portal_access(request) is not None and not request.session.get(SESSION_LINK_KEY):
        return redirect(reverse("portal:overview"))
    form = LoginRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        ip = client_ip(request)
        if not portal_login_rate_allows(email=email, ip=ip):
            form.add_error(None, _("Too many sign-in requests. Please wait a few minutes and try again."))
            return render(request, "portal/login.html", {"form": form}, status=429)
        _queue_login_link(email=email, ip=ip)
        return redirect(reverse("portal:login_sent"))
    return render(request, "portal/login.html", {"form": form})


def _queue_login_link(*, email: str, ip: str | None) -> None:
    """The same work for every address: the request never looks the address up (docs/decisions/portal.md)."""
    try:
        send_login_link.delay(email=email, ip=ip)
    except Exception:  # the broker is down: no e-mail; the customer asks again, the answer stays the same
        logger.warning("sign-in e-mail not queued: the broker is unreachable", exc_info=True)


def login_sent(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/login_sent.html", {"expires_minutes": settings.PORTAL_LOGIN_TOKEN_MAX_AGE_MINUTES})


def login_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button; POST signs in. Mail scanners that open links must not use up the single use."""
    if request.method == "POST":
        portal_user = portal_login_consume(token=token)
        if portal_user is None:
            return render(request, "portal/login_invalid.html", status=400)
        next_url = _safe_next(request)
        request.session.pop(SESSION_LINK_KEY, None)
        request.session.cycle_key()  # a new session id at sign-in: no fixation
        request.session[SESSION_USER_KEY] = portal_user.pk
        request.session.set_expiry(settings.PORTAL_SESSION_MAX_AGE_SECONDS)
        activate_customer_language(request, portal_user.customer)
        return redirect(next_url)
    if not portal_login_token_is_valid(token=token):
        return render(request, "portal/login_invalid.html", status=400)
    # The form posts back to this URL; the token stays out of the template context, whose repr Django's template
    # engine logs at DEBUG when a variable lookup fails (a valid sign-in link in the logs).
    return render(request, "portal/login_confirm.html")


def logout(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return redirect(reverse("portal:overview"))
    portal_session_end(request)
    return redirect(reverse("portal:login") + "?signed_out=1")
