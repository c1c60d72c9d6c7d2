"""The billing run (docs/DESIGN.md flow 1): every subscription period due on or before ``as_of`` becomes exactly one
invoice, finalized and numbered, and the subscription moves on — in chunks, set-based, exactly once.

How a chunk of up to ``BILLING_RUN_CHUNK_SIZE`` subscriptions is billed, in ONE transaction:
1. ``subscriptions.charges.plans_for_chunk(lock=True)`` locks the chunk's subscription rows
   (``FOR UPDATE SKIP LOCKED``: rows another run holds are left to it) and computes every due period in Python;
2. invoices and lines are built in memory, taxed and totalled with the pure functions of ``taxes.py``;
3. the invoices take their ids from the sequence (no lock); COPY writes the held drafts and every line, and
   ``plans_commit`` advances the subscriptions, guarded by their old values;
4. ``invoicing.services.invoices_issue`` — the one issue path — issues them in bulk, last: one ``UPDATE …
   RETURNING`` takes a block of numbers (the counter row stays locked until commit: the one lock chunks share,
   so it is held for as little as possible), COPY writes invoices and status events, then the ``invoice.issued``
   domain events;
5. the chunk's own ``BillingRunChunk`` row, written first, marks it done in the same transaction (never the
   shared run row: the workers would take turns on its lock); after commit, one short statement counts the run's
   done chunks.
A unique constraint on (subscription, period_key) refuses a second invoice for a period whatever runs twice.
If anything in the chunk fails, the chunk is rolled back and billed again one subscription per transaction,
so one failing subscription is recorded (``BillingRunError``) and never stops the others.
After commit, one task per chunk dispatches the chunk's ``invoice.issued`` events on the workers (settle: credit and
automatic collection; then deliver: PDF and e-mail).

Dispatch: ``inline`` bills the chunks in this process (the command's default); ``celery`` enqueues one task per
chunk (ids, never one task per subscription: Celery closes the DB connection after each task) and the last
chunk to finish closes the run. Run statistics are always recomputed from the invoices themselves, so a chunk
that a broker delivers twice cannot count twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import logging
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, cast

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from core.audit import audit_as_job, audit_skipped
from core.bulk import allocate_ids, copy_insert, copy_rows
from core.errors import Conflict, NotAllowed
from core.models import EventStatus
from core.money import round_amount
from core.tasks import process_event_batch
from core.tax_categories import TaxCategory
from customers.models import Customer
from invoicing import consolidation
from invoicing.einvoice import service as einvoice_service
from invoicing.models import (
    BillingRun,
    BillingRunChunk,
    BillingRunError,
    BillingRunStatus,
    ChildAccountPeriod,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    NumberSeries,
    TaxRate,
    TaxTreatment,
)
from invoicing.numbering import number_series_default
from invoicing.services import customer_snapshot, invoices_issue
from invoicing.taxes import (
    InvoiceTaxes,
    TaxRateMissing,
    TaxResolution,
    apply_line_taxes,
    apply_tax_resolution,
    apply_totals,
    compute_invoice_totals,
    tax_rates_load,
)
from subscriptions.charges import BillingPlan, PeriodCharges, PriceCache, plans_for_chunk
from subscriptions.selectors import consolidated_payers_due, subscription_ids_due
from subscriptions.services import plans_commit, subscriptions_resume_due

logger = logging.getLogger(__name__)

DISPATCH_INLINE = "inline"
DISPATCH_CELERY = "celery"
TaxRates = dict[str, list[TaxRate]]


class ConcurrentBilling(Conflict):
    """A subscription changed between planning and committing (another run, a plan change): roll back."""


class InvoiceNeedsReview(NotAllowed):
    pass


@dataclass
class ChunkOutcome:
    subscriptions: int = 0
    invoices: int = 0
    drafts: int = 0
    failed: int = 0
    totals: dict[str, Decimal] = field(default_factory=dict)
    errors: list[tuple[int | None, str]] = field(default_factory=list)
    run_complete: bool = False  # every chunk of the run is done (after this one): the caller closes the run

    def add_invoice(self, invoice: Invoice) -> None:
        if invoice.status == InvoiceStatus.DRAFT:
            self.drafts += 1
            return
        self.invoices += 1
        self.totals[invoice.currency] = self.totals.get(invoice.currency, Decimal(0)) + invoice.total

    def merge(self, other: ChunkOutcome) -> None:
        self.subscriptions += other.subscriptions
        self.invoices += other.invoices
        self.drafts += other.drafts
        self.failed += other.failed
        for currency, amount in other.totals.items():
            self.totals[currency] = self.totals.get(currency, Decimal(0)) + amount
        self.errors.extend(other.errors)


# --- building invoices in memory ------------------------------------------------------------------------


def _hold_for_review(customer: Customer) -> bool:
    return not settings.BILLING_AUTO_FINALIZE or customer.review_invoices


@dataclass(slots=True, kw_only=True)
class PlannedLine:
    """An invoice line on its way into the database: the billing run builds tens of thousands per chunk, so a
    slotted dataclass instead of a model instance, written with COPY (``InvoiceLine`` reads them back). It has
    every attribute the tax arithmetic of ``taxes.py`` reads and sets."""

    invoice: Invoice
    position: int
    kind: str
    description: str
    quantity: Decimal
    unit_amount: Decimal
    amount: Decimal
    discount_amount: Decimal
    period_start: dt.date
    period_end: dt.date
    proration: bool
    price_id: int | None
    subscription_item_id: int | None
    tax_inclusive: bool
    supply_tax_category: str = TaxCategory.STANDARD
    tax_category: str = TaxCategory.STANDARD
    tax_exemption_reason_code: str = ""
    tax_exemption_reason: str = ""
    net_amount: Decimal = Decimal(0)
    tax_rate: TaxRate | None = None
    tax_name: str = ""
    tax_percentage: Decimal = Decimal(0)
    tax_amount: Decimal = Decimal(0)
    total_amount: Decimal = Decimal(0)
    discount_description: str = ""

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "invoice_id", "position", "kind", "description", "quantity", "unit_amount", "amount", "discount_amount",
        "net_amount", "tax_rate_id", "tax_name", "tax_percentage", "tax_inclusive", "tax_amount", "total_amount",
        "period_start", "period_end", "proration", "price_id", "subscription_item_id", "discount_description",
        "supply_tax_category", "tax_category", "tax_exemption_reason_code", "tax_exemption_reason",
    )  # fmt: skip

    def row(self) -> tuple[Any, ...]:
        return (
            self.invoice.pk, self.position, self.kind, self.description, self.quantity, self.unit_amount,
            self.amount, self.discount_amount, self.net_amount, self.tax_rate.pk if self.tax_rate else None,
            self.tax_name, self.tax_percentage, self.tax_inclusive, self.tax_amount, self.total_amount,
            self.period_start, self.period_end, self.proration, self.price_id, self.subscription_item_id,
            self.discount_description, self.supply_tax_category, self.tax_category, self.tax_exemption_reason_code,
            self.tax_exemption_reason,
        )  # fmt: skip


def invoice_from_period(
    *, period: PeriodCharges, customer: Customer, tax_rates: TaxRates, run: BillingRun | None
) -> tuple[Invoice, list[PlannedLine]]:
    """The draft invoice (unsaved) for one due period, taxed per line and totalled in memory, without a query:
    the customer and the tax rates are loaded by the caller once per chunk. Raises ``TaxRateMissing`` for a
    taxable line whose rate is not configured for the customer's country; ``provisional_invoice_from_period``
    builds the untaxed draft then."""
    return _invoice(period=period, customer=customer, tax_rates=tax_rates, run=run)


def provisional_invoice_from_period(
    *, period: PeriodCharges, customer: Customer, run: BillingRun | None
) -> tuple[Invoice, list[PlannedLine]]:
    # As a draft shows it in invoicing.services: untaxed; finalizing refuses until a rate exists.
    return _invoice(period=period, customer=customer, tax_rates=None, run=run)


def _invoice(
    *, period: PeriodCharges, customer: Customer, tax_rates: TaxRates | None, run: BillingRun | None
) -> tuple[Invoice, list[PlannedLine]]:
    """``tax_rates=None``: the provisional, untaxed draft."""
    invoice = Invoice(
        customer=customer,
        subscription_id=period.subscription_id,
        period_key=period.period_key,
        billing_run=run if run is not None and run.pk else None,
        billing_reason=period.billing_reason,
        currency=period.currency,
        period_start=period.period_start,
        period_end=period.period_end,
        status=InvoiceStatus.DRAFT,
    )
    lines = [
        PlannedLine(
            invoice=invoice,
            position=position,
            kind=charge.kind,
            description=charge.description[:500],
            quantity=charge.quantity,
            unit_amount=charge.unit_amount.amount,
            amount=charge.amount.amount,
            discount_amount=charge.discount_amount.amount,
            discount_description=charge.discount_description,
            period_start=charge.period_start,
            period_end=charge.period_end,
            proration=charge.proration,
            price_id=charge.price_id,
            subscription_item_id=charge.subscription_item_id,
            tax_inclusive=charge.tax_behavior == "inclusive",
            supply_tax_category=charge.tax_category,
            tax_exemption_reason_code=charge.tax_exemption_reason_code,
            tax_exemption_reason=charge.tax_exemption_reason,
        )
        for position, charge in enumerate(period.lines, start=1)
    ]
    as_lines = cast(list[InvoiceLine], lines)  # PlannedLine has every attribute the tax arithmetic uses
    if tax_rates is None:
        apply_tax_resolution(as_lines, TaxResolution(TaxTreatment.STANDARD, None))
        taxes = InvoiceTaxes(treatment=TaxTreatment.STANDARD, note="")
    else:
        taxes = apply_line_taxes(as_lines, customer=customer, tax_rates_by_country=tax_rates)
    apply_totals(invoice, as_lines, compute_invoice_totals(as_lines, invoice.currency, amounts_given=True))
    invoice.tax_treatment = taxes.treatment
    invoice.tax_note = taxes.note
    invoice.due_date = None  # set when it is issued, by the one rule of invoices_issue
    return invoice, lines


def _build(
    plans: Sequence[BillingPlan], *, tax_rates: TaxRates, run: BillingRun | None, outcome: ChunkOutcome
) -> tuple[list[Invoice], list[Invoice], list[PlannedLine], list[ChildAccountPeriod]]:
    """(to finalize, to keep as drafts, all lines, the child periods of invoices to parents). A draft is kept for
    staff when the customer (or the installation) reviews invoices, when the period nets to a credit (a negative
    invoice cannot be issued: staff turn it into customer credit), or when no tax rate is configured for a taxable
    customer. Children billed to their parent go on the parent's invoices (``invoicing.consolidation``)."""
    to_issue: list[Invoice] = []
    drafts: list[Invoice] = []
    all_lines: list[PlannedLine] = []
    own, to_parent = consolidation.plans_split(plans)
    for plan in own:
        assert plan.customer is not None
        for period in plan.periods:
            invoice, lines = invoice_build_for_period(
                period=period, customer=plan.customer, tax_rates=tax_rates, run=run
            )
            (drafts if invoice.memo else to_issue).append(invoice)
            all_lines.extend(lines)
    child_periods: list[ChildAccountPeriod] = []
    if to_parent:
        for built in parent_invoices_build(to_parent, tax_rates=tax_rates, run=run):
            (drafts if built.invoice.memo else to_issue).append(built.invoice)
            all_lines.extend(built.lines)
            child_periods.extend(built.periods)
    return to_issue, drafts, all_lines, child_periods


