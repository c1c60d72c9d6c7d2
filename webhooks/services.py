"""Every write of the webhooks app (docs/WEBHOOKS.md): endpoints, deliveries, sending, retries, disabling.

Flow. A service elsewhere writes a ``DomainEvent`` in its transaction. After commit, this app's ``notify`` handler
(``deliveries_create_for_event``, atomic: its rows and its handler-run row commit together) writes one
``WebhookDelivery`` per enabled endpoint that subscribes to the type, with the body fixed, and hands the ids to a
Celery task once that commits. ``delivery_send`` claims a row, signs it (Standard Webhooks), POSTs it to an
address checked again after DNS resolution, and records the attempt. A failure schedules the next attempt with
exponential backoff (``next_attempt_at``) until ``WEBHOOKS_RETRY_HOURS`` after the chain started; the beat job
``webhooks.send_due`` (``manage.py send_webhooks``) sends what is due. An endpoint failing for
``WEBHOOKS_DISABLE_AFTER_DAYS`` is disabled and shown on the dashboard."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from api.serializers import represent
from core.errors import InvalidInput, NotAllowed
from core.models import DomainEvent
from customers.models import Customer
from invoicing.models import CreditNote, Invoice
from payments.models import Payment, PaymentAttempt
from subscriptions.models import Subscription
from webhooks.addresses import connection_for, url_check
from webhooks.catalog import EVENT_TYPES
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

RESPONSE_KEPT = 1024  # bytes of a response body kept in the log
USER_AGENT = "Cadence-Billing-Webhooks/1"
# The model behind each event's ``subject_type``: its object is sent as the API shows it.
SUBJECT_MODELS: dict[str, Any] = {
    "customer": Customer,
    "subscription": Subscription,
    "invoice": Invoice,
    "credit_note": CreditNote,
    "payment": Payment,
    "payment_attempt": PaymentAttempt,
}


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def retry_window() -> dt.timedelta:
    return dt.timedelta(hours=_setting("WEBHOOKS_RETRY_HOURS", 72))


def disable_after() -> dt.timedelta:
    return dt.timedelta(days=_setting("WEBHOOKS_DISABLE_AFTER_DAYS", 3))


def retry_delay(attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failed attempt: 1 min, 2, 4, 8 … doubling up to 6 h (settings)."""
    base = _setting("WEBHOOKS_RETRY_BASE_SECONDS", 60)
    cap = _setting("WEBHOOKS_RETRY_MAX_SECONDS", 6 * 3600)
    return dt.timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), cap))


def _actor_id(actor: AbstractBaseUser | AnonymousUser | None) -> int | None:
    return actor.pk if actor is not None and getattr(actor, "is_authenticated", False) else None


# --- endpoints ------------------------------------------------------------------------------------------


def secret_new() -> str:
    """``whsec_`` + base64 of 32 random bytes (the Standard Webhooks secret format)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def event_types_clean(event_types: Iterable[str] | None, *, field: str = "event_types") -> list[str]:
    """The subscribed types, known and without duplicates (empty: every type)."""
    if event_types is None:
        return []
    if isinstance(event_types, str) or not isinstance(event_types, Iterable):
        raise InvalidInput(f"{field}: a list of event types is expected", field=field)
    cleaned: list[str] = []
    for event_type in event_types:
        if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
            raise InvalidInput(
                f"{field}: unknown event type {event_type!r}; one of {', '.join(EVENT_TYPES)}", field=field
            )
        if event_type not in cleaned:
            cleaned.append(event_type)
    return cleaned


@dataclass(frozen=True)
class EndpointWithSecret:
    endpoint: WebhookEndpoint
    secret: str  # shown to the caller once


def endpoint_create(
    *,
    url: str,
    event_types: Sequence[str] | None = None,
    description: str = "",
    enabled: bool = True,
    actor: AbstractBaseUser | AnonymousUser | None = None,
) -> EndpointWithSecret:
    """A new endpoint with a new secret; the URL must reach a public address (or ``WEBHOOKS_ALLOW_PRIVATE_URLS``)."""
    url_check(url, require_resolution=False)
    secret = secret_new()
    endpoint = WebhookEndpoint.objects.create(
        url=url,
        event_types=event_types_clean(event_types),
        description=description[:200],
        enabled=enabled,
        secret=secret,
        created_by_id=_actor_id(actor),
    )
    return EndpointWithSecret(endpoint, secret)


def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given. Enabling an endpoint the sender disabled restarts its failure clock."""
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        if url is not None:
            url_check(url, require_resolution=False)
            locked.url = url
        if event_types is not None:
            locked.event_types = event_types_clean(event_types)
        if description is not None:
            locked.description = description[:200]
        if enabled is not None and enabled != locked.enabled:
            locked.enabled = enabled
            if enabled:
                locked.failing_since, locked.disabled_at, locked.disabled_reason = None, None, ""
        locked.save()
    return locked


