"""Parent accounts on the billing run's invoices (docs/decisions/parent-accounts.md).

A child account (``Customer.parent``) is billed in one of three modes:

- ``own``: as any customer, on its own invoices (nothing here);
- ``consolidated``: every due period of every consolidated child of one parent with the same billing date and
  currency goes on ONE invoice to the parent; its lines are grouped per child (children by name), each group's
  lines taxed per the CHILD (its country, tax status and VAT id: the place of supply is the child's), the totals
  and the tax summary over all lines;
- ``parent_pays``: each period of the child is its own invoice (the subscription and period as today), addressed
  to and payable by the parent (the invoice's customer is the parent), taxed per the child.

Either way each child period on the parent's invoice is a ``ChildAccountPeriod`` row — which lines are the
child's, the child's name and VAT id as billed — unique per (subscription, period_key), so the database refuses
to bill a child's period twice just as the invoice's own constraint does for an ``own`` subscription.

The billing run keeps a parent's consolidated subscriptions in one chunk (``chunks_by_payer``), so a chunk
boundary never splits one parent's invoice in two; the one-by-one fallback of a failed chunk bills a parent's
subscriptions together too (``billing_units``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from customers.models import BillingMode, Customer
from invoicing.models import ChildAccountPeriod, Invoice, InvoiceLine, InvoiceStatus, TaxTreatment
from invoicing.taxes import InvoiceTaxes, apply_line_taxes, apply_totals, compute_invoice_totals, tax_rates_load
from subscriptions.charges import BillingPlan, PeriodCharges
from subscriptions.models import Subscription

# (period, the child account) → the period's invoice taxed per the child, its lines, and why it must be held for
# review ("" when it need not): the billing run's own per-period builder
PeriodBuilder = Callable[[PeriodCharges, Customer], tuple[Invoice, list[Any], str]]


@dataclass(slots=True)
class ParentInvoice:
    """One invoice to a parent, built in memory: its lines (grouped per child), its child periods and why it must
    be held for review (empty when it need not)."""

    invoice: Invoice
    lines: list[Any]
    billing_date: dt.date
    periods: list[ChildAccountPeriod] = field(default_factory=list)
    review_reason: str = ""


def is_billed_to_parent(customer: Customer | None) -> bool:
    return customer is not None and customer.parent_id is not None and customer.billing_mode != BillingMode.OWN


def plans_split(plans: Sequence[BillingPlan]) -> tuple[list[BillingPlan], list[BillingPlan]]:
    """(plans billed as today, plans of children billed to their parent)."""
    own: list[BillingPlan] = []
    to_parent: list[BillingPlan] = []
    for plan in plans:
        (to_parent if is_billed_to_parent(plan.customer) else own).append(plan)
    return own, to_parent


def parents_load(plans: Sequence[BillingPlan]) -> dict[int, Customer]:
    """The parents of the plans' children billed to their parent, by id, in one query (none without such plans)."""
    ids = {plan.customer.parent_id for plan in plans if is_billed_to_parent(plan.customer)}  # type: ignore[union-attr]
    return Customer.objects.in_bulk(ids) if ids else {}


def account_snapshot(customer: Customer) -> dict[str, str | int]:
    """What the group heading of a child prints, as it was when billed."""
    return {
        "id": customer.pk,
        "name": customer.name,
        "legal_name": customer.display_legal_name,
        "country": str(customer.country),
        "tax_id": customer.tax_id,
        "tax_status": customer.tax_status,
    }


def parent_invoices(
    plans: Sequence[BillingPlan], *, build_period: PeriodBuilder, run_id: int | None = None
) -> list[ParentInvoice]:
    """The invoices to parents for the due periods of ``plans`` (children billed to their parent), in memory.
    One query: the parents."""
    groups: dict[tuple[Any, ...], list[tuple[Customer, PeriodCharges]]] = {}
    for plan in plans:
        child = plan.customer
        assert child is not None and child.parent_id is not None
        for period in plan.periods:
            if child.billing_mode == BillingMode.CONSOLIDATED:
                key: tuple[Any, ...] = (BillingMode.CONSOLIDATED, child.parent_id, period.currency, period.billing_date)
            else:
                key = (BillingMode.PARENT_PAYS, period.subscription_id, period.period_key)
            groups.setdefault(key, []).append((child, period))
    if not groups:
        return []
    parents = parents_load(plans)
    built = []
    for key, parts in groups.items():
        parts.sort(key=lambda part: (part[0].name.lower(), part[0].pk, part[1].subscription_id, part[1].period_start))
        parent = parents[parts[0][0].parent_id]  # type: ignore[index]
        built.append(
            _merge(
                parent=parent,
                parts=parts,
                consolidated=key[0] == BillingMode.CONSOLIDATED,
                build_period=build_period,
                run_id=run_id,
            )
        )
    return built


