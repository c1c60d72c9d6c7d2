"""Writes of the payments app. Plain functions, keyword-only and typed (docs/STYLE.md).

Every write that touches invoices takes its row locks through ``payments.locks.lock_in_order`` (customer →
subscription → invoice → payment). Gateways are never called inside a transaction: a charge or refund first
commits a "processing" row whose id gives the idempotency key, then calls the gateway, then books the answer in a
second transaction that claims the row with ``UPDATE … WHERE status='processing'``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from core import events
from core.dates import billing_today
from core.errors import ApplicationError, Conflict, InvalidInput, NotAllowed
from core.models import DomainEvent
from core.money import CurrencyMismatch, amount_limit_problem, round_amount
from customers.models import Customer
from invoicing import services as invoicing_services
from invoicing.models import CreditNote, Invoice, InvoiceStatus
from payments.gateways import ChargeResult, GatewayUnavailable, decline_is_hard, get_gateway
from payments.locks import Locked, lock_in_order, subscription_ids_of
from payments.models import (
    AttemptStatus,
    CreditEntryKind,
    CreditLedgerEntry,
    DeclineType,
    FeeKind,
    GatewayFee,
    MethodType,
    Payment,
    PaymentAllocation,
    PaymentAttempt,
    PaymentMethod,
    PaymentMethodKind,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from payments.selectors import customer_credit_balance
from subscriptions import services as subscription_services
from subscriptions.models import CollectionMethod, PauseMode, SubscriptionStatus

logger = logging.getLogger(__name__)
Actor = User | AnonymousUser | None
ZERO = Decimal(0)
PAYABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)


class PaymentError(ApplicationError, ValueError):
    """A request the payment rules refuse; the message says why, for staff."""


class AllocationError(InvalidInput, PaymentError):
    pass


class PossibleDuplicatePayment(Conflict, PaymentError):
    """The same payment (customer, amount, currency, date, method, reference) was recorded minutes ago: most
    likely the same money entered twice (a double click, two clerks working the same bank line)."""

    def __init__(self, existing: Payment):
        self.existing = existing
        super().__init__(
            f"payment #{existing.pk} with the same customer, amount, date, method and reference was recorded at "
            f"{timezone.localtime(existing.created_at):%H:%M}; tick “record it again” if this is a second payment"
        )


# A manual payment identical to one recorded this recently is refused unless staff confirm it.
DUPLICATE_PAYMENT_WINDOW = dt.timedelta(minutes=30)


class RefundError(NotAllowed, PaymentError):
    pass


class CreditError(InvalidInput, PaymentError):
    pass


@dataclass(frozen=True)
class AllocationSpec:
    """Staff's explicit split of a payment: ``amount`` of it to ``invoice``."""

    invoice: Invoice
    amount: Decimal


def _actor_id(actor: Actor) -> Any:
    return actor.pk if isinstance(actor, User) else None


def _user(actor: Actor) -> User | None:
    return actor if isinstance(actor, User) else None


def _money_amount(amount: Decimal, currency: str, *, what: str = "amount") -> Decimal:
    if not isinstance(amount, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(amount).__name__}")
    if currency not in settings.CURRENCIES:
        raise PaymentError(f"{currency} is not one of the billing currencies {', '.join(settings.CURRENCIES)}")
    if problem := amount_limit_problem(amount, currency):  # NaN, or more than the amount columns can hold
        raise PaymentError(problem)
    if amount <= 0:
        raise PaymentError(f"the {what} must be positive, not {amount}")
    if round_amount(amount, currency) != amount:
        raise PaymentError(f"{amount} has more decimals than {currency} allows")
    return amount


# --- recording and allocating payments ------------------------------------------------------------------


def payment_record(
    *,
    customer: Customer,
    amount: Decimal,
    received_on: dt.date,
    currency: str | None = None,
    method: str = PaymentMethodKind.BANK_TRANSFER,
    reference: str = "",
    invoice: Invoice | None = None,
    allocations: Sequence[AllocationSpec] | None = None,
    gateway: str = "",
    gateway_reference: str = "",
    payment_method: PaymentMethod | None = None,
    notes: str = "",
    actor: Actor = None,
    refuse_duplicate: bool = False,
) -> Payment:
    """Record a succeeded payment and settle invoices from it, in one transaction.

    ``refuse_duplicate`` (manual entry by staff): raise ``PossibleDuplicatePayment`` if the same payment was
    recorded within ``DUPLICATE_PAYMENT_WINDOW``; checked under the customer's lock, so two submissions of the same
    form at once record it once.

    Allocation: ``allocations`` if given (staff's split), else the ``invoice`` the payer named, else the
    customer's open invoices in the payment's currency, oldest due date first. Never more than the payment, nor
    more than an invoice's amount due; what is left becomes customer credit (an overpayment entry). An invoice in
    another currency is refused (``CurrencyMismatch``)."""
    currency = _checked_payment(
        customer=customer, amount=amount, currency=currency, method=method, invoice=invoice, allocations=allocations
    )
    with transaction.atomic():
        if allocations:
            candidate_ids = [spec.invoice.pk for spec in allocations]
        elif invoice is not None:
            candidate_ids = [invoice.pk]
        else:
            candidate_ids = _open_invoice_ids(customer_id=customer.pk, currency=currency)
        locked = lock_in_order(
            customer_id=customer.pk, subscription_ids=subscription_ids_of(candidate_ids), invoice_ids=candidate_ids
        )
        if gateway_reference and Payment.objects.filter(gateway=gateway, gateway_reference=gateway_reference).exists():
            raise PaymentError(f"a payment with {gateway} reference {gateway_reference} is already recorded")
        if refuse_duplicate:
            same = (
                Payment.objects.filter(
                    customer=customer,
                    currency=currency,
                    amount=amount,
                    received_on=received_on,
                    method=method,
                    reference=reference[:255],
                    created_at__gte=timezone.now() - DUPLICATE_PAYMENT_WINDOW,
                )
                .order_by("-pk")
                .first()
            )
            if same is not None:
                raise PossibleDuplicatePayment(same)
        payment = Payment.objects.create(
            customer=customer,
            currency=currency,
            amount=amount,
            method=method,
            status=PaymentStatus.SUCCEEDED,
            reference=reference[:255],
            received_on=received_on,
            invoice=invoice,
            gateway=gateway,
            gateway_reference=gateway_reference,
            payment_method=payment_method,
            notes=notes,
            created_by_id=_actor_id(actor),
        )
        if allocations:
            plan = _explicit_plan(payment, allocations, locked)
        else:
            plan = _automatic_plan(payment, [locked.invoices[pk] for pk in candidate_ids if pk in locked.invoices])
        _allocate(payment=payment, plan=plan, locked=locked, actor=actor)
    return payment