def parent_invoices_build(
    plans: Sequence[BillingPlan], *, tax_rates: TaxRates, run: BillingRun | None = None
) -> list[consolidation.ParentInvoice]:
    """The invoices to parents for their children's plans: each child period built (and taxed per the child) by
    the run's own per-period code, merged per parent; held for review by the same rules as any invoice, the
    parent's review setting and e-invoice format deciding."""

    def build_period(period: PeriodCharges, child: Customer) -> tuple[Invoice, list[Any], str]:
        invoice, lines, reason = _invoice_for_period(period=period, customer=child, tax_rates=tax_rates, run=run)
        return invoice, lines, reason

    built = consolidation.parent_invoices(plans, build_period=build_period, run_id=run.pk if run is not None else None)
    for parent_invoice in built:
        invoice = parent_invoice.invoice
        reason = f"held for review: {parent_invoice.review_reason}" if parent_invoice.review_reason else ""
        invoice.memo = reason or _review_reason(
            invoice, parent_invoice.lines, customer=invoice.customer, issue_date=parent_invoice.billing_date
        )
    return built


def _invoice_for_period(
    *, period: PeriodCharges, customer: Customer, tax_rates: TaxRates, run: BillingRun | None
) -> tuple[Invoice, list[PlannedLine], str]:
    try:
        invoice, lines = invoice_from_period(period=period, customer=customer, tax_rates=tax_rates, run=run)
        return invoice, lines, ""
    except TaxRateMissing as exc:
        invoice, lines = provisional_invoice_from_period(period=period, customer=customer, run=run)
        return invoice, lines, str(exc)


