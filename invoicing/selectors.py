"""Reads on invoices that mean something (docs/STYLE.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Sum

from invoicing.models import CreditNote, Invoice, InvoiceLine, InvoiceStatus


def invoice_creditable_amount(*, invoice: Invoice) -> Decimal:
    """What credit notes may still credit on ``invoice``: its total minus the credit notes issued so far."""
    if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
        return Decimal(0)
    credited = CreditNote.objects.filter(invoice=invoice).aggregate(total=Sum("total"))["total"] or Decimal(0)
    return invoice.total - credited


@dataclass
class ChildGroup:
    """The lines of one child account on an invoice to its parent (docs/decisions/parent-accounts.md), with its
    subtotals: what the PDF, the portal and the admin print under the child's heading."""

    account_id: int
    name: str
    country: str
    tax_id: str
    lines: list[InvoiceLine] = field(default_factory=list)
    net: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    total: Decimal = Decimal(0)


def invoice_child_groups(*, invoice: Invoice, lines: Sequence[InvoiceLine] | None = None) -> list[ChildGroup]:
    """The invoice's lines grouped per child account, in the invoice's order (one query, or two without
    ``lines``); empty for an invoice that bills no child account. Lines outside every child's periods (added by
    staff to a held draft) are left out: the caller prints them after the groups."""
    periods = list(invoice.child_periods.order_by("first_position", "pk")) if invoice.pk is not None else []
    if not periods:
        return []
    if lines is None:
        lines = list(invoice.lines.order_by("position", "pk"))
    groups: dict[int, ChildGroup] = {}
    for period in periods:
        snapshot = period.account_snapshot
        group = groups.get(period.account_id)
        if group is None:
            group = groups[period.account_id] = ChildGroup(
                account_id=period.account_id,
                name=str(snapshot.get("legal_name") or snapshot.get("name") or period.account_id),
                country=str(snapshot.get("country", "")),
                tax_id=str(snapshot.get("tax_id", "")),
            )
        for line in lines:
            if period.first_position <= line.position <= period.last_position:
                group.lines.append(line)
                group.net += line.net_amount
                group.tax += line.tax_amount
                group.total += line.total_amount
    return list(groups.values())


def invoice_ungrouped_lines(*, lines: Sequence[InvoiceLine], groups: Sequence[ChildGroup]) -> list[InvoiceLine]:
    grouped = {id(line) for group in groups for line in group.lines}
    return [line for line in lines if id(line) not in grouped]