def _checked_payment(
    *,
    customer: Customer,
    amount: Decimal,
    currency: str | None,
    method: str,
    invoice: Invoice | None,
    allocations: Sequence[AllocationSpec] | None,
) -> str:
    """The checks of a payment before anything is locked (``payment_record`` and its preview); returns the
    payment's currency."""
    currency = currency or customer.currency
    _money_amount(amount, currency)
    if method not in PaymentMethodKind.values:
        raise PaymentError(f"'{method}' is not a payment method")
    if allocations and invoice is not None:
        raise AllocationError("name an invoice or give allocations, not both")
    for target in [spec.invoice for spec in allocations or ()] + ([invoice] if invoice else []):
        if target.customer_id != customer.pk:
            raise AllocationError(f"invoice {target} belongs to another customer")
        if target.currency != currency:
            raise CurrencyMismatch(f"invoice {target} is in {target.currency}, the payment in {currency}")
    return currency


@dataclass(frozen=True)
class AllocationPreview:
    """What recording a payment would do now: the invoices it settles (oldest due first, or the one named) and
    what is left for the customer's credit."""

    currency: str
    amount: Decimal
    allocations: list[tuple[Invoice, Decimal]]
    to_credit: Decimal


def payment_allocation_preview(
    *,
    customer: Customer,
    amount: Decimal,
    currency: str | None = None,
    method: str = PaymentMethodKind.BANK_TRANSFER,
    invoice: Invoice | None = None,
) -> AllocationPreview:
    """``payment_record`` in dry-run, for the admin's preview: the same checks and the same allocation plan
    (``_automatic_plan``), on the invoices as they are now, without locks or writes. Recording the same payment
    right after allocates exactly this, unless the invoices changed in between."""
    currency = _checked_payment(
        customer=customer, amount=amount, currency=currency, method=method, invoice=invoice, allocations=None
    )
    candidate_ids = (
        [invoice.pk] if invoice is not None else _open_invoice_ids(customer_id=customer.pk, currency=currency)
    )
    invoices = list(Invoice.objects.filter(pk__in=candidate_ids))
    plan = _automatic_plan(Payment(customer=customer, currency=currency, amount=amount), invoices)
    allocated = sum((share for _, share in plan), ZERO)
    return AllocationPreview(currency=currency, amount=amount, allocations=plan, to_credit=amount - allocated)


def _open_invoice_ids(*, customer_id: int, currency: str) -> list[int]:
    return list(
        Invoice.objects.filter(customer_id=customer_id, currency=currency, status__in=PAYABLE, amount_due__gt=0)
        .order_by("due_date", "pk")
        .values_list("pk", flat=True)
    )


def _explicit_plan(payment: Payment, specs: Sequence[AllocationSpec], locked: Locked) -> list[tuple[Invoice, Decimal]]:
    plan: list[tuple[Invoice, Decimal]] = []
    seen: set[int] = set()
    total = ZERO
    for spec in specs:
        invoice = locked.invoices[spec.invoice.pk]
        if invoice.pk in seen:
            raise AllocationError(f"invoice {invoice} is listed twice")
        seen.add(invoice.pk)
        _money_amount(spec.amount, payment.currency, what=f"allocation to {invoice}")
        if invoice.status not in PAYABLE:
            raise AllocationError(f"invoice {invoice} is {invoice.status}: it takes no payments")
        if spec.amount > invoice.amount_due:
            raise AllocationError(
                f"invoice {invoice}: {spec.amount} is more than its amount due {invoice.amount_due} {invoice.currency}"
            )
        total += spec.amount
        plan.append((invoice, spec.amount))
    if total > payment.amount:
        raise AllocationError(f"the allocations ({total}) exceed the payment ({payment.amount} {payment.currency})")
    return plan


def _automatic_plan(payment: Payment, invoices: list[Invoice]) -> list[tuple[Invoice, Decimal]]:
    """The named invoice, or the open invoices oldest due date first — each as read under its lock."""
    remaining = payment.amount
    plan: list[tuple[Invoice, Decimal]] = []
    for invoice in sorted(invoices, key=lambda i: (i.due_date or dt.date.max, i.pk)):
        if remaining <= 0:
            break
        if invoice.status not in PAYABLE or invoice.amount_due <= 0 or invoice.currency != payment.currency:
            continue  # settled or voided since the candidates were read
        share = min(remaining, invoice.amount_due)
        plan.append((invoice, share))
        remaining -= share
    return plan


def _allocate(*, payment: Payment, plan: list[tuple[Invoice, Decimal]], locked: Locked, actor: Actor) -> None:
    allocated = ZERO
    for invoice, share in plan:
        PaymentAllocation.objects.create(payment=payment, invoice=invoice, currency=payment.currency, amount=share)
        updated = invoicing_services.invoice_apply_payment(
            invoice=invoice, amount=share, actor=_user(actor), reason=f"payment #{payment.pk}"
        )
        locked.invoices[invoice.pk] = updated
        allocated += share
    leftover = payment.amount - allocated
    if leftover > 0:
        CreditLedgerEntry.objects.create(
            customer_id=payment.customer_id,
            currency=payment.currency,
            amount=leftover,
            kind=CreditEntryKind.OVERPAYMENT,
            reason=f"unallocated part of payment #{payment.pk}",
            payment=payment,
            created_by_id=_actor_id(actor),
        )
    _mark_subscriptions_paid_up(locked=locked, actor=actor)
    events.event_record(
        "payment.succeeded",
        subject_type="payment",
        subject_id=payment.pk,
        payload={
            "payment_id": payment.pk,
            "customer_id": payment.customer_id,
            "currency": payment.currency,
            "amount": str(payment.amount),
            "allocations": [{"invoice_id": invoice.pk, "amount": str(share)} for invoice, share in plan],
            "to_customer_credit": str(leftover),
            "method": payment.method,
        },
        actor_id=_actor_id(actor),
    )


def _mark_subscriptions_paid_up(*, locked: Locked, actor: Actor) -> None:
    """A past-due subscription with nothing left open is active again."""
    for subscription in locked.subscriptions.values():
        if subscription.status != SubscriptionStatus.PAST_DUE:
            continue
        still_open = Invoice.objects.filter(subscription=subscription, status__in=PAYABLE, amount_due__gt=0).exists()
        if not still_open:
            subscription_services.subscription_mark_paid_up(
                subscription=subscription,
                actor=actor,
                reason="open invoices paid",  # type: ignore[arg-type]
            )


# --- customer credit ------------------------------------------------------------------------------------


