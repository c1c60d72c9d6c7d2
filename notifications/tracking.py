"""E-mail provider tracking: each event stored once by its id and applied to its message and address."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from notifications.models import EmailAddressStatus, EmailEvent, EmailStatus, OutboundEmail

if TYPE_CHECKING:
    from anymail.signals import AnymailTrackingEvent

logger = logging.getLogger(__name__)
S = EmailStatus


# anymail event type → the status it moves a message to, and the statuses it may move it from.
_TRANSITIONS: dict[str, tuple[str, frozenset[str]]] = {
    "delivered": (S.DELIVERED, frozenset({S.SENDING, S.SENT})),
    "bounced": (S.BOUNCED, frozenset({S.SENDING, S.SENT, S.DELIVERED})),
    "rejected": (S.FAILED, frozenset({S.SENDING, S.SENT})),
    "failed": (S.FAILED, frozenset({S.SENDING, S.SENT})),
    "complained": (S.COMPLAINED, frozenset({S.SENDING, S.SENT, S.DELIVERED, S.BOUNCED})),
}
_TIMESTAMP_FIELD: dict[str, str] = {S.DELIVERED: "delivered_at", S.BOUNCED: "bounced_at", S.FAILED: "failed_at"}


def tracking_event_id(*, esp_name: str, event: AnymailTrackingEvent) -> str:
    """The provider's event id, or (for providers that send none with some events) a hash of what makes the
    event unique, so that a replayed webhook maps to the same id."""
    if event.event_id:
        return f"{esp_name}:{event.event_id}"[:200]
    parts = [esp_name, event.event_type, event.message_id, event.recipient, event.timestamp, event.description]
    digest = hashlib.sha256("|".join("" if part is None else str(part) for part in parts).encode()).hexdigest()
    return f"{esp_name}:sha256:{digest}"


def _json_safe(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return {"repr": repr(value)[:5000]}


def _find_email(event: AnymailTrackingEvent) -> OutboundEmail | None:
    message_id = "" if event.message_id is None else str(event.message_id)
    if message_id:
        found = OutboundEmail.objects.filter(provider_message_id=message_id).order_by("-pk").first()
        if found is not None:
            return found
    email_id = (event.metadata or {}).get("outbound_email_id")
    if email_id and str(email_id).isdigit():
        return OutboundEmail.objects.filter(pk=int(email_id)).first()
    return None


def email_event_record(*, esp_name: str, event: AnymailTrackingEvent) -> EmailEvent | None:
    """Store a tracking event once and apply it. Returns ``None`` for a replay (already stored)."""
    event_id = tracking_event_id(esp_name=esp_name, event=event)
    occurred_at = event.timestamp if isinstance(event.timestamp, dt.datetime) else None
    recipient = (event.recipient or "").strip().lower()
    with transaction.atomic():
        email = _find_email(event)
        try:
            with transaction.atomic():
                stored = EmailEvent.objects.create(
                    event_id=event_id,
                    outbound_email=email,
                    esp_name=esp_name[:40],
                    event_type=str(event.event_type)[:30],
                    recipient=recipient[:254],
                    provider_message_id="" if event.message_id is None else str(event.message_id)[:200],
                    occurred_at=occurred_at,
                    received_at=timezone.now(),
                    description=str(event.description or event.mta_response or "")[:2000],
                    payload=_json_safe(event.esp_event),
                )
        except IntegrityError:
            logger.info("e-mail event %s already recorded", event_id)
            return None
        at = occurred_at or stored.received_at
        if email is not None:
            _apply_to_email(email.pk, str(event.event_type), recipient, at)
        if recipient and event.event_type in ("bounced", "complained"):
            _flag_address(recipient, str(event.event_type), at, stored.description)
        elif recipient and event.event_type == "delivered":
            EmailAddressStatus.objects.filter(email=recipient, bounced_at__lt=at).update(bounced_at=None, reason="")
    return stored


def _apply_to_email(email_id: int, event_type: str, recipient: str, at: dt.datetime) -> None:
    email = OutboundEmail.objects.select_for_update().get(pk=email_id)
    if event_type == "opened":
        if email.opened_at is None:
            OutboundEmail.objects.filter(pk=email.pk).update(opened_at=at)
        return
    if event_type not in _TRANSITIONS:
        return
    # The message's status follows its main recipients; a bounce at a cc address only flags that address.
    main = {address.lower() for address in email.to_emails}
    if recipient and recipient not in main:
        return
    to_status, from_statuses = _TRANSITIONS[event_type]
    if email.status not in from_statuses:
        return
    updates: dict[str, Any] = {"status": to_status}
    if to_status in _TIMESTAMP_FIELD:
        updates[_TIMESTAMP_FIELD[to_status]] = at
    OutboundEmail.objects.filter(pk=email.pk, status=email.status).update(**updates)


def _flag_address(address: str, event_type: str, at: dt.datetime, reason: str) -> None:
    field = "bounced_at" if event_type == "bounced" else "complained_at"
    status, _created = EmailAddressStatus.objects.get_or_create(email=address)
    setattr(status, field, at)
    status.reason = reason[:2000] or event_type
    status.save()
