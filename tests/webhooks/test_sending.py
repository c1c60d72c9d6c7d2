"""Outgoing webhooks end to end (docs/WEBHOOKS.md): signed per Standard Webhooks, one delivery per (event,
endpoint), nothing for a rolled-back change, exactly once after a crash between commit and send, retries with
backoff for 72 h, an endpoint disabled after 3 days of failures and shown on the dashboard."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from api.serializers import represent
from core import events
from core.models import DomainEvent, EventStatus
from invoicing.models import Invoice, InvoiceStatus
from invoicing.services import InvoiceLineSpec, invoice_create_draft, invoice_finalize
from payments.services import payment_record
from tests.factories import CustomerFactory
from webhooks import services
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.selectors import dashboard_alerts

pytestmark = pytest.mark.django_db
ISSUED_ON = dt.date(2026, 3, 2)


def _issue(customer, amount="100.00") -> Invoice:
    draft = invoice_create_draft(customer=customer, lines=[InvoiceLineSpec("Consulting, March", D(amount))])
    return invoice_finalize(invoice=draft, issue_date=ISSUED_ON)


def _endpoint(url: str, event_types=None) -> tuple[WebhookEndpoint, str]:
    created = services.endpoint_create(url=url, event_types=event_types or [])
    return created.endpoint, created.secret


def _verified(receiver, secret: str) -> list[dict]:
    return [Webhook(secret).verify(request.body, request.headers) for request in receiver.requests]


def test_issuing_and_paying_an_invoice_sends_issued_and_paid_once_each_signed(
    billing, receiver, django_capture_on_commit_callbacks
):
    endpoint, secret = _endpoint(receiver.url, ["invoice.issued", "invoice.paid"])
    customer = CustomerFactory()
    with django_capture_on_commit_callbacks(execute=True):
        invoice = _issue(customer)
    with django_capture_on_commit_callbacks(execute=True):
        payment_record(customer=customer, amount=invoice.total, received_on=ISSUED_ON, invoice=invoice)

    assert receiver.types() == ["invoice.issued", "invoice.paid"]
    issued, paid = _verified(receiver, secret)  # raises unless every signature verifies
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert issued["data"]["object"]["id"] == paid["data"]["object"]["id"] == represent(invoice)["id"]
    assert issued["data"]["object"]["number"] == invoice.number
    assert paid["data"]["object"] == json.loads(json.dumps(represent(invoice), default=str))
    issued_event = DomainEvent.objects.get(type="invoice.issued", subject_id=invoice.pk)
    assert issued["id"] == f"evt_{issued_event.pk}"
    first = receiver.requests[0]
    assert first.path == "/hooks/cadence"
    assert first.headers["webhook-id"] == f"msg_{issued_event.pk}_{endpoint.pk}"
    assert first.headers["webhook-signature"].startswith("v1,")
    assert abs(int(first.headers["webhook-timestamp"]) - timezone.now().timestamp()) < 60
    # the log
    deliveries = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("pk")
    assert [(d.event_type, d.status, d.attempts, d.response_status) for d in deliveries] == [
        ("invoice.issued", DeliveryStatus.SUCCEEDED, 1, 200),
        ("invoice.paid", DeliveryStatus.SUCCEEDED, 1, 200),
    ]
    assert deliveries[0].response_body == '{"ok": true}'
    assert deliveries[0].duration_ms is not None
    # the payment's own event is not subscribed: nothing for it
    assert not WebhookDelivery.objects.filter(event_type="payment.succeeded").exists()


def test_a_tampered_body_or_another_secret_fails_verification(billing, receiver, django_capture_on_commit_callbacks):
    _, secret = _endpoint(receiver.url, ["invoice.issued"])
    with django_capture_on_commit_callbacks(execute=True):
        _issue(CustomerFactory())
    [request] = receiver.requests
    Webhook(secret).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request.body.replace(b"100.00", b"1.00"), request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(services.secret_new()).verify(request.body, request.headers)
    # the 5-minute tolerance of the spec
    with time_machine.travel(timezone.now() + dt.timedelta(minutes=6)), pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request.body, request.headers)


def test_every_subscribed_endpoint_gets_one_delivery_and_unsubscribed_ones_none(
    billing, receiver, django_capture_on_commit_callbacks
):
    all_types, _ = _endpoint(receiver.url + "?all")
    only_paid, _ = _endpoint(receiver.url + "?paid", ["invoice.paid"])
    WebhookEndpoint.objects.filter(pk=only_paid.pk).update(enabled=False)  # switched off by staff
    with django_capture_on_commit_callbacks(execute=True):
        _issue(CustomerFactory())
    assert list(WebhookDelivery.objects.values_list("endpoint", "event_type")) == [(all_types.pk, "invoice.issued")]
    assert [r.path for r in receiver.requests] == ["/hooks/cadence?all"]


def test_a_rolled_back_service_call_sends_nothing(billing, receiver, django_capture_on_commit_callbacks):
    _endpoint(receiver.url)
    customer = CustomerFactory()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        _issue(customer)
        raise RuntimeError("the caller's next step failed")
    assert not Invoice.objects.exists()
    assert not DomainEvent.objects.filter(type="invoice.issued").exists()
    assert not WebhookDelivery.objects.exists()
    # and nothing is left for the sweeps to send later
    with django_capture_on_commit_callbacks(execute=True):
        events.events_sweep(now=timezone.now() + dt.timedelta(hours=1))
        services.deliveries_send_due(now=timezone.now() + dt.timedelta(hours=1))
    assert receiver.requests == []


def test_a_crash_between_commit_and_send_still_delivers_exactly_once_after_the_sweep(
    billing, receiver, django_capture_on_commit_callbacks
):
    _, secret = _endpoint(receiver.url, ["invoice.issued"])
    # The change commits, then the process dies: its after-commit dispatch never runs.
    with django_capture_on_commit_callbacks(execute=False) as lost:
        invoice = _issue(CustomerFactory())
    assert lost  # the dispatch that died with the process
    event = DomainEvent.objects.get(type="invoice.issued", subject_id=invoice.pk)
    assert event.status == EventStatus.PENDING
    assert not WebhookDelivery.objects.exists() and receiver.requests == []

    later = timezone.now() + dt.timedelta(minutes=10)
    with django_capture_on_commit_callbacks(execute=True):
        assert events.events_sweep(now=later).processed == 1
    assert receiver.types() == ["invoice.issued"]
    [payload] = _verified(receiver, secret)
    assert payload["data"]["object"]["number"] == invoice.number

    # every sweep after it finds nothing to send again
    with django_capture_on_commit_callbacks(execute=True):
        events.events_sweep(now=later + dt.timedelta(hours=1))
        services.deliveries_send_due(now=later + dt.timedelta(hours=1))
        services.deliveries_send_due(now=later + dt.timedelta(days=4))
    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.get().status == DeliveryStatus.SUCCEEDED


def test_a_lost_send_task_is_sent_by_the_due_job_once(
    billing, receiver, django_capture_on_commit_callbacks, monkeypatch
):
    """The delivery row commits with the handler's run; the task that should send it is lost (broker down)."""
    _endpoint(receiver.url, ["invoice.issued"])
    monkeypatch.setattr(services, "_enqueue", lambda delivery_ids: None)
    with django_capture_on_commit_callbacks(execute=True):
        _issue(CustomerFactory())
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and receiver.requests == []
    assert services.deliveries_send_due().succeeded == 1
    assert services.deliveries_send_due().as_dict() == {"succeeded": 0, "retrying": 0, "failed": 0, "skipped": 0}
    assert len(receiver.requests) == 1


