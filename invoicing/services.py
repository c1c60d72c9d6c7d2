"""Writes on invoices and credit notes. Plain functions, keyword-only and typed (docs/STYLE.md).

Every status change goes through ``_transition``: the allowed-transitions map, a guarded
``UPDATE … WHERE status=<old>`` that must change exactly one row, and an ``InvoiceEvent`` row in the same
transaction. What other apps do after a write (credit, collection, PDF, e-mail) hangs on the domain events the
services record in the same transaction (``core.events``): ``invoice.issued``, ``invoice.paid``, ``invoice.voided``,
``invoice.uncollectible``, ``credit_note.issued``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models import Max, Sum
from django.utils import timezone

from core import events
from core.bulk import copy_insert, copy_rows
from core.dates import billing_today
from core.errors import ApplicationError, InvalidInput, NotAllowed
from core.models import DomainEvent
from core.money import round_amount
from core.tax_categories import TaxCategory
from customers.seller import seller_snapshot
from invoicing.consolidation import child_taxes_apply
from invoicing.einvoice import service as einvoice_service
from invoicing.models import (
    BillingReason,
    CreditNote,
    CreditNoteLine,
    DocumentImmutable,
    Invoice,
    InvoiceEvent,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    NumberSeries,
)
from invoicing.numbering import (
    number_series_allocate,
    number_series_allocate_for_new_invoices,
    number_series_default,
)
from invoicing.taxes import (
    TREATMENT_CATEGORIES,
    TaxRateMissing,
    apply_line_taxes,
    apply_totals,
    compute_invoice_totals,
    distribute_amount,
    tax_of,
    tax_rates_load,
    tax_summary_rows,
)
from subscriptions.models import Subscription

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser

    from customers.models import Customer

ZERO = Decimal(0)
S = InvoiceStatus

ALLOWED_TRANSITIONS: Mapping[str, frozenset[str]] = {
    S.DRAFT: frozenset({S.OPEN, S.PAID}),  # paid directly when the total is zero
    S.OPEN: frozenset({S.PAID, S.VOID, S.UNCOLLECTIBLE}),
    S.UNCOLLECTIBLE: frozenset({S.PAID, S.VOID}),
    S.PAID: frozenset(),  # corrections of a paid invoice are credit notes
    S.VOID: frozenset(),
}

LINE_AMOUNT_FIELDS = [
    "amount",
    "discount_amount",
    "net_amount",
    "tax_rate",
    "tax_category",
    "tax_exemption_reason_code",
    "tax_exemption_reason",
    "tax_name",
    "tax_percentage",
    "tax_inclusive",
    "tax_amount",
    "total_amount",
]
INVOICE_AMOUNT_FIELDS = [
    "subtotal",
    "discount_total",
    "tax_total",
    "total",
    "amount_due",
    "tax_summary",
    "tax_treatment",
    "tax_note",
    "updated_at",
]


class InvoiceError(ApplicationError):
    """A request the invoice's state or amounts do not allow; the message names the invoice and the reason."""


class InvoiceStateError(NotAllowed, InvoiceError):
    pass


class PaymentExceedsAmountDue(InvalidInput, InvoiceError):
    pass


class CreditNoteError(InvalidInput, InvoiceError):
    pass


@dataclass(frozen=True)
class InvoiceLineSpec:
    """A line to put on a draft; amounts are ``Decimal`` in the invoice's currency (gross for inclusive rates)."""

    description: str
    unit_amount: Decimal
    quantity: Decimal = Decimal(1)
    discount_amount: Decimal = ZERO
    kind: str = LineKind.ONE_OFF
    period_start: dt.date | None = None
    period_end: dt.date | None = None
    proration: bool = False
    # What is sold, for VAT; resolved per customer when the draft is totalled (exempt needs its reason).
    tax_category: str = TaxCategory.STANDARD
    tax_exemption_reason_code: str = ""
    tax_exemption_reason: str = ""

    def build(self, *, invoice: Invoice, position: int) -> InvoiceLine:
        for name in ("unit_amount", "quantity", "discount_amount"):
            if isinstance(getattr(self, name), float):
                raise TypeError(f"{name} must be Decimal, not float")
        if self.tax_category not in TaxCategory.values:
            raise InvoiceError(
                f"line '{self.description}': tax_category {self.tax_category!r} is not one of "
                f"{', '.join(TaxCategory.values)}"
            )
        if self.tax_category == TaxCategory.EXEMPT and not self.tax_exemption_reason.strip():
            raise InvoiceError(f"line '{self.description}': tax_exemption_reason is required for an exempt line")
        return InvoiceLine(
            supply_tax_category=self.tax_category,
            tax_exemption_reason_code=self.tax_exemption_reason_code.strip()[:30],
            tax_exemption_reason=self.tax_exemption_reason.strip()[:300],
            invoice=invoice,
            position=position,
            kind=self.kind,
            description=self.description,
            quantity=Decimal(self.quantity),
            unit_amount=Decimal(self.unit_amount),
            discount_amount=Decimal(self.discount_amount),
            period_start=self.period_start,
            period_end=self.period_end,
            proration=self.proration,
        )


