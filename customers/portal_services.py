"""Writes of the customer portal's sign-in and billing details (docs/STYLE.md: plain, keyword-only, typed functions).

Sign-in links. ``portal_login_request`` makes a random token (``secrets.token_urlsafe(32)``, 256 bits), stores
only its SHA-256 and returns the raw token once, for the e-mail. ``portal_login_consume`` claims it with
``UPDATE … WHERE token_hash=… AND used_at IS NULL AND expires_at > now`` and accepts only when exactly one row
changed: of two clicks racing, one signs in. Requests are counted per e-mail address and per client IP in
Django's cache (fixed windows); the per-address count runs for unknown addresses too, so neither the answer nor
the limit tells whether an address has portal access.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.errors import NotAllowed
from customers.models import Customer, LoginToken, PortalUser


class PortalInviteError(NotAllowed, ValueError):
    pass


@dataclass(frozen=True)
class LoginLink:
    """The raw token exists only here, on its way into the e-mail."""

    portal_user: PortalUser
    token: str
    expires_at: dt.datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    return email.strip().lower()


# --- rate limit -----------------------------------------------------------------------------------------


def _hit(key: str, *, limit: int, window_seconds: int) -> bool:
    """Count one request under ``key``; False once more than ``limit`` happened in the current window."""
    cache.add(key, 0, timeout=window_seconds)
    try:
        count = cache.incr(key)
    except ValueError:  # the window expired between add and incr
        cache.add(key, 1, timeout=window_seconds)
        count = 1
    return count <= limit


def portal_login_rate_allows(*, email: str, ip: str | None) -> bool:
    """Both counters are always incremented, so a blocked address cannot be probed from many IPs for free."""
    window = settings.PORTAL_LOGIN_RATE_WINDOW_SECONDS
    email_key = "portal-login:email:" + hashlib.sha256(normalize_email(email).encode()).hexdigest()
    email_ok = _hit(email_key, limit=settings.PORTAL_LOGIN_RATE_PER_EMAIL, window_seconds=window)
    ip_ok = _hit(f"portal-login:ip:{ip or 'unknown'}", limit=settings.PORTAL_LOGIN_RATE_PER_IP, window_seconds=window)
    return email_ok and ip_ok


# --- sign-in links --------------------------------------------------------------------------------------


def _issue_token(*, portal_user: PortalUser, ip: str | None, lifetime: dt.timedelta, is_invite: bool) -> LoginLink:
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    row = LoginToken.objects.create(
        portal_user=portal_user,
        token_hash=token_hash(token),
        created_at=now,
        expires_at=now + lifetime,
        requested_ip=ip,
        is_invite=is_invite,
    )
    return LoginLink(portal_user=portal_user, token=token, expires_at=row.expires_at)


def portal_login_request(*, email: str, ip: str | None) -> LoginLink | None:
    """A sign-in link for the active portal user with this e-mail, or None when there is none. The caller
    answers the same in both cases (and checks the rate limit first)."""
    portal_user = (
        PortalUser.objects.select_related("customer")
        .filter(email__iexact=normalize_email(email), is_active=True)
        .first()
    )
    if portal_user is None:
        return None
    lifetime = dt.timedelta(minutes=settings.PORTAL_LOGIN_TOKEN_MAX_AGE_MINUTES)
    return _issue_token(portal_user=portal_user, ip=ip, lifetime=lifetime, is_invite=False)


def portal_login_token_is_valid(*, token: str) -> bool:
    """Whether the link would sign in now (the confirmation page asks before consuming it, because mail
    scanners open links; a GET must not use up the single use)."""
    return LoginToken.objects.filter(
        token_hash=token_hash(token),
        used_at__isnull=True,
        expires_at__gt=timezone.now(),
        portal_user__is_active=True,
    ).exists()


def portal_login_consume(*, token: str) -> PortalUser | None:
    """Use the link once: the portal user it signs in, or None (unknown, tampered, used, expired, inactive)."""
    digest = token_hash(token)
    now = timezone.now()
    with transaction.atomic():
        # The claim filters on the token row's own columns only. A condition through a join (the portal user's
        # is_active) makes Django write ``WHERE id IN (SELECT … JOIN …)``; PostgreSQL re-checks only that ``id IN``
        # on the row a concurrent claim just changed, not ``used_at IS NULL``, so four simultaneous POSTs of one
        # link signed in four browsers. Here the waiting UPDATEs re-read used_at and change nothing.
        claimed = LoginToken.objects.filter(token_hash=digest, used_at__isnull=True, expires_at__gt=now).update(
            used_at=now
        )
        if claimed != 1:
            return None
        portal_user = (
            PortalUser.objects.select_related("customer")
            .filter(login_tokens__token_hash=digest, is_active=True)
            .first()
        )
        if portal_user is None:  # deactivated: the link signs in nobody and stays unused
            transaction.set_rollback(True)
            return None
        PortalUser.objects.filter(pk=portal_user.pk).update(last_login_at=now)
    portal_user.last_login_at = now
    return portal_user


def portal_user_invite(*, customer: Customer, email: str | None = None) -> LoginLink:
    """Staff invite: make sure ``email`` (default: the billing e-mail) is an active portal user of ``customer``
    and issue a sign-in link valid for ``PORTAL_INVITE_MAX_AGE_HOURS``. Raises ``PortalInviteError`` when the
    address already belongs to another customer's portal user."""
    address = normalize_email(email or customer.email)
    if not address:
        raise PortalInviteError(f"{customer} has no e-mail address to invite")
    now = timezone.now()
    with transaction.atomic():
        portal_user = PortalUser.objects.select_for_update().filter(email__iexact=address).first()
        if portal_user is not None and portal_user.customer_id != customer.pk:
            raise PortalInviteError(f"{address} already has portal access for another customer")
        if portal_user is None:
            portal_user = PortalUser.objects.create(customer=customer, email=address, invited_at=now)
        else:
            PortalUser.objects.filter(pk=portal_user.pk).update(is_active=True, invited_at=now)
            portal_user.is_active, portal_user.invited_at = True, now
        portal_user.customer = customer
        lifetime = dt.timedelta(hours=settings.PORTAL_INVITE_MAX_AGE_HOURS)
        return _issue_token(portal_user=portal_user, ip=None, lifetime=lifetime, is_invite=True)


