"""Dunning in the admin: reminder history on the invoice, "send reminder now", stage filter, policies."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from dunning import services as dunning
from dunning.models import DunningAction, DunningPolicy
from notifications.models import EmailKind, OutboundEmail
from tests.factories import InvoiceFactory

pytestmark = pytest.mark.django_db
DUE = dt.date(2026, 3, 16)


@pytest.fixture(autouse=True)
def _setup(series, vat_de):
    dunning.seed_dunning()


def test_invoice_page_shows_reminder_history(admin_client):
    invoice = InvoiceFactory(finalized=True)
    dunning.send_reminders(as_of=DUE + dt.timedelta(days=1))
    response = admin_client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk]))
    assert response.status_code == 200
    assert b"reminder history (dunning)" in response.content.lower() and b"Payment reminder" in response.content


def test_stage_filter_lists_invoices_by_their_last_step(admin_client):
    reminded = InvoiceFactory(finalized=True)
    dunning.send_reminders(as_of=DUE + dt.timedelta(days=1))
    held = InvoiceFactory(finalized=True)
    dunning.invoice_hold_reminders_set(invoice=held, hold=True)
    step = DunningPolicy.objects.get(is_default=True).steps.get(offset_days=1)
    url = reverse("admin:invoicing_invoice_changelist")
    by_step = admin_client.get(url, {"dunning": str(step.pk)})
    assert list(by_step.context["cl"].result_list) == [reminded]
    assert list(admin_client.get(url, {"dunning": "held"}).context["cl"].result_list) == [held]
    assert admin_client.get(url, {"dunning": "none"}).status_code == 200


def test_send_reminder_now_action(admin_client):
    invoice = InvoiceFactory(finalized=True)
    response = admin_client.post(
        reverse("admin:invoicing_invoice_changelist"),
        {"action": "send_reminder_now", "_selected_action": [invoice.pk]},
        follow=True,
    )
    assert b"Queued 1 reminder" in response.content
    assert OutboundEmail.objects.filter(invoice=invoice, kind=EmailKind.REMINDER).count() == 1
    assert DunningAction.objects.get(invoice=invoice).detail == "sent by staff"


def test_policy_page_has_steps_inline(admin_client):
    policy = DunningPolicy.objects.get(is_default=True)
    response = admin_client.get(reverse("admin:dunning_dunningpolicy_change", args=[policy.pk]))
    assert response.status_code == 200
    assert response.context["inline_admin_formsets"][0].formset.queryset.count() == 6