def invoice_build_for_period(
    *, period: PeriodCharges, customer: Customer, tax_rates: TaxRates, run: BillingRun | None = None
) -> tuple[Invoice, list[PlannedLine]]:
    """The billing run's invoice for one period, in memory: taxed and totalled, or — with ``memo`` saying why — a
    draft to hold for review (no tax rate, a net credit, the customer's or installation's review setting). Every
    invoice a subscription gets is built here: the run, an "invoice now" plan change, and their previews."""
    invoice, lines, missing = _invoice_for_period(period=period, customer=customer, tax_rates=tax_rates, run=run)
    if missing:
        invoice.memo = f"held for review: {missing}"
    else:
        invoice.memo = _review_reason(invoice, lines, customer=customer, issue_date=period.billing_date)
    return invoice, lines


def _review_reason(invoice: Invoice, lines: Sequence[PlannedLine], *, customer: Customer, issue_date: dt.date) -> str:
    review_reason = ""
    if not review_reason and invoice.total < 0:
        review_reason = f"held for review: the period nets to a credit of {invoice.total} {invoice.currency}"
    if not review_reason and _hold_for_review(customer):
        review_reason = "held for review (customer setting)"
    if not review_reason and customer.einvoice_format:
        # checked before the invoice takes a number: one that would fail is held, its memo naming each failed
        # rule and the field to fix (docs/decisions/einvoice.md)
        problems = einvoice_service.problems_before_issue(
            invoice, lines, customer=customer_snapshot(customer=customer), issue_date=issue_date
        )
        review_reason = f"held for review: {problems}" if problems else ""
    return review_reason


