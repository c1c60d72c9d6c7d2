"""Staff sign-in to the admin: two-factor authentication (TOTP and recovery codes, django-otp), login throttling
and session expiry (docs/SECURITY.md, "Staff accounts").

- **Who needs a second factor.** With ``OTP_REQUIRED`` on (the default; the demo and the test settings turn it off),
  superusers and members of ``OTP_REQUIRED_GROUPS`` (Billing admin, Billing clerk) must verify a code after their
  password. A staff member without a confirmed device is sent to the setup page (QR code and secret, then a code
  to confirm it, then recovery codes shown once); one with a device is asked for a code at every sign-in. Auditors
  (read-only) are not forced, but once they set up a device it is asked for like anyone else's.
- **Throttling.** Failed password and code attempts count per username and per client IP in Django's cache for
  ``ADMIN_LOGIN_RATE_WINDOW_SECONDS``; at ``ADMIN_LOGIN_RATE_PER_USERNAME`` / ``ADMIN_LOGIN_RATE_PER_IP`` every
  attempt is refused with the same message, whether or not the username exists and whether or not the password
  is right (so the answer tells nothing). django-otp's own per-device throttling comes on top.
- **Sessions.** A staff session ends ``ADMIN_SESSION_MAX_AGE_SECONDS`` after sign-in, or after
  ``ADMIN_SESSION_IDLE_SECONDS`` without a request, whatever the cookie says.

Enforcement is one middleware (``StaffSecurityMiddleware``, after django-otp's ``OTPMiddleware``) so that every
admin URL — model admins, process screens, reports — is covered, including ones added later.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import django_otp
import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from billing_project.staff_groups import BILLING_ADMIN, BILLING_CLERK
from customers.portal import client_ip

# Staff in these groups (and superusers) must use a second factor when OTP_REQUIRED is on.
OTP_REQUIRED_GROUPS = (BILLING_ADMIN, BILLING_CLERK)
RECOVERY_CODES = 10
TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"
THROTTLED_MESSAGE = (
    "Too many failed sign-in attempts for this account or from this address. Please wait {minutes} minutes and "
    "try again."
)
SESSION_STARTED_KEY = "staff_session_started"
SESSION_SEEN_KEY = "staff_session_seen"
SESSION_SETUP_KEY = "staff_otp_setup_key"
# The "last seen" time is written at most this often (a session write per admin request would be wasteful).
SEEN_RESOLUTION_SECONDS = 60

# --- who must use a second factor ---------------------------------------------------------------------------


def otp_required_for(user: Any) -> bool:
    """Whether ``user`` must verify a second factor to use the admin (regardless of OTP_REQUIRED)."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    return bool(user.is_superuser or user.groups.filter(name__in=OTP_REQUIRED_GROUPS).exists())


def has_confirmed_device(user: Any) -> bool:
    return bool(django_otp.user_has_device(user, confirmed=True))


# --- throttling ---------------------------------------------------------------------------------------------


def _throttle_keys(username: str, ip: str | None) -> list[tuple[str, int]]:
    digest = hashlib.sha256(username.strip().casefold().encode()).hexdigest()[:32]
    keys = [(f"admin-login:user:{digest}", settings.ADMIN_LOGIN_RATE_PER_USERNAME)]
    if ip:
        keys.append((f"admin-login:ip:{ip}", settings.ADMIN_LOGIN_RATE_PER_IP))
    return keys


def login_throttled(*, username: str, ip: str | None) -> bool:
    """True when the username or the address has used up its failed attempts in the current window."""
    return any((cache.get(key) or 0) >= limit for key, limit in _throttle_keys(username, ip))


def login_failure_record(*, username: str, ip: str | None) -> None:
    """Count a failed password or code. The window starts at the first failure (``cache.add``)."""
    for key, _limit in _throttle_keys(username, ip):
        cache.add(key, 0, settings.ADMIN_LOGIN_RATE_WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, settings.ADMIN_LOGIN_RATE_WINDOW_SECONDS)


def login_success_record(*, username: str) -> None:
    """A complete sign-in clears the username's count (never the address's: one good account must not unlock
    guessing at the others from the same address)."""
    cache.delete(_throttle_keys(username, None)[0][0])


