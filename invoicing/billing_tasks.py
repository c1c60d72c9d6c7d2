"""Celery tasks of the billing run. Thin: parse, call one service (docs/STYLE.md)."""

from __future__ import annotations

from celery import shared_task

from core.asof import parse_as_of, parse_date_option


@shared_task(name="invoicing.run_billing", acks_late=True)
def run_billing(as_of: str | None = None) -> int:
    """The daily beat task: bill everything due today (in BILLING_TIMEZONE) by fanning chunks out to workers."""
    from invoicing.billing_run import DISPATCH_CELERY, billing_run

    run = billing_run(as_of=parse_as_of(as_of, option="as_of"), dispatch=DISPATCH_CELERY)
    return run.pk


@shared_task(name="invoicing.billing_run_chunk", acks_late=True)
def billing_run_chunk_task(run_id: int, subscription_ids: list[int], as_of: str) -> int:
    """Bill one chunk of a run; the chunk that completes the run closes it. Redelivery is harmless: billed
    subscriptions have moved on, and the run's figures are recomputed from its invoices."""
    from invoicing.billing_run import billing_run_chunk, billing_run_finish
    from invoicing.models import BillingRun

    day = parse_date_option(as_of, option="as_of")
    run = BillingRun.objects.get(pk=run_id)
    outcome = billing_run_chunk(run=run, subscription_ids=subscription_ids, as_of=day)
    run.refresh_from_db(fields=["chunks_done", "chunks_total"])
    if run.chunks_done >= run.chunks_total:
        billing_run_finish(run_id=run_id)
    return outcome.invoices


# The chunk's invoice.issued events are dispatched after commit by core.tasks.process_event_batch.