@dataclass(frozen=True)
class CreditNoteLineSpec:
    """Credit an invoice line, whole (``quantity=None``) or a part of its quantity."""

    invoice_line_id: int
    quantity: Decimal | None = None


@dataclass
class BulkOutcome:
    """Result of an action on many invoices: each one succeeds or fails on its own."""

    succeeded: list[Invoice] = field(default_factory=list)
    failed: list[tuple[Invoice, str]] = field(default_factory=list)


# --- snapshots ------------------------------------------------------------------------------------------


def customer_snapshot(*, customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.pk,
        "name": customer.name,
        "legal_name": customer.display_legal_name,
        "address_line1": customer.address_line1,
        "address_line2": customer.address_line2,
        "postal_code": customer.postal_code,
        "city": customer.city,
        "region": customer.region,
        "country": str(customer.country),
        "postal_address": customer.postal_address,
        "tax_id": customer.tax_id,
        "tax_status": customer.tax_status,
        "vat_status": customer.vat_status,
        # where a consumer is, with the address's country: the EU OSS evidence (reporting/oss.py)
        "ip_country": str(customer.ip_country or ""),
        "bank_country": str(customer.bank_country or ""),
        "language": customer.language,
        "email": customer.email,
        "einvoice_format": customer.einvoice_format,
        "buyer_reference": customer.buyer_reference,
        "purchase_order": customer.purchase_order,
        "einvoice_address": customer.einvoice_address,
        "einvoice_address_scheme": customer.einvoice_address_scheme,
    }


# --- helpers --------------------------------------------------------------------------------------------


def _actor_id(actor: AbstractBaseUser | None) -> Any:
    return actor.pk if actor is not None and actor.is_authenticated else None


def _lock_invoice(invoice_id: int) -> Invoice:
    return Invoice.objects.select_for_update(of=("self",)).select_related("customer").get(pk=invoice_id)


def _transition(
    *,
    invoice: Invoice,
    to_status: str,
    actor: AbstractBaseUser | None,
    reason: str,
    at: dt.datetime | None = None,
    **updates: Any,
) -> None:
    """Move ``invoice`` (whose ``status`` is the status read under lock) to ``to_status`` with a guarded UPDATE,
    and record the event. Must run inside a transaction."""
    from_status = invoice.status
    if to_status not in ALLOWED_TRANSITIONS[from_status]:
        raise InvoiceStateError(f"invoice {invoice}: cannot go from {from_status} to {to_status}")
    at = at or timezone.now()
    changed = Invoice.objects.filter(pk=invoice.pk, status=from_status).update(
        status=to_status, updated_at=at, **updates
    )
    if changed != 1:
        raise InvoiceStateError(f"invoice {invoice} changed concurrently (no longer {from_status})")
    InvoiceEvent.objects.create(
        invoice_id=invoice.pk,
        at=at,
        actor_id=_actor_id(actor),
        from_status=from_status,
        to_status=to_status,
        reason=reason[:500],
    )
    invoice.status = to_status
    for name, value in updates.items():
        setattr(invoice, name, value)
    if to_status in _STATUS_EVENTS:
        events.event_record(
            _STATUS_EVENTS[to_status],
            subject_type="invoice",
            subject_id=invoice.pk,
            payload=invoice_event_payload(invoice),
            actor_id=_actor_id(actor),
        )


# The domain event a transition records (issuing records "invoice.issued" itself, in bulk).
_STATUS_EVENTS: Mapping[str, str] = {
    S.PAID: "invoice.paid",
    S.VOID: "invoice.voided",
    S.UNCOLLECTIBLE: "invoice.uncollectible",
}


def _recompute(invoice: Invoice, lines: list[InvoiceLine], *, strict: bool) -> None:
    """Resolve each line's tax for the customer as of now and total the invoice. Not strict (a draft): a line
    whose rate is missing shows provisional untaxed totals; finalizing (strict) refuses until a rate exists."""
    taxes = (
        child_taxes_apply(invoice, lines, strict=strict)
        if invoice.pk is not None
        else None  # an invoice to a parent taxes each child's lines per the child (invoicing.consolidation)
    )
    if taxes is None:
        rates = tax_rates_load(countries=[str(invoice.customer.country)])
        taxes = apply_line_taxes(lines, customer=invoice.customer, tax_rates_by_country=rates, strict=strict)
    apply_totals(invoice, lines, compute_invoice_totals(lines, invoice.currency))
    invoice.tax_treatment = taxes.treatment
    invoice.tax_note = taxes.note


def _validated_currency(currency: str) -> str:
    if currency not in settings.CURRENCIES:
        raise InvoiceError(f"{currency} is not one of the billing currencies {', '.join(settings.CURRENCIES)}")
    return currency


# --- drafts ---------------------------------------------------------------------------------------------


