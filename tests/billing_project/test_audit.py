"""Audit history in the admin: audited changes (old → new, core/audit.py) and status events are shown on the object's
page, with who and when, and nothing in them can be changed or deleted from the admin."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.models import CHANGE, LogEntry
from django.urls import NoReverseMatch, reverse

from billing_project.staff_groups import AUDITOR, BILLING_ADMIN
from invoicing.models import InvoiceEvent
from invoicing.services import invoice_finalize, invoice_void
from payments.models import Payment
from subscriptions.models import SubscriptionEvent
from subscriptions.services import subscription_pause
from tests.factories import (
    CustomerFactory,
    InvoiceFactory,
    NumberSeriesFactory,
    StaffUserFactory,
    SubscriptionFactory,
    TaxRateFactory,
)

pytestmark = pytest.mark.django_db


def _change_form_data(response: Any) -> dict[str, Any]:
    """The POST data of an unchanged admin change form: the main form's values and every inline's."""
    data: dict[str, Any] = {}

    def add(form: Any) -> None:
        for bound in form:
            value = bound.value()
            if isinstance(value, bool):
                if value:
                    data[bound.html_name] = "on"
            elif value is not None:
                data[bound.html_name] = value
                if bound.field.show_hidden_initial:  # fields with a callable default, as a browser posts them
                    data[bound.html_initial_name] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.initial_forms:
            add(form)
    return data


@pytest.fixture
def billing_admin(client):
    user = StaffUserFactory(group=BILLING_ADMIN, username="bea")
    client.force_login(user)
    return user


def test_admin_edit_of_a_customer_shows_on_its_page_with_user_and_changed_fields(client, billing_admin):
    customer = CustomerFactory(name="Old Name GmbH", email="old@customer.example", city="Berlin")
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    data = _change_form_data(client.get(url))
    data.update({"name": "New Name GmbH", "email": "new@customer.example"})

    response = client.post(url, data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    entry = LogEntry.objects.get(object_id=str(customer.pk), content_type__model="customer")
    assert (entry.user, entry.action_flag) == (billing_admin, CHANGE)
    assert entry.get_change_message() == (
        "Changed Name: “Old Name GmbH” → “New Name GmbH” and Billing e-mail: “old@customer.example” → "
        "“new@customer.example”."
    )
    page = client.get(url).content.decode()
    timeline = page[page.index("Timeline") :]  # the customer page's audit display (reporting/timeline.py)
    assert "bea" in timeline
    assert "name: Old Name GmbH → New Name GmbH" in timeline
    assert 'name="timeline_display"' not in page and "Staff edits" not in page


def test_an_auditor_sees_the_audited_changes_read_only(client, billing_admin):
    customer = CustomerFactory(name="Audited AG")
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    data = _change_form_data(client.get(url))
    client.post(url, {**data, "phone": "+49 30 1"})
    client.force_login(StaffUserFactory(group=AUDITOR))
    page = client.get(url).content.decode()
    assert "phone: — → +49 30 1" in page and "bea" in page
    assert 'name="_save"' not in page


def test_invoice_page_shows_its_event_history(client, billing_admin):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE")
    invoice = InvoiceFactory()
    invoice_finalize(invoice=invoice, issue_date=dt.date(2026, 3, 2), actor=billing_admin)
    invoice_void(invoice=invoice, actor=billing_admin, reason="issued to the wrong customer")

    page = client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()

    assert list(InvoiceEvent.objects.filter(invoice=invoice).values_list("from_status", "to_status")) == [
        ("draft", "open"),
        ("open", "void"),
    ]
    history = page[page.index("Invoice events") :]
    assert "issued to the wrong customer" in history
    assert "Draft" in history and "Open" in history and "Void" in history
    assert "bea" in history
    assert 'name="events-0-reason"' not in page and 'name="events-0-DELETE"' not in page


def test_subscription_page_shows_status_events_and_audited_changes_read_only(client, billing_admin):
    subscription = SubscriptionFactory()
    subscription_pause(subscription=subscription, as_of=dt.date(2026, 1, 10), actor=billing_admin, reason="holiday")
    url = reverse("admin:subscriptions_subscription_change", args=[subscription.pk])

    response = client.get(url)
    page = response.content.decode()

    assert "holiday" in page and "bea" in page
    trail = page[page.index("Audit trail") :]
    assert "status: Active → Paused" in trail and "bea" in trail
    assert 'name="events-0-reason"' not in page
    inline = next(i for i in response.context["inline_admin_formsets"] if i.formset.model is SubscriptionEvent)
    assert not inline.has_change_permission and not inline.has_delete_permission and not inline.has_add_permission


def test_payment_recorded_in_the_admin_is_logged_and_shown_on_its_page(client, billing_admin):
    customer = CustomerFactory()
    response = client.post(
        reverse("admin:payments_payment_add"),
        {
            "customer": customer.pk,
            "amount": "25.00",
            "currency": "",
            "method": "bank_transfer",
            "received_on": "2026-03-10",
            "allocations-TOTAL_FORMS": "0",
            "allocations-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    payment = Payment.objects.get(customer=customer)
    page = client.get(reverse("admin:payments_payment_change", args=[payment.pk])).content.decode()
    trail = page[page.index("Audit trail") :]
    assert "created:" in trail and "amount €25.00" in trail and "bea" in trail


def test_history_cannot_be_changed_or_deleted_from_the_admin(client, billing_admin):
    subscription = SubscriptionFactory()
    subscription_pause(subscription=subscription, as_of=dt.date(2026, 1, 10), actor=billing_admin, reason="holiday")
    event = SubscriptionEvent.objects.get(subscription=subscription, to_status="paused")
    reason = event.reason

    change = client.post(
        reverse("admin:subscriptions_subscriptionevent_change", args=[event.pk]), {"reason": "rewritten"}
    )
    delete = client.post(reverse("admin:subscriptions_subscriptionevent_delete", args=[event.pk]), {"post": "yes"})

    assert (change.status_code, delete.status_code) == (403, 403)
    event.refresh_from_db()
    assert event.reason == reason
    # The admin log and the invoice events have no admin screen of their own, so no URL can edit them.
    assert LogEntry not in admin.site._registry and InvoiceEvent not in admin.site._registry
    with pytest.raises(NoReverseMatch):
        reverse("admin:admin_logentry_change", args=[1])
    with pytest.raises(NoReverseMatch):
        reverse("admin:invoicing_invoiceevent_change", args=[1])


def test_admin_actions_that_change_billing_data_are_logged(client, billing_admin):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE")
    customer = CustomerFactory()
    invoice = InvoiceFactory(customer=customer, finalized=dt.date(2026, 3, 2))
    client.post(
        reverse("admin:customers_customer_changelist"),
        {"action": "archive_customers", "_selected_action": [customer.pk]},
    )
    client.post(
        reverse("admin:invoicing_invoice_changelist"),
        {"action": "hold_reminders_selected", "_selected_action": [invoice.pk]},
    )
    customer_page = client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    invoice_page = client.get(reverse("admin:invoicing_invoice_change", args=[invoice.pk])).content.decode()
    assert "archived: no → yes" in customer_page[customer_page.index("Timeline") :]
    # An issued invoice's own row is not audited (InvoiceEvent and dunning's records are its history); its page
    # still shows the audit section, with the changes of its draft days.
    assert "Audit trail" in invoice_page
