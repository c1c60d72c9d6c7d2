"""Reads of the webhooks app that mean something."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.urls import reverse

from core.alerts import Alert
from webhooks.models import WebhookEndpoint


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
