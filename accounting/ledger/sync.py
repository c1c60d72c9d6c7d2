"""The sync engine: pushes customers, issued invoices, credit notes and payments to a connected ledger.

- **Idempotent by external id**: a ``SyncRecord`` per (connection, object type, local id) holds the ledger's id;
  a record that has one is never sent again. Issued documents are immutable here, so nothing is ever edited in
  the ledger: a correction is a credit note, pushed as a credit note (Xero ACCRECCREDIT, QuickBooks CreditMemo).
- **Crash-safe**: before creating, the record is looked up by our reference (Xero ContactNumber / InvoiceNumber /
  CreditNoteNumber / payment Reference, QuickBooks DisplayName / DocNumber), and every create carries an
  idempotency key (Xero ``Idempotency-Key``, QuickBooks ``requestid``) derived from our row, so a crash after the
  provider's 200 and before our row is written links the existing object on the next run instead of creating it
  twice.
- **Resumable**: a run walks customers, invoices, credit notes and payments each in primary-key order and
  writes the record (autocommit) right after each provider answer; a rerun skips what is recorded.
- **Rate-limit aware**: an HTTP 429 (or a 5xx, a network error) stops the run and returns ``retry_after``; the
  Celery task schedules its continuation with that countdown. Nobody sleeps in a loop.
- A record the provider refuses (validation) is marked failed with the provider's message and the run goes on;
  failed records wait for staff ("Retry" in the admin, ``ledger_retry``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q
from django.utils import timezone

from accounting.ledger.clients import (
    LedgerAuthExpired,
    LedgerError,
    LedgerRateLimited,
    LedgerUnavailable,
    QuickBooksClient,
    XeroClient,
    client_for,
    dumps,
)
from accounting.ledger.models import LedgerConnection, SyncObjectType, SyncRecord, SyncStatus
from accounting.ledger.oauth import access_token
from customers.models import Customer
from invoicing.models import CreditNote, Invoice, InvoiceStatus
from payments.models import PaymentAllocation, PaymentStatus

# A claim older than this belongs to a dead worker: the next run takes the connection over.
CLAIM_TIMEOUT = dt.timedelta(minutes=30)
# What a stop other than a 429 waits before the continuation (5xx, network, a busy connection).
RETRY_AFTER_UNAVAILABLE = 60

SYNCED_INVOICE_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)
PAID_STATUSES = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED, PaymentStatus.PARTIALLY_REFUNDED)
ORDER = (SyncObjectType.CUSTOMER, SyncObjectType.INVOICE, SyncObjectType.CREDIT_NOTE, SyncObjectType.PAYMENT)


class RecordFailed(LedgerError):
    """One record could not be pushed (it, or a record it needs, was refused); already written as failed."""


@dataclass
class SyncOutcome:
    provider: str
    created: int = 0  # new objects in the ledger
    linked: int = 0  # found in the ledger by our reference (pushed by a run that crashed before recording it)
    failed: int = 0
    retry_after: int | None = None  # set when the run stopped early and should continue after this many seconds
    stopped: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        text = f"{self.created} created, {self.linked} linked, {self.failed} failed"
        if self.stopped:
            text += f"; stopped: {self.stopped}"
            if self.retry_after:
                text += f" (continues in {self.retry_after} s)"
        return text


def reference_of(object_type: str, obj: Any) -> str:
    """Our stable name of a record in the ledger, the key of the look-up before a create."""
    if object_type == SyncObjectType.CUSTOMER:
        return f"CB-C{obj.pk}"
    if object_type == SyncObjectType.PAYMENT:
        return f"CB-P{obj.payment_id}-{obj.pk}"
    return str(obj.number)


def _record_write(
    *,
    connection: LedgerConnection,
    object_type: str,
    local_id: int,
    reference: str,
    status: str,
    external_id: str = "",
    content_hash: str = "",
    error: str = "",
) -> SyncRecord:
    """The per-record commit (autocommit: each record is durable as soon as the provider answered)."""
    now = timezone.now()
    record, created = SyncRecord.objects.get_or_create(
        connection=connection,
        object_type=object_type,
        local_id=local_id,
        defaults={
            "reference": reference,
            "status": status,
            "external_id": external_id,
            "content_hash": content_hash,
            "last_error": error,
            "synced_at": now if status == SyncStatus.SYNCED else None,
        },
    )
    if not created:
        record.reference, record.status, record.last_error = reference, status, error
        record.attempts += 1
        if status == SyncStatus.SYNCED:
            record.external_id, record.content_hash, record.synced_at = external_id, content_hash, now
        record.save()
    return record


class _Run:
    def __init__(self, connection: LedgerConnection, *, retrying: bool = False) -> None:
        self.connection = connection
        self.retrying = retrying
        self.outcome = SyncOutcome(provider=connection.provider)
        self.client: XeroClient | QuickBooksClient = client_for(
            connection.provider, access_token=access_token(connection), tenant_id=connection.tenant_id
        )
        # the records this run read or wrote (a run reads only those it needs: a ledger may hold millions)
        self.known: dict[tuple[str, int], SyncRecord | None] = {}
        self.attempted: set[tuple[str, int]] = set()  # pushed (or tried) in this run: never twice

    def record(self, object_type: str, local_id: int) -> SyncRecord | None:
        key = (object_type, local_id)
        if key not in self.known:
            self.known[key] = SyncRecord.objects.filter(
                connection=self.connection, object_type=object_type, local_id=local_id
            ).first()
        return self.known[key]

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """One API call; a 401 refreshes the token once (it may have been revoked or expired early)."""
        try:
            return method(*args, **kwargs)
        except LedgerAuthExpired:
            self.client.access_token = access_token(self.connection, force_refresh=True)
            try:
                return method(*args, **kwargs)
            except LedgerAuthExpired as exc:
                raise LedgerAuthExpired(f"the ledger refuses a fresh token: connect it again ({exc})") from exc

    def external_id(self, object_type: str, obj: Any) -> str:
        """The ledger's id of a record another one needs (the contact of an invoice, the invoice of a payment)."""
        record = self.record(object_type, obj.pk)
        if record is not None and record.status == SyncStatus.SYNCED:
            return record.external_id
        if record is not None and (not self.retrying or (object_type, obj.pk) in self.attempted):
            raise RecordFailed(
                f"{record.get_object_type_display().lower()} {record.reference} failed: {record.last_error}"
            )
        return self.push(object_type, obj)

    def push(self, object_type: str, obj: Any) -> str:
        reference = reference_of(object_type, obj)
        record = self.record(object_type, obj.pk)
        self.attempted.add((object_type, obj.pk))
        # a new key after a refused attempt: the providers replay a key's first answer
        attempt = record.attempts + 1 if record is not None and record.status == SyncStatus.FAILED else 1
        key = f"cb-{self.connection.pk}-{object_type}-{obj.pk}-{attempt}"
        try:
            payload = self._payload(object_type, obj, reference)
            external_id = self._call(self.client.find, object_type, reference)
            created = external_id is None
            if created:
                external_id = self._call(self.client.create, object_type, payload, idempotency_key=key)
        except LedgerError as exc:
            self.known[(object_type, obj.pk)] = _record_write(
                connection=self.connection,
                object_type=object_type,
                local_id=obj.pk,
                reference=reference,
                status=SyncStatus.FAILED,
                error=str(exc),
            )
            self.outcome.failed += 1
            self.outcome.failures.append(f"{object_type} {reference}: {exc}")
            raise RecordFailed(f"{object_type} {reference} failed: {exc}") from exc
        self.known[(object_type, obj.pk)] = _record_write(
            connection=self.connection,
            object_type=object_type,
            local_id=obj.pk,
            reference=reference,
            status=SyncStatus.SYNCED,
            external_id=external_id,
            content_hash=hashlib.sha256(dumps(payload).encode()).hexdigest(),
        )
        if created:
            self.outcome.created += 1
        else:
            self.outcome.linked += 1
        return str(external_id)

    def _payload(self, object_type: str, obj: Any, reference: str) -> dict[str, Any]:
        client = self.client
        if object_type == SyncObjectType.CUSTOMER:
            return client.contact(obj, reference=reference)
        if object_type == SyncObjectType.INVOICE:
            contact_id = self.external_id(SyncObjectType.CUSTOMER, obj.customer)
            return client.invoice(obj, list(obj.lines.all()), contact_id=contact_id)
        if object_type == SyncObjectType.CREDIT_NOTE:
            contact_id = self.external_id(SyncObjectType.CUSTOMER, obj.customer)
            return client.credit_note(obj, list(obj.lines.all()), contact_id=contact_id)
        contact_id = self.external_id(SyncObjectType.CUSTOMER, obj.invoice.customer)
        invoice_id = self.external_id(SyncObjectType.INVOICE, obj.invoice)
        return client.payment(obj, reference=reference, invoice_id=invoice_id, contact_id=contact_id)


