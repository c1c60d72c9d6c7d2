"""Staff sign-in to the admin: two-factor authentication for admins, clerks and superusers, recovery codes used
once, throttled failures, sessions that end (billing_project.staff_auth, docs/SECURITY.md "Staff accounts")."""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

ADMIN = reverse("admin:index")
LOGIN = reverse("admin:login")
SETUP = reverse("admin:otp_setup")
VERIFY = reverse("admin:otp_verify")


@pytest.fixture(autouse=True)
def _otp_required(settings: Any) -> None:
    settings.OTP_REQUIRED = True


def _password_login(client: Client, username: str, password: str = "pw") -> Any:  # noqa: S107
    return client.post(LOGIN, {"username": username, "password": password, "next": ADMIN})


def _current_code(device: TOTPDevice, *, offset: int = 0) -> str:
    device.refresh_from_db()
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset):06d}"


def _set_up(client: Client, user: Any, *, opt_in: bool = False) -> list[str]:
    """Sign in with the password, set up an authenticator on the setup page; returns the recovery codes."""
    response = _password_login(client, user.username)
    assert response.status_code == 302
    if opt_in:
        page = client.get(SETUP)
    else:
        response = client.get(ADMIN)
        assert response.status_code == 302 and response["Location"].startswith(SETUP)
        page = client.get(response["Location"])
    assert page.status_code == 200 and b"<svg" in page.content
    assert not TOTPDevice.objects.filter(user=user).exists()  # looking at the page writes nothing
    secret = re.search(r'<code id="otp-secret">([A-Z2-7 ]+)</code>', page.content.decode()).group(1)
    assert len(secret.replace(" ", "")) == 32  # the 160-bit key in base32, typed into the app
    code = f"{totp(base64.b32decode(secret.replace(' ', ''))):06d}"  # what the authenticator app shows
    assert client.post(SETUP, {"code": "000000" if code != "000000" else "111111"}).status_code == 200
    done = client.post(SETUP, {"code": code, "next": ADMIN})
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z2-7]+)</code></li>", done.content.decode())
    assert len(codes) == 10
    assert "no-store" in done["Cache-Control"]
    return codes


@pytest.mark.parametrize("role", ["Billing admin", "Billing clerk"])
def test_admins_and_clerks_are_sent_to_the_setup_page_after_their_password_and_then_get_in(client, role):
    user = StaffUserFactory(group=role)
    _password_login(client, user.username)
    for path in (ADMIN, reverse("admin:invoicing_invoice_changelist"), reverse("admin:reports")):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith(SETUP)
    client.logout()

    codes = _set_up(client, user)
    assert TOTPDevice.objects.get(user=user).confirmed
    assert client.get(ADMIN).status_code == 200
    assert len(set(codes)) == 10


def test_superusers_need_a_second_factor_too(client):
    user = StaffUserFactory(is_superuser=True)
    user.save()  # the factory saves the password only with a group
    _password_login(client, user.username)
    assert client.get(ADMIN)["Location"].startswith(SETUP)


def test_auditors_are_not_forced_but_are_asked_once_they_have_a_device(client):
    user = StaffUserFactory(group="Auditor (read-only)")
    _password_login(client, user.username)
    assert client.get(ADMIN).status_code == 200

    # An auditor may opt in; from then on the code is asked like anyone else's.
    client.logout()
    _set_up(client, user, opt_in=True)
    client.logout()
    _password_login(client, user.username)
    assert client.get(ADMIN)["Location"].startswith(VERIFY)


def test_every_later_sign_in_asks_for_the_authenticator_code(client):
    user = StaffUserFactory(group="Billing admin")
    _set_up(client, user)
    client.logout()

    _password_login(client, user.username)
    response = client.get(reverse("admin:invoicing_invoice_changelist"))
    assert response["Location"].startswith(VERIFY)
    # The setup page is closed to someone who has a device: a stolen password cannot enrol a new authenticator.
    assert client.get(SETUP)["Location"].startswith(VERIFY)

    wrong = client.post(VERIFY, {"code": "000000", "next": ADMIN})
    assert wrong.status_code == 200 and b"not valid" in wrong.content
    assert client.get(ADMIN).status_code == 302

    device = TOTPDevice.objects.get(user=user)
    with time_machine.travel(time.time() + 31, tick=False):  # the next time step: a code is accepted once
        ok = client.post(VERIFY, {"code": _current_code(device), "next": ADMIN})
        assert ok.status_code == 302 and ok["Location"] == ADMIN
        assert client.get(ADMIN).status_code == 200


