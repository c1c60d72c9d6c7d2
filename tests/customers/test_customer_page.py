"""The customer page's own quick action: Invite to portal (issue 18)."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.core import mail
from django.urls import reverse

from customers.models import PortalUser
from tests.factories.customers import CustomerFactory, StaffUserFactory

pytestmark = pytest.mark.django_db


def test_invite_to_portal_from_the_customer_page(client):
    customer = CustomerFactory(email="ap@kunde.example")
    clerk = StaffUserFactory(group="Billing clerk")
    client.force_login(clerk)
    page = client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    assert 'data-action="invite_portal"' in page
    url = reverse("admin:customers_customer_invite_portal", args=[customer.pk])
    assert "ap@kunde.example" in client.get(url).content.decode()
    response = client.post(url, {"_confirm": "1"})
    assert response.url == reverse("admin:customers_customer_change", args=[customer.pk])
    assert PortalUser.objects.get(customer=customer).email == "ap@kunde.example"
    assert [message.to for message in mail.outbox] == [["ap@kunde.example"]]
    assert LogEntry.objects.get(object_id=str(customer.pk), user=clerk).change_message == (
        "Invited ap@kunde.example to the portal."
    )


def test_the_timeline_section_appears_once_an_admin_defines_timeline_display(client, monkeypatch):
    from django.contrib import admin

    from customers.models import Customer

    model_admin = type(admin.site._registry[Customer])
    monkeypatch.setattr(model_admin, "timeline_display", lambda self, obj: "the timeline", raising=False)
    client.force_login(StaffUserFactory(group="Billing clerk"))
    page = client.get(reverse("admin:customers_customer_change", args=[CustomerFactory().pk])).content.decode()
    assert "Timeline" in page and "the timeline" in page
