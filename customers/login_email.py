"""The portal's sign-in e-mail (a link or a staff invitation): rendered in the customer's language and sent with
Django's ``EmailMultiAlternatives`` — never stored, since it carries the sign-in secret (docs/decisions/portal.md).
Sent by the task ``customers.send_login_link`` (a customer's request) and by the admin's "Invite to portal"."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from core.formatting import SUPPORTED_LANGUAGES
from customers.portal_services import LoginLink
from customers.seller import seller_from_email, seller_profile

LANGUAGES = SUPPORTED_LANGUAGES  # the languages of documents, e-mails and the portal (core.formatting)


def login_url(token: str) -> str:
    return f"{settings.PORTAL_BASE_URL.rstrip('/')}{reverse('portal:login_confirm', args=[token])}"


def send_login_email(link: LoginLink, *, invite: bool = False) -> None:
    customer = link.portal_user.customer
    language = customer.language if customer.language in LANGUAGES else "en"
    expires_minutes = max(1, round((link.expires_at - timezone.now()).total_seconds() / 60))
    context = {
        "url": login_url(link.token),
        "customer_name": customer.display_legal_name,
        "email": link.portal_user.email,
        "invite": invite,
        "expires_minutes": expires_minutes,
        "expires_hours": round(expires_minutes / 60),
        "product_name": settings.PRODUCT_NAME,
        "seller_name": seller_profile().legal_name,
    }
    with translation.override(language):
        subject = " ".join(render_to_string("portal/emails/login_subject.txt", context).split())
        text = render_to_string("portal/emails/login.txt", context)
        html = render_to_string("portal/emails/login.html", {**context, "lang": language})
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=seller_from_email(),
        to=[link.portal_user.email],
        reply_to=list(settings.BILLING_REPLY_TO) or None,
    )
    message.attach_alternative(html, "text/html")
    message.send()
