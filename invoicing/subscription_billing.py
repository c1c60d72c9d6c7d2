"""Staff operations on subscriptions that end in invoices, and their previews — the same code as the billing run.

- ``subscription_create_preview``: the first invoice(s) and the next renewal of a subscription not created yet.
- ``subscription_change_invoice``: a plan change (``subscriptions.services.subscription_change``) whose
  ``always_invoice`` prorations are issued at once through ``invoices_issue``; an interval change (monthly →
  yearly) restarts the cycle on the change date and its new period is billed at once by the billing run for
  that subscription, whatever the proration behaviour. ``subscription_change_preview_full`` shows the proration
  lines, what is invoiced now and the next invoice before anything is written.
- ``subscription_upcoming_invoice``: the next invoice of a subscription, as the run will issue it (the API's
  upcoming-invoice preview).
- ``billing_run_for_customer``: "Bill now" for one customer or one subscription — the billing run itself, or its
  dry run listing the invoices it would issue.

A preview runs the very service it previews inside a transaction that is rolled back (the subscription, its
items, pending prorations and coupon redemption are never committed; no invoice number is taken), then builds the
invoices with ``billing_run.invoice_build_for_period`` — the builder of the run and of "invoice now". So what
the preview shows is, to the cent, what is then issued.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import transaction

from core.bulk import copy_insert, copy_rows
from core.dates import billing_today
from core.models import DomainEvent
from customers.models import Customer
from invoicing import consolidation
from invoicing.billing_run import (
    PlannedLine,
    billing_run,
    billing_run_invoices_planned,
    invoice_build_for_period,
)
from invoicing.models import BillingRun, ChildAccountPeriod, Invoice, InvoiceLine, InvoiceStatus
from invoicing.services import due_date_for, invoices_issue
from invoicing.taxes import tax_rates_load
from subscriptions.charges import change_invoice_now_charges, plans_for_chunk
from subscriptions.models import Coupon, PendingInvoiceItem, Subscription
from subscriptions.services import (
    Actor,
    ChangeResult,
    ItemSpec,
    ProrationBehavior,
    SubscriptionError,
    pending_items_mark_billed,
    plans_commit,
    subscription_change,
    subscription_create,
)

T = TypeVar("T")


@dataclass
class InvoicePreview:
    """An invoice as it will be issued (or held as a draft: ``held_reason``), not written anywhere."""

    invoice: Invoice  # unsaved: customer, currency, period, billing reason, subtotal, discount, tax, total
    lines: list[PlannedLine]
    issue_date: dt.date
    due_date: dt.date | None
    held_reason: str = ""

    @property
    def currency(self) -> str:
        return self.invoice.currency

    @property
    def total(self) -> Decimal:
        return self.invoice.total


@dataclass
class CreatePreview:
    first: list[InvoicePreview]  # the invoices due when the subscription starts (several when backdated)
    renewal: InvoicePreview | None  # the one after, at the next billing date
    first_billing_date: dt.date | None
    trial_end: dt.date | None
    current_period_start: dt.date
    current_period_end: dt.date


@dataclass
class ChangePreviewFull:
    proration_lines: list[Any]  # subscriptions.charges.ChargeLine
    proration_total: Decimal
    now: InvoicePreview | None  # always_invoice: the invoice issued at once
    next_invoice: InvoicePreview | None  # the next cycle invoice, with create_prorations' lines
    note: str = ""
    # An interval change restarts the cycle: ``now`` is the new period's invoice, ``next_invoice`` its renewal.
    interval_change: bool = False
    new_period_start: dt.date | None = None
    new_period_end: dt.date | None = None


@dataclass
class ChangeOutcome:
    result: ChangeResult
    invoice: Invoice | None = None
    note: str = ""


@dataclass
class BillNowResult:
    as_of: dt.date
    dry_run: bool
    run: BillingRun | None = None
    to_issue: list[InvoicePreview] = field(default_factory=list)  # dry run
    drafts: list[InvoicePreview] = field(default_factory=list)  # dry run
    invoices: list[Invoice] = field(default_factory=list)  # issued or held by the run

    def totals(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        for invoice in [p.invoice for p in self.to_issue] if self.dry_run else self.invoices:
            if invoice.status == InvoiceStatus.DRAFT and not self.dry_run:
                continue
            totals[invoice.currency] = totals.get(invoice.currency, Decimal(0)) + invoice.total
        return totals


class _Rollback(Exception):
    pass


@contextmanager
def _rolled_back() -> Iterator[None]:
    """Run the block in a transaction (or savepoint) that is always rolled back."""
    try:
        with transaction.atomic():
            yield
            raise _Rollback
    except _Rollback:
        pass


def _in_rollback(work: Callable[[], T]) -> T:
    result: list[T] = []
    with _rolled_back():
        result.append(work())
    return result[0]


def _preview(
    invoice: Invoice, lines: list[PlannedLine], *, issue_date: dt.date, subscription_days: int | None
) -> InvoicePreview:
    customer = invoice.customer
    due = due_date_for(
        issue_date=issue_date,
        subscription_days_until_due=subscription_days,
        customer_payment_terms_days=customer.payment_terms_days,
    )
    return InvoicePreview(
        invoice=invoice, lines=lines, issue_date=issue_date, due_date=due, held_reason=invoice.memo or ""
    )


def _planned(subscription: Subscription, as_of: dt.date) -> list[InvoicePreview]:
    to_issue, drafts = billing_run_invoices_planned(as_of=as_of, subscription_id=subscription.pk)
    previews = [
        _preview(invoice, lines, issue_date=as_of, subscription_days=subscription.days_until_due)
        for invoice, lines in [*to_issue, *drafts]
    ]
    return sorted(previews, key=lambda p: (p.invoice.period_start or as_of, p.invoice.period_key))


def subscription_upcoming_invoice(*, subscription: Subscription, as_of: dt.date | None = None) -> InvoicePreview | None:
    """The next invoice of the subscription as the billing run will issue it on its next billing date (or on
    ``as_of`` if that is later and the subscription is behind): lines, taxes, totals and due date, built by the
    run's own code and written nowhere. None for a subscription that bills nothing more (ended, canceled)."""
    if subscription.next_billing_date is None:
        return None
    upcoming = _planned(subscription, max(subscription.next_billing_date, as_of or subscription.next_billing_date))
    return upcoming[0] if upcoming else None