def customer_credit_apply(*, invoice: Invoice, actor: Actor = None, once: bool = True) -> Decimal:
    """Settle as much of ``invoice`` as the customer's credit in its currency covers. Returns the amount applied.
    Automatically (the ``invoice.issued`` handler) at most once per invoice; staff's "Apply customer credit"
    (``once=False``) applies credit the customer received since — the ledger balance bounds it either way."""
    with transaction.atomic():
        locked = lock_in_order(
            customer_id=invoice.customer_id, subscription_ids=[invoice.subscription_id], invoice_ids=[invoice.pk]
        )
        current = locked.invoices[invoice.pk]
        if current.status not in PAYABLE or current.amount_due <= 0:
            return ZERO
        if once and CreditLedgerEntry.objects.filter(invoice=current, kind=CreditEntryKind.APPLIED_TO_INVOICE).exists():
            return ZERO
        balance = customer_credit_balance(customer=locked.customer, currency=current.currency)
        amount = min(balance, current.amount_due)
        if amount <= 0:
            return ZERO
        CreditLedgerEntry.objects.create(
            customer=locked.customer,
            currency=current.currency,
            amount=-amount,
            kind=CreditEntryKind.APPLIED_TO_INVOICE,
            reason=f"applied to invoice {current}",
            invoice=current,
            created_by_id=_actor_id(actor),
        )
        locked.invoices[current.pk] = invoicing_services.invoice_apply_payment(
            invoice=current, amount=amount, actor=_user(actor), reason="customer credit applied"
        )
        _mark_subscriptions_paid_up(locked=locked, actor=actor)
    return amount


def customer_credit_from_credit_note(credit_note_id: int, amount_to_credit: Decimal) -> CreditLedgerEntry | None:
    """Book the part of a credit note that did not reduce the invoice's amount due as customer credit.
    Idempotent (one entry per credit note, a unique constraint)."""
    if amount_to_credit <= 0:
        return None
    credit_note = CreditNote.objects.get(pk=credit_note_id)
    with transaction.atomic():
        lock_in_order(customer_id=credit_note.customer_id)
        existing = CreditLedgerEntry.objects.filter(credit_note=credit_note, kind=CreditEntryKind.CREDIT_NOTE).first()
        if existing is not None:
            return existing
        return CreditLedgerEntry.objects.create(
            customer_id=credit_note.customer_id,
            currency=credit_note.currency,
            amount=amount_to_credit,
            kind=CreditEntryKind.CREDIT_NOTE,
            reason=f"credit note {credit_note.number}",
            credit_note=credit_note,
            invoice_id=credit_note.invoice_id,
        )


def customer_credit_adjust(
    *, customer: Customer, amount: Decimal, currency: str, reason: str, actor: Actor = None
) -> CreditLedgerEntry:
    """A manual correction of the balance (positive adds credit); the balance may not go below zero."""
    if not reason.strip():
        raise CreditError("a manual adjustment needs a reason")
    if not isinstance(amount, Decimal) or amount == 0:
        raise CreditError("the adjustment must be a non-zero Decimal amount")
    _money_amount(abs(amount), currency)
    with transaction.atomic():
        lock_in_order(customer_id=customer.pk)
        balance = customer_credit_balance(customer=customer, currency=currency)
        if balance + amount < 0:
            raise CreditError(f"{customer} has {balance} {currency} credit: cannot remove {-amount}")
        return CreditLedgerEntry.objects.create(
            customer=customer,
            currency=currency,
            amount=amount,
            kind=CreditEntryKind.MANUAL_ADJUSTMENT,
            reason=reason[:500],
            created_by_id=_actor_id(actor),
        )


def customer_credit_refund(
    *,
    customer: Customer,
    amount: Decimal,
    currency: str,
    reason: str,
    method: str = PaymentMethodKind.BANK_TRANSFER,
    actor: Actor = None,
) -> Refund:
    """Pay customer credit out (e.g. a credit note the customer wants back): recorded, paid outside the system."""
    _money_amount(amount, currency)
    if not reason.strip():
        raise RefundError("a refund needs a reason")
    with transaction.atomic():
        lock_in_order(customer_id=customer.pk)
        balance = customer_credit_balance(customer=customer, currency=currency)
        if amount > balance:
            raise RefundError(f"{customer} has {balance} {currency} credit: cannot refund {amount}")
        now = timezone.now()
        refund = Refund.objects.create(
            customer=customer,
            currency=currency,
            amount=amount,
            status=RefundStatus.SUCCEEDED,
            reason=reason[:500],
            method=method,
            amount_from_credit=amount,
            created_by_id=_actor_id(actor),
            processed_at=now,
        )
        CreditLedgerEntry.objects.create(
            customer=customer,
            currency=currency,
            amount=-amount,
            kind=CreditEntryKind.REFUND,
            reason=reason[:500],
            refund=refund,
            created_by_id=_actor_id(actor),
        )
    return refund


# --- refunds of payments --------------------------------------------------------------------------------


def _lock_payment_context(payment_id: int) -> tuple[Locked, Payment]:
    row = Payment.objects.values("customer_id").get(pk=payment_id)
    invoice_ids = list(PaymentAllocation.objects.filter(payment_id=payment_id).values_list("invoice_id", flat=True))
    locked = lock_in_order(
        customer_id=row["customer_id"],
        subscription_ids=subscription_ids_of(invoice_ids),
        invoice_ids=invoice_ids,
        payment_ids=[payment_id],
    )
    return locked, locked.payments[payment_id]


def payment_refund(*, payment: Payment, reason: str, amount: Decimal | None = None, actor: Actor = None) -> Refund:
    """Refund all (``amount=None``) or part of a payment. A gateway payment is refunded through its gateway
    (idempotency key ``refund:{id}``); a manual one (bank transfer, cash, cheque) is recorded as paid back.
    When it succeeds, the refund first takes back the credit this payment left (while the customer still has it),
    then re-opens the invoices it settled, most recent allocation first."""
    if not reason.strip():
        raise RefundError("a refund needs a reason")
    with transaction.atomic():
        locked, locked_payment = _lock_payment_context(payment.pk)
        if locked_payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED):
            raise RefundError(f"{locked_payment} is {locked_payment.status}: nothing to refund")
        in_flight = (
            Refund.objects.filter(payment=locked_payment, status=RefundStatus.PROCESSING).aggregate(
                total=Sum("amount")
            )["total"]
            or ZERO
        )
        refundable = locked_payment.amount - locked_payment.amount_refunded - in_flight
        amount = refundable if amount is None else amount
        if amount <= 0:
            raise RefundError(f"{locked_payment} has nothing left to refund")
        _money_amount(amount, locked_payment.currency)
        if amount > refundable:
            raise RefundError(f"{locked_payment}: at most {refundable} {locked_payment.currency} can be refunded")
        _book_credit_note_credit(locked_payment)
        spent = _refund_plan(payment=locked_payment, amount=amount, refund_id=None, locked=locked).credit_note_spent
        if spent > 0:
            raise RefundError(
                f"{locked_payment}: {spent} {locked_payment.currency} of it was credited by a credit note and that "
                f"credit has been used or paid out; at most {amount - spent} {locked_payment.currency} can be refunded"
            )
        via_gateway = bool(locked_payment.gateway_reference) and locked_payment.gateway in ("sandbox", "stripe")
        refund = Refund.objects.create(
            customer_id=locked_payment.customer_id,
            payment=locked_payment,
            currency=locked_payment.currency,
            amount=amount,
            status=RefundStatus.PROCESSING,
            reason=reason[:500],
            method=locked_payment.method,
            gateway=locked_payment.gateway if via_gateway else "",
            created_by_id=_actor_id(actor),
        )
        refund.idempotency_key = f"refund:{refund.pk}"
        Refund.objects.filter(pk=refund.pk).update(idempotency_key=refund.idempotency_key)
        if not via_gateway:
            _refund_book(refund_id=refund.pk, gateway_reference="", actor=actor)
    if via_gateway:
        _refund_send(refund_id=refund.pk, actor=actor)
    refund.refresh_from_db()
    return refund


