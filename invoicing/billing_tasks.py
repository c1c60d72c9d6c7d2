"""Celery tasks of the billing run, and its start on the workers. Thin: parse, call one service (docs/STYLE.md)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import Any

from celery import shared_task
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnavailable

from core.asof import parse_as_of, parse_date_option
from invoicing.billing_run import (
    DISPATCH_CELERY,
    billing_run_chunk,
    billing_run_chunks_here,
    billing_run_finish,
    billing_run_open,
)
from invoicing.models import BillingRun
from invoicing.progressive import progressive_billing_run

logger = logging.getLogger(__name__)


def billing_run_async(
    *, as_of: dt.date, customer_id: int | None = None, chunk_size: int | None = None, actor: Any = None
) -> BillingRun:
    """Start a run whose chunks the workers bill (one ``billing_run_chunk`` task each, after commit); the row is
    returned at once, ``running`` until the chunk that completes it closes it."""
    run, chunks = billing_run_open(
        as_of=as_of, customer_id=customer_id, chunk_size=chunk_size, dispatch=DISPATCH_CELERY, actor=actor
    )
    if chunks:
        transaction.on_commit(functools.partial(_dispatch_chunks, run_id=run.pk, chunks=chunks, as_of=as_of))
    else:
        run = billing_run_finish(run_id=run.pk)
    return run


def _dispatch_chunks(*, run_id: int, chunks: list[list[int]], as_of: dt.date) -> None:
    """Hand the chunks to the workers; the chunks the broker will not take are billed here instead, so an
    unreachable broker slows a run down but neither fails it nor leaves it half done."""
    for index, chunk in enumerate(chunks):
        try:
            billing_run_chunk_task.delay(run_id, chunk, as_of.isoformat())
        except BrokerUnavailable:
            logger.warning(
                "billing run %s: the broker is unreachable; billing %d chunk(s) here", run_id, len(chunks) - index
            )
            billing_run_chunks_here(run_id=run_id, chunks=chunks[index:], as_of=as_of)
            return


@shared_task(name="invoicing.run_billing", acks_late=True)
def run_billing(as_of: str | None = None) -> int:
    """The daily beat task: bill everything due today (in BILLING_TIMEZONE) by fanning chunks out to workers."""
    return billing_run_async(as_of=parse_as_of(as_of, option="as_of")).pk


@shared_task(name="invoicing.billing_run_chunk", acks_late=True)
def billing_run_chunk_task(run_id: int, subscription_ids: list[int], as_of: str) -> int:
    """Bill one chunk of a run; the chunk that completes the run closes it. Redelivery is harmless: billed
    subscriptions have moved on, and the run's figures are recomputed from its invoices."""
    day = parse_date_option(as_of, option="as_of")
    run = BillingRun.objects.get(pk=run_id)
    outcome = billing_run_chunk(run=run, subscription_ids=subscription_ids, as_of=day)
    if outcome.run_complete:
        billing_run_finish(run_id=run_id)
    return outcome.invoices


@shared_task(name="invoicing.progressive_billing", acks_late=True)
def progressive_billing(as_of: str | None = None) -> int:
    """The hourly beat task: issue the threshold invoices of usage that crossed a threshold (once each)."""
    outcome = progressive_billing_run(as_of=parse_as_of(as_of, option="as_of"))
    return len(outcome.issued)


# The chunk's invoice.issued events are dispatched after commit by core.tasks.process_event_batch.
