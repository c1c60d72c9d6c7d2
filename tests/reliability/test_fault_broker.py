"""The broker unreachable when work is handed to the workers (the Celery app pointed at a closed local port,
tasks not eager — the publish really fails with kombu's OperationalError): finalizing and billing still commit,
nobody crashes, and nothing is lost. Which path covers which work:

- invoice e-mail whose send task could not be enqueued → the ``OutboundEmail`` row is the outbox; the e-mail
  sweep (``invoicing.sweep_emails``, every 10 min; ``manage.py sweep_emails``) sends it, once;
- invoice e-mail of a billing-run chunk whose events task could not be enqueued → the domain events sweep queues
  it (no row existed) and the e-mail sweep sends it;
- PDF whose render task could not be enqueued → "missing" → ``render_missing_pdfs`` / ``render_pdfs --missing``;
- billing-run chunks that ``--async`` could not hand to the workers → billed in the calling process.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from decimal import Decimal

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from djmoney.money import Money
from kombu.exceptions import OperationalError

from billing_project.celery import app as celery_app
from core import events
from customers.models import Customer
from invoicing import delivery, documents, tasks
from invoicing.billing_run import billing_run
from invoicing.models import BillingRun, BillingRunError, DocumentPdf, Invoice
from notifications import services as notification_services
from notifications.models import EmailStatus, OutboundEmail
from notifications.sweep import OutboxSweepOutcome, outbox_sweep
from notifications.tasks import send_outbound_email
from subscriptions.models import CollectionMethod
from tests.factories import NumberSeriesFactory, PriceFactory, SubscriptionFactory, TaxRateFactory
from tests.factories.customers import CustomerFactory
from tests.factories.invoicing import InvoiceFactory

JAN_1 = dt.date(2026, 1, 1)


def _reset_broker_connections() -> None:
    """Forget the app's producer and connection pools, so that the next publish connects to the broker URL
    now configured (kombu keeps one pool per URL in a global registry: the real broker's pools stay intact)."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker_down(monkeypatch):
    """The broker URL names a local port nothing listens on; tasks go to the broker (not eager)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saved = {key: celery_app.conf[key] for key in ("broker_url", "task_always_eager")}
    url = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery reads the variable before its own setting
    celery_app.conf.update(broker_url=url, task_always_eager=False)
    _reset_broker_connections()
    yield
    celery_app.conf.update(saved)
    _reset_broker_connections()


@pytest.fixture
def billing(db):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))


def _sweep_later(minutes: int = 16) -> OutboxSweepOutcome:
    return outbox_sweep(now=timezone.now() + dt.timedelta(minutes=minutes))


@pytest.mark.django_db(transaction=True)
def test_the_broker_is_really_unreachable(broker_down):
    with pytest.raises(OperationalError):
        send_outbound_email.delay(1)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_admin_finalize_commits_and_the_email_waits_in_the_outbox_for_the_sweep(broker_down, billing, admin_client):
    customer = CustomerFactory(email="ap@kunde.example")
    draft = InvoiceFactory(customer=customer)

    response = admin_client.post(
        reverse("admin:invoicing_invoice_changelist"),
        {"action": "finalize_selected", "_selected_action": [draft.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Finalized 1 invoice(s)." in response.content.decode()
    invoice = Invoice.objects.get(pk=draft.pk)
    assert invoice.status == "open" and invoice.number == "INV-2026-000001"
    [email] = OutboundEmail.objects.all()  # stored, not sent: its task could not be enqueued
    assert (email.status, email.attempts, email.invoice_id) == (EmailStatus.QUEUED, 0, invoice.pk)
    assert mail.outbox == [] and not DocumentPdf.objects.exists()

    assert _sweep_later(minutes=1).sent == 0  # too early: the normal path may still be on its way
    outcome = _sweep_later()
    assert (outcome.sent, outcome.failed, outcome.retrying) == (1, 0, 0)
    [message] = mail.outbox
    assert message.to == ["ap@kunde.example"] and invoice.number in message.subject
    assert [name for name, _content, _type in message.attachments] == [f"{invoice.number}.pdf"]
    email.refresh_from_db()
    assert email.status == EmailStatus.SENT and email.attempts == 1
    # the PDF the e-mail needed was rendered and stored at send time; the next sweeps send nothing more
    assert DocumentPdf.objects.filter(invoice=invoice).exists()
    assert _sweep_later().sent == 0 and _sweep_later(minutes=120).sent == 0
    assert len(mail.outbox) == 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_billing_run_with_the_broker_down_bills_and_the_sweeps_deliver_pdfs_and_emails(broker_down, billing):
    price = PriceFactory(unit_amount=Money(Decimal("50.00"), "EUR"))
    subscriptions = [
        SubscriptionFactory(price=price, collection_method=CollectionMethod.SEND_INVOICE, start_date=JAN_1)
        for _ in range(5)
    ]

    run = billing_run(as_of=JAN_1, chunk_size=2)  # inline, as the daily command does

    # the chunks committed and were counted once each, although none could hand its events to the workers
    assert (run.status, run.invoices_created, run.failed, run.chunks_total, run.chunks_done) == (
        "succeeded",
        5,
        0,
        3,
        3,
    )
    assert not BillingRunError.objects.exists()
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [f"INV-2026-00000{n}" for n in range(1, 6)]
    assert not OutboundEmail.objects.exists() and not DocumentPdf.objects.exists()

    # render_missing_pdfs (every 30 minutes) renders the five PDFs …
    assert tasks.render_missing_pdfs() == {"rendered": 5, "failed": 0}
    # … the domain events sweep runs the invoice.issued handlers the chunks' tasks never ran: it queues the five
    # invoice e-mails (the broker is still down, so they wait in the outbox) …
    assert events.events_sweep(now=timezone.now() + dt.timedelta(minutes=6)).processed == 5
    assert OutboundEmail.objects.filter(status=EmailStatus.QUEUED).count() == 5
    # … and the e-mail sweep sends them
    outcome = _sweep_later()
    assert (outcome.sent, outcome.failed) == (5, 0)
    assert sorted(message.to[0] for message in mail.outbox) == sorted(s.customer.email for s in subscriptions)
    assert all(len(message.attachments) == 1 for message in mail.outbox)
    # idempotent: nothing is queued or sent twice
    assert events.events_sweep(now=timezone.now() + dt.timedelta(minutes=30)).processed == 0
    assert _sweep_later(minutes=30).sent == 0
    assert OutboundEmail.objects.count() == 5 and len(mail.outbox) == 5


@pytest.mark.django_db(transaction=True)
def test_async_billing_run_command_with_the_broker_down_bills_the_chunks_itself(broker_down, billing, settings):
    settings.BILLING_AFTER_FINALIZE_HOOKS = False
    price = PriceFactory(unit_amount=Money(Decimal("10.00"), "EUR"))
    for _ in range(4):
        SubscriptionFactory(price=price, start_date=JAN_1)

    call_command("billing_run", "--as-of", "2026-01-01", "--async", "--chunk-size", "2")

    run = BillingRun.objects.get()
    assert (run.status, run.invoices_created, run.chunks_done, run.chunks_total) == ("succeeded", 4, 2, 2)
    assert Invoice.objects.count() == 4


class _SlowProvider(LocmemBackend):
    """A provider that takes a moment per message, so that two sweeps overlap for real."""

    def send_messages(self, messages):
        time.sleep(0.05)
        return super().send_messages(messages)


@pytest.mark.django_db(transaction=True)
def test_two_overlapping_sweeps_send_each_stranded_email_once(billing, settings, monkeypatch):
    settings.EMAIL_BACKEND = "tests.reliability.test_fault_broker._SlowProvider"
    settings.BILLING_AFTER_FINALIZE_HOOKS = False
    monkeypatch.setattr(
        notification_services, "_dispatch", lambda email_id: None
    )  # every hand-off to the workers is lost
    invoices = [InvoiceFactory(finalized=JAN_1) for _ in range(8)]
    for invoice in invoices:
        delivery.invoice_email_queue(invoice=invoice, idempotency_key=f"invoice:{invoice.pk}")
    assert OutboundEmail.objects.filter(status=EmailStatus.QUEUED, attempts=0).count() == 8
    for invoice in invoices:  # render now so that the sweeps race on sending, not on rendering
        documents.invoice_pdf_store(invoice_id=invoice.pk)

    outcomes: list[OutboxSweepOutcome] = []
    start = threading.Barrier(2)

    def sweep() -> None:
        try:
            start.wait()
            outcomes.append(_sweep_later())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sum(outcome.sent for outcome in outcomes) == 8
    assert sorted(message.to[0] for message in mail.outbox) == sorted(
        Customer.objects.filter(invoices__in=invoices).values_list("email", flat=True)
    )
    assert set(OutboundEmail.objects.values_list("status", "attempts")) == {(EmailStatus.SENT, 1)}