@transaction.atomic
def invoice_create_draft(
    *,
    customer: Customer,
    currency: str | None = None,
    billing_reason: str = BillingReason.MANUAL,
    period_start: dt.date | None = None,
    period_end: dt.date | None = None,
    memo: str = "",
    footer: str = "",
    lines: Sequence[InvoiceLineSpec] = (),
    number_series: NumberSeries | None = None,
    subscription: Subscription | None = None,
) -> Invoice:
    """A draft with provisional totals (tax resolved from the customer as of now; finalization redoes it).
    ``subscription``: a one-off invoice for a subscription of the customer (a setup fee, an extra); it is due
    by the subscription's terms like the subscription's own invoices."""
    if number_series is not None and number_series.kind != NumberSeries.Kind.INVOICE:
        raise InvoiceError(f"{number_series} is not an invoice number series")
    if subscription is not None and subscription.customer_id != customer.pk:
        raise InvoiceError(f"{subscription} belongs to another customer")
    invoice = Invoice(
        customer=customer,
        currency=_validated_currency(currency or customer.currency),
        billing_reason=billing_reason,
        period_start=period_start,
        period_end=period_end,
        memo=memo,
        footer=footer,
        number_series=number_series,
        subscription=subscription,
    )
    line_objects = [spec.build(invoice=invoice, position=index) for index, spec in enumerate(lines, start=1)]
    try:
        _recompute(invoice, line_objects, strict=False)
    except ValueError as exc:
        raise InvoiceError(str(exc)) from exc
    invoice.save()
    for line in line_objects:
        line.invoice = invoice
    InvoiceLine.objects.bulk_create(line_objects)
    return invoice


@transaction.atomic
def invoice_line_add(*, invoice: Invoice, line: InvoiceLineSpec) -> InvoiceLine:
    locked = _lock_invoice(invoice.pk)
    if locked.status != S.DRAFT:
        raise DocumentImmutable(f"invoice {locked} is finalized: lines cannot be added")
    position = (locked.lines.aggregate(last=Max("position"))["last"] or 0) + 1
    new_line = line.build(invoice=locked, position=position)
    new_line.save()
    _invoice_recompute_locked(locked)
    new_line.refresh_from_db()
    return new_line


@transaction.atomic
def invoice_recompute(*, invoice: Invoice) -> Invoice:
    """Recompute a draft's taxes and totals after its lines changed (admin inline edits)."""
    locked = _lock_invoice(invoice.pk)
    if locked.status != S.DRAFT:
        raise DocumentImmutable(f"invoice {locked} is finalized: its totals are frozen")
    _invoice_recompute_locked(locked)
    return locked


def _invoice_recompute_locked(invoice: Invoice) -> None:
    lines = list(invoice.lines.order_by("position", "pk"))
    try:
        _recompute(invoice, lines, strict=False)
    except ValueError as exc:
        raise InvoiceError(str(exc)) from exc
    if lines:
        InvoiceLine.objects.bulk_update(lines, LINE_AMOUNT_FIELDS)
    invoice.save(update_fields=INVOICE_AMOUNT_FIELDS)


# --- issuing: the one path (docs/decisions/issuing.md) -------------------------------------------------


def due_date_for(
    *, issue_date: dt.date, subscription_days_until_due: int | None, customer_payment_terms_days: int | None
) -> dt.date:
    """THE due-date rule, for every way an invoice is issued: the subscription's ``days_until_due`` if set,
    else the customer's payment terms, else ``DEFAULT_PAYMENT_TERMS_DAYS``; counted from the issue date."""
    for days in (subscription_days_until_due, customer_payment_terms_days, settings.DEFAULT_PAYMENT_TERMS_DAYS):
        if days is not None:
            return issue_date + dt.timedelta(days=int(days))
    raise AssertionError("DEFAULT_PAYMENT_TERMS_DAYS is not set")  # pragma: no cover


def invoice_event_payload(invoice: Invoice) -> dict[str, Any]:
    """What an invoice's domain events carry: ids, the key amounts as strings, the currency."""
    return {
        "invoice_id": invoice.pk,
        "number": invoice.number,
        "customer_id": invoice.customer_id,
        "subscription_id": invoice.subscription_id,
        "status": invoice.status,
        "currency": invoice.currency,
        "total": str(invoice.total),
        "amount_due": str(invoice.amount_due),
        "amount_paid": str(invoice.amount_paid),
        "due_date": invoice.due_date.isoformat() if invoice.due_date else None,
    }


def _invoice_event(event_type: str, invoice: Invoice, *, actor_id: Any, at: dt.datetime) -> DomainEvent:
    return events.event_new(
        event_type,
        subject_type="invoice",
        subject_id=invoice.pk,
        payload=invoice_event_payload(invoice),
        actor_id=actor_id,
        occurred_at=at,
    )


@dataclass
class IssueOutcome:
    invoices: list[Invoice]
    events: list[DomainEvent]

    @property
    def event_ids(self) -> list[int]:
        return [event.pk for event in self.events]


# Written when a draft that is already stored is issued: its totals (recomputed by the caller) and the frozen rest.
_ISSUE_FIELDS = [
    "number",
    "number_series",
    "issue_date",
    "due_date",
    *(name for name in INVOICE_AMOUNT_FIELDS if name != "updated_at"),
    "customer_snapshot",
    "seller_snapshot",
    "finalized_at",
    "paid_at",
]