def throttled_message() -> str:
    return THROTTLED_MESSAGE.format(minutes=max(1, round(settings.ADMIN_LOGIN_RATE_WINDOW_SECONDS / 60)))


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's password form, refusing every attempt while the username or address is throttled (checked
    before the password, so a right guess inside the limit teaches nothing either)."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request is not None else None
        if login_throttled(username=username, ip=ip):
            raise ValidationError(throttled_message(), code="throttled")
        try:
            return super().clean()
        except ValidationError:
            login_failure_record(username=username, ip=ip)
            raise


# --- the setup and verify pages -----------------------------------------------------------------------------


class OtpCodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text"}),
        help_text="The 6-digit code of your authenticator app, or one of your recovery codes.",
    )

    def clean_code(self) -> str:
        return "".join(self.cleaned_data["code"].split()).replace("-", "").lower()


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=False):
        return target
    return reverse("admin:index")


def _verified(request: HttpRequest, device: Any) -> None:
    # A new session key for the more privileged session (as django.contrib.auth.login does for the password).
    request.session.cycle_key()
    django_otp.login(request, device)
    login_success_record(username=request.user.get_username())


def _page(request: HttpRequest, template: str, context: dict[str, Any], site: Any) -> TemplateResponse:
    # Never cached: the admin site's admin_view wrapper (never_cache) marks these pages no-store.
    return TemplateResponse(request, template, {**site.each_context(request), "next": _safe_next(request), **context})


def otp_verify_view(request: HttpRequest, *, site: Any) -> HttpResponseBase:
    """Ask a staff member with a device for a code: an authenticator code (6 digits) or a recovery code."""
    user = request.user
    if user.is_verified():  # type: ignore[union-attr]
        return HttpResponseRedirect(_safe_next(request))
    if not has_confirmed_device(user):
        # Nothing to verify: the page points to the setup (a redirect would hide why).
        return _page(request, "admin/otp/verify.html", {"title": "Two-factor authentication", "no_device": True}, site)
    form = OtpCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        username, ip = user.get_username(), client_ip(request)
        if login_throttled(username=username, ip=ip):
            form.add_error(None, throttled_message())
        else:
            device = _match_code(user, form.cleaned_data["code"])
            if device is None:
                login_failure_record(username=username, ip=ip)
                form.add_error("code", "This code is not valid (or was used already). Try the current one.")
            else:
                _verified(request, device)
                if isinstance(device, StaticDevice):
                    left = device.token_set.count()
                    messages.warning(
                        request,
                        f"You signed in with a recovery code; it cannot be used again. {left} recovery code(s) left.",
                    )
                return HttpResponseRedirect(_safe_next(request))
    return _page(request, "admin/otp/verify.html", {"title": "Two-factor authentication", "form": form}, site)


def _match_code(user: Any, code: str) -> Any:
    """The confirmed device that accepts ``code``: digits go to authenticator devices, anything else to the
    recovery codes (a wrong kind of code must not count against the other device's throttle)."""
    model = TOTPDevice if code.isdigit() else StaticDevice
    for device in model.objects.devices_for_user(user, confirmed=True):
        verified = django_otp.verify_token(user, device.persistent_id, code)
        if verified is not None:
            return verified
    return None


def otp_setup_view(request: HttpRequest, *, site: Any) -> HttpResponseBase:
    """First sign-in of a staff member without a device: show the secret (QR code and text), confirm it with a
    code, then show the recovery codes once. The secret waits in the session until it is confirmed, so looking at
    the page writes no row. Refused to anyone who has a confirmed device already: otherwise a stolen password
    alone could enrol a new authenticator."""
    user = request.user
    if has_confirmed_device(user):
        return HttpResponseRedirect(f"{reverse('admin:otp_verify')}?{urlencode({'next': _safe_next(request)})}")
    key = request.session.get(SESSION_SETUP_KEY) or random_hex(20)
    request.session[SESSION_SETUP_KEY] = key
    device = TOTPDevice(user=user, name=TOTP_DEVICE_NAME, key=key, confirmed=False)
    form = OtpCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        username, ip = user.get_username(), client_ip(request)
        time_step = _totp_time_step(device, form.cleaned_data["code"])
        if login_throttled(username=username, ip=ip):
            form.add_error(None, throttled_message())
        elif time_step is None:
            login_failure_record(username=username, ip=ip)
            form.add_error("code", "This code does not match. Check the time on your phone and try the next code.")
        else:
            device.last_t = time_step  # the code just used cannot sign in again
            codes = otp_setup_confirm(user=user, device=device)
            del request.session[SESSION_SETUP_KEY]
            _verified(request, device)
            return _page(
                request,
                "admin/otp/recovery_codes.html",
                {"title": "Your recovery codes", "codes": codes},
                site,
            )
    context = {
        "title": "Set up two-factor authentication",
        "form": form,
        "qr_svg": _qr_svg(device.config_url),
        "secret": _grouped(_base32_secret(device)),
    }
    return _page(request, "admin/otp/setup.html", context, site)


