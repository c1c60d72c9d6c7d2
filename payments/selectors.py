"""Reads of the payments app that mean something (docs/STYLE.md)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.urls import reverse

from core.alerts import Alert
from customers.models import Customer
from invoicing.models import Invoice, InvoiceStatus
from payments.models import (
    QUEUE_STATUSES,
    AttemptStatus,
    BankTransaction,
    CreditLedgerEntry,
    Dispute,
    DisputeStatus,
    GrantKind,
    GrantStatus,
    Payment,
    PaymentAllocation,
    PaymentAttempt,
    Wallet,
    WalletGrant,
    WalletTransaction,
)

ZERO = Decimal(0)


def customer_credit_balance(*, customer: Customer, currency: str) -> Decimal:
    """The customer's credit in ``currency``: the sum of the ledger entries."""
    total = CreditLedgerEntry.objects.filter(customer=customer, currency=currency).aggregate(total=Sum("amount"))
    return total["total"] or ZERO


def customer_credit_balances(*, customer: Customer) -> dict[str, Decimal]:
    """Every currency the customer has ledger entries in → the balance (zero balances included)."""
    rows = (
        CreditLedgerEntry.objects.filter(customer=customer)
        .values_list("currency")
        .annotate(total=Sum("amount"))
        .order_by("currency")
    )
    return dict(rows)


@dataclass(frozen=True)
class CustomerBalance:
    """A customer's account in one currency. ``due``: the amount due of their open and uncollectible invoices
    (what they owe; the portal's "amount due" and what a payment settles, oldest first); ``overdue``: the part of
    it past its due date on the as-of date; ``credit``: the credit ledger's balance. ``net`` = due − credit."""

    currency: str
    due: Decimal = ZERO
    overdue: Decimal = ZERO
    credit: Decimal = ZERO
    open_count: int = 0
    overdue_count: int = 0

    @property
    def net(self) -> Decimal:
        return self.due - self.credit


def customer_balances(*, customer: Customer, as_of: dt.date) -> dict[str, CustomerBalance]:
    """The customer's balance per currency (two queries): every currency with something due or a credit entry,
    and the customer's own currency always."""
    overdue = Q(due_date__lt=as_of)
    rows = (
        Invoice.objects.filter(
            customer=customer, status__in=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE), amount_due__gt=0
        )
        .values("currency")
        .annotate(
            due=Sum("amount_due"),
            overdue=Sum("amount_due", filter=overdue),
            open_count=Count("pk"),
            overdue_count=Count("pk", filter=overdue),
        )
        .order_by("currency")
    )
    credit = customer_credit_balances(customer=customer)
    currencies = sorted({customer.currency, *credit, *(row["currency"] for row in rows)})
    by_currency = {row["currency"]: row for row in rows}
    balances = {}
    for currency in currencies:
        row = by_currency.get(currency, {})
        balances[currency] = CustomerBalance(
            currency=currency,
            due=row.get("due") or ZERO,
            overdue=row.get("overdue") or ZERO,
            credit=credit.get(currency, ZERO),
            open_count=row.get("open_count", 0),
            overdue_count=row.get("overdue_count", 0),
        )
    return balances


def invoice_payment_state(*, invoice: Invoice) -> str:
    """ "paid", "partially_paid", "unpaid" (or the invoice's status when it takes no payments)."""
    if invoice.status == InvoiceStatus.PAID:
        return "paid"
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
        return str(invoice.status)
    return "partially_paid" if invoice.amount_paid > 0 else "unpaid"


def reconciliation_queue() -> QuerySet[BankTransaction]:
    """Bank transactions staff still have to assign: unmatched or ambiguous, oldest first."""
    return BankTransaction.objects.filter(status__in=QUEUE_STATUSES).order_by("booking_date", "pk")


def payment_allocations(*, payment: Payment) -> list[tuple[Invoice, Decimal]]:
    """How a recorded payment was allocated, in allocation order (the result shown after recording it)."""
    rows = PaymentAllocation.objects.filter(payment=payment).select_related("invoice").order_by("pk")
    return [(row.invoice, row.amount) for row in rows]


def invoice_collection_pending(*, as_of: dt.date) -> Exists:
    """``Exists`` over an invoice queryset (``OuterRef("pk")``): a charge of it is still in flight — a direct debit
    with the bank (``processing``), or a card charge waiting for the customer's 3-D Secure, within
    ``PAYMENT_ACTION_GRACE_DAYS`` of the day it was asked for. Dunning leaves such invoices alone."""
    grace_start = as_of - dt.timedelta(days=settings.PAYMENT_ACTION_GRACE_DAYS)
    return Exists(
        PaymentAttempt.objects.filter(invoice_id=OuterRef("pk")).filter(
            Q(status=AttemptStatus.PROCESSING)
            | Q(status=AttemptStatus.REQUIRES_ACTION, action_required_on__gt=grace_start)
        )
    )


def dashboard_dispute_alerts(*, user: Any, as_of: dt.date) -> list[Alert]:
    """Open disputes (chargebacks) on the dashboard's operations list: staff must answer them at Stripe before
    the deadline; one query."""
    if not user.has_perm("payments.view_dispute"):
        return []
    count = Dispute.objects.filter(status=DisputeStatus.OPEN).count()
    url = reverse("admin:payments_dispute_changelist") + "?status__exact=open"
    return [Alert("Open payment disputes", str(count), url, "answer them in the Stripe dashboard" if count else "")]


# --- wallets --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletBalance:
    """A wallet's credits: ``free`` and ``paid`` are available now (active grants), ``pending`` is bought but its
    top-up invoice not paid yet; ``total`` = free + paid — what the next invoice can consume. Admin, portal and API
    all show this."""

    currency: str
    free: Decimal = ZERO
    paid: Decimal = ZERO
    pending: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.paid


def wallet_balance(*, wallet: Wallet) -> WalletBalance:
    """One query over the wallet's grants."""
    sums = WalletGrant.objects.filter(wallet=wallet).aggregate(
        free=Sum("remaining", filter=Q(kind=GrantKind.FREE, status=GrantStatus.ACTIVE)),
        paid=Sum("remaining", filter=Q(kind=GrantKind.PAID, status=GrantStatus.ACTIVE)),
        pending=Sum("remaining", filter=Q(status=GrantStatus.PENDING)),
    )
    return WalletBalance(
        currency=wallet.currency,
        free=sums["free"] or ZERO,
        paid=sums["paid"] or ZERO,
        pending=sums["pending"] or ZERO,
    )


def customer_wallets(*, customer: Customer) -> list[tuple[Wallet, WalletBalance]]:
    """The customer's wallets with their balances, by currency (the portal's and the API's read)."""
    return [(wallet, wallet_balance(wallet=wallet)) for wallet in Wallet.objects.filter(customer=customer)]


def wallet_ledger(*, wallet: Wallet, limit: int | None = None) -> QuerySet[WalletTransaction]:
    """The wallet's movements, newest first."""
    rows = WalletTransaction.objects.filter(wallet=wallet).select_related("invoice").order_by("-pk")
    return rows[:limit] if limit else rows