# --- create ---------------------------------------------------------------------------------------------


def subscription_create_preview(
    *,
    customer: Customer,
    items: list[ItemSpec],
    start_date: dt.date,
    as_of: dt.date | None = None,
    trial_days: int | None = None,
    trial_end: dt.date | None = None,
    billing_cycle_anchor: dt.date | None = None,
    collection_method: str = "send_invoice",
    days_until_due: int | None = None,
    coupon: Coupon | None = None,
) -> CreatePreview:
    """What ``subscription_create`` with these arguments would bill: the invoice(s) the billing run issues when
    it first bills the subscription (on its start, its trial's end, or — started in the past — today, ``as_of``),
    and the renewal after them. Raises the same errors ``subscription_create`` raises, naming their field."""
    today = as_of or billing_today()

    def work() -> CreatePreview:
        subscription = subscription_create(
            customer=customer,
            items=items,
            start_date=start_date,
            trial_days=trial_days,
            trial_end=trial_end,
            billing_cycle_anchor=billing_cycle_anchor,
            collection_method=collection_method,
            days_until_due=days_until_due,
            coupon=coupon,
        )
        first_date = subscription.next_billing_date
        preview = CreatePreview(
            first=[],
            renewal=None,
            first_billing_date=first_date,
            trial_end=subscription.trial_end,
            current_period_start=subscription.current_period_start,
            current_period_end=subscription.current_period_end,
        )
        if first_date is None:
            return preview
        bill_on = max(today, first_date)
        preview.first = _planned(subscription, bill_on)
        plans = plans_for_chunk(subscription_ids=[subscription.pk], as_of=bill_on)
        plans_commit(plans=plans)
        subscription.refresh_from_db()
        if subscription.next_billing_date is not None:
            renewal = _planned(subscription, subscription.next_billing_date)
            preview.renewal = renewal[0] if renewal else None
        return preview

    return _in_rollback(work)


# --- change ---------------------------------------------------------------------------------------------