def _totp_time_step(device: TOTPDevice, code: str) -> int | None:
    """The time step whose code ``code`` is, for a device not saved yet (django-otp's ``verify_token`` saves)."""
    if not code.isdigit():
        return None
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return int(totp.t()) if totp.verify(int(code), device.tolerance) else None


@transaction.atomic
def otp_setup_confirm(*, user: Any, device: TOTPDevice) -> list[str]:
    """Store the confirmed authenticator and issue fresh recovery codes (older devices and codes stop working).
    Returns the codes: they are shown once and stored by django-otp for verification only."""
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    device.confirmed = True
    device.save()
    recovery = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=recovery, token=code) for code in codes])
    return codes


def _base32_secret(device: TOTPDevice) -> str:
    return base64.b32encode(device.bin_key).decode().rstrip("=")


def _grouped(secret: str) -> str:
    return " ".join(secret[index : index + 4] for index in range(0, len(secret), 4))


def _qr_svg(url: str) -> str:
    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    # Markup we generated: the URL is encoded in the path geometry, never printed as text.
    return mark_safe(image.to_string(encoding="unicode"))  # noqa: S308


# --- enforcement ------------------------------------------------------------------------------------------


def staff_session_start(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    """``user_logged_in``: the session's clock starts at sign-in (written with the login's own session save)."""
    if getattr(user, "is_staff", False) and hasattr(request, "session"):
        request.session[SESSION_STARTED_KEY] = request.session[SESSION_SEEN_KEY] = int(time.time())


user_logged_in.connect(staff_session_start, dispatch_uid="billing_project.staff_session_start")


class StaffSecurityMiddleware:
    """Session expiry for staff and the second factor for the admin (after ``OTPMiddleware`` and
    ``MessageMiddleware``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.is_staff:
            expired = self._session_expired(request)
            if expired is not None:
                return expired
            needed = self._second_factor_needed(request, user)
            if needed is not None:
                return needed
        return self.get_response(request)

    def _session_expired(self, request: HttpRequest) -> HttpResponse | None:
        now = int(time.time())
        session = request.session
        started = session.get(SESSION_STARTED_KEY)
        seen = session.get(SESSION_SEEN_KEY)
        if started is None or seen is None:  # signed in before this middleware existed
            session[SESSION_STARTED_KEY] = session[SESSION_SEEN_KEY] = now
            return None
        too_old = now - started > settings.ADMIN_SESSION_MAX_AGE_SECONDS
        idle = now - seen > settings.ADMIN_SESSION_IDLE_SECONDS
        if not (too_old or idle):
            if now - seen >= SEEN_RESOLUTION_SECONDS:
                session[SESSION_SEEN_KEY] = now
            return None
        logout(request)
        reason = "Your session ended after {}.".format(
            "the maximum session length" if too_old else "a period without activity"
        )
        messages.info(request, f"{reason} Please sign in again.")
        return HttpResponseRedirect(f"{reverse('admin:login')}?{urlencode({'next': request.get_full_path()})}")

    def _second_factor_needed(self, request: HttpRequest, user: Any) -> HttpResponse | None:
        if not settings.OTP_REQUIRED or user.is_verified():
            return None
        admin_root = reverse("admin:index")
        if not request.path.startswith(admin_root):
            return None
        exempt = {reverse(f"admin:{name}") for name in ("login", "logout", "otp_setup", "otp_verify")}
        if request.path in exempt:
            return None
        if has_confirmed_device(user):
            target = "admin:otp_verify"
        elif otp_required_for(user):
            target = "admin:otp_setup"
        else:
            return None
        next_path = request.get_full_path() if request.method == "GET" else admin_root
        return HttpResponseRedirect(f"{reverse(target)}?{urlencode({'next': next_path})}")
