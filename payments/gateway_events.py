"""What the gateway did without us: refunds made in Stripe's dashboard, disputes (chargebacks) and their fees.

Called by ``payments.webhooks`` inside the transaction that marks the webhook event processed, so an event's
effects happen once; each function is idempotent on its own as well (unique gateway references), because Stripe
sends a refund or a dispute under more than one event (``charge.refunded`` and ``charge.refund.updated``; a
redelivered event after a timeout has the same id, a later "closed" event another).
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.money import round_amount
from invoicing.models import CreditNote, Invoice, InvoiceStatus
from invoicing.services import credit_note_issue
from payments.gateways.base import from_minor_units
from payments.models import (
    Dispute,
    DisputeStatus,
    FeeKind,
    GatewayFee,
    Payment,
    PaymentAllocation,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from payments.services import _refund_book

logger = logging.getLogger(__name__)
ZERO = Decimal(0)


def _payment_of(gateway: str, payment_intent_id: str) -> Payment | None:
    if not payment_intent_id:
        return None
    return Payment.objects.filter(gateway=gateway, gateway_reference=payment_intent_id).first()


def _book_gateway_refund(
    *, payment: Payment, amount: Decimal, gateway_reference: str, reason: str, as_of: dt.date, credit_note: bool
) -> Refund | None:
    """A refund the gateway already made: a ``Refund`` row booked like ours (``_refund_book``: credit taken back
    first, then invoices re-opened) — after a credit note for the amount on the invoices the payment settled when
    ``credit_note`` (a dashboard refund corrects the sale; a lost dispute does not, the customer still owes)."""
    if Refund.objects.filter(gateway=payment.gateway, gateway_reference=gateway_reference).exists():
        return None
    amount = min(amount, payment.amount - payment.amount_refunded)
    if amount <= 0 or payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED):
        return None
    if credit_note:
        left = amount
        for allocation in PaymentAllocation.objects.filter(payment=payment).select_related("invoice").order_by("-pk"):
            invoice: Invoice = allocation.invoice
            if left <= 0 or invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
                continue
            credited = sum((cn.total for cn in CreditNote.objects.filter(invoice=invoice)), ZERO)
            share = min(left, allocation.net_amount, invoice.total - credited)
            if share <= 0:
                continue
            credit_note_issue(
                invoice=invoice, amount=share, reason=f"{reason} ({gateway_reference})"[:500], issue_date=as_of
            )
            left -= share
    refund = Refund.objects.create(
        customer_id=payment.customer_id,
        payment=payment,
        currency=payment.currency,
        amount=amount,
        status=RefundStatus.PROCESSING,
        reason=reason[:500],
        method=payment.method,
        gateway=payment.gateway,
        gateway_reference=gateway_reference,
    )
    _refund_book(refund_id=refund.pk, gateway_reference=gateway_reference, actor=None)
    refund.refresh_from_db()
    return refund


def charge_refunded(*, gateway: str, charge: dict[str, Any], as_of: dt.date) -> str:
    """``charge.refunded``: every refund of the charge that is not one of ours (ours carry ``refund_id`` in their
    metadata, or are known by their ``re_…``) becomes a refund + credit note here."""
    payment = _payment_of(gateway, str(charge.get("payment_intent") or ""))
    if payment is None:
        return "ignored: no payment for this charge"
    currency = payment.currency
    booked = []
    embedded = charge.get("refunds")
    if isinstance(embedded, dict) and "data" in embedded:
        refunds = list(embedded["data"] or [])
    else:  # newer API versions leave the list out: ask Stripe
        from payments.gateways.stripe_gateway import StripeGateway

        refunds = StripeGateway().refunds_of_charge(str(charge["id"]))
    for refund in refunds:
        if refund.get("status") not in ("succeeded", "pending"):
            continue
        ours = (refund.get("metadata") or {}).get("refund_id")
        if ours and Refund.objects.filter(pk=int(ours) if str(ours).isdigit() else 0, payment=payment).exists():
            continue
        made = _book_gateway_refund(
            payment=payment,
            amount=from_minor_units(int(refund.get("amount", 0)), currency),
            gateway_reference=str(refund["id"]),
            reason="Refund made in the Stripe dashboard",
            as_of=as_of,
            credit_note=True,
        )
        if made is not None:
            booked.append(f"refund #{made.pk}")
    return f"booked {', '.join(booked)}" if booked else "nothing new: every refund is booked"


def _fee(dispute: dict[str, Any], currency: str) -> Decimal:
    stated = sum(int(bt.get("fee", 0)) for bt in dispute.get("balance_transactions") or [] if bt.get("fee"))
    if stated:
        return from_minor_units(stated, currency)
    return round_amount(Decimal(settings.PAYMENTS_DISPUTE_FEE or "0"), currency)


def dispute_opened(*, gateway: str, dispute: dict[str, Any], as_of: dt.date) -> str:
    """``charge.dispute.created``: the invoice is flagged (an open ``Dispute`` on it: admin, dashboard alert) and
    the fee the gateway takes is booked."""
    payment = _payment_of(gateway, str(dispute.get("payment_intent") or ""))
    if payment is None:
        return "ignored: no payment for this dispute"
    existing = Dispute.objects.filter(gateway=gateway, gateway_reference=str(dispute["id"])).first()
    if existing is not None:
        return f"dispute {existing.pk} already recorded"
    invoice_id = PaymentAllocation.objects.filter(payment=payment).order_by("-pk").values_list("invoice_id", flat=True)
    row = Dispute.objects.create(
        gateway=gateway,
        gateway_reference=str(dispute["id"]),
        payment=payment,
        invoice_id=invoice_id.first(),
        currency=payment.currency,
        amount=from_minor_units(int(dispute.get("amount", 0)), payment.currency) or payment.amount,
        reason=str(dispute.get("reason") or "")[:100],
    )
    fee = _fee(dispute, payment.currency)
    if fee > 0:
        GatewayFee.objects.get_or_create(
            kind=FeeKind.DISPUTE,
            gateway=gateway,
            source_reference=row.gateway_reference,
            defaults={
                "customer_id": payment.customer_id,
                "invoice_id": row.invoice_id,
                "currency": payment.currency,
                "amount": fee,
                "booked_on": as_of,
            },
        )
    logger.warning("dispute %s opened on payment %s (%s)", row.gateway_reference, payment.pk, row.reason)
    return f"dispute {row.pk} opened"


def dispute_closed(*, gateway: str, dispute: dict[str, Any], as_of: dt.date) -> str:
    """``charge.dispute.closed``: won → closed, nothing else moves; lost → the money is gone: booked as a refund of
    the payment (reason "dispute lost"), which re-opens the invoice for its amount; dunning then chases it like
    any open invoice, and staff may write it off (mark uncollectible) instead."""
    row = Dispute.objects.filter(gateway=gateway, gateway_reference=str(dispute["id"])).first()
    if row is None:
        dispute_opened(gateway=gateway, dispute=dispute, as_of=as_of)
        row = Dispute.objects.filter(gateway=gateway, gateway_reference=str(dispute["id"])).first()
        if row is None:
            return "ignored: no payment for this dispute"
    if row.status != DisputeStatus.OPEN:
        return f"dispute {row.pk} already {row.status}"
    lost = dispute.get("status") == "lost"
    refund = None
    if lost:
        refund = _book_gateway_refund(
            payment=row.payment,
            amount=row.amount,
            gateway_reference=row.gateway_reference,
            reason=f"Dispute lost ({row.reason or 'no reason given'})",
            as_of=as_of,
            credit_note=False,
        )
    Dispute.objects.filter(pk=row.pk, status=DisputeStatus.OPEN).update(
        status=DisputeStatus.LOST if lost else DisputeStatus.WON, refund=refund, closed_at=timezone.now()
    )
    return f"dispute {row.pk} {'lost: invoice re-opened' if lost else 'won'}"
