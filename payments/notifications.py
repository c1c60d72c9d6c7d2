"""Customer e-mails of the payments app, sent through the product's one outbound-email machinery
(invoicing.delivery: stored OutboundEmail rows, retries with back-off, tracking webhooks, once per key)."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from notifications.models import EmailKind
from notifications.services import email_queue
from payments.models import AttemptStatus, PaymentAttempt


def portal_url() -> str:
    base = getattr(settings, "PORTAL_BASE_URL", "http://127.0.0.1:8000")
    return f"{base.rstrip('/')}/portal/"


def send_payment_failed_email(*, attempt_id: int) -> bool:
    """ "Your payment failed — update your card", at most once per attempt: the attempt's ``failure_email_sent_at``
    is claimed with ``UPDATE … WHERE failure_email_sent_at IS NULL``, and the message is queued under the key
    ``payment_failed:attempt:<id>``, so neither a second call nor a retried task sends it twice. Sending,
    retries and failures are the outbound-email machinery's (visible on the invoice in the admin).
    Returns whether this call queued it."""
    claimed = PaymentAttempt.objects.filter(
        pk=attempt_id, status=AttemptStatus.FAILED, failure_email_sent_at__isnull=True
    ).update(failure_email_sent_at=timezone.now())
    if claimed != 1:
        return False
    attempt = PaymentAttempt.objects.select_related("customer", "invoice", "payment_method").get(pk=attempt_id)
    email_queue(
        kind=EmailKind.PAYMENT_FAILED,
        customer=attempt.customer,
        idempotency_key=f"payment_failed:attempt:{attempt.pk}",
        template="payments/payment_failed",
        context={
            "customer": attempt.customer,
            "invoice": attempt.invoice,
            "attempt": attempt,
            "amount": attempt.amount,
            "currency": attempt.currency,
            "payment_method": attempt.payment_method,
            "portal_url": portal_url(),
            "product_name": settings.PRODUCT_NAME,
        },
        invoice=attempt.invoice,
    )
    return True
