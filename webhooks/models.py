"""Outgoing webhooks (docs/WEBHOOKS.md): the endpoints other systems register, and one delivery per (domain event,
endpoint) with its attempts.

The ``DomainEvent`` row (core) is the outbox: a change and its event commit together, and the ``notify`` handler of
this app turns the event into ``WebhookDelivery`` rows in one transaction with its handler-run row — a rolled-back
change leaves no event and so sends nothing; an event whose handler never ran is resumed by the events sweep. The
unique (event, endpoint) pair keeps a delivery from being created twice."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.audit import audited


# The audit trail records who changed an endpoint (URL, types, enabled, disabled by the sender); the secrets never
# enter the audit tables, and the failure clock the sender moves is not a change anyone made.
@audited(exclude=("secret", "previous_secret", "failing_since"))
class WebhookEndpoint(models.Model):
    """Where to POST events. ``secret`` (``whsec_`` + base64) signs every request (Standard Webhooks); it is shown
    to staff once, when created or rotated. After a rotation the previous secret also signs until
    ``previous_secret_expires_at``, so receivers can switch without losing a message."""

    url = models.URLField("URL", max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(
        default=list, blank=True, help_text="The event types sent to this endpoint; empty means every type."
    )
    enabled = models.BooleanField(default=True)
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set by the first failed attempt after a success, cleared by the next success: the endpoint is disabled
    # when it has been failing for WEBHOOKS_DISABLE_AFTER_DAYS.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=300, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        verbose_name = "webhook endpoint"
        ordering = ["pk"]
        permissions = [("rotate_secret_webhookendpoint", "Can rotate the signing secret of a webhook endpoint")]

    def __str__(self) -> str:
        return self.description or self.url

    @property
    def secret_hint(self) -> str:
        """Enough of the secret to tell two apart, never enough to sign."""
        return f"{self.secret[:10]}…" if self.secret else ""

    def subscribes_to(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"  # retries ran out


class WebhookDelivery(models.Model):
    """One event for one endpoint. ``payload`` is the request body, fixed when the delivery is created (the event
    with its object as the API showed it then), so every attempt sends the same bytes under the same
    ``webhook-id``. A sender claims the row (``pending`` → ``sending`` with ``claimed_until``) before it calls the
    endpoint; a dead sender's claim expires and the due-deliveries job sends it again (receivers dedupe by
    ``webhook-id``)."""

    event = models.ForeignKey("core.DomainEvent", on_delete=models.PROTECT, related_name="webhook_deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=60)
    payload = models.TextField()
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # Retries back off from here for WEBHOOKS_RETRY_HOURS; "Resend" starts a new chain.
    chain_started_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField("response code", null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first 1 kB of the last response.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    # The staff member who last pressed "Resend" (the admin's history names them too).
    resent_at = models.DateTimeField(null=True, blank=True)
    resent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at", "-pk"]
        permissions = [("resend_webhookdelivery", "Can resend a webhook delivery")]
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once_per_endpoint"),
            models.CheckConstraint(condition=Q(status__in=DeliveryStatus.values), name="webhook_delivery_status"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
                name="webhook_delivery_due",
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.pk} → endpoint {self.endpoint_id}"

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header: the same for every attempt of this delivery, so receivers can dedupe."""
        return f"msg_{self.event_id}_{self.endpoint_id}"


class WebhookAttempt(models.Model):
    """The log of one HTTP attempt (the admin's delivery page lists them)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField()
    succeeded = models.BooleanField(default=False)
    response_status = models.PositiveSmallIntegerField("response code", null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first 1 kB of the response.")
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        verbose_name = "webhook attempt"
        ordering = ["-attempted_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.attempted_at:%Y-%m-%d %H:%M:%S} {self.response_status or self.error[:40]}"
