"""Reads of the payments app that mean something (docs/STYLE.md)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet, Sum

from customers.models import Customer
from invoicing.models import Invoice, InvoiceStatus
from payments.models import (
    QUEUE_STATUSES,
    BankTransaction,
    CreditLedgerEntry,
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
