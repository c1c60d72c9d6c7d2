"""Reads on invoices that mean something (docs/STYLE.md)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Sum

from invoicing.models import CreditNote, Invoice, InvoiceStatus


def invoice_creditable_amount(*, invoice: Invoice) -> Decimal:
    """What credit notes may still credit on ``invoice``: its total minus the credit notes issued so far."""
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
        return Decimal(0)
    credited = CreditNote.objects.filter(invoice=invoice).aggregate(total=Sum("total"))["total"] or Decimal(0)
    return invoice.total - credited