# --- one chunk ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """What every chunk of a run shares, loaded once per run and process: the tax rates and the series."""

    tax_rates: TaxRates
    series: NumberSeries
    prices: PriceCache = field(default_factory=PriceCache)


@functools.lru_cache(maxsize=8)
def run_context(run_id: int | None) -> RunContext:
    """Per process and run (a worker bills many chunks of one run): the same rates for the whole run."""
    return RunContext(tax_rates=tax_rates_load(), series=number_series_default(kind=NumberSeries.Kind.INVOICE))


def _bill(*, run: BillingRun, subscription_ids: Sequence[int], as_of: dt.date, context: RunContext) -> ChunkOutcome:
    """Bill a chunk inside the caller's transaction. Raises on any problem so the caller can roll back."""
    outcome = ChunkOutcome()
    plans = plans_for_chunk(subscription_ids=list(subscription_ids), as_of=as_of, lock=True, prices=context.prices)
    outcome.subscriptions = len(plans)
    to_issue, drafts, lines, child_periods = _build(plans, tax_rates=context.tax_rates, run=run, outcome=outcome)
    created = [*to_issue, *drafts]
    # The numbers come last: the counter row they lock is the one row every chunk (and every other issuer) needs,
    # and it stays locked until commit. So on PostgreSQL the invoices take their ids from the sequence first (no
    # lock) and everything that needs no number — held drafts, every line (their foreign key to the invoice is
    # checked at commit), the subscriptions' advance — is written before ``invoices_issue`` takes the numbers.
    numbers_last = connection.vendor == "postgresql"
    if numbers_last:
        for invoice, pk in zip(created, allocate_ids(Invoice, len(created)), strict=True):
            invoice.pk = pk
        _write_unnumbered(plans, drafts, lines, child_periods)
    issued = invoices_issue(
        invoices=to_issue,
        issue_date=as_of,
        series=context.series,
        reason=f"issued by billing run {run.pk}",
        dispatch_after_commit=False,
        subscription_days_until_due={plan.subscription_id: plan.days_until_due for plan in plans},
    )
    if not numbers_last:  # elsewhere (the SQLite demo) the invoices get their ids when they are inserted
        _write_unnumbered(plans, drafts, lines, child_periods)
    for invoice in created:
        invoice._loaded_status = invoice.status
        outcome.add_invoice(invoice)
    pending = [event.pk for event in issued.events if event.status == EventStatus.PENDING]
    if pending:
        # One task per chunk dispatches the new invoices' events on the workers: running their handlers here,
        # per invoice, would make credit, PDF and e-mail work the billing run's bottleneck.
        transaction.on_commit(functools.partial(_hand_to_workers, pending))
    return outcome