def invoices_issue(
    *,
    invoices: Sequence[Invoice],
    issue_date: dt.date,
    series: NumberSeries | None = None,
    actor: AbstractBaseUser | None = None,
    reason: str = "finalized",
    dispatch_after_commit: bool = True,
    subscription_days_until_due: Mapping[int, int | None] | None = None,
) -> IssueOutcome:
    """Issue drafts whose lines and totals the caller has computed — THE one place that assigns numbers, freezes
    amounts, customer and seller snapshots and the due date (``due_date_for``), writes the status event rows and
    records the ``invoice.issued`` domain event (and ``invoice.paid`` for a zero total, which is paid at once).

    Used for one invoice (staff finalizing a draft, a one-off invoice) and for a billing-run chunk in bulk with a
    fixed number of queries: one for the subscriptions' terms, one per number series for numbers (and the ids of
    new invoices), then one write each for invoices, status events and domain events. A stored draft (``pk``
    set) is updated with a guard on its status; a new one (``pk`` None, ``customer`` loaded) is inserted — its
    lines are the caller's to write, in the same transaction, once it has its id.

    Must run inside the caller's transaction: numbers, rows and events commit together or not at all. The
    events' handlers (credit, collection, PDF, e-mail) run after commit in this process, or — with
    ``dispatch_after_commit=False`` — wherever the caller sends ``event_ids`` (the billing run: a task per
    chunk). ``BILLING_AFTER_FINALIZE_HOOKS=false`` stores the events as processed without handlers.
    ``subscription_days_until_due`` (subscription id → its ``days_until_due``) saves the query for them when the
    caller has the subscriptions loaded."""
    if not invoices:
        return IssueOutcome([], [])
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("invoices_issue must run inside the transaction that stores the invoices")
    for invoice in invoices:
        if invoice.status != S.DRAFT:
            raise InvoiceStateError(f"invoice {invoice} is already {invoice.status}")
        if invoice.total < 0:
            raise InvoiceError(f"invoice {invoice}: the total {invoice.total} is negative; issue a credit note instead")
    subscription_ids = {invoice.subscription_id for invoice in invoices if invoice.subscription_id is not None}
    subscription_terms: Mapping[int, int | None] = subscription_days_until_due or {}
    if subscription_ids - set(subscription_terms):
        subscription_terms = dict(
            Subscription.objects.filter(pk__in=subscription_ids).values_list("pk", "days_until_due")
        )
    now = timezone.now()
    seller = seller_snapshot()
    by_series: dict[int, tuple[NumberSeries, list[Invoice]]] = {}
    default_series: NumberSeries | None = series
    for invoice in invoices:
        chosen = series or invoice.number_series
        if chosen is None:
            default_series = default_series or number_series_default(kind=NumberSeries.Kind.INVOICE)
            chosen = default_series
        by_series.setdefault(chosen.pk, (chosen, []))[1].append(invoice)
    for invoice in invoices:
        customer = invoice.customer
        invoice.issue_date = issue_date
        invoice.due_date = due_date_for(
            issue_date=issue_date,
            subscription_days_until_due=subscription_terms.get(invoice.subscription_id or 0),
            customer_payment_terms_days=customer.payment_terms_days,
        )
        invoice.customer_snapshot = customer_snapshot(customer=customer)
        invoice.seller_snapshot = seller
        invoice.status = S.PAID if invoice.total == 0 else S.OPEN
        invoice.finalized_at = now
        invoice.paid_at = now if invoice.status == S.PAID else None
    for chosen, group in by_series.values():
        new = [invoice for invoice in group if invoice.pk is None]
        # Numbers after everything that does not need them (the counter row stays locked until commit, so the
        # other issuers wait from here on); new invoices' ids in the same statement.
        numbers, ids = number_series_allocate_for_new_invoices(
            series=chosen, issue_date=issue_date, numbers=len(group), invoice_ids=len(new)
        )
        for invoice, pk in zip(new, ids, strict=False):
            invoice.pk = pk
        for invoice, number in zip(group, numbers, strict=True):
            invoice.number = number
            invoice.number_series = chosen
    new = [invoice for invoice in invoices if invoice._state.adding]
    for invoice in invoices:
        if invoice._state.adding:
            continue
        changed = Invoice.objects.filter(pk=invoice.pk, status=S.DRAFT).update(
            status=invoice.status, updated_at=now, **{name: getattr(invoice, name) for name in _ISSUE_FIELDS}
        )
        if changed != 1:
            raise InvoiceStateError(f"invoice {invoice} changed concurrently (no longer a draft)")
    # COPY, not bulk_create: at 1,000 invoices a billing-run chunk, preparing and quoting values was most of the time.
    copy_insert(Invoice, new)
    actor_id = _actor_id(actor)
    copy_rows(
        InvoiceEvent,
        ("invoice_id", "at", "actor_id", "from_status", "to_status", "reason"),
        [
            (
                invoice.pk,
                now,
                actor_id,
                S.DRAFT,
                invoice.status,
                (reason if invoice.status == S.OPEN else f"{reason} with a zero total")[:500],
            )
            for invoice in invoices
        ],
    )
    domain_events = [_invoice_event("invoice.issued", invoice, actor_id=actor_id, at=now) for invoice in invoices]
    domain_events += [
        _invoice_event("invoice.paid", invoice, actor_id=actor_id, at=now) for invoice in invoices if invoice.total == 0
    ]
    recorded = events.events_record(
        domain_events, handlers=settings.BILLING_AFTER_FINALIZE_HOOKS, dispatch_after_commit=dispatch_after_commit
    )
    for invoice in invoices:
        invoice._loaded_status = invoice.status
    return IssueOutcome(list(invoices), recorded)


