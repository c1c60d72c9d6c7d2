"""Billing runs whose worker died (part of the "Stale work sweeper", billing_project/sweeper.py).

Every chunk of a run writes the run's ``heartbeat_at`` when it has committed (``_count_chunks_done``, the UPDATE of
``chunks_done`` the chunk makes anyway, so the heartbeat costs no query). A run
still ``running`` whose last heartbeat — or its start, before the first chunk — is older than
``BILLING_RUN_STALE_MINUTES`` lost its worker: a ``billing_run`` command killed with -9, a worker killed while its
chunk tasks were lost. Such a run would show "running" on the dashboard forever. Here it is marked
``interrupted`` (its figures recomputed from the invoices it did write) and a new run for the same as-of date
and customer bills what it left, dispatched the way the lost run was (inline here, or chunks for the workers).
Re-billing is safe: a period is billed once by a unique constraint on (subscription, period key), and a billed
subscription has moved on, so the new run only finds what is still due.

A run that was merely slow (chunks queued behind other work for longer than the threshold) is marked as well;
its late chunks still bill nothing twice, and the last of them closes it as usual (``billing_run_finish``), so the
row ends up telling what happened. Keep ``BILLING_RUN_STALE_MINUTES`` well above the longest queue wait.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.money import round_amount
from invoicing.billing_run import DISPATCH_CELERY, billing_run
from invoicing.billing_tasks import billing_run_async
from invoicing.models import BillingRun, BillingRunStatus, Invoice, InvoiceStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InterruptedRun:
    run_id: int
    as_of: dt.date
    last_heartbeat: dt.datetime
    chunks_done: int
    chunks_total: int
    invoices_created: int
    resumed_by: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "run": self.run_id,
            "as_of": self.as_of.isoformat(),
            "last_heartbeat": self.last_heartbeat.isoformat(),
            "chunks_done": self.chunks_done,
            "chunks_total": self.chunks_total,
            "invoices_created": self.invoices_created,
            "resumed_by": self.resumed_by,
        }


def _last_sign_of_life() -> Coalesce:
    return Coalesce("heartbeat_at", "started_at")


def billing_runs_stale(*, now: dt.datetime) -> list[int]:
    """Ids of the runs still ``running`` with no heartbeat for ``BILLING_RUN_STALE_MINUTES``."""
    cutoff = now - dt.timedelta(minutes=settings.BILLING_RUN_STALE_MINUTES)
    return list(
        BillingRun.objects.filter(status=BillingRunStatus.RUNNING, dry_run=False)
        .alias(alive_at=_last_sign_of_life())
        .filter(alive_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def billing_run_interrupt(*, run_id: int, now: dt.datetime) -> bool:
    """Mark one stale run ``interrupted``, with the figures of what it billed. The UPDATE is guarded by the status
    and the heartbeat, so of two sweepers (or a sweeper and a chunk that just started) exactly one decides."""
    cutoff = now - dt.timedelta(minutes=settings.BILLING_RUN_STALE_MINUTES)
    claimed = (
        BillingRun.objects.filter(pk=run_id, status=BillingRunStatus.RUNNING)
        .alias(alive_at=_last_sign_of_life())
        .filter(alive_at__lt=cutoff)
        .update(status=BillingRunStatus.INTERRUPTED, finished_at=now)
    )
    if claimed != 1:
        return False
    invoices = drafts = 0
    totals: dict[str, Decimal] = {}
    for row in (
        Invoice.objects.filter(billing_run_id=run_id)
        .values("currency", "status")
        .annotate(n=Count("pk"), total=Sum("total"))
        .order_by()
    ):
        if row["status"] == InvoiceStatus.DRAFT:
            drafts += row["n"]
        else:
            invoices += row["n"]
            totals[row["currency"]] = totals.get(row["currency"], Decimal(0)) + row["total"]
    run = BillingRun.objects.get(pk=run_id)
    BillingRun.objects.filter(pk=run_id).update(
        invoices_created=invoices,
        drafts_created=drafts,
        failed=run.errors.count(),
        totals={currency: str(round_amount(amount, currency)) for currency, amount in sorted(totals.items())},
    )
    return True


def billing_run_resume(*, run_id: int) -> BillingRun:
    """Start the run that bills what an interrupted run left: same as-of date and customer, same dispatch."""
    interrupted = BillingRun.objects.get(pk=run_id)
    if interrupted.dispatch == DISPATCH_CELERY:
        resumed = billing_run_async(as_of=interrupted.as_of, customer_id=interrupted.customer_id)
    else:
        resumed = billing_run(as_of=interrupted.as_of, customer_id=interrupted.customer_id)
    BillingRun.objects.filter(pk=run_id).update(resumed_by=resumed)
    return resumed


def billing_runs_sweep_stale(*, now: dt.datetime | None = None) -> list[InterruptedRun]:
    """Mark every stale run interrupted and resume it. Never raises for one run: a failure to resume is logged
    and the run stays ``interrupted`` without ``resumed_by`` (the dashboard shows it; the next daily run bills
    what is still due)."""
    now = now or timezone.now()
    swept = []
    for run_id in billing_runs_stale(now=now):
        if not billing_run_interrupt(run_id=run_id, now=now):
            continue
        run = BillingRun.objects.get(pk=run_id)
        last_heartbeat = run.heartbeat_at or run.started_at
        logger.error(
            "billing run %s (as of %s) lost its worker: no heartbeat since %s after %s of %s chunk(s); resuming",
            run_id,
            run.as_of,
            last_heartbeat.isoformat(),
            run.chunks_done,
            run.chunks_total,
        )
        resumed_id: int | None = None
        try:
            resumed_id = billing_run_resume(run_id=run_id).pk
        except Exception:
            logger.exception("billing run %s: resuming the interrupted run failed", run_id)
        swept.append(
            InterruptedRun(
                run_id=run_id,
                as_of=run.as_of,
                last_heartbeat=last_heartbeat,
                chunks_done=run.chunks_done,
                chunks_total=run.chunks_total,
                invoices_created=run.invoices_created,
                resumed_by=resumed_id,
            )
        )
    return swept