def _failing_delivery(receiver, django_capture_on_commit_callbacks) -> WebhookDelivery:
    receiver.statuses = [500]
    receiver.response_body = b"x" * 5000
    _endpoint(receiver.url, ["invoice.issued"])
    with django_capture_on_commit_callbacks(execute=True):
        _issue(CustomerFactory())
    return WebhookDelivery.objects.get()


def test_retries_back_off_exponentially_and_stop_after_72_hours(
    billing, receiver, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOKS_DISABLE_AFTER_DAYS = 30  # only the retry window is under test here
    delivery = _failing_delivery(receiver, django_capture_on_commit_callbacks)
    assert (delivery.status, delivery.attempts, delivery.response_status) == (DeliveryStatus.PENDING, 1, 500)
    assert len(delivery.response_body) == 1024  # the first 1 kB
    gaps = [delivery.next_attempt_at - delivery.last_attempt_at]
    start = delivery.chain_started_at
    # not due before its time
    assert services.delivery_send(delivery_id=delivery.pk, now=delivery.next_attempt_at - dt.timedelta(seconds=1)) == ""
    while delivery.status == DeliveryStatus.PENDING:
        services.delivery_send(delivery_id=delivery.pk, now=delivery.next_attempt_at)
        previous = delivery.next_attempt_at
        delivery.refresh_from_db()
        assert delivery.last_attempt_at == previous
        if delivery.next_attempt_at:
            gaps.append(delivery.next_attempt_at - delivery.last_attempt_at)
    minutes = [gap / dt.timedelta(minutes=1) for gap in gaps]
    assert minutes[:9] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert set(minutes[9:]) == {360}  # capped at 6 hours
    assert delivery.status == DeliveryStatus.FAILED and delivery.next_attempt_at is None
    assert delivery.last_attempt_at <= start + dt.timedelta(hours=72)
    assert delivery.last_attempt_at + dt.timedelta(hours=6) > start + dt.timedelta(hours=72)
    assert delivery.attempts == len(gaps) + 1 == delivery.attempt_log.count() == len(receiver.requests)
    # every attempt carried the same webhook-id and body
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.webhook_id}
    assert {r.body for r in receiver.requests} == {delivery.payload.encode()}
    # nothing more is sent
    assert services.deliveries_send_due(now=start + dt.timedelta(days=10)).as_dict()["succeeded"] == 0
    assert len(receiver.requests) == delivery.attempts


