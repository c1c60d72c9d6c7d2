"""Cancel a subscription now, settling the unused part of the period it was billed for: as customer credit, as
a refund to the payment that paid it, or not at all.

The unused time is credited by a credit note on the invoice that billed the current period (``credit_note_issue``:
numbered, taxed over the invoice's rates, on an open invoice it first lowers the amount due; what the invoice no
longer owes becomes customer credit when payments handles ``credit_note.issued``). A refund then pays that credit
back through ``payment_refund`` (the gateway for a card), after the cancellation has committed: no gateway call
inside the transaction. The amount credited is

    credit = round(Σ total of the invoice's recurring lines × (period end − cancel date) / (period end − period start))

the cancel day counting as unused, as in every proration (docs/proration.md). Prorations of changes made during
the period and usage are not credited; usage so far is billed by the final invoice at the cancel date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from django.db import transaction
from django.db.models import F, Sum

from core.errors import InvalidInput, NotAllowed
from core.money import round_amount
from invoicing.models import CreditNote, Invoice, InvoiceStatus, LineKind
from invoicing.services import credit_note_issue
from payments.models import Payment, PaymentAllocation, PaymentStatus, Refund
from payments.services import Actor, payment_refund
from subscriptions.models import Subscription, SubscriptionStatus
from subscriptions.services import subscription_cancel


class Settlement(StrEnum):
    CREDIT = "credit"  # prorated credit: a credit note; paid → customer credit, open → less due
    REFUND = "refund"  # the same credit note, then its amount refunded to the payment (card) that paid the invoice
    NONE = "none"  # nothing back


@dataclass
class CancelPreview:
    as_of: dt.date
    currency: str
    invoice: Invoice | None  # the invoice that billed the current period
    credit: Decimal  # gross, tax included
    remaining_days: int
    period_days: int
    refundable: Decimal  # of the payments that paid that invoice
    note: str = ""


@dataclass
class CancelOutcome:
    subscription: Subscription
    credit_note: CreditNote | None = None
    refunds: list[Refund] | None = None
    note: str = ""


def _period_invoice(subscription: Subscription) -> Invoice | None:
    return (
        Invoice.objects.filter(
            subscription=subscription,
            period_start=subscription.current_period_start,
            status__in=(InvoiceStatus.OPEN, InvoiceStatus.PAID),
            lines__kind=LineKind.RECURRING,
        )
        .order_by("-pk")
        .first()
    )


def subscription_cancel_now_preview(*, subscription: Subscription, as_of: dt.date) -> CancelPreview:
    """What canceling now on ``as_of`` would credit and could refund; writes nothing."""
    invoice = _period_invoice(subscription)
    preview = CancelPreview(
        as_of=as_of,
        currency=subscription.currency,
        invoice=invoice,
        credit=Decimal(0),
        remaining_days=0,
        period_days=0,
        refundable=Decimal(0),
    )
    if invoice is None or invoice.period_start is None or invoice.period_end is None:
        preview.note = "No issued invoice bills the current period: there is nothing to credit."
        return preview
    if not invoice.period_start <= as_of < invoice.period_end:
        preview.note = f"{as_of} is outside the billed period: there is nothing to credit."
        return preview
    preview.remaining_days = (invoice.period_end - as_of).days
    preview.period_days = (invoice.period_end - invoice.period_start).days
    recurring = invoice.lines.filter(kind=LineKind.RECURRING, period_start=invoice.period_start).aggregate(
        total=Sum("total_amount")
    )["total"] or Decimal(0)
    credited = CreditNote.objects.filter(invoice=invoice).aggregate(total=Sum("total"))["total"] or Decimal(0)
    credit = round_amount(recurring * preview.remaining_days / preview.period_days, invoice.currency)
    preview.credit = max(Decimal(0), min(credit, invoice.total - credited))
    preview.refundable = PaymentAllocation.objects.filter(
        invoice=invoice, payment__status__in=(PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED)
    ).aggregate(total=Sum(F("amount") - F("amount_refunded")))["total"] or Decimal(0)
    return preview


def subscription_cancel_now(
    *,
    subscription: Subscription,
    as_of: dt.date,
    settlement: Settlement | str,
    actor: Actor = None,
    reason: str = "",
) -> CancelOutcome:
    """Cancel on ``as_of`` (``subscriptions.services.subscription_cancel``: status canceled, the final invoice at
    ``as_of`` bills the usage so far) and settle the unused time as ``settlement`` says."""
    settlement = Settlement(settlement)
    if subscription.status == SubscriptionStatus.CANCELED:
        raise NotAllowed("the subscription is canceled already")
    with transaction.atomic():
        preview = subscription_cancel_now_preview(subscription=subscription, as_of=as_of)
        why = f"{reason}; " if reason else ""
        canceled = subscription_cancel(
            subscription=subscription,
            as_of=as_of,
            prorate_credit=False,  # credited below by a credit note, not by a negative final invoice
            actor=actor,
            reason=f"{why}unused time: {settlement.value}",
        )
        outcome = CancelOutcome(subscription=canceled)
        if settlement == Settlement.NONE or preview.credit <= 0:
            if settlement != Settlement.NONE:
                outcome.note = preview.note or "Nothing to credit."
            return outcome
        assert preview.invoice is not None
        if settlement == Settlement.REFUND and preview.refundable <= 0:
            raise InvalidInput(
                f"invoice {preview.invoice.number} has no payment to refund; choose prorated credit", field="settlement"
            )
        outcome.credit_note = credit_note_issue(
            invoice=preview.invoice,
            amount=preview.credit,
            reason=(
                f"Unused time of subscription #{subscription.pk}: canceled on {as_of} "
                f"({preview.remaining_days}/{preview.period_days} days)"
            ),
            issue_date=as_of,
            actor=actor,  # type: ignore[arg-type]
        )
    if settlement == Settlement.REFUND:
        outcome.refunds = _refund(invoice=preview.invoice, amount=min(preview.credit, preview.refundable), actor=actor)
    return outcome


def _refund(*, invoice: Invoice, amount: Decimal, actor: Actor) -> list[Refund]:
    """Pay ``amount`` back to the payments that paid ``invoice``, the latest first."""
    refunds = []
    allocations = (
        PaymentAllocation.objects.filter(
            invoice=invoice, payment__status__in=(PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED)
        )
        .select_related("payment")
        .order_by("-pk")
    )
    left = amount
    for allocation in allocations:
        if left <= 0:
            break
        payment: Payment = allocation.payment
        share = min(left, allocation.amount - allocation.amount_refunded)
        if share <= 0:
            continue
        refunds.append(
            payment_refund(
                payment=payment,
                amount=share,
                reason=f"unused time of a canceled subscription (invoice {invoice.number})",
                actor=actor,
            )
        )
        left -= share
    return refunds