def _write_unnumbered(
    plans: list[BillingPlan],
    drafts: list[Invoice],
    lines: list[PlannedLine],
    child_periods: list[ChildAccountPeriod],
) -> None:
    """The chunk's writes that need no invoice number: the held drafts, every line, the child periods of invoices
    to parents (a period billed twice fails here), the subscriptions' advance."""
    copy_insert(Invoice, drafts, assign_ids=bool(drafts) and drafts[0].pk is None)
    if child_periods:
        ChildAccountPeriod.objects.bulk_create(child_periods)
    # The run's lines are not audited one by one: there are tens of thousands per chunk, and the issued invoice
    # (InvoiceEvent) or the held draft's audit row stands for them (docs/decisions/audit.md).
    with audit_skipped("billing_run_lines"):
        copy_rows(InvoiceLine, PlannedLine.COLUMNS, [line.row() for line in lines])
    advanced = set(plans_commit(plans=plans, locked=True))
    missed = [plan.subscription_id for plan in plans if plan.subscription_id not in advanced]
    if missed:
        raise ConcurrentBilling(f"subscriptions changed while being billed: {missed[:10]}")


def _hand_to_workers(event_ids: list[int]) -> None:
    """After the chunk committed: its invoices and their events are safe, so a broker that refuses the task must
    not fail the chunk (it would be counted twice and billed again one by one for nothing). The events stay
    pending and the "Domain events" sweep (``manage.py process_events``) runs their handlers (docs/RELIABILITY.md)."""
    try:
        process_event_batch.delay(event_ids)
    except BrokerUnavailable:
        logger.warning(
            "the broker is unreachable: %d invoice.issued event(s) (first %s) wait for the domain events sweep",
            len(event_ids),
            event_ids[0],
        )


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """A chunk allocates ~100,000 short-lived objects; the cyclic collector would run hundreds of times over
    them for nothing (they hold no reference cycles worth collecting before the chunk ends)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def billing_run_chunk(
    *, run: BillingRun, subscription_ids: Sequence[int], as_of: dt.date, context: RunContext | None = None
) -> ChunkOutcome:
    """Bill one chunk; never raises for a subscription's problem (it is recorded on the run). A chunk delivered
    again after it was done bills nothing and is not counted again (``BillingRunChunk``). ``run_complete`` on
    the outcome tells the caller that every chunk of the run is done, so it closes the run."""
    with audit_as_job(f"billing run #{run.pk}", billing_run=run.pk):
        return _billing_run_chunk(run=run, subscription_ids=subscription_ids, as_of=as_of, context=context)


def _billing_run_chunk(
    *, run: BillingRun, subscription_ids: Sequence[int], as_of: dt.date, context: RunContext | None
) -> ChunkOutcome:
    context = context or run_context(run.pk)
    outcome: ChunkOutcome | None = None
    try:
        with transaction.atomic(), _no_cyclic_gc():
            if _mark_chunk_done(run, subscription_ids):
                billed = _bill(run=run, subscription_ids=subscription_ids, as_of=as_of, context=context)
            else:
                billed = ChunkOutcome()
        outcome = billed  # only once the chunk has committed: the COMMIT itself may fail (a lost connection)
    except Exception:
        logger.warning(
            "billing run %s: a chunk of %d failed as a whole; billing it one by one", run.pk, len(subscription_ids)
        )
    if outcome is None:
        outcome = _bill_one_by_one(run=run, subscription_ids=subscription_ids, as_of=as_of, context=context)
    outcome.run_complete = _count_chunks_done(run)
    return outcome


def _bill_one_by_one(
    *, run: BillingRun, subscription_ids: Sequence[int], as_of: dt.date, context: RunContext
) -> ChunkOutcome:
    """Each subscription in its own transaction; billing one twice is impossible (a billed subscription has
    moved on), so a concurrent delivery of this chunk does no harm. The chunk is marked done once, at the end."""
    outcome = ChunkOutcome()
    # a parent's consolidated subscriptions stay together: one invoice, billed or failed as one
    for unit in consolidation.billing_units(subscription_ids):
        try:
            with transaction.atomic():
                outcome.merge(_bill(run=run, subscription_ids=unit, as_of=as_of, context=context))
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            for subscription_id in unit:
                logger.warning("billing run %s: subscription %s failed: %s", run.pk, subscription_id, message)
                outcome.failed += 1
                outcome.errors.append((subscription_id, message))
                BillingRunError.objects.create(
                    run=run, subscription_id=subscription_id, message=message[:2000], traceback=traceback.format_exc()
                )
    with transaction.atomic():
        _mark_chunk_done(run, subscription_ids)
    return outcome


def _mark_chunk_done(run: BillingRun, subscription_ids: Sequence[int]) -> bool:
    """Record the chunk as done, in the caller's transaction; False if it was done already. On PostgreSQL the
    insert waits for a concurrent delivery of the same chunk to commit or roll back.

    Only the chunk's own row is written here, never the run's: a chunk's transaction lasts the whole chunk, and
    an update of the shared run row in it would make every other worker wait for this chunk to commit (the
    workers took turns: two billed as fast as one). The foreign key of the new row takes only a KEY SHARE lock
    on the run row, which neither blocks nor is blocked by another chunk (``_count_chunks_done``'s update
    included). ``tests/invoicing/test_billing_run_no_wait.py`` keeps it so."""
    try:
        with transaction.atomic():  # a savepoint: the unique violation must not break the caller's transaction
            BillingRunChunk.objects.create(
                run=run, first_subscription_id=min(subscription_ids), subscriptions=len(subscription_ids)
            )
    except IntegrityError:
        logger.info("billing run %s: the chunk from subscription %s was done already", run.pk, min(subscription_ids))
        return False
    return True


def _count_chunks_done(run: BillingRun) -> bool:
    """After the chunk's transaction: the run's ``chunks_done`` becomes the number of its done chunks, in one
    short statement of its own; True when that is all of them. ``GREATEST`` keeps the counter from going back when
    two chunks count at once (the later snapshot wins whatever the order the updates run in), and the chunk that
    commits last always counts every chunk, so the run is always seen complete by at least one chunk (redelivery
    included: a chunk delivered again counts again, and finds the run complete if it is). The same statement writes
    the run's ``heartbeat_at``, the stale-work sweeper's sign of life (invoicing/stale_runs.py)."""
    run_table = BillingRun._meta.db_table
    chunk_table = BillingRunChunk._meta.db_table
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"  # SQLite (the demo): scalar MAX
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {run_table} SET chunks_done = {greatest}(chunks_done, "  # noqa: S608
            f"(SELECT count(*) FROM {chunk_table} WHERE run_id = %s)), heartbeat_at = %s "
            "WHERE id = %s RETURNING chunks_done, chunks_total",
            [run.pk, timezone.now(), run.pk],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    run.chunks_done, run.chunks_total = int(row[0]), int(row[1])
    return run.chunks_done >= run.chunks_total


# --- the run --------------------------------------------------------------------------------------------


def _chunks(ids: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _due_chunks(
    *, as_of: dt.date, customer_id: int | None, subscription_id: int | None, size: int
) -> tuple[list[int], list[list[int]]]:
    """The due subscription ids and the run's chunks of them: a parent's consolidated subscriptions in one chunk,
    so one parent gets one invoice per billing date (``invoicing.consolidation.chunks_by_payer``)."""
    ids = list(subscription_ids_due(as_of=as_of, customer_id=customer_id, subscription_id=subscription_id))
    payers = consolidated_payers_due(as_of=as_of, customer_id=customer_id, subscription_id=subscription_id)
    if customer_id is not None:  # a parent's (or a child's) run bills the family's consolidated subscriptions
        ids = sorted({*ids, *payers})
    return ids, list(consolidation.chunks_by_payer(ids, payers, size))


def billing_run_open(
    *,
    as_of: dt.date,
    customer_id: int | None = None,
    chunk_size: int | None = None,
    dispatch: str = DISPATCH_INLINE,
    actor: Any = None,
    subscription_id: int | None = None,
) -> tuple[BillingRun, list[list[int]]]:
    """Start a run: its row (``running``) and the chunks of subscription ids it will bill. The whole run first
    ends the pauses whose resume date has come (``subscriptions_resume_due``), so they are billed today."""
    if customer_id is None and subscription_id is None:
        subscriptions_resume_due(as_of=as_of, actor=actor)
    size = chunk_size or settings.BILLING_RUN_CHUNK_SIZE
    ids, chunks = _due_chunks(as_of=as_of, customer_id=customer_id, subscription_id=subscription_id, size=size)
    run = BillingRun.objects.create(
        started_at=timezone.now(),
        as_of=as_of,
        status=BillingRunStatus.RUNNING,
        subscriptions_seen=len(ids),
        chunks_total=len(chunks),
        dispatch=dispatch,
        triggered_by=actor if getattr(actor, "pk", None) else None,
        customer_id=customer_id,
    )
    return run, chunks


def billing_run(
    *,
    as_of: dt.date,
    dry_run: bool = False,
    customer_id: int | None = None,
    chunk_size: int | None = None,
    actor: Any = None,
    on_progress: Callable[[int], object] | None = None,
    subscription_id: int | None = None,
) -> BillingRun:
    """Bill every subscription period due on or before ``as_of`` (optionally for one customer or one
    subscription), in this process.

    Returns the ``BillingRun`` row; with ``dry_run`` an unsaved one carrying what the run would do (nothing is
    written, no number is taken). The workers' way is ``invoicing.billing_tasks.billing_run_async``.
    """
    if dry_run:
        ids, chunks = _due_chunks(
            as_of=as_of,
            customer_id=customer_id,
            subscription_id=subscription_id,
            size=chunk_size or settings.BILLING_RUN_CHUNK_SIZE,
        )
        return _dry_run(as_of=as_of, chunks=chunks, subscriptions_seen=len(ids), on_progress=on_progress)
    run, chunks = billing_run_open(
        as_of=as_of, customer_id=customer_id, chunk_size=chunk_size, actor=actor, subscription_id=subscription_id
    )
    context = RunContext(tax_rates=tax_rates_load(), series=number_series_default(kind=NumberSeries.Kind.INVOICE))
    for chunk in chunks:
        billing_run_chunk(run=run, subscription_ids=chunk, as_of=as_of, context=context)
        if on_progress is not None:
            on_progress(len(chunk))
    return billing_run_finish(run_id=run.pk)


def billing_run_chunks_here(*, run_id: int, chunks: list[list[int]], as_of: dt.date) -> None:
    """Bill the chunks the broker would not take in this process, and close the run if they were the last."""
    run = BillingRun.objects.get(pk=run_id)
    complete = False
    for chunk in chunks:
        complete = billing_run_chunk(run=run, subscription_ids=chunk, as_of=as_of).run_complete
    if complete:
        billing_run_finish(run_id=run_id)


def billing_run_finish(*, run_id: int) -> BillingRun:
    """Close a run: counts and totals per currency recomputed from the invoices it wrote (so a chunk delivered
    twice by the broker cannot count twice), status from its errors. Safe to call more than once."""
    run = BillingRun.objects.get(pk=run_id)
    by_status = (
        Invoice.objects.filter(billing_run_id=run_id)
        .values("currency", "status")
        .annotate(n=Count("pk"), total=Sum("total"))
        .order_by()
    )
    invoices = drafts = 0
    totals: dict[str, Decimal] = {}
    for row in by_status:
        if row["status"] == InvoiceStatus.DRAFT:
            drafts += row["n"]
        else:
            invoices += row["n"]
            totals[row["currency"]] = totals.get(row["currency"], Decimal(0)) + row["total"]
    failed = run.errors.count()
    if failed and not (invoices or drafts):
        status = BillingRunStatus.FAILED
    elif failed:
        status = BillingRunStatus.PARTIAL
    else:
        status = BillingRunStatus.SUCCEEDED
    BillingRun.objects.filter(pk=run_id).update(
        invoices_created=invoices,
        drafts_created=drafts,
        failed=failed,
        totals=_totals_json(totals),
        status=status,
        finished_at=run.finished_at or timezone.now(),
    )
    run.refresh_from_db()
    return run


def _totals_json(totals: dict[str, Decimal]) -> dict[str, str]:
    """Per currency, as strings in the currency's minor unit: {"EUR": "110.67", "JPY": "1357"}."""
    return {currency: str(round_amount(amount, currency)) for currency, amount in sorted(totals.items())}