def _issue_invoice_now(
    *, subscription: Subscription, pending_item_ids: list[int], as_of: dt.date, actor: Actor, write: bool
) -> tuple[InvoicePreview | None, Invoice | None, str]:
    """The "invoice now" invoice of a change's prorations: built like the run's, issued through ``invoices_issue``
    (``write``), or only built (a preview). A change that nets to a credit is not invoiced now: its lines stay
    pending and reduce the next invoice. Returns (preview, issued or held invoice, note)."""
    period = change_invoice_now_charges(subscription=subscription, pending_item_ids=pending_item_ids)
    if period is None:
        return None, None, ""
    customer = Customer.objects.get(pk=subscription.customer_id)
    invoice, lines = invoice_build_for_period(period=period, customer=customer, tax_rates=tax_rates_load())
    child_period = None
    if customer.parent_id is not None and consolidation.is_billed_to_parent(customer):
        # a child billed to its parent: taxed per the child, addressed to the parent, under the child's heading
        # (docs/decisions/parent-accounts.md)
        invoice.customer = Customer.objects.get(pk=customer.parent_id)
        child_period = ChildAccountPeriod(
            account=customer,
            account_snapshot=consolidation.account_snapshot(customer),
            subscription_id=period.subscription_id,
            period_key=period.period_key,
            first_position=1,
            last_position=len(lines),
        )
    if invoice.total < 0:
        return (
            None,
            None,
            f"The change nets to a credit of {-invoice.total} {invoice.currency} (tax included): nothing is invoiced "
            "now; the credit is deducted from the next invoice.",
        )
    preview = _preview(invoice, lines, issue_date=as_of, subscription_days=subscription.days_until_due)
    if not write:
        return preview, None, ""
    billed = pending_items_mark_billed(pending_item_ids=pending_item_ids)
    if sorted(billed) != sorted(line.pending_item_id for line in period.lines if line.pending_item_id):
        raise RuntimeError("the change's prorations were billed meanwhile")  # pragma: no cover — locked above
    if invoice.memo:
        copy_insert(Invoice, [invoice], assign_ids=True)
    else:
        invoices_issue(
            invoices=[invoice],
            issue_date=as_of,
            actor=actor if isinstance(actor, User) else None,
            reason="issued for a plan change (always invoice)",
        )
    copy_rows(InvoiceLine, PlannedLine.COLUMNS, [line.row() for line in lines])
    if child_period is not None:
        child_period.invoice = invoice
        child_period.save()
    return preview, invoice, ""


def _bill_restarted_period(*, subscription: Subscription, as_of: dt.date, actor: Actor) -> tuple[Invoice | None, str]:
    """The invoice of the period an interval change restarted on ``as_of`` (its credit for the old period's
    unused time included): the billing run for this one subscription, in the caller's transaction — the run's
    own builder, numbering and after-issue work. A problem rolls the whole change back."""
    run = billing_run(as_of=as_of, subscription_id=subscription.pk, actor=actor)
    if run.failed:
        error = run.errors.order_by("pk").first()
        raise SubscriptionError(
            f"the new period could not be invoiced, nothing was changed: {error.message if error else run.status}"
        )
    invoice = Invoice.objects.filter(billing_run=run, subscription_id=subscription.pk).order_by("pk").last()
    if invoice is not None and invoice.status == InvoiceStatus.DRAFT:
        return invoice, f"The new period's invoice is kept as a draft for review: {invoice.memo}"
    return invoice, ""


@transaction.atomic
def subscription_change_invoice(
    *,
    subscription: Subscription,
    items: list[ItemSpec],
    as_of: dt.date,
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
    actor: Actor = None,
    reason: str = "",
) -> ChangeOutcome:
    """Change the subscription's items (``subscription_change``) and, with ``always_invoice``, issue the
    prorations at once through the one issue path: the invoice is numbered and dated ``as_of``, and its
    ``invoice.issued`` event applies the customer's credit, charges a saved card (charge automatically) or
    e-mails it (send invoice) after commit — like every invoice."""
    behavior = ProrationBehavior(proration_behavior)
    result = subscription_change(
        subscription=subscription, items=items, as_of=as_of, proration_behavior=behavior, actor=actor, reason=reason
    )
    outcome = ChangeOutcome(result=result)
    if result.restarted_on is not None:
        outcome.invoice, outcome.note = _bill_restarted_period(
            subscription=result.subscription, as_of=result.restarted_on, actor=actor
        )
    elif result.invoice_now and result.pending_item_ids:
        _, outcome.invoice, outcome.note = _issue_invoice_now(
            subscription=result.subscription,
            pending_item_ids=result.pending_item_ids,
            as_of=as_of,
            actor=actor,
            write=True,
        )
    return outcome


def on_subscription_updated_invoice_now(event: DomainEvent) -> None:
    """Settle-phase handler of ``subscription.updated``: "invoice now" prorations still unbilled — a change made
    with ``always_invoice`` through ``subscriptions.services.subscription_change`` directly, which cannot issue
    invoices itself — are issued here, after that change committed, by the same path as
    ``subscription_change_invoice`` (which issues them in its own transaction, so this finds nothing then).
    A change that nets to a credit stays pending for the next invoice.

    An interval change (payload ``interval_changed_on``) restarted the cycle: its new period is billed here the
    same way, unless ``subscription_change_invoice`` billed it already (then nothing is due any more)."""
    subscription_id = event.payload.get("subscription_id")
    restarted_on = event.payload.get("interval_changed_on")
    if restarted_on:
        day = dt.date.fromisoformat(restarted_on)
        if Subscription.objects.filter(pk=subscription_id, next_billing_date__lte=day).exists():
            with transaction.atomic():
                subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
                _bill_restarted_period(subscription=subscription, as_of=day, actor=event.actor)
    if not PendingInvoiceItem.objects.filter(
        subscription_id=subscription_id, invoice_now=True, billed_at__isnull=True
    ).exists():
        return
    with transaction.atomic():
        subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
        pending = list(
            PendingInvoiceItem.objects.filter(subscription=subscription, invoice_now=True, billed_at__isnull=True)
            .order_by("pk")
            .values_list("pk", "effective_on")
        )
        if not pending:
            return
        _issue_invoice_now(
            subscription=subscription,
            pending_item_ids=[pk for pk, _ in pending],
            as_of=min(effective_on for _, effective_on in pending),
            actor=event.actor,
            write=True,
        )