def _refund_send(*, refund_id: int, actor: Actor = None) -> None:
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    assert refund.payment is not None and refund.idempotency_key
    try:
        result = get_gateway(refund.gateway).refund(
            charge_reference=refund.payment.gateway_reference,
            amount=refund.amount,
            currency=refund.currency,
            idempotency_key=refund.idempotency_key,
        )
    except GatewayUnavailable:
        logger.warning("refund %s: gateway unavailable, left processing for the recovery sweep", refund_id)
        return
    if result.status == "succeeded":
        with transaction.atomic():
            _refund_book(refund_id=refund_id, gateway_reference=result.reference, actor=actor)
    else:
        Refund.objects.filter(pk=refund_id, status=RefundStatus.PROCESSING).update(
            status=RefundStatus.FAILED, failure_message=result.message[:500], processed_at=timezone.now()
        )


@dataclass(frozen=True)
class _RefundShare:
    allocation: PaymentAllocation
    from_credit_note: Decimal  # credit a credit note of this invoice left, taken back while the customer has it
    credit_note_spent: Decimal  # such credit the customer no longer has (only when booking after the gateway)
    reopen: Decimal  # due again on the invoice


@dataclass(frozen=True)
class _RefundPlan:
    from_overpayment: Decimal
    shares: list[_RefundShare]
    rest: Decimal  # overpayment credit used meanwhile: taken all the same (the balance goes negative)

    @property
    def credit_note_spent(self) -> Decimal:
        return sum((share.credit_note_spent for share in self.shares), ZERO)


def _book_credit_note_credit(payment: Payment) -> None:
    """Book now the credit of the credit notes of the invoices this payment settled, in case their settle handler
    has not run yet (idempotent: one ledger entry per credit note); the plan below reads the ledger."""
    invoice_ids = PaymentAllocation.objects.filter(payment=payment).values_list("invoice_id", flat=True)
    for credit_note in CreditNote.objects.filter(invoice_id__in=invoice_ids, amount_to_customer_credit__gt=0):
        customer_credit_from_credit_note(credit_note.pk, credit_note.amount_to_customer_credit)


def _credit_note_credit_left(invoice_id: int) -> Decimal:
    """Credit the invoice's credit notes gave the customer, less what refunds of its payments took back."""
    entries = CreditLedgerEntry.objects.filter(invoice_id=invoice_id)
    given = entries.filter(kind=CreditEntryKind.CREDIT_NOTE).aggregate(total=Sum("amount"))["total"] or ZERO
    taken = entries.filter(kind=CreditEntryKind.REFUND).aggregate(total=Sum("amount"))["total"] or ZERO
    return max(ZERO, given + taken)


def _refund_plan(*, payment: Payment, amount: Decimal, refund_id: int | None, locked: Locked) -> _RefundPlan:
    """Where ``amount`` of ``payment`` comes back from, in this order:

    1. the overpayment credit this payment left (while the customer still has it);
    2. per invoice it settled, newest allocation first: the credit a credit note of that invoice turned the paid
       money into (while the customer still has it) — a credit note on a paid invoice gives the customer credit,
       so re-opening the invoice as well would count the same money twice (credit *and* amount due);
    3. the rest re-opens the invoice, but never beyond what its credit notes left owing: paid money that stands
       against credit-note credit the customer has used or been paid is ``credit_note_spent`` (payment_refund
       refuses it; a refund the gateway already made takes it from the balance, which goes negative).
    """
    overpaid = (
        CreditLedgerEntry.objects.filter(payment=payment, kind=CreditEntryKind.OVERPAYMENT).aggregate(
            total=Sum("amount")
        )["total"]
        or ZERO
    )
    # Earlier refunds' entries without an invoice took back this payment's overpayment credit.
    earlier = CreditLedgerEntry.objects.filter(payment=payment, kind=CreditEntryKind.REFUND, invoice__isnull=True)
    if refund_id is not None:
        earlier = earlier.exclude(refund_id=refund_id)
    overpayment_taken_before = -(earlier.aggregate(total=Sum("amount"))["total"] or ZERO)
    balance = customer_credit_balance(customer=locked.customer, currency=payment.currency)
    from_overpayment = max(ZERO, min(amount, overpaid - overpayment_taken_before, balance))
    rest = amount - from_overpayment
    balance -= from_overpayment
    shares: list[_RefundShare] = []
    for allocation in PaymentAllocation.objects.filter(payment=payment).order_by("-pk"):
        if rest <= 0:
            break
        available = min(rest, allocation.net_amount)
        if available <= 0:
            continue
        credit_left = _credit_note_credit_left(allocation.invoice_id)
        from_credit_note = max(ZERO, min(available, credit_left, balance))
        balance -= from_credit_note
        invoice = locked.invoices[allocation.invoice_id]
        reopenable = max(ZERO, invoice.amount_paid - (credit_left - from_credit_note))
        reopen = min(available - from_credit_note, reopenable)
        spent = available - from_credit_note - reopen
        shares.append(_RefundShare(allocation, from_credit_note, spent, reopen))
        rest -= available
    return _RefundPlan(from_overpayment=from_overpayment, shares=shares, rest=rest)


