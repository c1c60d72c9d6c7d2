"""After-commit extension points of invoicing: other apps register callbacks here instead of listening to
signals (business flow is never a signal, docs/STYLE.md).

- ``on_invoice_finalized(invoice_id)`` — after an invoice is finalized and committed: delivery (PDF + e-mail)
  and automatic collection register here.
- ``on_credit_note_issued(credit_note_id, amount_to_credit)`` — after a credit note is committed;
  ``amount_to_credit`` is the part that did not reduce the invoice's amount due (``Decimal``, in the credit
  note's currency, possibly 0): the payments app books it as customer credit.

Register once at start-up, e.g. in ``PaymentsConfig.ready()``::

    from invoicing import hooks
    hooks.register_credit_note_issued(payments.services.customer_credit_from_credit_note)

The services call ``transaction.on_commit(...)`` so callbacks never run for a rolled-back write and may do slow
I/O. Callbacks run in registration order; one that raises is logged and does not stop the others, because the
invoice is already committed. A callback must be idempotent (it may be re-run by a retry of delivery).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal

from django.conf import settings

logger = logging.getLogger(__name__)

InvoiceFinalizedCallback = Callable[[int], object]
CreditNoteIssuedCallback = Callable[[int, Decimal], object]

_invoice_finalized: list[InvoiceFinalizedCallback] = []
_credit_note_issued: list[CreditNoteIssuedCallback] = []


def register_invoice_finalized(callback: InvoiceFinalizedCallback) -> InvoiceFinalizedCallback:
    """Register (once; registering the same callable again is a no-op). Usable as a decorator."""
    if callback not in _invoice_finalized:
        _invoice_finalized.append(callback)
    return callback


def register_credit_note_issued(callback: CreditNoteIssuedCallback) -> CreditNoteIssuedCallback:
    if callback not in _credit_note_issued:
        _credit_note_issued.append(callback)
    return callback


def unregister(callback: Callable[..., object]) -> None:
    for registry in (_invoice_finalized, _credit_note_issued):
        if callback in registry:
            registry.remove(callback)  # type: ignore[arg-type]


def on_invoice_finalized(invoice_id: int) -> None:
    if not settings.BILLING_AFTER_FINALIZE_HOOKS:  # bulk loads, benchmarks: no delivery, no collection
        return
    for callback in list(_invoice_finalized):
        try:
            callback(invoice_id)
        except Exception:
            logger.exception("on_invoice_finalized callback %r failed for invoice %s", callback, invoice_id)


def on_credit_note_issued(credit_note_id: int, amount_to_credit: Decimal) -> None:
    for callback in list(_credit_note_issued):
        try:
            callback(credit_note_id, amount_to_credit)
        except Exception:
            logger.exception("on_credit_note_issued callback %r failed for credit note %s", callback, credit_note_id)


@contextmanager
def registered(
    *,
    invoice_finalized: InvoiceFinalizedCallback | None = None,
    credit_note_issued: CreditNoteIssuedCallback | None = None,
) -> Iterator[None]:
    """Register callbacks for the duration of a block (tests, one-off scripts)."""
    if invoice_finalized is not None:
        register_invoice_finalized(invoice_finalized)
    if credit_note_issued is not None:
        register_credit_note_issued(credit_note_issued)
    try:
        yield
    finally:
        for callback in (invoice_finalized, credit_note_issued):
            if callback is not None:
                unregister(callback)
