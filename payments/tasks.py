"""Celery tasks: thin, load by id and call one service.

Beat schedules (registered in django-celery-beat): ``payments.retry_payments`` daily (retries due soft declines,
sends unsent failure e-mails), ``payments.recover_attempts`` every 10 minutes (re-sends attempts a crash left
``processing``)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from core.asof import parse_as_of
from core.dates import billing_today
from core.models import DomainEvent
from invoicing.models import Invoice
from payments import services, wallets
from payments.models import PaymentAttempt
from payments.services import PAYABLE
from subscriptions.models import CollectionMethod, Subscription


@shared_task(name="payments.collect_invoice")
def collect_invoice(invoice_id: int, as_of: str | None = None) -> int | None:
    attempt = services.invoice_collect(invoice_id=invoice_id, as_of=parse_as_of(as_of, option="as_of"))
    return attempt.pk if attempt else None


@shared_task(name="payments.retry_payments")
def retry_payments(as_of: str | None = None) -> dict[str, Any]:
    day = parse_as_of(as_of, option="as_of")
    return services.payment_attempts_retry_due(as_of=day).as_dict()


@shared_task(name="payments.card_expiry_notices")
def card_expiry_notices(as_of: str | None = None) -> dict[str, Any]:
    from payments.notifications import card_expiry_notices_send

    return card_expiry_notices_send(as_of=parse_as_of(as_of, option="as_of")).as_dict()


@shared_task(name="payments.recover_attempts")
def recover_attempts() -> int:
    return services.payment_attempts_recover()


# --- the settle-phase handler that hands a charge to the workers (PaymentsConfig.ready) ------------------


def on_invoice_issued_collect(event: DomainEvent) -> None:
    """``invoice.issued`` (settle, not atomic: it hands the charge to a worker, which calls the gateway): charge
    the saved payment method when the invoice's subscription collects automatically. Runs after the credit was
    applied; a second run charges nothing (``invoice_collect`` makes the automatic first charge once)."""
    invoice_id = event.payload["invoice_id"]
    invoice = Invoice.objects.select_related("subscription").get(pk=invoice_id)
    subscription = invoice.subscription
    if (
        subscription is not None
        and subscription.collection_method == CollectionMethod.CHARGE_AUTOMATICALLY
        and not subscription.collection_paused  # charged when collection resumes (on_subscription_resumed_collect)
        and invoice.status in PAYABLE
        and invoice.amount_due > 0
    ):
        as_of = invoice.issue_date or billing_today()
        collect_invoice.delay(invoice_id, as_of.isoformat())


def on_subscription_resumed_collect(event: DomainEvent) -> None:
    """``subscription.updated`` with ``collection_resumed`` (settle, not atomic: it hands charges to a worker):
    the open invoices the pause kept from their automatic first charge are charged now, on the resume date.
    Invoices that were tried before the pause keep their retry schedule (the retry job makes them)."""
    resumed_on = event.payload.get("collection_resumed")
    if not resumed_on:
        return
    subscription_id = event.payload["subscription_id"]
    if not Subscription.objects.filter(
        pk=subscription_id, collection_method=CollectionMethod.CHARGE_AUTOMATICALLY, pause_mode=""
    ).exists():
        return
    never_tried = (
        Invoice.objects.filter(subscription_id=subscription_id, status__in=PAYABLE, amount_due__gt=0)
        .exclude(pk__in=PaymentAttempt.objects.values("invoice_id"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for invoice_id in never_tried:
        collect_invoice.delay(invoice_id, resumed_on)


# --- wallets (docs/decisions/wallets.md) -----------------------------------------------------------------


@shared_task(name="payments.expire_wallet_credits")
def expire_wallet_credits(as_of: str | None = None) -> dict[str, Any]:
    return wallets.wallet_credits_expire(as_of=parse_as_of(as_of, option="as_of")).as_dict()