def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """A new secret, returned once. The old one keeps signing beside it (two ``v1,`` signatures in the header) for
    ``WEBHOOKS_SECRET_OVERLAP_HOURS`` (24 h), so a receiver can switch without refusing a message."""
    secret = secret_new()
    now = timezone.now()
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        locked.previous_secret = locked.secret
        locked.previous_secret_expires_at = now + dt.timedelta(hours=_setting("WEBHOOKS_SECRET_OVERLAP_HOURS", 24))
        locked.secret = secret
        locked.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    endpoint.refresh_from_db()
    return secret


# --- deliveries -----------------------------------------------------------------------------------------


def event_object(event: DomainEvent) -> dict[str, Any]:
    """The event's object as the API shows it now, or the event's own facts when it has no such object (a
    deleted row, a subject the API does not show)."""
    model = SUBJECT_MODELS.get(event.subject_type)
    if model is not None and event.subject_id is not None:
        obj = model._default_manager.filter(pk=event.subject_id).first()
        if obj is not None:
            try:
                return dict(represent(obj))
            except (TypeError, ValueError, LookupError):
                logger.warning("webhooks: no API representation of %s %s", event.subject_type, event.subject_id)
    return {"object": event.subject_type, "id": event.subject_id, **event.payload}


def event_body(event: DomainEvent, data_object: dict[str, Any]) -> str:
    """The request body: compact JSON, the same bytes for every attempt and endpoint."""
    body = {
        "id": f"evt_{event.pk}",
        "type": event.type,
        "timestamp": event.occurred_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "data": {"object": data_object},
    }
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def deliveries_create_for_event(event: DomainEvent) -> list[int]:
    """The ``notify`` handler: one delivery per enabled endpoint subscribed to the event's type (none twice: the
    unique pair), then — once this commits — one task sends them. Runs in the handler's transaction."""
    endpoints = [e for e in WebhookEndpoint.objects.filter(enabled=True).order_by("pk") if e.subscribes_to(event.type)]
    if not endpoints:
        return []
    now = timezone.now()
    body = event_body(event, event_object(event))
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                event=event,
                endpoint=endpoint,
                event_type=event.type,
                payload=body,
                chain_started_at=now,
                next_attempt_at=now,
                created_at=now,
            )
            for endpoint in endpoints
        ],
        ignore_conflicts=True,
    )
    delivery_ids = list(
        WebhookDelivery.objects.filter(event=event, status=DeliveryStatus.PENDING, attempts=0).values_list(
            "pk", flat=True
        )
    )
    if delivery_ids:
        transaction.on_commit(lambda: _enqueue(delivery_ids), robust=True)
    return delivery_ids


def _enqueue(delivery_ids: list[int]) -> None:
    # A lost task loses nothing: the rows are due now and the beat job sends what is due.
    from webhooks.tasks import send_webhooks

    send_webhooks.delay(delivery_ids)


@dataclass(frozen=True)
class AttemptResult:
    succeeded: bool
    response_status: int | None = None
    response_body: str = ""
    duration_ms: int = 0
    error: str = ""


def signature_header(endpoint: WebhookEndpoint, *, msg_id: str, at: dt.datetime, body: str) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, space-separated with the previous secret's signature
    while a rotation overlaps."""
    at_utc = at.astimezone(dt.UTC)
    signatures = [Webhook(endpoint.secret).sign(msg_id, at_utc, body)]
    if endpoint.previous_secret and endpoint.previous_secret_expires_at and endpoint.previous_secret_expires_at > at:
        signatures.append(Webhook(endpoint.previous_secret).sign(msg_id, at_utc, body))
    return " ".join(signatures)


def request_headers(delivery: WebhookDelivery, *, at: dt.datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature_header(
            delivery.endpoint, msg_id=delivery.webhook_id, at=at, body=delivery.payload
        ),
    }


def _post(delivery: WebhookDelivery, *, at: dt.datetime) -> AttemptResult:
    """One POST; never raises. The URL is checked again here, after DNS resolution, and the connection goes to
    the address that was checked."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = url_check(delivery.endpoint.url)
    except InvalidInput as exc:
        return AttemptResult(False, error=f"refused: {exc.message}", duration_ms=elapsed())
    connection = connection_for(target, timeout=_setting("WEBHOOKS_TIMEOUT_SECONDS", 10))
    try:
        connection.request(
            "POST", target.path, body=delivery.payload.encode(), headers=request_headers(delivery, at=at)
        )
        response = connection.getresponse()
        body = response.read(RESPONSE_KEPT).decode("utf-8", errors="replace")
        status = response.status
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, timed out, TLS, bad answer
        return AttemptResult(False, error=f"{type(exc).__name__}: {exc}"[:1000], duration_ms=elapsed())
    finally:
        connection.close()
    ok = 200 <= status < 300
    return AttemptResult(
        ok,
        response_status=status,
        response_body=body,
        duration_ms=elapsed(),
        error="" if ok else f"HTTP {status}",
    )


def _claim_seconds() -> float:
    return _setting("WEBHOOKS_CLAIM_SECONDS", 120)


def _claimable(now: dt.datetime) -> Q:
    """Pending and due, or left ``sending`` by a sender whose claim ran out — of an enabled endpoint."""
    return Q(endpoint__enabled=True) & (
        Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        | Q(status=DeliveryStatus.SENDING, claimed_until__lt=now)
    )