def test_a_success_after_failures_ends_the_chain_and_the_endpoint_is_healthy_again(
    billing, receiver, django_capture_on_commit_callbacks
):
    delivery = _failing_delivery(receiver, django_capture_on_commit_callbacks)
    receiver.statuses = [500, 503, 204]
    receiver.response_body = b""
    assert WebhookEndpoint.objects.get().failing_since is not None
    services.delivery_send(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    services.delivery_send(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (DeliveryStatus.SUCCEEDED, 3, 204)
    assert [a.response_status for a in delivery.attempt_log.order_by("attempted_at")] == [500, 503, 204]
    assert WebhookEndpoint.objects.get().failing_since is None


def test_an_endpoint_failing_for_3_days_is_disabled_and_shown_on_the_dashboard(
    billing, receiver, django_capture_on_commit_callbacks, admin_user
):
    receiver.statuses = [500]
    endpoint, _secret = _endpoint(receiver.url, ["invoice.issued"])
    first_failure = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    # an invoice a day, every delivery refused
    for day in (0, 1, 2):
        with time_machine.travel(first_failure + dt.timedelta(days=day), tick=False):
            with django_capture_on_commit_callbacks(execute=True):
                _issue(CustomerFactory())
            endpoint.refresh_from_db()
            assert endpoint.enabled and endpoint.failing_since == first_failure
    assert dashboard_alerts(user=admin_user, as_of=ISSUED_ON)[0].value == "0"
    # three days after the first failure, the next failure disables it
    three_days = first_failure + dt.timedelta(days=3)
    services.deliveries_send_due(now=three_days)
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_at == three_days
    assert "failed for 3 days" in endpoint.disabled_reason
    sent = len(receiver.requests)
    # a disabled endpoint gets nothing: neither its pending retries nor new events
    assert services.deliveries_send_due(now=three_days + dt.timedelta(days=1)).as_dict()["retrying"] == 0
    with django_capture_on_commit_callbacks(execute=True):
        _issue(CustomerFactory())
    assert len(receiver.requests) == sent
    assert WebhookDelivery.objects.count() == 3
    [alert] = dashboard_alerts(user=admin_user, as_of=ISSUED_ON)
    assert (alert.label, alert.value) == ("Webhook endpoints disabled", "1")
    assert alert.url.endswith("?disabled=sender")
    # staff fix the receiver, enable the endpoint and resend
    receiver.statuses = [200]
    services.endpoint_update(endpoint=endpoint, enabled=True)
    endpoint.refresh_from_db()
    assert (endpoint.failing_since, endpoint.disabled_at) == (None, None)
    assert dashboard_alerts(user=admin_user, as_of=ISSUED_ON)[0].value == "0"
    delivery = WebhookDelivery.objects.order_by("pk").first()
    with django_capture_on_commit_callbacks(execute=True):
        services.delivery_resend(delivery=delivery, actor=admin_user)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.resent_by) == (DeliveryStatus.SUCCEEDED, admin_user)
    assert len(receiver.requests) == sent + 1


def test_after_a_rotation_both_secrets_verify_for_a_day(billing, receiver, django_capture_on_commit_callbacks):
    endpoint, old_secret = _endpoint(receiver.url, ["invoice.issued"])
    new_secret = services.endpoint_rotate_secret(endpoint=endpoint)
    assert new_secret != old_secret and new_secret.startswith("whsec_")
    with django_capture_on_commit_callbacks(execute=True):
        _issue(CustomerFactory())
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(new_secret).verify(request.body, request.headers)
    Webhook(old_secret).verify(request.body, request.headers)
    endpoint.refresh_from_db()
    later = timezone.now() + dt.timedelta(hours=25)
    delivery = WebhookDelivery.objects.get()
    headers = services.request_headers(delivery, at=later)
    assert len(headers["webhook-signature"].split(" ")) == 1


def test_a_receiver_that_answers_garbage_or_nothing_is_a_failure_logged_and_retried(billing, settings):
    """Not HTTP at all, then a closed connection: each attempt is logged as a failure, nothing raises."""
    import socket
    import threading

    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    answers = [b"SMTP ready\r\n\r\n", b""]

    def serve() -> None:
        for answer in answers:
            connection, _ = server.accept()
            connection.recv(65536)
            connection.sendall(answer)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    services.endpoint_create(url=f"http://127.0.0.1:{server.getsockname()[1]}/hooks", event_types=["invoice.issued"])
    _issue(CustomerFactory())  # the test's transaction never commits: the test drives the handler and the sends
    event = DomainEvent.objects.get(type="invoice.issued")
    [delivery_id] = services.deliveries_create_for_event(event)
    first = services.delivery_send(delivery_id=delivery_id)
    delivery = WebhookDelivery.objects.get(pk=delivery_id)
    second = services.delivery_send(delivery_id=delivery_id, now=delivery.next_attempt_at)
    thread.join(timeout=5)
    server.close()
    delivery.refresh_from_db()
    assert (first, second) == (DeliveryStatus.PENDING, DeliveryStatus.PENDING)
    errors = list(delivery.attempt_log.order_by("attempted_at").values_list("error", flat=True))
    assert errors[0].startswith("BadStatusLine") and errors[1].startswith("RemoteDisconnected")
    assert delivery.attempts == 2 and delivery.response_status is None