def invoice_finalize(
    *,
    invoice: Invoice,
    issue_date: dt.date | None = None,
    actor: AbstractBaseUser | None = None,
) -> Invoice:
    """Freeze a draft: recompute taxes and totals from its lines, then issue it (``invoices_issue``: next number of
    its series, snapshots, due date by the one rule, open — or paid at a zero total). ``issue_date`` is the as-of
    date, by default today in the billing timezone."""
    issue_date = issue_date or billing_today()
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        if locked.status != S.DRAFT:
            raise InvoiceStateError(f"invoice {locked} is already {locked.status}")
        lines = list(locked.lines.order_by("position", "pk"))
        if not lines:
            raise InvoiceError(f"invoice {locked} has no lines")
        try:
            _recompute(locked, lines, strict=True)
        except TaxRateMissing as exc:
            raise InvoiceError(f"invoice {locked}: {exc}") from exc
        except ValueError as exc:
            raise InvoiceError(f"invoice {locked}: {exc}") from exc
        _refuse_invalid_einvoice(locked, lines, issue_date=issue_date)
        InvoiceLine.objects.bulk_update(lines, LINE_AMOUNT_FIELDS)
        invoices_issue(invoices=[locked], issue_date=issue_date, actor=actor)
    return locked


def _refuse_invalid_einvoice(invoice: Invoice, lines: Sequence[InvoiceLine], *, issue_date: dt.date) -> None:
    """A customer who takes e-invoices gets none that fails validation: the draft stays a draft and the error
    names each failed rule and the field to fix (docs/decisions/einvoice.md)."""
    customer = invoice.customer
    if not customer.einvoice_format:
        return
    problems = einvoice_service.problems_before_issue(
        invoice, lines, customer=customer_snapshot(customer=customer), issue_date=issue_date
    )
    if problems:
        raise einvoice_service.EInvoiceRejected(problems)


def invoice_void(*, invoice: Invoice, actor: AbstractBaseUser | None = None, reason: str = "") -> Invoice:
    """Cancel an issued invoice: it keeps its number and amounts; nothing is due any more. An invoice with
    payments or credit notes must be corrected with a credit note instead."""
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        if locked.amount_paid > 0:
            raise InvoiceStateError(f"invoice {locked} has payments: issue a credit note instead of voiding it")
        if CreditNote.objects.filter(invoice=locked).exists():
            raise InvoiceStateError(f"invoice {locked} has credit notes: it cannot be voided")
        now = timezone.now()
        _transition(invoice=locked, to_status=S.VOID, actor=actor, reason=reason or "voided", at=now, voided_at=now)
    return locked


def invoice_mark_uncollectible(*, invoice: Invoice, actor: AbstractBaseUser | None = None, reason: str = "") -> Invoice:
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        _transition(invoice=locked, to_status=S.UNCOLLECTIBLE, actor=actor, reason=reason or "uncollectible")
    return locked


def invoice_apply_payment(
    *,
    invoice: Invoice,
    amount: Decimal,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
) -> Invoice:
    """The payments app's hook: record ``amount`` (in the invoice's currency, already at its minor unit) as paid.
    Never more than the amount due (overpayment is the payments app's customer credit); at zero due the
    invoice becomes ``paid``."""
    if not isinstance(amount, Decimal):
        raise TypeError("amount must be a Decimal")
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        if round_amount(amount, locked.currency) != amount or amount <= 0:
            raise InvoiceError(f"invoice {locked}: {amount} is not a positive {locked.currency} amount")
        if locked.status not in (S.OPEN, S.UNCOLLECTIBLE):
            raise InvoiceStateError(f"invoice {locked} is {locked.status}: it takes no payments")
        if amount > locked.amount_due:
            raise PaymentExceedsAmountDue(
                f"invoice {locked}: payment {amount} exceeds the amount due {locked.amount_due}"
            )
        amount_paid = locked.amount_paid + amount
        amount_due = locked.amount_due - amount
        now = timezone.now()
        if amount_due == 0:
            _transition(
                invoice=locked,
                to_status=S.PAID,
                actor=actor,
                reason=reason or "paid",
                at=now,
                amount_paid=amount_paid,
                amount_due=amount_due,
                paid_at=now,
            )
        else:
            changed = Invoice.objects.filter(pk=locked.pk, status=locked.status).update(
                amount_paid=amount_paid, amount_due=amount_due, updated_at=now
            )
            if changed != 1:  # pragma: no cover - the row is locked; kept as a guard against misuse
                raise InvoiceStateError(f"invoice {locked} changed concurrently")
            locked.amount_paid, locked.amount_due = amount_paid, amount_due
    return locked