def _refund_book(*, refund_id: int, gateway_reference: str, actor: Actor) -> None:
    """Book a succeeded refund's effects. Runs in a transaction; claims the refund row so it books once."""
    refund = Refund.objects.get(pk=refund_id)
    assert refund.payment_id is not None
    locked, payment = _lock_payment_context(refund.payment_id)
    if Refund.objects.filter(pk=refund_id, status=RefundStatus.PROCESSING).update(status=RefundStatus.SUCCEEDED) != 1:
        return  # booked by a concurrent sweep or webhook
    currency = payment.currency
    _book_credit_note_credit(payment)
    plan = _refund_plan(payment=payment, amount=refund.amount, refund_id=refund_id, locked=locked)
    reason = f"refund #{refund.pk} of payment #{payment.pk}: {refund.reason}"[:500]
    from_credit = plan.from_overpayment
    reopened = ZERO
    for share in plan.shares:
        taken = share.from_credit_note + share.credit_note_spent
        if share.reopen or taken:
            PaymentAllocation.objects.filter(pk=share.allocation.pk).update(
                amount_refunded=share.allocation.amount_refunded + share.reopen + taken
            )
        if share.reopen:
            invoicing_services.invoice_reverse_payment(
                invoice=locked.invoices[share.allocation.invoice_id],
                amount=share.reopen,
                actor=_user(actor),
                reason=f"refund #{refund.pk} of payment #{payment.pk}",
            )
            reopened += share.reopen
        if taken:
            # Attributed to the invoice, so that its credit-note credit is taken back once (_credit_note_credit_left).
            CreditLedgerEntry.objects.create(
                customer_id=payment.customer_id,
                currency=currency,
                amount=-taken,
                kind=CreditEntryKind.REFUND,
                reason=reason,
                payment=payment,
                invoice_id=share.allocation.invoice_id,
                refund=refund,
                created_by_id=_actor_id(actor),
            )
            from_credit += taken
    # Whatever is still left was credit the customer has used since: the refund takes it back all the same, so
    # the balance goes below zero and shows what the customer owes.
    overpayment_taken = plan.from_overpayment + plan.rest
    if overpayment_taken > 0:
        CreditLedgerEntry.objects.create(
            customer_id=payment.customer_id,
            currency=currency,
            amount=-overpayment_taken,
            kind=CreditEntryKind.REFUND,
            reason=reason,
            payment=payment,
            refund=refund,
            created_by_id=_actor_id(actor),
        )
    from_credit += plan.rest
    refunded = payment.amount_refunded + refund.amount
    Payment.objects.filter(pk=payment.pk).update(
        amount_refunded=refunded,
        status=PaymentStatus.REFUNDED if refunded == payment.amount else PaymentStatus.PARTIALLY_REFUNDED,
        updated_at=timezone.now(),
    )
    Refund.objects.filter(pk=refund_id).update(
        gateway_reference=gateway_reference,
        amount_from_credit=from_credit,
        amount_reopened=reopened,
        processed_at=timezone.now(),
    )
    events.event_record(
        "payment.refunded",
        subject_type="payment",
        subject_id=payment.pk,
        payload={
            "payment_id": payment.pk,
            "refund_id": refund.pk,
            "customer_id": payment.customer_id,
            "currency": currency,
            "amount": str(refund.amount),
            "amount_from_credit": str(from_credit),
            "amount_reopened": str(reopened),
        },
        actor_id=_actor_id(actor),
    )


# --- payment methods ------------------------------------------------------------------------------------


def payment_method_set_default(*, payment_method: PaymentMethod) -> PaymentMethod:
    with transaction.atomic():
        lock_in_order(customer_id=payment_method.customer_id)
        PaymentMethod.objects.filter(customer_id=payment_method.customer_id, is_default=True).exclude(
            pk=payment_method.pk
        ).update(is_default=False)
        PaymentMethod.objects.filter(pk=payment_method.pk).update(is_default=True, is_active=True)
    payment_method.refresh_from_db()
    return payment_method


def payment_method_add(
    *,
    customer: Customer,
    token: str,
    gateway: str | None = None,
    gateway_customer_id: str = "",
    brand: str = "",
    last4: str = "",
    exp_month: int | None = None,
    exp_year: int | None = None,
    make_default: bool = True,
    default_if_first: bool = True,
) -> PaymentMethod:
    """Save a method the customer set up at the gateway (the gateway's id only, never card data). It becomes the
    default with ``make_default``, or when the customer has none and ``default_if_first`` (the portal's pay page
    passes False: a card becomes the default there only once it was charged)."""
    with transaction.atomic():
        lock_in_order(customer_id=customer.pk)
        method = PaymentMethod.objects.create(
            customer=customer,
            gateway=gateway or settings.PAYMENTS_DEFAULT_GATEWAY,
            token=token,
            gateway_customer_id=gateway_customer_id,
            brand=brand,
            last4=last4,
            exp_month=exp_month,
            exp_year=exp_year,
        )
        if make_default or (
            default_if_first and not PaymentMethod.objects.filter(customer=customer, is_default=True).exists()
        ):
            payment_method_set_default(payment_method=method)
    method.refresh_from_db()
    return method


# --- automatic collection -------------------------------------------------------------------------------


# --- domain event handlers (registered in PaymentsConfig.ready, all in the settle phase) -------------------


def on_credit_note_issued_book_credit(event: DomainEvent) -> None:
    """``credit_note.issued`` (settle, atomic): book its ``amount_to_customer_credit`` as customer credit."""
    customer_credit_from_credit_note(
        event.payload["credit_note_id"], Decimal(event.payload["amount_to_customer_credit"])
    )


def on_invoice_issued_apply_credit(event: DomainEvent) -> None:
    """``invoice.issued`` (settle, atomic): settle what the customer's credit balance covers, before the invoice
    is rendered and e-mailed (deliver phase), so both state the amount due after credit."""
    if settings.PAYMENTS_APPLY_CREDIT_ON_FINALIZE:
        customer_credit_apply(invoice=Invoice.objects.get(pk=event.payload["invoice_id"]))


def _first_attempt_day(invoice_id: int) -> dt.date | None:
    first = PaymentAttempt.objects.filter(invoice_id=invoice_id).order_by("attempt_number").first()
    return first.attempted_on if first else None