def _scope(since: dt.date | None) -> dict[str, Any]:
    invoices = Invoice.objects.filter(status__in=SYNCED_INVOICE_STATUSES).exclude(number="")
    credit_notes = CreditNote.objects.all()
    allocations = PaymentAllocation.objects.filter(
        payment__status__in=PAID_STATUSES, invoice__status__in=SYNCED_INVOICE_STATUSES
    )
    if since is not None:
        invoices = invoices.filter(issue_date__gte=since)
        credit_notes = credit_notes.filter(issue_date__gte=since)
        allocations = allocations.filter(payment__received_on__gte=since)
    return {
        SyncObjectType.CUSTOMER: Customer.objects.filter(
            Q(pk__in=invoices.values("customer_id"))
            | Q(pk__in=credit_notes.values("customer_id"))
            | Q(pk__in=allocations.values("invoice__customer_id"))
        ),
        SyncObjectType.INVOICE: invoices,
        SyncObjectType.CREDIT_NOTE: credit_notes,
        SyncObjectType.PAYMENT: allocations,
    }


def _load(object_type: str, pk: int) -> Any:
    if object_type == SyncObjectType.CUSTOMER:
        return Customer.objects.get(pk=pk)
    if object_type == SyncObjectType.INVOICE:
        return Invoice.objects.select_related("customer").get(pk=pk)
    if object_type == SyncObjectType.CREDIT_NOTE:
        return CreditNote.objects.select_related("customer", "invoice").get(pk=pk)
    return PaymentAllocation.objects.select_related("payment", "invoice__customer").get(pk=pk)


