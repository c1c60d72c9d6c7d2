"""The webhooks admin: the secret shown once at creation and rotation, URLs refused by the SSRF check naming the
field, the delivery log in bounded queries with "Resend", the permissions of each role, the dashboard alert."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing_project.staff_groups import AUDITOR, BILLING_ADMIN, BILLING_CLERK
from core import events
from core.models import DomainEvent
from tests.factories import StaffUserFactory
from webhooks import services
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db
ADD = reverse("admin:webhooks_webhookendpoint_add")


def _client(group: str) -> Client:
    client = Client()
    client.force_login(StaffUserFactory(group=group))
    return client


def _event(n: int) -> DomainEvent:
    from django.db import transaction

    with events.handlers_replaced(), transaction.atomic():
        return events.event_record("invoice.issued", subject_type="invoice", subject_id=None, payload={"n": n})


def _deliveries(endpoint: WebhookEndpoint, count: int) -> list[WebhookDelivery]:
    now = timezone.now()
    rows = []
    for n in range(count):
        delivery = WebhookDelivery.objects.create(
            event=_event(n),
            endpoint=endpoint,
            event_type="invoice.issued",
            payload='{"type":"invoice.issued"}',
            status=DeliveryStatus.FAILED,
            attempts=3,
            chain_started_at=now - dt.timedelta(days=4),
            created_at=now - dt.timedelta(days=4),
            response_status=503,
            response_body="down for maintenance",
            last_error="HTTP 503",
        )
        WebhookAttempt.objects.create(
            delivery=delivery, attempted_at=now, response_status=503, response_body="down", duration_ms=12
        )
        rows.append(delivery)
    return rows


def test_a_billing_admin_creates_an_endpoint_and_sees_its_secret_once():
    client = _client(BILLING_ADMIN)
    response = client.post(
        ADD,
        {"url": "https://93.184.215.14/hooks", "description": "CRM", "event_types": ["invoice.paid"], "enabled": "on"},
    )
    assert response.status_code == 200, response.content
    endpoint = WebhookEndpoint.objects.get()
    page = response.content.decode()
    assert endpoint.secret in page and "not shown again" in page
    assert "no-store" in response["Cache-Control"]
    assert (endpoint.url, endpoint.event_types, endpoint.description) == (
        "https://93.184.215.14/hooks",
        ["invoice.paid"],
        "CRM",
    )
    assert endpoint.created_by is not None
    change = client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in change and endpoint.secret_hint in change
    assert 'data-action="rotate-secret"' in change


def test_a_private_url_is_refused_in_the_form_naming_the_field(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    response = _client(BILLING_ADMIN).post(ADD, {"url": "http://169.254.169.254/latest/", "enabled": "on"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "169.254.169.254, a link-local address" in errors["url"][0]
    assert not WebhookEndpoint.objects.exists()


def test_rotating_shows_the_new_secret_once_and_is_refused_to_clerks():
    endpoint = services.endpoint_create(url="https://93.184.215.14/hooks").endpoint
    old = endpoint.secret
    url = reverse("admin:webhooks_webhookendpoint_rotate", args=[endpoint.pk])
    clerk = _client(BILLING_CLERK)
    assert clerk.get(url).status_code == 403 and clerk.post(url).status_code == 403
    admin = _client(BILLING_ADMIN)
    assert "Rotate secret" in admin.get(url).content.decode()
    endpoint.refresh_from_db()
    assert endpoint.secret == old  # a GET changes nothing
    response = admin.post(url)
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret in response.content.decode()
    assert endpoint.previous_secret == old


def test_the_delivery_log_costs_the_same_queries_for_3_or_30_rows(django_assert_max_num_queries):
    endpoint = services.endpoint_create(url="https://93.184.215.14/hooks").endpoint
    _deliveries(endpoint, 3)
    client = _client(AUDITOR)
    url = reverse("admin:webhooks_webhookdelivery_changelist")
    with django_assert_max_num_queries(12) as few:
        assert client.get(url).status_code == 200
    _deliveries(endpoint, 27)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url)
    assert response.content.decode().count("invoice.issued") >= 30
    endpoints = reverse("admin:webhooks_webhookendpoint_changelist")
    with django_assert_max_num_queries(12):
        assert client.get(endpoints + "?disabled=sender").status_code == 200


def test_resend_from_the_log_restarts_the_chain_and_names_who(monkeypatch, django_capture_on_commit_callbacks):
    sent: list[list[int]] = []
    monkeypatch.setattr(services, "_enqueue", lambda ids: sent.append(ids))
    endpoint = services.endpoint_create(url="https://93.184.215.14/hooks").endpoint
    failed, other = _deliveries(endpoint, 2)
    page = reverse("admin:webhooks_webhookdelivery_change", args=[failed.pk])
    resend = reverse("admin:webhooks_webhookdelivery_resend", args=[failed.pk])
    clerk = _client(BILLING_CLERK)
    assert 'data-action="resend"' not in clerk.get(page).content.decode()
    assert clerk.post(resend).status_code == 403
    changelist = reverse("admin:webhooks_webhookdelivery_changelist")
    clerk.post(changelist, {"action": "resend", "_selected_action": [other.pk], "index": 0})
    other.refresh_from_db()
    assert other.status == DeliveryStatus.FAILED

    admin_user = StaffUserFactory(group=BILLING_ADMIN)
    admin = Client()
    admin.force_login(admin_user)
    detail = admin.get(page).content.decode()
    assert 'data-action="resend"' in detail and "down for maintenance" in detail
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(resend)
    assert response.status_code == 302
    failed.refresh_from_db()
    assert (failed.status, failed.resent_by_id, failed.attempts) == (DeliveryStatus.PENDING, admin_user.pk, 3)
    assert failed.next_attempt_at is not None and failed.chain_started_at > timezone.now() - dt.timedelta(minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(changelist, {"action": "resend", "_selected_action": [other.pk], "index": 0})
    other.refresh_from_db()
    assert other.status == DeliveryStatus.PENDING
    assert sent == [[failed.pk], [other.pk]]


def test_resending_to_a_disabled_endpoint_is_refused_with_the_reason():
    endpoint = services.endpoint_create(url="https://93.184.215.14/hooks").endpoint
    [delivery] = _deliveries(endpoint, 1)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False, disabled_at=timezone.now())
    admin = _client(BILLING_ADMIN)
    page = admin.get(reverse("admin:webhooks_webhookdelivery_resend", args=[delivery.pk])).content.decode()
    assert "The endpoint is disabled: enable it first." in page
    admin.post(
        reverse("admin:webhooks_webhookdelivery_changelist"),
        {"action": "resend", "_selected_action": [delivery.pk], "index": 0},
        follow=True,
    )
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED


def test_the_dashboard_tells_staff_about_disabled_endpoints():
    endpoint = services.endpoint_create(url="https://93.184.215.14/hooks").endpoint
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False, disabled_at=timezone.now(), disabled_reason="every delivery failed for 3 days"
    )
    page = _client(BILLING_CLERK).get(reverse("admin:index")).content.decode()
    assert "Webhook endpoints disabled" in page
    assert reverse("admin:webhooks_webhookendpoint_changelist") + "?disabled=sender" in page


def test_the_add_form_starts_empty_after_viewing_an_endpoint():
    """The change form shows the endpoint's types; the next add form is not pre-ticked with them."""
    endpoint = services.endpoint_create(url="https://93.184.215.14/hooks", event_types=["invoice.paid"]).endpoint
    client = _client(BILLING_ADMIN)
    change = client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]))
    assert change.context["adminform"].form["event_types"].value() == ["invoice.paid"]
    add = client.get(ADD)
    assert not add.context["adminform"].form["event_types"].value()


def test_the_audit_trail_records_endpoint_changes_but_never_the_secrets():
    from django.apps import apps

    audit = apps.get_model("webhooks", "WebhookEndpointAudit")
    assert not {"secret", "previous_secret"} & {field.name for field in audit._meta.get_fields()}
    endpoint = services.endpoint_create(url="https://93.184.215.14/hooks").endpoint
    services.endpoint_rotate_secret(endpoint=endpoint)
    services.endpoint_update(endpoint=endpoint, url="https://93.184.215.15/hooks")
    endpoint.refresh_from_db()
    rows = [str(row) for row in audit.objects.filter(pgh_obj_id=endpoint.pk).values()]
    assert len(rows) == 3  # created, rotated (the overlap's end), URL changed
    assert not any(endpoint.secret in row or endpoint.previous_secret in row for row in rows)