def invoice_collect(
    *,
    invoice_id: int,
    as_of: dt.date | None = None,
    require_automatic: bool = True,
    retry_of: int | None = None,
    payment_method_id: int | None = None,
) -> PaymentAttempt | None:
    """Charge an invoice's amount due to the customer's default payment method: one ``PaymentAttempt``.

    The attempt is committed as ``processing`` before the gateway is called, with idempotency key
    ``payment_attempt:{id}``; the answer is booked by ``payment_attempt_record_result``. Returns ``None`` when
    there is nothing to charge (paid, void, another try in flight, not an automatic-collection invoice, or — for
    the automatic first charge — already tried once). ``retry_of`` is the failed attempt this retry replaces: its
    retry date is claimed in the same transaction."""
    as_of = as_of or billing_today()
    invoice_row = Invoice.objects.values("customer_id", "subscription_id").get(pk=invoice_id)
    with transaction.atomic():
        locked = lock_in_order(
            customer_id=invoice_row["customer_id"],
            subscription_ids=[invoice_row["subscription_id"]],
            invoice_ids=[invoice_id],
        )
        subscription = locked.subscriptions.get(invoice_row["subscription_id"] or 0)
        if require_automatic and subscription is not None and subscription.collection_paused:
            # Collection paused: no automatic charge, first or retry. A retry keeps its date (it is not claimed),
            # so the retry job charges it once collection resumes.
            return None
        if retry_of is not None:
            claimed = PaymentAttempt.objects.filter(pk=retry_of, next_retry_on__isnull=False).update(next_retry_on=None)
            if claimed != 1:
                return None  # another worker took this retry
        invoice = locked.invoices[invoice_id]
        if invoice.status not in PAYABLE or invoice.amount_due <= 0:
            return None
        if require_automatic and (
            subscription is None or subscription.collection_method != CollectionMethod.CHARGE_AUTOMATICALLY
        ):
            return None
        in_flight = (AttemptStatus.PROCESSING, AttemptStatus.REQUIRES_ACTION)
        if PaymentAttempt.objects.filter(invoice=invoice, status__in=in_flight).exists():
            return None  # a debit with the bank, or a charge waiting for the customer's 3-D Secure
        last = PaymentAttempt.objects.filter(invoice=invoice).order_by("-attempt_number").first()
        if last is not None and require_automatic and retry_of is None:
            # The automatic charge after finalization happens once. A redelivered collect task (a lost ack) or a
            # re-run finalize hook must not charge a declined card again: later tries are the retry schedule's
            # (``retry_of``) or staff's ("charge now").
            return None
        methods = PaymentMethod.objects.filter(customer=locked.customer, is_active=True)
        if payment_method_id is not None:  # the portal's pay page: the card the payer chose, default or not
            method = methods.filter(pk=payment_method_id).first()
        else:
            method = methods.filter(is_default=True).order_by("pk").first()
        now = timezone.now()
        attempt = PaymentAttempt.objects.create(
            invoice=invoice,
            customer=locked.customer,
            payment_method=method,
            attempt_number=(last.attempt_number + 1) if last else 1,
            attempted_on=as_of,
            currency=invoice.currency,
            amount=invoice.amount_due,
            status=AttemptStatus.PROCESSING,
            gateway=method.gateway if method else settings.PAYMENTS_DEFAULT_GATEWAY,
            processing_since=now,
        )
        attempt.idempotency_key = f"payment_attempt:{attempt.pk}"
        PaymentAttempt.objects.filter(pk=attempt.pk).update(idempotency_key=attempt.idempotency_key)
        unusable = "no_payment_method" if method is None else "expired_card" if method.expired_on(as_of) else ""
        if unusable:
            # Nothing to send to a gateway: book the (hard) failure in this same transaction.
            result = ChargeResult(
                status="failed",
                reference="",
                amount=attempt.amount,
                currency=attempt.currency,
                decline_code=unusable,
                message="No usable saved payment method." if method is None else "The saved card has expired.",
            )
            _record_result_locked(attempt=attempt, result=result, as_of=as_of, locked=locked)
            return attempt
    _attempt_send(attempt=attempt, as_of=as_of)
    attempt.refresh_from_db()
    return attempt


def _attempt_send(*, attempt: PaymentAttempt, as_of: dt.date) -> None:
    """Call the gateway (no transaction open) and book the answer. An unknown outcome leaves the attempt
    ``processing``: the recovery sweep re-sends the same idempotency key."""
    method = attempt.payment_method
    assert method is not None and attempt.idempotency_key
    try:
        result = get_gateway(attempt.gateway).charge(
            method=method,
            amount=attempt.amount,
            currency=attempt.currency,
            idempotency_key=attempt.idempotency_key,
            description=f"Invoice {attempt.invoice}",
            metadata={"payment_attempt_id": str(attempt.pk), "invoice_id": str(attempt.invoice_id)},
        )
    except GatewayUnavailable as exc:
        logger.warning("payment attempt %s: outcome unknown (%s); left processing", attempt.pk, exc)
        return
    payment_attempt_record_result(attempt_id=attempt.pk, result=result, as_of=as_of)


def payment_attempt_record_result(*, attempt_id: int, result: ChargeResult, as_of: dt.date) -> PaymentAttempt:
    """Book a gateway answer for an attempt, once: the attempt row is claimed with ``UPDATE … WHERE
    status='processing'`` under the locks. A success that arrives after a recorded failure (webhooks out of
    order) still books the payment, since the money did move."""
    row = PaymentAttempt.objects.values("customer_id", "invoice_id", "invoice__subscription_id").get(pk=attempt_id)
    with transaction.atomic():
        locked = lock_in_order(
            customer_id=row["customer_id"],
            subscription_ids=[row["invoice__subscription_id"]],
            invoice_ids=[row["invoice_id"]],
        )
        attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_id)
        _record_result_locked(attempt=attempt, result=result, as_of=as_of, locked=locked)
    return attempt


