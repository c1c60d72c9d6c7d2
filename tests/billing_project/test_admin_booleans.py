"""Yes/no as words in every admin staff see (issue 19): no changelist — the product's own or a third-party one
(django-otp, django-celery-beat, pghistory, auth, …) — and no read-only field shows Django's ✔/✖ icons
(``core.admin_lists.readable_booleans``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from reporting.models import IntegrityCheck
from tests.factories import CouponFactory, TaxRateFactory
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db
ICONS = ("icon-yes.svg", "icon-no.svg", "icon-unknown.svg")


def _boolean_columns(model: type[models.Model], model_admin: admin.ModelAdmin, request: Any) -> list[str]:
    """The changelist columns that Django would draw as icons: boolean fields and ``boolean=True`` displays."""
    found = []
    for name in model_admin.get_list_display(request):
        if callable(name):
            if getattr(name, "boolean", False):
                found.append(getattr(name, "__name__", repr(name)))
            continue
        try:
            if isinstance(model._meta.get_field(name), models.BooleanField):
                found.append(name)
            continue
        except FieldDoesNotExist:  # an admin or model attribute
            attribute = getattr(model_admin, name, None) or getattr(model, name, None)
        if getattr(attribute, "boolean", False):
            found.append(name)
    return found


def _rows_with_booleans(admin_user: Any) -> None:
    """A row in each list that has a boolean column, both ways where it is cheap."""
    TOTPDevice.objects.create(user=admin_user, name="Phone", confirmed=True)
    StaticDevice.objects.create(user=admin_user, name="Backup codes", confirmed=False)
    CouponFactory(active=True)
    CouponFactory(active=False)
    TaxRateFactory(country="DE")
    now = timezone.now()
    IntegrityCheck.objects.create(
        started_at=now - dt.timedelta(seconds=3), finished_at=now, ok=True, triggered_by="command"
    )
    WebhookEndpoint.objects.create(url="https://hooks.example.com/billing", event_types=["invoice.paid"], enabled=False)
    from accounting.ledger.crypto import token_encrypt
    from accounting.ledger.models import LedgerConnection

    LedgerConnection.objects.create(
        provider="xero",
        tenant_id="tenant-1",
        access_token_encrypted=token_encrypt("access"),
        refresh_token_encrypted=token_encrypt("refresh"),
        access_token_expires_at=now,
        connected_at=now,
    )


def test_no_list_with_a_yes_no_column_shows_boolean_icons(admin_client: Any, admin_user: Any) -> None:
    """Every registered changelist with a boolean column, looked at with rows in it (the other changelists are
    checked for icons by test_admin_smoke.py, which opens them all)."""
    _rows_with_booleans(admin_user)
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    checked = []
    for model, model_admin in sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label):
        if not _boolean_columns(model, model_admin, request):
            continue
        opts = model._meta
        response = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert response.status_code == 200, opts.label
        html = response.content.decode()
        assert not [icon for icon in ICONS if icon in html], opts.label
        # looked at with a row in it (else the check proves nothing)
        assert model_admin.get_queryset(response.wsgi_request).exists(), f"{opts.label}: add a row above"
        assert 'class="badge badge-' in html, opts.label
        checked.append(opts.label)
    # the lists that draw booleans today, third-party admins among them
    assert {"otp_totp.TOTPDevice", "otp_static.StaticDevice", "auth.User", "webhooks.WebhookEndpoint"} <= set(checked)


def test_yes_and_no_read_as_words_in_a_third_party_list_and_a_read_only_field(
    admin_client: Any, admin_user: Any
) -> None:
    _rows_with_booleans(admin_user)
    devices = admin_client.get(reverse("admin:otp_totp_totpdevice_changelist")).content.decode()
    assert '<span class="badge badge-success">Yes</span>' in devices  # confirmed
    backup = admin_client.get(reverse("admin:otp_static_staticdevice_changelist")).content.decode()
    assert '<span class="badge badge-muted">No</span>' in backup  # not confirmed
    check = IntegrityCheck.objects.get()
    page = admin_client.get(reverse("admin:reporting_integritycheck_change", args=[check.pk])).content.decode()
    assert '<span class="badge badge-success">Yes</span>' in page  # "ok", a read-only field
    assert not [icon for icon in ICONS if icon in page]
