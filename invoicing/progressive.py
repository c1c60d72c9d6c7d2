"""Progressive billing (docs/decisions/commitments.md): when the usage a subscription accrued in its current period
crosses one of its thresholds, the usage so far is invoiced at once — through ``invoices_issue``, the one issue
path — and the period's own invoice (the billing run's) deducts it.

The job (``invoicing.progressive_billing`` every hour, ``manage.py progressive_billing --as-of``) finds the
subscriptions with thresholds, prices their open usage window with the billing plan's own code
(``subscriptions.charges.period_accruals``) and, for each that crossed a threshold not billed yet, in its own
transaction: locks the subscription row (waiting, so a concurrent job or billing run is seen once it commits),
prices again under the lock, builds the invoice with the run's builder, issues it and records what it billed
(``ProgressiveBilling``). At most once per subscription, window and threshold: the second job finds the row (and
the invoice's unique (subscription, period key) and the row's unique constraint refuse a second even if it did
not). An invoice that would be held for review (no tax rate, the customer reviews invoices, an e-invoice problem)
is not issued: the usage simply stays on the period's invoice.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError, transaction

from core.audit import audit_as_job
from core.bulk import copy_rows
from invoicing.billing_run import PlannedLine, invoice_build_for_period
from invoicing.models import Invoice, InvoiceLine, TaxRate
from invoicing.services import invoices_issue
from invoicing.taxes import tax_rates_load
from subscriptions.charges import PeriodAccrual, period_accruals, threshold_charges
from subscriptions.models import Subscription
from subscriptions.selectors import subscription_ids_with_thresholds
from subscriptions.services import progressive_billing_record

logger = logging.getLogger(__name__)

CHUNK = 500


@dataclass
class ThresholdInvoice:
    subscription_id: int
    threshold: Decimal
    currency: str
    total: Decimal
    invoice: Invoice | None  # None in a dry run
    held_reason: str = ""


@dataclass
class ProgressiveOutcome:
    as_of: dt.date
    dry_run: bool
    checked: int = 0
    issued: list[ThresholdInvoice] = field(default_factory=list)
    held: list[ThresholdInvoice] = field(default_factory=list)  # would be held for review: not issued

    def summary(self) -> str:
        verb = "would issue" if self.dry_run else "issued"
        return (
            f"progressive billing as of {self.as_of}: {self.checked} subscription(s) checked, {len(self.issued)} "
            f"threshold invoice(s) {verb}, {len(self.held)} left to the period's invoice (held for review)"
        )


def progressive_billing_run(
    *, as_of: dt.date, dry_run: bool = False, subscription_id: int | None = None
) -> ProgressiveOutcome:
    """Issue the threshold invoices due as of ``as_of`` (the usage of ``as_of`` itself included). Safe to run
    again or concurrently: a threshold is billed once per window."""
    outcome = ProgressiveOutcome(as_of=as_of, dry_run=dry_run)
    ids = list(subscription_ids_with_thresholds(as_of=as_of, subscription_id=subscription_id))
    outcome.checked = len(ids)
    rates = tax_rates_load()
    with audit_as_job("progressive billing"):
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            # Unlocked first: most subscriptions crossed nothing, and only those that did are locked and billed.
            due = [a.subscription_id for a in period_accruals(subscription_ids=chunk, as_of=as_of) if a.threshold_due]
            for due_id in due:
                if dry_run:
                    _dry_run_one(due_id, as_of=as_of, rates=rates, outcome=outcome)
                    continue
                try:
                    _bill_one(due_id, as_of=as_of, rates=rates, outcome=outcome)
                except IntegrityError:  # billed by a concurrent job between our check and our insert
                    logger.info("progressive billing: subscription %s was billed meanwhile", due_id)
    return outcome


def _build(
    accrual: PeriodAccrual, subscription: Subscription, *, as_of: dt.date, rates: dict[str, list[TaxRate]]
) -> tuple[Invoice, list[PlannedLine], Decimal] | None:
    period = threshold_charges(accrual=accrual, subscription=subscription, as_of=as_of)
    threshold = accrual.threshold_due
    if period is None or threshold is None:
        return None
    invoice, lines = invoice_build_for_period(period=period, customer=subscription.customer, tax_rates=rates)
    return invoice, lines, threshold


def _dry_run_one(
    subscription_id: int, *, as_of: dt.date, rates: dict[str, list[TaxRate]], outcome: ProgressiveOutcome
) -> None:
    accruals = period_accruals(subscription_ids=[subscription_id], as_of=as_of)
    if not accruals:
        return
    subscription = Subscription.objects.select_related("customer").get(pk=subscription_id)
    built = _build(accruals[0], subscription, as_of=as_of, rates=rates)
    if built is None:
        return
    invoice, _lines, threshold = built
    entry = ThresholdInvoice(subscription_id, threshold, invoice.currency, invoice.total, None, invoice.memo)
    (outcome.held if invoice.memo else outcome.issued).append(entry)


def _bill_one(
    subscription_id: int, *, as_of: dt.date, rates: dict[str, list[TaxRate]], outcome: ProgressiveOutcome
) -> None:
    with transaction.atomic():
        # Locked (waiting) and priced again: what another job or the billing run committed meanwhile is seen.
        accruals = period_accruals(subscription_ids=[subscription_id], as_of=as_of, lock=True)
        if not accruals:
            return
        accrual = accruals[0]
        subscription = Subscription.objects.select_related("customer").get(pk=subscription_id)
        built = _build(accrual, subscription, as_of=as_of, rates=rates)
        if built is None:
            return
        invoice, lines, threshold = built
        if invoice.memo:
            # Never a held draft for a threshold: the usage stays on the period's invoice, which staff review.
            logger.info("progressive billing: subscription %s not invoiced now: %s", subscription_id, invoice.memo)
            outcome.held.append(
                ThresholdInvoice(subscription_id, threshold, invoice.currency, invoice.total, None, invoice.memo)
            )
            return
        invoices_issue(invoices=[invoice], issue_date=as_of, reason=f"usage crossed the threshold {threshold:f}")
        copy_rows(InvoiceLine, PlannedLine.COLUMNS, [line.row() for line in lines])
        progressive_billing_record(accrual=accrual, threshold=threshold, invoice_id=invoice.pk, billed_on=as_of)
    outcome.issued.append(ThresholdInvoice(subscription_id, threshold, invoice.currency, invoice.total, invoice))