def subscription_change_preview_full(
    *,
    subscription: Subscription,
    items: list[ItemSpec],
    as_of: dt.date,
    proration_behavior: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS,
) -> ChangePreviewFull:
    """What ``subscription_change_invoice`` would do with the same arguments: the proration lines, the invoice
    issued now (``always_invoice``) and the next invoice (with ``create_prorations``' lines). Writes nothing."""
    behavior = ProrationBehavior(proration_behavior)

    def work() -> ChangePreviewFull:
        result = subscription_change(
            subscription=Subscription.objects.get(pk=subscription.pk),
            items=items,
            as_of=as_of,
            proration_behavior=behavior,
        )
        changed = result.subscription
        now, note = None, ""
        if result.restarted_on is not None:
            # The new period's invoice, as the run builds it; then the renewal after it.
            planned = _planned(changed, result.restarted_on)
            now = planned[0] if planned else None
            if now is not None and now.held_reason:
                note = f"The new period's invoice will be kept as a draft for review: {now.held_reason}"
            plans_commit(plans=plans_for_chunk(subscription_ids=[changed.pk], as_of=result.restarted_on))
            changed.refresh_from_db()
        elif result.invoice_now and result.pending_item_ids:
            now, _, note = _issue_invoice_now(
                subscription=changed, pending_item_ids=result.pending_item_ids, as_of=as_of, actor=None, write=False
            )
            if now is not None:  # issued now: the next invoice does not carry them
                pending_items_mark_billed(pending_item_ids=result.pending_item_ids)
        next_invoice = None
        if changed.next_billing_date is not None:
            upcoming = _planned(changed, max(changed.next_billing_date, as_of))
            next_invoice = upcoming[0] if upcoming else None
        return ChangePreviewFull(
            proration_lines=result.lines,
            proration_total=sum((line.amount.amount for line in result.lines), Decimal(0)),
            now=now,
            next_invoice=next_invoice,
            note=note,
            interval_change=result.restarted_on is not None,
            new_period_start=changed.current_period_start if result.restarted_on else None,
            new_period_end=changed.current_period_end if result.restarted_on else None,
        )

    return _in_rollback(work)


# --- bill now -------------------------------------------------------------------------------------------


def billing_run_for_customer(
    *,
    as_of: dt.date,
    customer: Customer | None = None,
    subscription: Subscription | None = None,
    dry_run: bool = False,
    actor: Actor = None,
) -> BillNowResult:
    """ "Bill now": the billing run as of ``as_of`` for one customer's subscriptions or one subscription. The dry
    run lists what it would issue (and hold as drafts), built by the run's own code; the real run is
    ``billing_run`` (exactly once per period, numbered by ``invoices_issue``) and returns the invoices it wrote."""
    if (customer is None) == (subscription is None):
        raise ValueError("bill a customer or a subscription")
    customer_id = customer.pk if customer is not None else None
    subscription_id = subscription.pk if subscription is not None else None
    result = BillNowResult(as_of=as_of, dry_run=dry_run)
    if dry_run:
        to_issue, drafts = billing_run_invoices_planned(
            as_of=as_of, customer_id=customer_id, subscription_id=subscription_id
        )
        terms = dict(
            Subscription.objects.filter(pk__in={i.subscription_id for i, _ in [*to_issue, *drafts]}).values_list(
                "pk", "days_until_due"
            )
        )
        result.to_issue = [
            _preview(i, lines, issue_date=as_of, subscription_days=terms.get(i.subscription_id or 0))
            for i, lines in to_issue
        ]
        result.drafts = [
            _preview(i, lines, issue_date=as_of, subscription_days=terms.get(i.subscription_id or 0))
            for i, lines in drafts
        ]
        return result
    run = billing_run(as_of=as_of, customer_id=customer_id, subscription_id=subscription_id, actor=actor)
    result.run = run
    result.invoices = list(Invoice.objects.filter(billing_run=run).order_by("pk"))
    return result