def invoice_mark_paid(*, invoice: Invoice, actor: AbstractBaseUser | None = None, reason: str = "") -> Invoice:
    """Settle the whole amount due outside the payments app (e.g. paid in cash, recorded by staff)."""
    current = Invoice.objects.only("amount_due", "currency", "status").get(pk=invoice.pk)
    if current.amount_due == 0:
        raise InvoiceStateError(f"invoice {invoice} has nothing due")
    return invoice_apply_payment(
        invoice=invoice, amount=current.amount_due, actor=actor, reason=reason or "marked paid"
    )


# --- many at once (admin actions) -----------------------------------------------------------------------


def _each(invoices: Iterable[Invoice], action: Callable[[Invoice], Invoice]) -> BulkOutcome:
    outcome = BulkOutcome()
    for invoice in sorted(invoices, key=lambda i: i.pk):
        try:
            outcome.succeeded.append(action(invoice))
        except (InvoiceError, DocumentImmutable, ValidationError, DatabaseError) as exc:
            outcome.failed.append((invoice, str(exc)))
    return outcome


def invoices_finalize_many(
    *, invoices: Iterable[Invoice], issue_date: dt.date | None = None, actor: AbstractBaseUser | None = None
) -> BulkOutcome:
    """Finalize each invoice in its own transaction (in id order, so numbers follow creation order); one that
    fails is reported and does not stop the others."""
    issue_date = issue_date or billing_today()
    return _each(invoices, lambda invoice: invoice_finalize(invoice=invoice, issue_date=issue_date, actor=actor))


def invoices_void_many(
    *, invoices: Iterable[Invoice], actor: AbstractBaseUser | None = None, reason: str = ""
) -> BulkOutcome:
    return _each(invoices, lambda invoice: invoice_void(invoice=invoice, actor=actor, reason=reason))


def invoices_mark_uncollectible_many(
    *, invoices: Iterable[Invoice], actor: AbstractBaseUser | None = None, reason: str = ""
) -> BulkOutcome:
    return _each(invoices, lambda invoice: invoice_mark_uncollectible(invoice=invoice, actor=actor, reason=reason))


# --- credit notes ---------------------------------------------------------------------------------------


def credit_note_issue(
    *,
    invoice: Invoice,
    reason: str,
    amount: Decimal | None = None,
    lines: Sequence[CreditNoteLineSpec] | None = None,
    issue_date: dt.date | None = None,
    memo: str = "",
    actor: AbstractBaseUser | None = None,
) -> CreditNote:
    """Issue a credit note against an open or paid invoice: in full (neither ``amount`` nor ``lines``), for
    some lines (whole or part of their quantity), or for a gross ``amount`` split over the invoice's tax rates.
    On an open invoice it first reduces the amount due (the invoice becomes paid at zero); the rest is recorded
    as ``amount_to_customer_credit``, which the payments app books as customer credit when it handles the
    ``credit_note.issued`` event."""
    if amount is not None and lines:
        raise CreditNoteError("credit either an amount or lines, not both")
    if not reason.strip():
        raise CreditNoteError("a credit note needs a reason")
    issue_date = issue_date or billing_today()
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        if locked.status not in (S.OPEN, S.PAID):
            raise CreditNoteError(f"invoice {locked} is {locked.status}: only open or paid invoices take credit notes")
        currency = locked.currency
        already = CreditNote.objects.filter(invoice=locked).aggregate(total=Sum("total"))["total"] or ZERO
        creditable = locked.total - already
        if lines:
            credit_lines = _credit_lines_for_invoice_lines(locked, lines)
        elif amount is not None:
            credit_lines = _credit_lines_for_amount(locked, amount, reason)
        elif already == 0:
            credit_lines = _credit_lines_for_invoice_lines(
                locked, [CreditNoteLineSpec(invoice_line_id=line.pk) for line in locked.lines.all()]
            )
        else:
            credit_lines = _credit_lines_for_amount(locked, creditable, reason)
        total = sum((line.total_amount for line in credit_lines), ZERO)
        if total <= 0:
            raise CreditNoteError(f"invoice {locked}: nothing to credit")
        if total > creditable:
            raise CreditNoteError(
                f"invoice {locked}: {total} {currency} exceeds the creditable {creditable} {currency}"
            )
        applied = min(total, locked.amount_due) if locked.status == S.OPEN else ZERO
        to_customer_credit = total - applied
        series = number_series_default(kind=NumberSeries.Kind.CREDIT_NOTE)
        [number] = number_series_allocate(series=series, issue_date=issue_date, count=1)
        now = timezone.now()
        net_total = sum((line.net_amount for line in credit_lines), ZERO)
        # The same breakdown as the invoice's: one row per category and rate, sums of the lines' rounded amounts.
        summary = tax_summary_rows(((line, line.net_amount, line.tax_amount) for line in credit_lines), currency)
        credit_note = CreditNote.objects.create(
            invoice=locked,
            customer_id=locked.customer_id,
            number_series=series,
            number=number,
            currency=currency,
            issue_date=issue_date,
            reason=reason[:500],
            memo=memo,
            net_total=net_total,
            tax_total=total - net_total,
            total=total,
            amount_applied=applied,
            amount_to_customer_credit=to_customer_credit,
            tax_summary=[row.as_json() for row in summary],
            customer_snapshot=locked.customer_snapshot,
            seller_snapshot=locked.seller_snapshot,
            issued_at=now,
            issued_by_id=_actor_id(actor),
        )
        for position, line in enumerate(credit_lines, start=1):
            line.credit_note = credit_note
            line.position = position
        CreditNoteLine.objects.bulk_create(credit_lines)
        if applied:
            amount_credited = locked.amount_credited + applied
            amount_due = locked.amount_due - applied
            if amount_due == 0:
                _transition(
                    invoice=locked,
                    to_status=S.PAID,
                    actor=actor,
                    reason=f"settled by credit note {number}",
                    at=now,
                    amount_credited=amount_credited,
                    amount_due=amount_due,
                    paid_at=now,
                )
            else:
                Invoice.objects.filter(pk=locked.pk, status=S.OPEN).update(
                    amount_credited=amount_credited, amount_due=amount_due, updated_at=now
                )
        events.event_record(
            "credit_note.issued",
            subject_type="credit_note",
            subject_id=credit_note.pk,
            payload={
                "credit_note_id": credit_note.pk,
                "number": number,
                "invoice_id": locked.pk,
                "customer_id": locked.customer_id,
                "currency": currency,
                "total": str(total),
                "amount_applied": str(applied),
                "amount_to_customer_credit": str(to_customer_credit),
            },
            actor_id=_actor_id(actor),
        )
    return credit_note