def billing_run_invoices_planned(
    *, as_of: dt.date, customer_id: int | None = None, subscription_id: int | None = None
) -> tuple[list[tuple[Invoice, list[PlannedLine]]], list[tuple[Invoice, list[PlannedLine]]]]:
    """What a run as of ``as_of`` for one customer or subscription would write, built by the run's own code and
    written nowhere: (invoices it would issue, drafts it would hold for review — ``memo`` says why), each with its
    lines, taxed and totalled. Numbers and due dates are given when they are issued."""
    ids, _ = _due_chunks(
        as_of=as_of, customer_id=customer_id, subscription_id=subscription_id, size=settings.BILLING_RUN_CHUNK_SIZE
    )
    plans = plans_for_chunk(subscription_ids=ids, as_of=as_of, lock=False) if ids else []
    to_issue, drafts, lines, _ = _build(plans, tax_rates=tax_rates_load(), run=None, outcome=ChunkOutcome())
    by_invoice: dict[int, list[PlannedLine]] = {}
    for line in lines:
        by_invoice.setdefault(id(line.invoice), []).append(line)
    return (
        [(invoice, by_invoice.get(id(invoice), [])) for invoice in to_issue],
        [(invoice, by_invoice.get(id(invoice), [])) for invoice in drafts],
    )