def delivery_send(*, delivery_id: int, now: dt.datetime | None = None) -> str:
    """Claim the delivery, POST it once, record the attempt; returns its status after, or "" when it was not
    due (sent meanwhile, claimed by another sender, its endpoint disabled)."""
    now = now or timezone.now()
    claimed = WebhookDelivery.objects.filter(_claimable(now), pk=delivery_id).update(
        status=DeliveryStatus.SENDING, claimed_until=now + dt.timedelta(seconds=_claim_seconds())
    )
    if claimed != 1:
        return ""
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    result = _post(delivery, at=now)
    return _record(delivery, result, now=now)


def _record(delivery: WebhookDelivery, result: AttemptResult, *, now: dt.datetime) -> str:
    attempts = delivery.attempts + 1
    if result.succeeded:
        status, next_attempt_at = DeliveryStatus.SUCCEEDED, None
    else:
        next_attempt_at = now + retry_delay(attempts)
        gave_up = next_attempt_at > delivery.chain_started_at + retry_window()
        status = DeliveryStatus.FAILED if gave_up else DeliveryStatus.PENDING
        next_attempt_at = None if gave_up else next_attempt_at
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            succeeded=result.succeeded,
            response_status=result.response_status,
            response_body=result.response_body,
            duration_ms=result.duration_ms,
            error=result.error,
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            claimed_until=None,
            last_attempt_at=now,
            response_status=result.response_status,
            response_body=result.response_body,
            duration_ms=result.duration_ms,
            last_error=result.error,
            succeeded_at=now if result.succeeded else None,
        )
        endpoint = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
        if result.succeeded:
            endpoint.filter(failing_since__isnull=False).update(failing_since=None)
        else:
            endpoint.filter(failing_since__isnull=True).update(failing_since=now)
            disabled = endpoint.filter(enabled=True, failing_since__lte=now - disable_after()).update(
                enabled=False,
                disabled_at=now,
                disabled_reason=f"every delivery failed for {disable_after().days} days (last: {result.error})"[:300],
            )
            if disabled:
                logger.warning("webhook endpoint %s disabled after failing since %s", delivery.endpoint_id, now)
    return status


@dataclass(frozen=True)
class SendOutcome:
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"succeeded": self.succeeded, "retrying": self.retrying, "failed": self.failed, "skipped": self.skipped}


def deliveries_send(delivery_ids: Iterable[int], *, now: dt.datetime | None = None) -> SendOutcome:
    counts = {DeliveryStatus.SUCCEEDED: 0, DeliveryStatus.PENDING: 0, DeliveryStatus.FAILED: 0, "": 0}
    for delivery_id in delivery_ids:
        counts[delivery_send(delivery_id=delivery_id, now=now)] += 1
    return SendOutcome(
        succeeded=counts[DeliveryStatus.SUCCEEDED],
        retrying=counts[DeliveryStatus.PENDING],
        failed=counts[DeliveryStatus.FAILED],
        skipped=counts[""],
    )


def deliveries_send_due(*, now: dt.datetime | None = None, limit: int = 500) -> SendOutcome:
    """Send the deliveries that are due (first attempts whose task was lost, retries whose time has come,
    those a dead sender left ``sending``), oldest first, at most ``limit``."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(_claimable(now))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return deliveries_send(due, now=now)


def delivery_resend(
    *,
    delivery: WebhookDelivery,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    now: dt.datetime | None = None,
) -> WebhookDelivery:
    """Staff's "Resend": a new attempt chain for the same delivery (same body, same ``webhook-id``, so a receiver
    that had it already drops it), due at once. Refused while it is being sent or its endpoint is disabled."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
        if not locked.endpoint.enabled:
            raise NotAllowed(f"endpoint: {locked.endpoint} is disabled; enable it first", field="endpoint")
        if locked.status == DeliveryStatus.SENDING and locked.claimed_until and locked.claimed_until > now:
            raise NotAllowed("status: the delivery is being sent right now", field="status")
        WebhookDelivery.objects.filter(pk=locked.pk).update(
            status=DeliveryStatus.PENDING,
            chain_started_at=now,
            next_attempt_at=now,
            claimed_until=None,
            resent_at=now,
            resent_by_id=_actor_id(actor),
        )
    transaction.on_commit(lambda: _enqueue([locked.pk]), robust=True)
    locked.refresh_from_db()
    return locked


def deliveries_resend(
    *,
    deliveries: Iterable[WebhookDelivery],
    actor: AbstractBaseUser | AnonymousUser | None = None,
    now: dt.datetime | None = None,
) -> tuple[int, list[str]]:
    """Resend each; returns (resent, refusals) so the admin can report a partial result."""
    resent, refusals = 0, []
    for delivery in deliveries:
        try:
            delivery_resend(delivery=delivery, actor=actor, now=now)
            resent += 1
        except NotAllowed as exc:
            refusals.append(f"#{delivery.pk}: {exc.message}")
    return resent, refusals
