"""Reads of the webhooks app that mean something."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.urls import reverse

from core.alerts import Alert
from webhooks.models import WebhookEndpoint


def endpoints_subscribe_to(event_type: str) -> bool:
    """Whether an enabled endpoint receives ``event_type`` (one query over the few endpoint rows)."""
    subscribed = WebhookEndpoint.objects.filter(enabled=True).values_list("event_types", flat=True)
    return any(not event_types or event_type in event_types for event_types in subscribed)


def disabled_endpoints_count() -> int:
    """Endpoints the sender disabled after failing for WEBHOOKS_DISABLE_AFTER_DAYS (not those staff switched off)."""
    return WebhookEndpoint.objects.filter(enabled=False, disabled_at__isnull=False).count()


def dashboard_alerts(*, user: Any, as_of: dt.date) -> list[Alert]:
    """One figure on the dashboard's operations list, for staff who may view the endpoints; one query."""
    if not user.has_perm("webhooks.view_webhookendpoint"):
        return []
    count = disabled_endpoints_count()
    url = reverse("admin:webhooks_webhookendpoint_changelist") + "?disabled=sender"
    return [
        Alert(
            "Webhook endpoints disabled",
            str(count),
            url,
            "failed for 3 days; fix the receiver, then enable and resend" if count else "",
        )
    ]