@dataclass(frozen=True)
class CreditNotePreview:
    """What ``credit_note_issue`` would issue now: its lines (description, quantity, total) and amounts."""

    currency: str
    lines: list[tuple[str, Decimal | None, Decimal]]
    net_total: Decimal
    tax_total: Decimal
    total: Decimal
    amount_applied: Decimal
    amount_to_customer_credit: Decimal


class _PreviewRollback(Exception):
    def __init__(self, preview: CreditNotePreview) -> None:
        self.preview = preview


def credit_note_preview(
    *,
    invoice: Invoice,
    reason: str,
    amount: Decimal | None = None,
    lines: Sequence[CreditNoteLineSpec] | None = None,
    issue_date: dt.date | None = None,
) -> CreditNotePreview:
    """``credit_note_issue`` in dry-run: the very same code, in a transaction that is rolled back — so nothing of
    it stays (not the number, not the invoice's amounts, not the event, not the after-commit work), and what is
    shown is exactly what issuing it now would write. It holds the invoice's and the series' locks while it
    runs, as issuing does."""
    try:
        with transaction.atomic():
            note = credit_note_issue(invoice=invoice, reason=reason, amount=amount, lines=lines, issue_date=issue_date)
            preview = CreditNotePreview(
                currency=note.currency,
                lines=[
                    (line.description, line.quantity, line.total_amount)
                    for line in CreditNoteLine.objects.filter(credit_note=note).order_by("position", "pk")
                ],
                net_total=note.net_total,
                tax_total=note.tax_total,
                total=note.total,
                amount_applied=note.amount_applied,
                amount_to_customer_credit=note.amount_to_customer_credit,
            )
            raise _PreviewRollback(preview)
    except _PreviewRollback as done:
        return done.preview


def _credit_lines_for_invoice_lines(invoice: Invoice, specs: Sequence[CreditNoteLineSpec]) -> list[CreditNoteLine]:
    invoice_lines = {line.pk: line for line in invoice.lines.all()}
    credited_before = dict(
        CreditNoteLine.objects.filter(invoice_line__invoice=invoice)
        .values_list("invoice_line_id")
        .annotate(total=Sum("total_amount"))
    )
    currency = invoice.currency
    result: list[CreditNoteLine] = []
    seen: set[int] = set()
    for spec in specs:
        line = invoice_lines.get(spec.invoice_line_id)
        if line is None:
            raise CreditNoteError(f"line {spec.invoice_line_id} is not a line of invoice {invoice}")
        if line.pk in seen:
            raise CreditNoteError(f"line '{line}' is listed twice")
        seen.add(line.pk)
        quantity = line.quantity if spec.quantity is None else Decimal(spec.quantity)
        if quantity <= 0 or quantity > line.quantity:
            raise CreditNoteError(f"line '{line}': quantity {quantity} is not between 0 and {line.quantity}")
        if quantity == line.quantity:
            net, tax = line.net_amount, line.tax_amount
        elif line.tax_inclusive:
            gross = round_amount(line.total_amount * quantity / line.quantity, currency)
            tax = tax_of(amount=gross, percentage=line.tax_percentage, inclusive=True, currency=currency)
            net = gross - tax
        else:
            net = round_amount(line.net_amount * quantity / line.quantity, currency)
            tax = tax_of(amount=net, percentage=line.tax_percentage, inclusive=False, currency=currency)
        if net + tax == 0:
            continue
        if credited_before.get(line.pk, ZERO) + net + tax > line.total_amount and line.total_amount > 0:
            raise CreditNoteError(f"line '{line}' would be credited more than its total {line.total_amount}")
        result.append(
            CreditNoteLine(
                invoice_line=line,
                description=line.description,
                quantity=quantity,
                tax_category=line.tax_category,
                tax_exemption_reason_code=line.tax_exemption_reason_code,
                tax_exemption_reason=line.tax_exemption_reason,
                tax_name=line.tax_name,
                tax_percentage=line.tax_percentage,
                tax_inclusive=line.tax_inclusive,
                net_amount=net,
                tax_amount=tax,
                total_amount=net + tax,
            )
        )
    return result