def test_a_recovery_code_signs_in_once(client):
    user = StaffUserFactory(group="Billing clerk")
    codes = _set_up(client, user)
    client.logout()

    _password_login(client, user.username)
    response = client.post(VERIFY, {"code": codes[3].upper(), "next": ADMIN}, follow=True)
    assert response.status_code == 200
    assert b"9 recovery code(s) left" in response.content
    assert client.get(ADMIN).status_code == 200
    assert not StaticToken.objects.filter(token=codes[3]).exists()
    client.logout()

    _password_login(client, user.username)
    again = client.post(VERIFY, {"code": codes[3], "next": ADMIN})
    assert again.status_code == 200 and b"not valid" in again.content
    assert client.get(ADMIN).status_code == 302


def test_password_failures_are_throttled_per_username_with_the_same_answer_for_unknown_names(client, settings):
    settings.ADMIN_LOGIN_RATE_PER_USERNAME = 3
    user = StaffUserFactory(group="Billing admin")
    for _ in range(3):
        response = _password_login(client, user.username, "wrong")
        assert b"Please enter the correct username and password" in response.content
    # Throttled now: even the right password is refused, with a message that says why.
    refused = _password_login(client, user.username, "pw")
    assert refused.status_code == 200
    assert b"Too many failed sign-in attempts" in refused.content
    assert client.get(ADMIN).status_code == 302

    # An unknown username gets exactly the same answers: nothing tells whether an account exists.
    for _ in range(3):
        _password_login(client, "nobody-here", "wrong")
    unknown = _password_login(client, "nobody-here", "pw")
    assert b"Too many failed sign-in attempts" in unknown.content

    # Another account from another address is not affected.
    other = StaffUserFactory(group="Auditor (read-only)")
    assert _password_login(Client(REMOTE_ADDR="10.0.0.9"), other.username).status_code == 302


def test_failures_are_throttled_per_address_across_usernames(client, settings):
    settings.ADMIN_LOGIN_RATE_PER_IP = 4
    user = StaffUserFactory(group="Billing admin")
    for index in range(4):
        _password_login(client, f"guess{index}", "wrong")
    assert b"Too many failed sign-in attempts" in _password_login(client, user.username).content
    assert _password_login(Client(REMOTE_ADDR="10.0.0.7"), user.username).status_code == 302


def test_wrong_codes_count_towards_the_throttle(client, settings):
    settings.ADMIN_LOGIN_RATE_PER_USERNAME = 3
    user = StaffUserFactory(group="Billing admin")
    codes = _set_up(client, user)
    client.logout()
    _password_login(client, user.username)
    for _ in range(3):
        client.post(VERIFY, {"code": "123456", "next": ADMIN})
    blocked = client.post(VERIFY, {"code": codes[0], "next": ADMIN})
    assert b"Too many failed sign-in attempts" in blocked.content
    assert client.get(ADMIN).status_code == 302
    assert StaticToken.objects.filter(token=codes[0]).exists()  # not used up by a refused attempt


def test_the_demo_and_test_settings_switch_enforcement_off(client, settings):
    settings.OTP_REQUIRED = False
    user = StaffUserFactory(group="Billing admin")
    _password_login(client, user.username)
    assert client.get(ADMIN).status_code == 200


def test_a_staff_session_ends_after_the_idle_timeout_and_after_the_maximum_age(client, settings):
    settings.OTP_REQUIRED = False
    settings.ADMIN_SESSION_IDLE_SECONDS = 600
    settings.ADMIN_SESSION_MAX_AGE_SECONDS = 3600
    user = StaffUserFactory(group="Billing admin")
    start = time.time()
    with time_machine.travel(start, tick=False):
        _password_login(client, user.username)
        assert client.get(ADMIN).status_code == 200
    with time_machine.travel(start + 601, tick=False):
        response = client.get(ADMIN)
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)
        assert b"without activity" in client.get(response["Location"]).content

    with time_machine.travel(start + 1000, tick=False):
        _password_login(client, user.username)
        assert client.get(ADMIN).status_code == 200
    # Active every 9 minutes, but the session still ends an hour after sign-in.
    for minutes in range(9, 60, 9):
        with time_machine.travel(start + 1000 + minutes * 60, tick=False):
            assert client.get(ADMIN).status_code == 200, minutes
    with time_machine.travel(start + 1000 + 3601, tick=False):
        response = client.get(ADMIN)
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)
        assert b"maximum session length" in client.get(response["Location"]).content