def _record_result_locked(*, attempt: PaymentAttempt, result: ChargeResult, as_of: dt.date, locked: Locked) -> None:
    now = timezone.now()
    is_debit = attempt.payment_method is not None and attempt.payment_method.type == MethodType.SEPA_DEBIT
    if result.status == "processing":
        # A SEPA debit stays here for days; its outcome comes by webhook (payment_intent.succeeded / failed).
        PaymentAttempt.objects.filter(pk=attempt.pk, status=AttemptStatus.PROCESSING).update(
            gateway_reference=result.reference,
            debit_on_or_after=(attempt.attempted_on + dt.timedelta(days=settings.PAYMENTS_SEPA_DEBIT_DAYS))
            if is_debit
            else None,
        )
        attempt.refresh_from_db()
        return
    if result.status == "requires_action":
        # Not a decline: no retry of this intent, no failure e-mail; the customer authenticates through the link
        # e-mailed now, and dunning leaves the invoice alone for PAYMENT_ACTION_GRACE_DAYS.
        changed = PaymentAttempt.objects.filter(pk=attempt.pk, status=AttemptStatus.PROCESSING).update(
            status=AttemptStatus.REQUIRES_ACTION,
            gateway_reference=result.reference,
            decline_code="authentication_required",
            action_required_on=as_of,
            next_retry_on=None,
        )
        attempt.refresh_from_db()
        if changed == 1:
            from payments.notifications import send_payment_action_email

            transaction.on_commit(partial(send_payment_action_email, attempt_id=attempt.pk))
        return
    if result.status == "succeeded":
        claimable = [AttemptStatus.PROCESSING, AttemptStatus.REQUIRES_ACTION, AttemptStatus.FAILED]
        if not PaymentAttempt.objects.filter(pk=attempt.pk, status__in=claimable).exists():
            return
        payment = Payment.objects.filter(gateway=attempt.gateway, gateway_reference=result.reference).first()
        if payment is None:
            payment = Payment.objects.create(
                customer_id=attempt.customer_id,
                currency=attempt.currency,
                amount=result.amount if result.amount > 0 else attempt.amount,
                method=PaymentMethodKind.DIRECT_DEBIT if is_debit else PaymentMethodKind.CARD,
                status=PaymentStatus.SUCCEEDED,
                reference=f"Automatic charge of invoice {attempt.invoice}",
                received_on=as_of,
                invoice_id=attempt.invoice_id,
                gateway=attempt.gateway,
                gateway_reference=result.reference,
                payment_method_id=attempt.payment_method_id,
            )
            invoice = locked.invoices[attempt.invoice_id]
            _allocate(payment=payment, plan=_automatic_plan(payment, [invoice]), locked=locked, actor=None)
        PaymentAttempt.objects.filter(pk=attempt.pk, status__in=claimable).update(
            status=AttemptStatus.SUCCEEDED,
            payment=payment,
            gateway_reference=result.reference,
            decline_code="",
            decline_type="",
            failure_message="",
            next_retry_on=None,
            final_failure=False,
            processed_at=now,
        )
        attempt.refresh_from_db()
        return
    # failed. A failed direct debit is not retried automatically (each failure costs a bank fee): dunning takes
    # the invoice over from its due date.
    hard = decline_is_hard(result.decline_code) or is_debit
    schedule = list(settings.PAYMENTS_RETRY_SCHEDULE_DAYS)
    next_retry_on: dt.date | None = None
    if not hard and attempt.attempt_number <= len(schedule):
        first_day = _first_attempt_day(attempt.invoice_id) or attempt.attempted_on
        next_retry_on = max(
            first_day + dt.timedelta(days=schedule[attempt.attempt_number - 1]), as_of + dt.timedelta(days=1)
        )
    changed = PaymentAttempt.objects.filter(
        pk=attempt.pk, status__in=[AttemptStatus.PROCESSING, AttemptStatus.REQUIRES_ACTION]
    ).update(
        status=AttemptStatus.FAILED,
        gateway_reference=result.reference,
        decline_code=result.decline_code[:60],
        decline_type=DeclineType.HARD if hard else DeclineType.SOFT,
        failure_message=result.message[:500],
        next_retry_on=next_retry_on,
        final_failure=next_retry_on is None,
        processed_at=now,
    )
    attempt.refresh_from_db()
    if changed == 1 and is_debit:
        _debit_failure_fee_book(attempt=attempt, result=result, as_of=as_of)
    if changed == 1:
        events.event_record(
            "payment.failed",
            subject_type="payment_attempt",
            subject_id=attempt.pk,
            payload={
                "payment_attempt_id": attempt.pk,
                "invoice_id": attempt.invoice_id,
                "customer_id": attempt.customer_id,
                "currency": attempt.currency,
                "amount": str(attempt.amount),
                "attempt_number": attempt.attempt_number,
                "decline_code": attempt.decline_code,
                "final": attempt.final_failure,
            },
        )
    if changed != 1 or next_retry_on is not None:
        return
    subscription = locked.subscriptions.get(locked.invoices[attempt.invoice_id].subscription_id or 0)
    if (
        settings.PAYMENTS_FAILED_SUBSCRIPTION_POLICY == "past_due"
        and subscription is not None
        and subscription.status == SubscriptionStatus.ACTIVE
    ):
        subscription_services.subscription_mark_past_due(
            subscription=subscription, reason=f"automatic payment failed ({result.decline_code})"
        )
    from payments.notifications import send_payment_failed_email

    transaction.on_commit(partial(send_payment_failed_email, attempt_id=attempt.pk))


def _debit_failure_fee_book(*, attempt: PaymentAttempt, result: ChargeResult, as_of: dt.date) -> None:
    """The bank's fee for a failed debit, ``PAYMENTS_SEPA_FAILURE_FEE`` (Stripe states its own fee only on the
    charge's balance transaction, which is not fetched: docs/decisions/payments.md), once per debit."""
    fee = Decimal(settings.PAYMENTS_SEPA_FAILURE_FEE or "0")
    if fee <= 0:
        return
    GatewayFee.objects.get_or_create(
        kind=FeeKind.DEBIT_FAILURE,
        gateway=attempt.gateway,
        source_reference=attempt.gateway_reference or f"payment_attempt:{attempt.pk}",
        defaults={
            "customer_id": attempt.customer_id,
            "invoice_id": attempt.invoice_id,
            "currency": attempt.currency,
            "amount": round_amount(fee, attempt.currency),
            "booked_on": as_of,
        },
    )


@dataclass
class RetryReport:
    as_of: dt.date
    recovered: int = 0
    retried: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    notified: int = 0
    first_charges: int = 0  # automatic first charges that never happened (their hook was lost)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "recovered": self.recovered,
            "retried": self.retried,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "notified": self.notified,
            "first_charges": self.first_charges,
            "errors": self.errors,
        }


def payment_attempts_recover(*, now: dt.datetime | None = None, as_of: dt.date | None = None) -> int:
    """Re-send attempts (and refunds) left ``processing`` by a crash or an unknown outcome, with the same
    idempotency key: the gateway answers with the first result and charges nothing again."""
    now = now or timezone.now()
    as_of = as_of or billing_today()
    cutoff = now - dt.timedelta(minutes=settings.PAYMENTS_PROCESSING_TIMEOUT_MINUTES)
    recovered = 0
    # Only attempts whose outcome is unknown: one the gateway answered "processing" (a SEPA debit, for days) has its
    # reference and waits for its webhook — re-sending it after Stripe forgot the key (24 h) would debit twice.
    stuck = PaymentAttempt.objects.filter(
        status=AttemptStatus.PROCESSING,
        processing_since__lte=cutoff,
        payment_method__isnull=False,
        gateway_reference="",
    ).order_by("pk")
    for attempt in stuck.select_related("payment_method", "invoice"):
        # Claim, so two sweeps do not send the same attempt at once.
        if (
            PaymentAttempt.objects.filter(
                pk=attempt.pk, status=AttemptStatus.PROCESSING, processing_since=attempt.processing_since
            ).update(processing_since=now)
            != 1
        ):
            continue
        _attempt_send(attempt=attempt, as_of=attempt.attempted_on)
        recovered += 1
    for refund_id in Refund.objects.filter(
        status=RefundStatus.PROCESSING, created_at__lte=cutoff, payment__isnull=False
    ).values_list("pk", flat=True):
        _refund_send(refund_id=refund_id)
        recovered += 1
    return recovered