def _credit_lines_for_amount(invoice: Invoice, amount: Decimal, reason: str) -> list[CreditNoteLine]:
    """A gross amount, split over the invoice's tax rates in proportion to their gross totals; the tax in
    each part is computed as inclusive tax of that rate (the amount the customer gets back includes it)."""
    if not isinstance(amount, Decimal):
        raise TypeError("amount must be a Decimal")
    currency = invoice.currency
    if round_amount(amount, currency) != amount or amount <= 0:
        raise CreditNoteError(f"{amount} is not a positive {currency} amount")
    groups = [row for row in invoice.tax_summary if Decimal(row["taxable_amount"]) + Decimal(row["tax_amount"]) > 0]
    if not groups:
        raise CreditNoteError(f"invoice {invoice} has nothing to credit")
    parts = distribute_amount(
        total=amount,
        weights=[Decimal(row["taxable_amount"]) + Decimal(row["tax_amount"]) for row in groups],
        currency=currency,
    )
    result = []
    for row, part in zip(groups, parts, strict=True):
        if not part:
            continue
        percentage = Decimal(row["percentage"])
        tax = tax_of(amount=part, percentage=percentage, inclusive=True, currency=currency)
        result.append(
            CreditNoteLine(
                description=f"Credit: {reason}"[:500],
                tax_category=row.get("category")
                or TREATMENT_CATEGORIES.get(invoice.tax_treatment, TaxCategory.STANDARD),
                tax_exemption_reason_code=row.get("exemption_reason_code", ""),
                tax_exemption_reason=row.get("exemption_reason", ""),
                tax_name=row["name"],
                tax_percentage=percentage,
                tax_inclusive=bool(row["inclusive"]),
                net_amount=part - tax,
                tax_amount=tax,
                total_amount=part,
            )
        )
    return result


# --- payments: refunds (appended for the payments app) ---------------------------------------------------


def invoice_reverse_payment(
    *,
    invoice: Invoice,
    amount: Decimal,
    actor: AbstractBaseUser | None = None,
    reason: str = "",
) -> Invoice:
    """The payments app's hook for a refund: ``amount`` (in the invoice's currency, at its minor unit) of what was
    paid is given back, so it is due again. A paid invoice re-opens. This is the one way out of ``paid``, and
    deliberately not in ``ALLOWED_TRANSITIONS``: no staff action may re-open a paid invoice, only a refund of
    money that settled it. The re-opening writes an ``InvoiceEvent`` like every transition."""
    if not isinstance(amount, Decimal):
        raise TypeError("amount must be a Decimal")
    with transaction.atomic():
        locked = _lock_invoice(invoice.pk)
        if round_amount(amount, locked.currency) != amount or amount <= 0:
            raise InvoiceError(f"invoice {locked}: {amount} is not a positive {locked.currency} amount")
        if amount > locked.amount_paid:
            raise InvoiceError(f"invoice {locked}: cannot reverse {amount}, only {locked.amount_paid} was paid")
        if locked.status not in (S.OPEN, S.UNCOLLECTIBLE, S.PAID):
            raise InvoiceStateError(f"invoice {locked} is {locked.status}: it has no payments to reverse")
        amount_paid = locked.amount_paid - amount
        amount_due = locked.amount_due + amount
        now = timezone.now()
        from_status = locked.status
        to_status = S.OPEN if from_status == S.PAID else from_status
        changed = Invoice.objects.filter(pk=locked.pk, status=from_status).update(
            status=to_status,
            amount_paid=amount_paid,
            amount_due=amount_due,
            paid_at=None if to_status == S.OPEN else locked.paid_at,
            updated_at=now,
        )
        if changed != 1:  # pragma: no cover - the row is locked; kept as a guard against misuse
            raise InvoiceStateError(f"invoice {locked} changed concurrently")
        if to_status != from_status:
            InvoiceEvent.objects.create(
                invoice_id=locked.pk,
                at=now,
                actor_id=_actor_id(actor),
                from_status=from_status,
                to_status=to_status,
                reason=(reason or "payment refunded")[:500],
            )
        locked.status, locked.amount_paid, locked.amount_due = to_status, amount_paid, amount_due
        if to_status == S.OPEN:
            locked.paid_at = None
        locked._loaded_status = to_status
    return locked
