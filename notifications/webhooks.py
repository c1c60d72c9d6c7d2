"""E-mail provider tracking webhooks. anymail's views (mounted at /anymail/ in billing_project/urls.py) check the
basic-auth ``ANYMAIL["WEBHOOK_SECRET"]`` and normalise each provider's payload into ``AnymailTrackingEvent``s;
this receiver stores and applies them (``notifications.tracking.email_event_record``, idempotent by event id)."""

from __future__ import annotations

from typing import Any

from anymail.signals import AnymailTrackingEvent, tracking

from notifications.tracking import email_event_record

DISPATCH_UID = "notifications.webhooks.tracking"


def on_tracking_event(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    email_event_record(esp_name=esp_name, event=event)


def connect() -> None:
    tracking.connect(on_tracking_event, dispatch_uid=DISPATCH_UID)