def payment_attempts_poll_in_flight(*, as_of: dt.date) -> int:
    """Stripe attempts answered "processing" (SEPA debits) or waiting for 3-D Secure, from before ``as_of``: asked
    once a day (the retry job) in case their webhook was lost; a final answer is booked like the webhook's.
    Returns the attempts booked."""
    from payments.gateways.stripe_gateway import StripeGateway

    pending = (
        PaymentAttempt.objects.filter(
            status__in=[AttemptStatus.PROCESSING, AttemptStatus.REQUIRES_ACTION],
            gateway="stripe",
            attempted_on__lt=as_of,
        )
        .exclude(gateway_reference="")
        .order_by("pk")
    )
    booked = 0
    for attempt in pending:
        try:
            intent = StripeGateway().payment_intent_retrieve(attempt.gateway_reference)
        except (GatewayUnavailable, InvalidInput):
            logger.warning("payment attempt %s: Stripe not asked (unavailable or refused)", attempt.pk, exc_info=True)
            continue
        result = StripeGateway.charge_result(intent, attempt.currency)
        if result.status in ("succeeded", "failed"):
            payment_attempt_record_result(attempt_id=attempt.pk, result=result, as_of=as_of)
            booked += 1
    return booked


# An invoice finalized less than this long ago may still have its after-finalize hook on the way.
MISSED_CHARGE_GRACE = dt.timedelta(hours=1)


def payments_collect_missed(*, as_of: dt.date, errors: list[str] | None = None) -> int:
    """The automatic first charge of invoices whose after-finalize hook never ran (the broker was unreachable
    when the invoice was finalized, or the task was lost): open invoices of automatically collecting
    subscriptions, finalized more than ``MISSED_CHARGE_GRACE`` ago, with an amount due and no payment attempt
    at all. Credit is applied first, as the hook does. ``invoice_collect`` locks the invoice and charges only
    an invoice without attempts, so this never races the hook into a second charge. Returns the charges made."""
    missed = (
        Invoice.objects.filter(
            status=InvoiceStatus.OPEN,
            amount_due__gt=0,
            subscription__collection_method=CollectionMethod.CHARGE_AUTOMATICALLY,
            finalized_at__lte=timezone.now() - MISSED_CHARGE_GRACE,
            issue_date__lte=as_of,
        )
        .exclude(subscription__pause_mode=PauseMode.COLLECTION)
        .exclude(pk__in=PaymentAttempt.objects.values("invoice_id"))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    charged = 0
    for invoice_id in list(missed):
        try:
            invoice = Invoice.objects.get(pk=invoice_id)
            if settings.PAYMENTS_APPLY_CREDIT_ON_FINALIZE:
                customer_credit_apply(invoice=invoice)
            if invoice_collect(invoice_id=invoice_id, as_of=as_of) is not None:
                charged += 1
        except Exception as exc:  # one failing invoice never stops the others; reported, and logged
            logger.exception("missed first charge of invoice %s failed", invoice_id)
            if errors is not None:
                errors.append(f"invoice {invoice_id}: {exc}")
    if charged:
        logger.warning("charged %d invoice(s) whose automatic first charge had not happened", charged)
    return charged


def payment_attempts_retry_due(*, as_of: dt.date, customer_id: int | None = None) -> RetryReport:
    """Retry every soft-declined attempt whose retry date has come (``next_retry_on <= as_of``); each retry is
    a new attempt. Also re-sends stuck ``processing`` attempts, makes the automatic first charges that never
    happened (``payments_collect_missed``) and sends the e-mails that were not sent. Invoices of a subscription
    whose collection is paused are left alone until it resumes. ``customer_id`` (the customer test clock): only
    that customer's retries, nothing else."""
    from payments.notifications import send_payment_failed_email

    report = RetryReport(as_of=as_of)
    if customer_id is None:  # the whole book (a test clock simulates one customer: no recovery, no polling)
        report.recovered = payment_attempts_recover(as_of=as_of) + payment_attempts_poll_in_flight(as_of=as_of)
        report.first_charges = payments_collect_missed(as_of=as_of, errors=report.errors)
    due = (
        PaymentAttempt.objects.filter(status=AttemptStatus.FAILED, next_retry_on__lte=as_of)
        # Collection paused: the retry waits (its date kept) and is made by the first run after the resume.
        .exclude(invoice__subscription__pause_mode=PauseMode.COLLECTION)
        .order_by("next_retry_on", "pk")
        .values_list("pk", "invoice_id", "invoice__subscription_id")
    )
    if customer_id is not None:
        due = due.filter(invoice__customer_id=customer_id)
    for attempt_id, invoice_id, subscription_id in list(due):
        try:
            attempt = invoice_collect(
                invoice_id=invoice_id,
                as_of=as_of,
                require_automatic=subscription_id is not None,
                retry_of=attempt_id,
            )
        except Exception as exc:  # one failing invoice never stops the others; reported, and logged
            logger.exception("retry of payment attempt %s failed", attempt_id)
            report.errors.append(f"attempt {attempt_id}: {exc}")
            continue
        if attempt is None:
            # Paid, voided or switched to "send invoice" meanwhile: this invoice is not retried any more.
            PaymentAttempt.objects.filter(pk=attempt_id).update(next_retry_on=None)
            report.skipped += 1
            continue
        report.retried += 1
        if attempt.status == AttemptStatus.SUCCEEDED:
            report.succeeded += 1
        elif attempt.status == AttemptStatus.FAILED:
            report.failed += 1
    unsent = PaymentAttempt.objects.filter(
        status=AttemptStatus.FAILED, final_failure=True, failure_email_sent_at__isnull=True
    ).values_list("pk", flat=True)
    if customer_id is not None:
        unsent = unsent.filter(customer_id=customer_id)
    for attempt_id in unsent:
        if send_payment_failed_email(attempt_id=attempt_id):
            report.notified += 1
    return report


def invoice_charge_now(
    *, invoice: Invoice, as_of: dt.date | None = None, payment_method: PaymentMethod | None = None
) -> PaymentAttempt | None:
    """Staff's "charge now": charge the saved default method (or ``payment_method``, one of the customer's active
    methods: the portal's pay page) for any open invoice of the customer."""
    return invoice_collect(
        invoice_id=invoice.pk,
        as_of=as_of,
        require_automatic=False,
        payment_method_id=payment_method.pk if payment_method is not None else None,
    )


def payment_attempts_for_webhook(*, reference: str, attempt_id: str | None) -> PaymentAttempt | None:
    query = Q(gateway_reference=reference) if reference else Q(pk__in=[])
    if attempt_id and attempt_id.isdigit():
        query |= Q(pk=int(attempt_id))
    return PaymentAttempt.objects.filter(query).order_by("pk").first()
