"""Reads on invoices that mean something (docs/STYLE.md)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet, Sum

from customers.models import Customer
from invoicing.models import CreditNote, Invoice, InvoiceStatus


def invoice_creditable_amount(*, invoice: Invoice) -> Decimal:
    """What credit notes may still credit on ``invoice``: its total minus the credit notes issued so far."""
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
        return Decimal(0)
    credited = CreditNote.objects.filter(invoice=invoice).aggregate(total=Sum("total"))["total"] or Decimal(0)
    return invoice.total - credited


def customer_open_invoices(*, customer: Customer) -> QuerySet[Invoice]:
    """Invoices with an amount due, oldest due date first (the order payments are allocated in)."""
    return Invoice.objects.filter(
        customer=customer, status__in=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE), amount_due__gt=0
    ).order_by("due_date", "pk")


def invoice_with_lines(*, invoice_id: int) -> Invoice:
    """An invoice with customer, lines and events loaded in three queries (PDF, portal, admin detail)."""
    return (
        Invoice.objects.select_related("customer", "number_series")
        .prefetch_related("lines", "events", "credit_notes")
        .get(pk=invoice_id)
    )
