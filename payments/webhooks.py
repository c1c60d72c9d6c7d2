"""Gateway webhooks: verify, store once per (gateway, event id), process once.

The event row is committed first (a replay finds it and does nothing); processing then claims it under
``SELECT … FOR UPDATE`` and sets ``processed_at`` in the same transaction as its effects, so a failure leaves it
unprocessed for the gateway's redelivery. Effects go through ``payment_attempt_record_result``, which books an
attempt once whatever order events arrive in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.dates import billing_today
from payments.gateways import InvalidWebhook, WebhookEventData, get_gateway
from payments.models import Gateway, WebhookEvent
from payments.services import payment_attempt_record_result, payment_attempts_for_webhook

logger = logging.getLogger(__name__)


class UnknownGateway(InvalidWebhook):
    pass


@dataclass(frozen=True)
class WebhookOutcome:
    event: WebhookEvent
    duplicate: bool
    outcome: str


def webhook_receive(*, gateway_name: str, payload: bytes, headers: Mapping[str, str]) -> WebhookOutcome:
    """Raises ``InvalidWebhook`` (bad signature, stale timestamp, not an event, unknown gateway)."""
    if gateway_name not in Gateway.values:
        raise UnknownGateway(f"unknown gateway '{gateway_name}'")
    data = get_gateway(gateway_name).parse_webhook(payload=payload, headers=headers)
    try:
        with transaction.atomic():
            event, created = WebhookEvent.objects.get_or_create(
                gateway=gateway_name,
                event_id=data.event_id,
                defaults={"event_type": data.event_type, "payload": dict(data.payload)},
            )
    except IntegrityError:  # a concurrent delivery of the same event inserted it first
        event, created = WebhookEvent.objects.get(gateway=gateway_name, event_id=data.event_id), False
    try:
        with transaction.atomic():
            event = WebhookEvent.objects.select_for_update().get(pk=event.pk)
            if event.processed_at is not None:
                return WebhookOutcome(event=event, duplicate=True, outcome=event.outcome)
            outcome = _process(gateway_name, data)
            event.processed_at = timezone.now()
            event.outcome = outcome[:500]
            event.error = ""
            event.save(update_fields=["processed_at", "outcome", "error"])
    except Exception as exc:
        # Left unprocessed (the gateway redelivers); the error is kept for staff.
        WebhookEvent.objects.filter(pk=event.pk, processed_at__isnull=True).update(error=repr(exc)[:2000])
        raise
    return WebhookOutcome(event=event, duplicate=not created, outcome=outcome)


def _charge_result(gateway_name: str, intent: Mapping[str, Any], currency: str) -> Any:
    if gateway_name == "stripe":
        from payments.gateways.stripe_gateway import StripeGateway

        return StripeGateway.charge_result(intent, currency)
    from payments.gateways.sandbox import SandboxGateway

    return SandboxGateway.charge_result(intent, currency)


def _process(gateway_name: str, data: WebhookEventData) -> str:
    obj = data.object
    if data.event_type in INTENT_EVENTS:
        metadata = obj.get("metadata") or {}
        attempt = payment_attempts_for_webhook(
            reference=str(obj.get("id", "")), attempt_id=str(metadata.get("payment_attempt_id", ""))
        )
        if attempt is None or attempt.gateway != gateway_name:
            return "ignored: no payment attempt for this payment intent"
        result = _charge_result(gateway_name, obj, attempt.currency)
        before = attempt.status
        attempt = payment_attempt_record_result(attempt_id=attempt.pk, result=result, as_of=billing_today())
        if attempt.status == before:
            return f"attempt {attempt.pk} already {attempt.status}: nothing to do"
        return f"attempt {attempt.pk}: {before} → {attempt.status}"
    if gateway_name == "stripe":
        return _process_stripe(data)
    logger.info("%s webhook %s (%s) acknowledged, not handled", gateway_name, data.event_id, data.event_type)
    return f"ignored: {data.event_type} is not handled"


INTENT_EVENTS = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.requires_action",
)


def _process_stripe(data: WebhookEventData) -> str:
    """Events of what happened at Stripe outside our own calls (docs/WEBHOOKS.md lists them)."""
    from payments import gateway_events
    from payments.stripe_methods import payment_method_update_from_gateway

    obj = dict(data.object)
    as_of = billing_today()
    if data.event_type == "charge.refunded":
        return gateway_events.charge_refunded(gateway="stripe", charge=obj, as_of=as_of)
    if data.event_type == "charge.dispute.created":
        return gateway_events.dispute_opened(gateway="stripe", dispute=obj, as_of=as_of)
    if data.event_type == "charge.dispute.closed":
        return gateway_events.dispute_closed(gateway="stripe", dispute=obj, as_of=as_of)
    if data.event_type in ("payment_method.updated", "payment_method.automatically_updated"):
        changed = payment_method_update_from_gateway(pm=obj)
        return f"payment method {obj.get('id')}: {changed} saved copy updated"
    logger.info("stripe webhook %s (%s) acknowledged, not handled", data.event_id, data.event_type)
    return f"ignored: {data.event_type} is not handled"