def _claim(connection: LedgerConnection) -> bool:
    now = timezone.now()
    claimed = LedgerConnection.objects.filter(
        Q(sync_claimed_at__isnull=True) | Q(sync_claimed_at__lt=now - CLAIM_TIMEOUT), pk=connection.pk
    ).update(sync_claimed_at=now)
    return claimed == 1


def _release(connection: LedgerConnection, outcome: SyncOutcome) -> None:
    LedgerConnection.objects.filter(pk=connection.pk).update(
        sync_claimed_at=None, last_sync_at=timezone.now(), last_sync_summary=outcome.summary[:300]
    )


def _guarded(connection: LedgerConnection, work: Any, *, retrying: bool = False) -> SyncOutcome:
    if not _claim(connection):
        return SyncOutcome(
            provider=connection.provider,
            stopped="another sync of this ledger is running",
            retry_after=RETRY_AFTER_UNAVAILABLE,
        )
    outcome = SyncOutcome(provider=connection.provider)
    try:
        run = _Run(connection, retrying=retrying)
        outcome = run.outcome
        work(run)
    except LedgerRateLimited as exc:
        outcome.stopped, outcome.retry_after = f"{connection.provider} rate limit (HTTP 429)", exc.retry_after
    except LedgerUnavailable as exc:  # the provider or the network: try again later
        outcome.stopped, outcome.retry_after = str(exc)[:200], RETRY_AFTER_UNAVAILABLE
    except (LedgerAuthExpired, LedgerError) as exc:
        # the authorization is gone (a refused refresh token, a revoked app): staff connect again, nothing retries
        outcome.stopped = f"authorization: {str(exc)[:180]}"
    finally:
        _release(connection, outcome)
    return outcome


def ledger_sync(*, connection: LedgerConnection, since: dt.date | None = None) -> SyncOutcome:
    """Push what the ledger does not have yet: customers, invoices, credit notes, payments — each in primary-key
    order, documents dated from ``since`` (default: the connection's ``sync_from``; None: all)."""
    scope = _scope(since if since is not None else connection.sync_from)

    def work(run: _Run) -> None:
        for object_type in ORDER:
            recorded = SyncRecord.objects.filter(connection=connection, object_type=object_type)
            pending = scope[object_type].exclude(pk__in=recorded.values("local_id")).order_by("pk")
            for pk in list(pending.values_list("pk", flat=True)):
                if run.known.get((object_type, pk)) is not None:  # pushed meanwhile as another record's dependency
                    continue
                try:
                    run.push(object_type, _load(object_type, pk))
                except RecordFailed:
                    continue

    return _guarded(connection, work)


def ledger_retry(*, records: list[SyncRecord]) -> list[SyncOutcome]:
    """Push failed records again ("Retry" in the admin), per connection, in the engine's order."""
    outcomes = []
    by_connection: dict[int, list[SyncRecord]] = {}
    for record in records:
        if record.status == SyncStatus.FAILED:
            by_connection.setdefault(record.connection_id, []).append(record)
    for connection_id, failed in by_connection.items():
        connection = LedgerConnection.objects.get(pk=connection_id)
        failed.sort(key=lambda record: (ORDER.index(SyncObjectType(record.object_type)), record.local_id))

        def work(run: _Run, failed: list[SyncRecord] = failed) -> None:
            for record in failed:
                current = run.record(record.object_type, record.local_id)
                if current is not None and current.status == SyncStatus.SYNCED:
                    continue  # pushed meanwhile as another record's dependency
                try:
                    run.push(record.object_type, _load(record.object_type, record.local_id))
                except RecordFailed:
                    continue

        outcomes.append(_guarded(connection, work, retrying=True))
    return outcomes