def portal_login_tokens_purge(*, now: dt.datetime | None = None) -> int:
    """Delete tokens that expired more than a day ago (used or not); they can never sign in again."""
    cutoff = (now or timezone.now()) - dt.timedelta(days=1)
    deleted, _ = LoginToken.objects.filter(expires_at__lt=cutoff).delete()
    return deleted


# --- billing details ------------------------------------------------------------------------------------

BILLING_DETAIL_FIELDS = (
    "legal_name",
    "email",
    "cc_emails",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "region",
    "country",
    "tax_id",
    "language",
)


def customer_update_billing_details(*, customer: Customer, data: dict[str, object]) -> Customer:
    """Change what a customer may edit in the portal, validated as the admin validates it (``full_clean``:
    field rules, the VAT number check and normalisation, the reverse-charge rule). Raises ``ValidationError``
    keyed by field; nothing is saved then. Issued invoices keep their snapshot of the old details."""
    unknown = set(data) - set(BILLING_DETAIL_FIELDS)
    if unknown:
        raise ValueError(f"not editable in the portal: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        for field_name, value in data.items():
            setattr(locked, field_name, value)
        # Fields the portal cannot edit are excluded from field validation; Customer.clean() (VAT check and
        # normalisation, reverse charge needs a tax id) runs in full.
        locked.full_clean(exclude=[f.name for f in Customer._meta.fields if f.name not in BILLING_DETAIL_FIELDS])
        locked.save(update_fields=[*BILLING_DETAIL_FIELDS, "updated_at"])
    return locked
