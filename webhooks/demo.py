"""Demo data of the webhooks app (``manage.py seed_demo``): two endpoints with a delivery log a clerk can read —
the CRM's endpoint, healthy, and an old data-warehouse endpoint the sender disabled after three days of 503s (it
shows on the dashboard). The log is written as it would have been, not sent: the demo has no receivers."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from core.models import DomainEvent
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from webhooks.services import event_body, event_object, secret_new

CRM_URL = "https://hooks.nordlicht-crm.example/cadence"
WAREHOUSE_URL = "https://etl.old-warehouse.example/ingest/billing"


def _endpoint(url: str, **fields: object) -> tuple[WebhookEndpoint, bool]:
    return WebhookEndpoint.objects.get_or_create(url=url, defaults={"secret": secret_new(), **fields})


def _log(endpoint: WebhookEndpoint, events: list[DomainEvent], *, ok: bool, now: dt.datetime) -> int:
    for age, event in enumerate(events):
        at = now - dt.timedelta(hours=6 * age + 1)
        delivery = WebhookDelivery.objects.create(
            event=event,
            endpoint=endpoint,
            event_type=event.type,
            payload=event_body(event, event_object(event)),
            status=DeliveryStatus.SUCCEEDED if ok else DeliveryStatus.FAILED,
            attempts=1 if ok else 14,
            chain_started_at=at - (dt.timedelta(0) if ok else dt.timedelta(hours=72)),
            last_attempt_at=at,
            response_status=200 if ok else 503,
            response_body='{"received": true}' if ok else "<html><h1>503 Service Unavailable</h1></html>",
            duration_ms=87 if ok else 30012,
            last_error="" if ok else "HTTP 503",
            succeeded_at=at if ok else None,
            created_at=at - (dt.timedelta(0) if ok else dt.timedelta(hours=72)),
        )
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=at,
            succeeded=ok,
            response_status=delivery.response_status,
            response_body=delivery.response_body,
            duration_ms=delivery.duration_ms or 0,
            error=delivery.last_error,
        )
    return len(events)


@transaction.atomic
def seed_webhooks() -> int:
    """Idempotent: the endpoints are keyed by URL; their logs are written only when they are created."""
    now = timezone.now()
    created = 0
    crm, new = _endpoint(
        CRM_URL,
        description="Nordlicht CRM (invoices and payments)",
        event_types=["invoice.issued", "invoice.paid", "payment.succeeded"],
    )
    if new:
        created += 1
        events = list(DomainEvent.objects.filter(type__in=crm.event_types).order_by("-occurred_at", "-pk")[:12])
        _log(crm, events, ok=True, now=now)
    warehouse, new = _endpoint(
        WAREHOUSE_URL,
        description="Old data warehouse (retired, still registered)",
        enabled=False,
        failing_since=now - dt.timedelta(days=3, hours=2),
        disabled_at=now - dt.timedelta(hours=2),
        disabled_reason="every delivery failed for 3 days (last: HTTP 503)",
    )
    if new:
        created += 1
        events = list(DomainEvent.objects.filter(type="invoice.issued").order_by("-occurred_at", "-pk")[:3])
        _log(warehouse, events, ok=False, now=now)
    return created