def _dry_run(
    *, as_of: dt.date, chunks: list[list[int]], subscriptions_seen: int, on_progress: Callable[[int], object] | None
) -> BillingRun:
    run = BillingRun(started_at=timezone.now(), as_of=as_of, dry_run=True, subscriptions_seen=subscriptions_seen)
    outcome = ChunkOutcome()
    rates = tax_rates_load()
    for chunk in chunks:
        plans = plans_for_chunk(subscription_ids=chunk, as_of=as_of, lock=False)
        to_issue, drafts, _, _ = _build(plans, tax_rates=rates, run=None, outcome=outcome)
        for invoice in to_issue:
            invoice.status = InvoiceStatus.OPEN
            outcome.add_invoice(invoice)
        for invoice in drafts:
            outcome.add_invoice(invoice)
        if on_progress is not None:
            on_progress(len(chunk))
    run.invoices_created = outcome.invoices
    run.drafts_created = outcome.drafts
    run.totals = _totals_json(outcome.totals)
    run.status = BillingRunStatus.SUCCEEDED
    run.finished_at = timezone.now()
    return run


__all__ = [
    "DISPATCH_CELERY",
    "DISPATCH_INLINE",
    "ChunkOutcome",
    "TaxTreatment",
    "billing_run",
    "billing_run_chunk",
    "billing_run_finish",
    "invoice_from_period",
]