def _merge(
    *,
    parent: Customer,
    parts: list[tuple[Customer, PeriodCharges]],
    consolidated: bool,
    build_period: PeriodBuilder,
    run_id: int | None,
) -> ParentInvoice:
    first = parts[0][1]
    invoice = Invoice(
        customer=parent,
        # a consolidated invoice bills many subscriptions: its periods are its ChildAccountPeriod rows
        subscription_id=None if consolidated else first.subscription_id,
        period_key="" if consolidated else first.period_key,
        billing_run_id=run_id,
        billing_reason=first.billing_reason,
        currency=first.currency,
        period_start=min(period.period_start for _, period in parts),
        period_end=max(period.period_end for _, period in parts),
        status=InvoiceStatus.DRAFT,
    )
    built = ParentInvoice(invoice=invoice, lines=[], billing_date=first.billing_date)
    taxes: list[InvoiceTaxes] = []
    reasons: list[str] = []
    for child, period in parts:
        part, part_lines, reason = build_period(period, child)
        if reason:
            reasons.append(f"{child.name}: {reason}" if consolidated else reason)
        first_position = len(built.lines) + 1
        for line in part_lines:
            line.invoice = invoice
            line.position = len(built.lines) + 1
            built.lines.append(line)
        built.periods.append(
            ChildAccountPeriod(
                invoice=invoice,
                account=child,
                account_snapshot=account_snapshot(child),
                subscription_id=period.subscription_id,
                period_key=period.period_key,
                first_position=first_position,
                last_position=len(built.lines),
            )
        )
        taxes.append(InvoiceTaxes(treatment=part.tax_treatment, note=part.tax_note))
    apply_totals(invoice, built.lines, compute_invoice_totals(built.lines, invoice.currency, amounts_given=True))
    combined = taxes_combine(taxes)
    invoice.tax_treatment = combined.treatment
    invoice.tax_note = combined.note
    invoice.due_date = None
    built.review_reason = "; ".join(reasons)
    return built


def taxes_combine(parts: Sequence[InvoiceTaxes]) -> InvoiceTaxes:
    """The invoice's treatment and notes from its groups': one treatment when every group has it (all reverse
    charge), else standard; every legal note once (a reverse-charge group's note is printed with the totals)."""
    treatments = {part.treatment for part in parts}
    treatment = treatments.pop() if len(treatments) == 1 else TaxTreatment.STANDARD
    notes = dict.fromkeys(note for part in parts for note in part.note.splitlines() if note)
    return InvoiceTaxes(treatment=treatment, note="\n".join(notes))


def child_taxes_apply(invoice: Invoice, lines: Sequence[InvoiceLine], *, strict: bool) -> InvoiceTaxes | None:
    """Re-tax a stored draft to a parent per child, as the billing run did (a held consolidated draft that staff
    finalize): each group's lines per its child as it is now; lines staff added outside every group per the
    invoice's customer, the parent. None when the invoice has no child periods (tax it as any invoice)."""
    periods = list(invoice.child_periods.select_related("account").order_by("first_position"))
    if not periods:
        return None
    accounts = [period.account for period in periods]
    rates = tax_rates_load(countries=[str(invoice.customer.country), *(str(account.country) for account in accounts)])
    taxes = []
    grouped: set[int] = set()
    for period in periods:
        part = [line for line in lines if period.first_position <= line.position <= period.last_position]
        grouped.update(id(line) for line in part)
        if part:
            taxes.append(apply_line_taxes(part, customer=period.account, tax_rates_by_country=rates, strict=strict))
    rest = [line for line in lines if id(line) not in grouped]
    if rest:
        taxes.append(apply_line_taxes(rest, customer=invoice.customer, tax_rates_by_country=rates, strict=strict))
    return taxes_combine(taxes)


# --- chunks ------------------------------------------------------------------------------------------------


def chunks_by_payer(ids: Sequence[int], payers: Mapping[int, int], size: int) -> Iterator[list[int]]:
    """The run's chunks of subscription ids: the subscriptions billed as today in chunks of ``size`` (in id
    order), then each parent's consolidated subscriptions whole, several parents to a chunk up to ``size`` (a
    parent with more subscriptions than ``size`` gets a bigger chunk of its own). ``payers``: consolidated
    subscription → parent (``subscriptions.selectors.consolidated_payers_due``)."""
    own = [pk for pk in ids if pk not in payers] if payers else list(ids)
    for start in range(0, len(own), size):
        yield own[start : start + size]
    by_parent: dict[int, list[int]] = {}
    for subscription_id, parent_id in sorted(payers.items()):
        by_parent.setdefault(parent_id, []).append(subscription_id)
    chunk: list[int] = []
    for family in by_parent.values():
        if chunk and len(chunk) + len(family) > size:
            yield chunk
            chunk = []
        chunk.extend(family)
    if chunk:
        yield chunk


def billing_units(subscription_ids: Sequence[int]) -> list[list[int]]:
    """A chunk's subscriptions in the groups that must be billed together when the chunk is billed one by one:
    each parent's consolidated subscriptions together, every other subscription alone."""
    payers = dict(
        Subscription.objects.filter(
            pk__in=list(subscription_ids),
            customer__billing_mode=BillingMode.CONSOLIDATED,
            customer__parent__isnull=False,
        ).values_list("pk", "customer__parent_id")
    )
    units: list[list[int]] = []
    families: dict[int, list[int]] = {}
    for subscription_id in subscription_ids:
        parent_id = payers.get(subscription_id)
        if parent_id is None:
            units.append([subscription_id])
        elif parent_id in families:
            families[parent_id].append(subscription_id)
        else:
            families[parent_id] = [subscription_id]
            units.append(families[parent_id])
    return units
