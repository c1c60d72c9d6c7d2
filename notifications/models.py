"""The e-mail outbox: every message to a customer is a stored ``OutboundEmail`` (sent once, retried, tracked),
the provider's tracking events, and the deliverability of each address. The bottom application layer: it knows
customers and documents only as the rows its messages point at."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


class EmailKind(models.TextChoices):
    INVOICE = "invoice", "Invoice"
    INVOICE_RESEND = "invoice_resend", "Invoice (resent by staff)"
    CREDIT_NOTE = "credit_note", "Credit note"
    REMINDER = "reminder", "Payment reminder"
    PAYMENT_RECEIPT = "payment_receipt", "Payment receipt"
    PAYMENT_FAILED = "payment_failed", "Payment failed"
    STATEMENT = "statement", "Statement of account"
    REFUND = "refund", "Refund"
    CARD_EXPIRING = "card_expiring", "Card about to expire"
    OTHER = "other", "Other"


class EmailStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained (spam)"
    FAILED = "failed", "Failed"


class OutboundEmail(models.Model):
    """One message to a customer, queued by ``notifications.services.email_queue`` and sent by a Celery task.
    ``idempotency_key`` is unique, so queueing the same message twice yields the same row; the sending task
    claims the row (``queued`` → ``sending``) with a guarded UPDATE, so a task that runs twice sends once."""

    kind = models.CharField(max_length=30, choices=EmailKind.choices)
    idempotency_key = models.CharField(max_length=200, unique=True)
    # The customer and the document a message is about. Relations by name: the database links the rows, while
    # this app's code never imports the apps above it (docs/ARCHITECTURE.md, "notifications").
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="outbound_emails")
    invoice = models.ForeignKey(
        "invoicing.Invoice", on_delete=models.PROTECT, null=True, blank=True, related_name="outbound_emails"
    )
    credit_note = models.ForeignKey(
        "invoicing.CreditNote", on_delete=models.PROTECT, null=True, blank=True, related_name="outbound_emails"
    )
    attach_pdf = models.BooleanField(default=False, help_text="Attach the invoice's / credit note's PDF.")
    language = models.CharField(max_length=8, default="en")
    from_email = models.CharField(max_length=254)
    to_emails = models.JSONField(default=list)
    cc_emails = models.JSONField(default=list, blank=True)
    subject = models.CharField(max_length=300)
    body_text = models.TextField()
    body_html = models.TextField(blank=True)
    template = models.CharField(max_length=100)
    status = models.CharField(max_length=20, choices=EmailStatus.choices, default=EmailStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    esp_name = models.CharField("provider", max_length=40, blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    queued_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "invoicing_outboundemail"  # the table keeps the name it had before the app was split out
        verbose_name = "outbound e-mail"
        ordering = ["-queued_at", "-pk"]
        indexes = [
            models.Index(fields=["provider_message_id"], name="outbound_email_message_id_idx"),
            models.Index(fields=["status", "queued_at"], name="outbound_email_status_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=EmailStatus.values), name="outbound_email_status_valid"),
            models.CheckConstraint(condition=Q(kind__in=EmailKind.values), name="outbound_email_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {', '.join(self.to_emails)} ({self.status})"


class EmailEvent(models.Model):
    """A tracking event from the e-mail provider (anymail webhooks), stored once per provider event id: a
    replayed webhook finds its row and changes nothing."""

    event_id = models.CharField(max_length=200, unique=True)
    outbound_email = models.ForeignKey(
        OutboundEmail, on_delete=models.CASCADE, null=True, blank=True, related_name="events"
    )
    esp_name = models.CharField("provider", max_length=40)
    event_type = models.CharField(max_length=30)
    recipient = models.CharField(max_length=254, blank=True)
    provider_message_id = models.CharField(max_length=200, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    description = models.TextField(blank=True)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "invoicing_emailevent"
        verbose_name = "e-mail event"
        ordering = ["-received_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.recipient}"


class EmailAddressStatus(models.Model):
    """Deliverability of an address, learnt from tracking events: a bounced billing address is shown to staff
    (invoice and e-mail admin filters). Addresses are stored lower-cased."""

    email = models.CharField(max_length=254, unique=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "invoicing_emailaddressstatus"
        verbose_name = "e-mail address status"
        verbose_name_plural = "e-mail address statuses"
        ordering = ["email"]
        constraints = [models.CheckConstraint(condition=Q(email=Lower("email")), name="email_status_lowercase")]

    def __str__(self) -> str:
        return self.email
