"""The three staff roles can do what their names say, and no more — pages, and admin actions included."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from invoicing.models import Invoice
from payments.models import Payment
from tests.factories import InvoiceFactory, NumberSeriesFactory, StaffUserFactory, TaxRateFactory

pytestmark = pytest.mark.django_db

ROLES = ("Billing admin", "Billing clerk", "Auditor (read-only)")


def _models():
    return sorted(admin.site._registry, key=lambda m: m._meta.label)


@pytest.mark.parametrize("role", ROLES)
def test_every_changelist_and_change_form_obeys_the_role(client, role):
    user = StaffUserFactory(group=role)
    client.force_login(user)
    for model in _models():
        opts = model._meta
        if opts.app_label not in ("customers", "subscriptions", "invoicing", "payments"):
            continue
        response = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        can_view = user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or user.has_perm(
            f"{opts.app_label}.change_{opts.model_name}"
        )
        assert response.status_code == (200 if can_view else 403), (role, opts.label)
        add = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        model_admin = admin.site._registry[model]
        request = RequestFactory().get("/")
        request.user = user
        assert add.status_code == (200 if model_admin.has_add_permission(request) else 403), (role, opts.label)


def _actions(model, user) -> set[str]:
    request = RequestFactory().get("/")
    request.user = user
    return set(admin.site._registry[model].get_actions(request))


def test_invoice_actions_per_role():
    billing_admin = StaffUserFactory(group="Billing admin")
    clerk = StaffUserFactory(group="Billing clerk")
    auditor = StaffUserFactory(group="Auditor (read-only)")
    assert {"finalize_selected", "void_selected", "mark_uncollectible_selected"} <= _actions(Invoice, billing_admin)
    clerk_actions = _actions(Invoice, clerk)
    assert "finalize_selected" in clerk_actions
    assert not {"void_selected", "mark_uncollectible_selected"} & clerk_actions
    assert not {"finalize_selected", "void_selected", "mark_uncollectible_selected"} & _actions(Invoice, auditor)


def test_only_billing_admins_refund():
    assert "refund_in_full" in _actions(Payment, StaffUserFactory(group="Billing admin"))
    assert "refund_in_full" not in _actions(Payment, StaffUserFactory(group="Billing clerk"))
    assert "refund_in_full" not in _actions(Payment, StaffUserFactory(group="Auditor (read-only)"))


def test_a_clerk_posting_the_void_action_changes_nothing(client):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    invoice = InvoiceFactory(finalized=True)
    client.force_login(StaffUserFactory(group="Billing clerk"))
    client.post(
        reverse("admin:invoicing_invoice_changelist"), {"action": "void_selected", "_selected_action": [invoice.pk]}
    )
    invoice.refresh_from_db()
    assert invoice.status == "open"


def test_an_auditor_cannot_change_a_customer(client):
    from tests.factories import CustomerFactory

    customer = CustomerFactory(name="Before")
    client.force_login(StaffUserFactory(group="Auditor (read-only)"))
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "After", "email": customer.email, "country": "DE"})
    assert response.status_code == 403
    customer.refresh_from_db()
    assert customer.name == "Before"
