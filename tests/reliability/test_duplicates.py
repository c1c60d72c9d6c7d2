"""Nothing happens twice (issue 10): beat firing a job twice, a broker delivering a task twice, two staff
finalizing the same draft, webhooks replayed, out of order or racing staff — each real effect happens once.

Every test here runs its duplicates at the same moment on separate database connections (threads behind a
barrier, real PostgreSQL row locks), and counts what reached the outside world: invoices and numbers, e-mails
in ``mail.outbox``, calls to the (sandbox) card gateway, payments and credit.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core import mail
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from djmoney.money import Money

from core import events
from core.tasks import process_event_batch
from dunning import services as dunning
from dunning.models import DunningAction
from dunning.tasks import send_reminders
from invoicing import delivery
from invoicing.billing_run import billing_run
from invoicing.billing_tasks import billing_run_chunk_task, run_billing
from invoicing.models import (
    BillingRun,
    BillingRunStatus,
    DocumentPdf,
    Invoice,
    InvoiceEvent,
    InvoiceStatus,
    NumberSeriesCounter,
)
from invoicing.services import invoice_finalize
from invoicing.tasks import render_invoice_pdf, render_missing_pdfs
from notifications import services as notification_services
from notifications.models import EmailAddressStatus, EmailEvent, EmailKind, EmailStatus, OutboundEmail
from notifications.tasks import send_outbound_email
from payments import services as payment_services
from payments.gateways import GatewayUnavailable
from payments.gateways.sandbox import SandboxGateway, sign_payload
from payments.models import AttemptStatus, Payment, PaymentAttempt, WebhookEvent
from payments.selectors import customer_credit_balance
from payments.tasks import collect_invoice, recover_attempts, retry_payments
from subscriptions.models import Subscription, SubscriptionStatus
from tests.factories import (
    CustomerFactory,
    InvoiceFactory,
    NumberSeriesFactory,
    PaymentMethodFactory,
    PriceFactory,
    SubscriptionFactory,
    TaxRateFactory,
    record_payment,
)
from tests.factories.subscriptions import bulk_subscriptions
from tests.reliability.concurrency import concurrently, raised

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JAN_1 = dt.date(2026, 1, 1)
FEB_1 = dt.date(2026, 2, 1)
ISSUE = dt.date(2026, 3, 2)  # manual invoices: 14 days' terms → due 16 March
DUE = dt.date(2026, 3, 16)


# --- plumbing -------------------------------------------------------------------------------------------


@pytest.fixture
def billing() -> None:
    """What finalizing needs on a database a transactional test starts empty: default series, German VAT."""
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))


@pytest.fixture(autouse=True)
def _clean_gateway() -> Iterator[None]:
    SandboxGateway.reset()
    yield
    SandboxGateway.reset()


@pytest.fixture
def gateway_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call that reaches the card gateway (its idempotency key), whatever the gateway answers."""
    calls: list[str] = []
    real_charge = SandboxGateway.charge

    def counting_charge(self: SandboxGateway, **kwargs: Any) -> Any:
        calls.append(kwargs["idempotency_key"])
        return real_charge(self, **kwargs)

    monkeypatch.setattr(SandboxGateway, "charge", counting_charge)
    return calls


@pytest.fixture
def hooks_off(settings: Any) -> Iterator[Callable[[], None]]:
    """Set-up without PDFs, e-mails and charges after finalization; call the returned function to turn the
    hooks back on for the part under test."""
    settings.BILLING_AFTER_FINALIZE_HOOKS = False

    def on() -> None:
        settings.BILLING_AFTER_FINALIZE_HOOKS = True
        mail.outbox.clear()

    yield on


def _plan(amount: str = "29.00") -> Any:
    return PriceFactory(unit_amount=Money(Decimal(amount), "EUR"))


def _numbers(count: int) -> list[str]:
    return [f"INV-2026-{n:06d}" for n in range(1, count + 1)]


def _auto_customer(*, card: str = "visa") -> tuple[Any, Any]:
    """A tax-exempt customer (totals = line amounts) with an automatically charged subscription and a card."""
    customer = CustomerFactory(exempt=True)
    traits = {} if card == "visa" else {card: True}
    PaymentMethodFactory(customer=customer, **traits)
    subscription = SubscriptionFactory(
        customer=customer, collection_method="charge_automatically", start_date=dt.date(2026, 3, 1)
    )
    return customer, subscription


def _auto_invoice(customer: Any, subscription: Any, amount: str = "49.00") -> Invoice:
    return InvoiceFactory(
        customer=customer,
        subscription=subscription,
        lines=[{"description": "Plan", "unit_amount": Decimal(amount)}],
        finalized=ISSUE,
    )


def _media_files(settings: Any, folder: str) -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {str(path.relative_to(root)) for path in (root / folder).rglob("*.pdf")}


# --- 1. beat fires the same job twice at the same second ------------------------------------------------


def test_billing_run_fired_twice_at_once_bills_each_period_once_and_mails_each_invoice_once(billing, settings):
    settings.BILLING_RUN_CHUNK_SIZE = 4  # six chunks per run, so the two runs meet inside the table
    ids = bulk_subscriptions(count=24, items=[(_plan(), 1)], start_date=JAN_1)

    results = concurrently(lambda: run_billing(JAN_1.isoformat()), lambda: run_billing(JAN_1.isoformat()))

    assert not raised(results), results
    assert Invoice.objects.count() == 24
    assert sorted(Invoice.objects.values_list("subscription_id", flat=True)) == sorted(ids)
    assert sorted(Invoice.objects.values_list("number", flat=True)) == _numbers(24)  # gapless
    assert set(Subscription.objects.values_list("next_billing_date", flat=True)) == {FEB_1}
    runs = list(BillingRun.objects.all())
    assert len(runs) == 2 and all(run.status == BillingRunStatus.SUCCEEDED for run in runs)
    assert sum(run.invoices_created for run in runs) == 24
    # 29.00 + 19 % VAT (5.51) = 34.51 per invoice, split between the runs however they met
    assert sum(Decimal(run.totals.get("EUR", "0")) for run in runs) == Decimal("828.24")
    # after commit: one PDF and one invoice e-mail per invoice, not per run
    assert DocumentPdf.objects.count() == 24
    assert OutboundEmail.objects.filter(kind=EmailKind.INVOICE).count() == 24
    assert len(mail.outbox) == 24
    assert len({message.to[0] for message in mail.outbox}) == 24


def test_reminders_fired_twice_at_once_send_each_reminder_once(billing, hooks_off):
    dunning.seed_dunning()
    invoices = [InvoiceFactory(finalized=ISSUE) for _ in range(16)]
    hooks_off()
    as_of = (DUE + dt.timedelta(days=1)).isoformat()  # step +1 is due; the −3 notice is superseded

    results = concurrently(lambda: send_reminders(as_of), lambda: send_reminders(as_of))

    assert not raised(results), results
    assert sum(result["outcomes"].get("sent", 0) for result in results) == 16
    assert all(result["failed"] == 0 for result in results)
    done = Counter(DunningAction.objects.filter(status="done").values_list("invoice_id", flat=True))
    assert done == Counter({invoice.pk: 1 for invoice in invoices})
    assert DunningAction.objects.filter(status="superseded").count() == 16
    assert OutboundEmail.objects.filter(kind=EmailKind.REMINDER).count() == 16
    assert len(mail.outbox) == 16
    assert sorted(m.to[0] for m in mail.outbox) == sorted(i.customer.email for i in invoices)
    # and a third run the same day finds nothing to do
    assert send_reminders(as_of)["emails"] == 0
    assert len(mail.outbox) == 16


def test_payment_retries_fired_twice_at_once_charge_each_invoice_once(billing, hooks_off, gateway_calls):
    invoices = []
    for n in range(8):
        customer, subscription = _auto_customer(card="insufficient_funds")
        invoice = _auto_invoice(customer, subscription)
        first = payment_services.invoice_collect(invoice_id=invoice.pk, as_of=ISSUE)
        assert first is not None and first.next_retry_on == ISSUE + dt.timedelta(days=3)
        payment_services.payment_method_add(customer=customer, token=f"pm_card_visa:new-{n}")  # card updated
        invoices.append(invoice)
    hooks_off()
    gateway_calls.clear()
    retry_day = (ISSUE + dt.timedelta(days=3)).isoformat()

    results = concurrently(lambda: retry_payments(retry_day), lambda: retry_payments(retry_day))

    assert not raised(results), results
    assert sum(result["retried"] for result in results) == 8
    assert sum(result["succeeded"] for result in results) == 8
    assert len(gateway_calls) == 8 and len(set(gateway_calls)) == 8
    assert len(SandboxGateway.charges) == 8
    assert Payment.objects.count() == 8
    for invoice in invoices:
        invoice.refresh_from_db()
        assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("paid", Decimal("49.00"), 0)
        assert list(invoice.payment_attempts.order_by("attempt_number").values_list("status", flat=True)) == [
            AttemptStatus.FAILED,
            AttemptStatus.SUCCEEDED,
        ]
    # soft declines retried, then paid: no "payment failed" e-mail, one receipt per payment
    assert not OutboundEmail.objects.filter(kind=EmailKind.PAYMENT_FAILED).exists()
    receipts = OutboundEmail.objects.filter(kind=EmailKind.PAYMENT_RECEIPT)
    assert sorted(receipts.values_list("idempotency_key", flat=True)) == sorted(
        f"payment-receipt:{pk}" for pk in Payment.objects.values_list("pk", flat=True)
    )
    assert len(mail.outbox) == 8


def test_recovery_sweep_fired_twice_at_once_sends_each_stuck_attempt_once(
    billing, hooks_off, gateway_calls, monkeypatch
):
    def unreachable(self: SandboxGateway, **kwargs: Any) -> Any:
        raise GatewayUnavailable("connection reset")

    invoices = []
    with monkeypatch.context() as patch:
        patch.setattr(SandboxGateway, "charge", unreachable)
        for _ in range(6):
            customer, subscription = _auto_customer()
            invoice = _auto_invoice(customer, subscription)
            attempt = payment_services.invoice_collect(invoice_id=invoice.pk, as_of=ISSUE)
            assert attempt is not None and attempt.status == AttemptStatus.PROCESSING
            invoices.append(invoice)
    hooks_off()
    PaymentAttempt.objects.update(processing_since=timezone.now() - dt.timedelta(minutes=20))

    results = concurrently(recover_attempts, recover_attempts)

    assert not raised(results), results
    assert sum(results) == 6  # each stuck attempt claimed by one of the sweeps
    assert len(gateway_calls) == 6 and len(set(gateway_calls)) == 6
    assert len(SandboxGateway.charges) == 6
    assert Payment.objects.count() == 6
    assert set(PaymentAttempt.objects.values_list("status", flat=True)) == {AttemptStatus.SUCCEEDED}
    assert set(Invoice.objects.filter(pk__in=[i.pk for i in invoices]).values_list("status", flat=True)) == {"paid"}


def test_pdf_jobs_fired_twice_and_a_pdf_task_delivered_three_times_store_one_pdf_per_invoice(
    billing, hooks_off, settings
):
    invoices = [InvoiceFactory(finalized=ISSUE) for _ in range(4)]
    hooks_off()

    # the render task of one invoice delivered three times, while beat fires "render missing PDFs" twice
    results = concurrently(*[lambda: render_invoice_pdf(invoices[0].pk)] * 3, render_missing_pdfs, render_missing_pdfs)

    assert not raised(results), results
    assert all(result["failed"] == 0 for result in results[3:])
    pdfs = list(DocumentPdf.objects.all())
    assert sorted(pdf.invoice_id for pdf in pdfs) == sorted(invoice.pk for invoice in invoices)
    # no orphaned files: exactly the files the rows name are on disk
    assert _media_files(settings, "invoices") == {pdf.file.name for pdf in pdfs}
    assert render_missing_pdfs() == {"rendered": 0, "failed": 0}


def test_email_sweep_fired_twice_at_once_sends_each_lost_email_once(billing, hooks_off, settings, monkeypatch):
    from core.tasks import process_events
    from notifications.tasks import sweep_emails

    task_lost = [InvoiceFactory(finalized=ISSUE) for _ in range(3)]  # queued, but the send task was lost
    with monkeypatch.context() as patch:
        patch.setattr(notification_services, "_dispatch_if_queued", lambda email: None)
        for invoice in task_lost:
            assert delivery.invoice_email_on_finalize(invoice_id=invoice.pk) is not None
    hooks_off()
    with monkeypatch.context() as patch:
        patch.setattr(events, "events_process", lambda event_ids: 0)  # the after-commit dispatch was lost
        never_dispatched = [InvoiceFactory(finalized=ISSUE) for _ in range(3)]
    settings.EMAIL_SWEEP_AFTER_MINUTES = 0
    settings.DOMAIN_EVENTS_SWEEP_AFTER_MINUTES = 0

    # the domain events sweep queues (and sends) the e-mails never queued, the e-mail sweep those never sent
    results = concurrently(process_events, process_events, sweep_emails, sweep_emails)

    assert not raised(results), results
    invoices = never_dispatched + task_lost
    assert sorted(m.to[0] for m in mail.outbox) == sorted(invoice.customer.email for invoice in invoices)
    assert OutboundEmail.objects.filter(kind=EmailKind.INVOICE).count() == 6
    assert set(OutboundEmail.objects.values_list("status", "attempts")) == {(EmailStatus.SENT, 1)}
    assert sweep_emails()["sent"] == 0 and len(mail.outbox) == 6


# --- 2. a task delivered twice (a lost ack: the broker redelivers) --------------------------------------


def test_a_billing_chunk_delivered_twice_bills_once_and_counts_once(billing):
    ids = bulk_subscriptions(count=20, items=[(_plan(), 1)], start_date=JAN_1)
    run = BillingRun.objects.create(
        started_at=timezone.now(),
        as_of=JAN_1,
        status=BillingRunStatus.RUNNING,
        subscriptions_seen=20,
        chunks_total=1,
        dispatch="celery",
    )

    results = concurrently(
        lambda: billing_run_chunk_task(run.pk, ids, JAN_1.isoformat()),
        lambda: billing_run_chunk_task(run.pk, ids, JAN_1.isoformat()),
    )
    late = billing_run_chunk_task(run.pk, ids, JAN_1.isoformat())  # redelivered once more, much later

    # SKIP LOCKED: the two deliveries may each take part of the chunk, never the same subscription
    assert sum(results) == 20 and late == 0
    assert sorted(Invoice.objects.values_list("number", flat=True)) == _numbers(20)
    assert sorted(Invoice.objects.values_list("subscription_id", flat=True)) == sorted(ids)
    run.refresh_from_db()
    assert (run.status, run.invoices_created, run.failed) == (BillingRunStatus.SUCCEEDED, 20, 0)
    assert run.totals == {"EUR": "690.20"}  # 20 × 34.51, not counted again by the redeliveries
    assert OutboundEmail.objects.filter(kind=EmailKind.INVOICE).count() == 20
    assert len(mail.outbox) == 20


def test_the_after_finalize_task_delivered_twice_mails_once_and_charges_once(billing, monkeypatch, gateway_calls):
    mailed = bulk_subscriptions(count=4, items=[(_plan(), 1)], start_date=JAN_1)
    charged = bulk_subscriptions(count=4, items=[(_plan(), 1)], start_date=JAN_1)
    declined = bulk_subscriptions(count=3, items=[(_plan(), 1)], start_date=JAN_1)
    Subscription.objects.filter(pk__in=charged + declined).update(collection_method="charge_automatically")
    for subscription in Subscription.objects.filter(pk__in=charged).select_related("customer"):
        PaymentMethodFactory(customer=subscription.customer)
    for subscription in Subscription.objects.filter(pk__in=declined).select_related("customer"):
        PaymentMethodFactory(customer=subscription.customer, declined=True)
    held: list[list[int]] = []
    monkeypatch.setattr(process_event_batch, "delay", held.append)  # the chunk's task, held to deliver it twice
    billing_run(as_of=JAN_1)
    [event_ids] = held
    assert len(event_ids) == Invoice.objects.count() == 11

    results = concurrently(lambda: process_event_batch(event_ids), lambda: process_event_batch(event_ids))
    assert not raised(results), results
    process_event_batch(event_ids)  # and once more, after the first deliveries finished

    # e-mail: the "send invoice" subscriptions' invoices, once each
    assert OutboundEmail.objects.filter(kind=EmailKind.INVOICE).count() == 4
    invoice_mails = [m for m in mail.outbox if m.subject.startswith("Invoice ")]
    assert sorted(m.to[0] for m in invoice_mails) == sorted(
        Subscription.objects.filter(pk__in=mailed).values_list("customer__email", flat=True)
    )
    # card: one attempt and one gateway call per automatically charged invoice — also for the declined ones,
    # whose next try belongs to the retry schedule, not to a redelivered task
    assert len(gateway_calls) == 7 and len(set(gateway_calls)) == 7
    assert len(SandboxGateway.charges) == 4
    assert Payment.objects.count() == 4
    # and one receipt per card payment, however often the events were delivered
    assert OutboundEmail.objects.filter(kind=EmailKind.PAYMENT_RECEIPT).count() == 4
    attempts = Counter(PaymentAttempt.objects.values_list("invoice__subscription_id", flat=True))
    assert attempts == Counter(dict.fromkeys(charged + declined, 1))
    retries = set(PaymentAttempt.objects.filter(status="failed").values_list("next_retry_on", flat=True))
    assert retries == {JAN_1 + dt.timedelta(days=3)}
    paid = Invoice.objects.filter(subscription_id__in=charged)
    assert set(paid.values_list("status", flat=True)) == {InvoiceStatus.PAID}
    assert DocumentPdf.objects.count() == 11


def test_a_collect_task_delivered_twice_calls_the_gateway_once(billing, hooks_off, gateway_calls):
    paying = _auto_invoice(*_auto_customer())
    declining = _auto_invoice(*_auto_customer(card="declined"))
    hooks_off()

    def deliver(invoice: Invoice) -> Any:
        return collect_invoice(invoice.pk, ISSUE.isoformat())

    results = concurrently(*[lambda i=invoice: deliver(i) for invoice in (paying, declining) for _ in range(2)])
    assert not raised(results), results
    late = [deliver(paying), deliver(declining)]  # redelivered once more, after the first ones finished

    assert late == [None, None] and sum(result is not None for result in results) == 2  # one attempt each
    assert sorted(gateway_calls) == sorted(f"payment_attempt:{a.pk}" for a in PaymentAttempt.objects.all())
    assert len(gateway_calls) == 2
    paid = PaymentAttempt.objects.get(invoice=paying)
    paying.refresh_from_db()
    assert paid.status == AttemptStatus.SUCCEEDED and len(SandboxGateway.charges) == 1
    assert (paying.status, paying.amount_paid) == (InvoiceStatus.PAID, Decimal("49.00"))
    assert Payment.objects.get().invoice_id == paying.pk
    failed = PaymentAttempt.objects.get(invoice=declining)
    declining.refresh_from_db()
    assert (failed.status, failed.next_retry_on) == (AttemptStatus.FAILED, ISSUE + dt.timedelta(days=3))
    assert (declining.status, declining.amount_due) == (InvoiceStatus.OPEN, Decimal("49.00"))


def test_an_email_task_delivered_twice_sends_once(billing, hooks_off, monkeypatch):
    invoices = [InvoiceFactory(finalized=ISSUE) for _ in range(4)]
    with monkeypatch.context() as patch:
        patch.setattr(notification_services, "_dispatch_if_queued", lambda email: None)  # queued, the task not yet run
        emails = [delivery.invoice_email_on_finalize(invoice_id=invoice.pk) for invoice in invoices]
    hooks_off()
    email_ids = [email.pk for email in emails if email is not None]
    assert len(email_ids) == 4

    def deliver_all() -> list[str]:
        return [send_outbound_email(email_id) for email_id in email_ids]

    results = concurrently(deliver_all, deliver_all, deliver_all)
    assert not raised(results), results
    assert deliver_all() == [EmailStatus.SENT] * 4  # a late redelivery: skipped, still sent

    assert len(mail.outbox) == 4
    assert sorted(m.to[0] for m in mail.outbox) == sorted(i.customer.email for i in invoices)
    assert set(OutboundEmail.objects.values_list("status", "attempts")) == {(EmailStatus.SENT, 1)}


# --- 3. two staff finalize the same draft at the same moment --------------------------------------------


def test_two_staff_finalizing_the_same_drafts_take_one_number_each(billing):
    drafts = [InvoiceFactory() for _ in range(10)]
    staff = [User.objects.create_user(f"clerk{n}", is_staff=True) for n in (1, 2)]

    def finalize_all(actor: User) -> list[tuple[int, str]]:
        outcome = []
        for draft in drafts:
            try:
                outcome.append((draft.pk, invoice_finalize(invoice=draft, issue_date=ISSUE, actor=actor).number))
            except Exception as exc:
                outcome.append((draft.pk, f"refused: {exc}"))
        return outcome

    results = concurrently(lambda: finalize_all(staff[0]), lambda: finalize_all(staff[1]))

    assert not raised(results), results
    outcomes = [item for result in results for item in result]
    won = [number for _, number in outcomes if not number.startswith("refused")]
    lost = [message for _, message in outcomes if message.startswith("refused")]
    assert sorted(won) == _numbers(10)  # one number per draft, no gap
    assert len(lost) == 10 and all("is already open" in message for message in lost)
    finalized_events = Counter(
        InvoiceEvent.objects.filter(from_status="draft", to_status="open").values_list("invoice_id", flat=True)
    )
    assert finalized_events == Counter({draft.pk: 1 for draft in drafts})
    assert NumberSeriesCounter.objects.get(year=2026).last_number == 10
    assert invoice_finalize(invoice=InvoiceFactory(), issue_date=ISSUE).number == "INV-2026-000011"
    assert len(mail.outbox) == 11  # one invoice e-mail per finalized invoice


def test_two_admin_finalize_posts_at_once_finalize_once_and_tell_the_loser(billing):
    draft = InvoiceFactory()
    clients = []
    for n in (1, 2):
        client = Client()
        client.force_login(User.objects.create_superuser(f"admin{n}", f"admin{n}@example.com", "pw"))
        clients.append(client)
    url = reverse("admin:invoicing_invoice_changelist")
    data = {"action": "finalize_selected", "_selected_action": [draft.pk]}

    def post(client: Client) -> list[str]:
        response = client.post(url, data, follow=True)
        assert response.status_code == 200
        return [str(message) for message in get_messages(response.wsgi_request)]

    results = concurrently(lambda: post(clients[0]), lambda: post(clients[1]))

    assert not raised(results), results
    messages = sorted(results, key=lambda m: "not finalized" in " ".join(m))
    assert messages[0] == ["Finalized 1 invoice(s)."]
    assert len(messages[1]) == 1
    # "Draft #12: not finalized — invoice INV-2026-000001 is already open" (or, if the loser read the row after the
    # winner's commit, "INV-2026-000001: not finalized — …")
    assert "not finalized — invoice INV-2026-000001 is already open" in messages[1][0]
    draft.refresh_from_db()
    assert (draft.status, draft.number) == (InvoiceStatus.OPEN, "INV-2026-000001")
    assert InvoiceEvent.objects.filter(invoice=draft, from_status="draft").count() == 1
    assert NumberSeriesCounter.objects.get(year=2026).last_number == 1
    assert len(mail.outbox) == 1


# --- 4. payment webhooks: replayed, out of order, racing staff ------------------------------------------


def _webhook(client: Client, event: dict[str, Any]) -> Any:
    body = json.dumps(event).encode()
    return client.post(
        "/webhooks/sandbox/", data=body, content_type="application/json", HTTP_SANDBOX_SIGNATURE=sign_payload(body)
    )


def _intent_event(event_id: str, event_type: str, intent: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "type": event_type, "data": {"object": intent}}


def _lost_answer(customer: Any, subscription: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Invoice, dict[str, Any]]:
    """The gateway charged the card, but its answer never arrived (a timeout after the charge): the attempt is
    left ``processing``. Returns the invoice and the payment intent the gateway holds (what its webhooks carry)."""
    invoice = _auto_invoice(customer, subscription)
    real_charge = SandboxGateway.charge

    def charge_then_time_out(self: SandboxGateway, **kwargs: Any) -> Any:
        real_charge(self, **kwargs)
        raise GatewayUnavailable("read timeout")

    with monkeypatch.context() as patch:
        patch.setattr(SandboxGateway, "charge", charge_then_time_out)
        attempt = payment_services.invoice_collect(invoice_id=invoice.pk, as_of=ISSUE)
    assert attempt is not None and attempt.status == AttemptStatus.PROCESSING
    intent = next(c for c in SandboxGateway.charges if c["metadata"]["payment_attempt_id"] == str(attempt.pk))
    return invoice, dict(intent)


def _failed(intent: dict[str, Any]) -> dict[str, Any]:
    return {
        **intent,
        "status": "requires_payment_method",
        "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "No funds."},
    }


def test_a_payment_webhook_replayed_at_once_books_the_payment_once(billing, hooks_off, monkeypatch):
    customer, subscription = _auto_customer()
    invoice, intent = _lost_answer(customer, subscription, monkeypatch)
    hooks_off()
    event = _intent_event("evt_replayed", "payment_intent.succeeded", intent)

    responses = concurrently(*[lambda: _webhook(Client(), event)] * 4)

    assert [response.status_code for response in responses] == [200] * 4
    assert sum(not response.json()["duplicate"] for response in responses) <= 1
    assert WebhookEvent.objects.count() == 1
    payment = Payment.objects.get()
    invoice.refresh_from_db()
    assert (payment.amount, invoice.status, invoice.amount_paid) == (Decimal("49.00"), "paid", Decimal("49.00"))
    assert customer_credit_balance(customer=customer, currency="EUR") == 0


def test_two_events_for_one_charge_and_the_recovery_sweep_at_once_book_it_once(
    billing, hooks_off, monkeypatch, gateway_calls
):
    customer, subscription = _auto_customer()
    invoice, intent = _lost_answer(customer, subscription, monkeypatch)
    hooks_off()
    gateway_calls.clear()
    later = timezone.now() + dt.timedelta(minutes=20)

    results = concurrently(
        lambda: _webhook(Client(), _intent_event("evt_a", "payment_intent.succeeded", intent)),
        lambda: _webhook(Client(), _intent_event("evt_b", "payment_intent.succeeded", intent)),
        lambda: payment_services.payment_attempts_recover(now=later),
    )

    assert not raised(results), results
    assert [response.status_code for response in results[:2]] == [200, 200]
    assert len(SandboxGateway.charges) == 1  # the sweep re-sent the same key: the gateway's first answer
    assert len(gateway_calls) <= 1
    payment = Payment.objects.get()
    assert payment.gateway_reference == intent["id"]
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == ("paid", Decimal("49.00"))
    assert PaymentAttempt.objects.get().status == AttemptStatus.SUCCEEDED
    assert customer_credit_balance(customer=customer, currency="EUR") == 0


def test_a_failure_and_a_success_of_one_charge_arriving_together_book_the_success_once(billing, hooks_off, monkeypatch):
    cases = []
    for _ in range(4):
        customer, subscription = _auto_customer()
        cases.append((customer, subscription, *_lost_answer(customer, subscription, monkeypatch)))
    hooks_off()

    for n, (customer, subscription, invoice, intent) in enumerate(cases):
        # the gateway first declined (insufficient funds), then the customer confirmed and it succeeded; the
        # two events arrive at the same moment, in either order
        failure = _intent_event(f"evt_f{n}", "payment_intent.payment_failed", _failed(intent))
        success = _intent_event(f"evt_s{n}", "payment_intent.succeeded", intent)
        responses = concurrently(lambda e=failure: _webhook(Client(), e), lambda e=success: _webhook(Client(), e))
        assert [response.status_code for response in responses] == [200, 200]
        attempt = PaymentAttempt.objects.get(invoice=invoice)
        assert (attempt.status, attempt.next_retry_on) == (AttemptStatus.SUCCEEDED, None)
        assert Payment.objects.filter(customer=customer).count() == 1
        invoice.refresh_from_db()
        subscription.refresh_from_db()
        assert (invoice.status, invoice.amount_paid) == ("paid", Decimal("49.00"))
        assert subscription.status == SubscriptionStatus.ACTIVE
    # a soft decline that was then paid: no "payment failed" e-mail; one receipt per paid charge
    assert not OutboundEmail.objects.filter(kind=EmailKind.PAYMENT_FAILED).exists()
    assert OutboundEmail.objects.filter(kind=EmailKind.PAYMENT_RECEIPT).count() == Payment.objects.count()


def test_an_unhandled_refund_event_before_the_success_moves_no_money(billing, hooks_off, monkeypatch):
    customer, subscription = _auto_customer()
    invoice, intent = _lost_answer(customer, subscription, monkeypatch)
    hooks_off()
    client = Client()
    refund = {"id": "evt_refund", "type": "charge.refunded", "data": {"object": {"payment_intent": intent["id"]}}}

    first = _webhook(client, refund)
    assert first.status_code == 200 and first.json()["outcome"].startswith("ignored")
    success = _webhook(client, _intent_event("evt_ok", "payment_intent.succeeded", intent))
    assert success.status_code == 200
    assert _webhook(client, refund).json()["duplicate"] is True

    payment = Payment.objects.get()
    invoice.refresh_from_db()
    assert (payment.amount, payment.amount_refunded, invoice.status) == (Decimal("49.00"), 0, "paid")
    assert not payment.refunds.exists()


def test_a_success_after_the_invoice_was_paid_by_bank_becomes_customer_credit(billing, hooks_off, monkeypatch):
    customer, subscription = _auto_customer()
    invoice, intent = _lost_answer(customer, subscription, monkeypatch)
    hooks_off()
    record_payment(customer=customer, amount="49.00", invoice=invoice)  # staff: the customer also paid by bank

    response = _webhook(Client(), _intent_event("evt_late", "payment_intent.succeeded", intent))

    assert response.status_code == 200
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("paid", Decimal("49.00"), 0)
    assert sorted(Payment.objects.values_list("method", "amount")) == [
        ("bank_transfer", Decimal("49.00")),
        ("card", Decimal("49.00")),
    ]
    # two real payments for one invoice: the second is the customer's credit (docs/decisions/payments.md)
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("49.00")
    assert PaymentAttempt.objects.get().status == AttemptStatus.SUCCEEDED


def test_a_webhook_racing_a_manual_payment_records_both_and_credits_the_surplus(billing, hooks_off, monkeypatch):
    cases = []
    for _ in range(4):
        customer, subscription = _auto_customer()
        cases.append((customer, *_lost_answer(customer, subscription, monkeypatch)))
    hooks_off()

    for n, (customer, invoice, intent) in enumerate(cases):
        event = _intent_event(f"evt_race{n}", "payment_intent.succeeded", intent)
        results = concurrently(
            lambda e=event: _webhook(Client(), e),
            lambda c=customer, i=invoice: record_payment(customer=c, amount="49.00", invoice=i),
        )
        assert not raised(results), results
        assert results[0].status_code == 200
        invoice.refresh_from_db()
        assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("paid", Decimal("49.00"), 0)
        payments = Payment.objects.filter(customer=customer)
        assert sorted(payments.values_list("method", flat=True)) == ["bank_transfer", "card"]
        allocated = sum(p.allocations.aggregate(total=Sum("amount"))["total"] or 0 for p in payments)
        assert allocated == Decimal("49.00")  # whichever came first settled the invoice...
        assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("49.00")  # ...the other: credit


def test_the_same_manual_payment_submitted_twice_at_once_is_recorded_once(billing):
    """A double click on "Record payment" (or two clerks on the same bank line): both submissions check for the
    same payment under the customer's lock, so the second sees the first and is refused."""
    from payments.services import PossibleDuplicatePayment, payment_record

    customer = CustomerFactory(exempt=True)
    invoice = InvoiceFactory(
        customer=customer, lines=[{"description": "Service", "unit_amount": Decimal("49.00")}], finalized=ISSUE
    )

    def submit() -> Any:
        return payment_record(
            customer=customer,
            amount=Decimal("49.00"),
            received_on=dt.date(2026, 3, 10),
            reference=invoice.number,
            refuse_duplicate=True,
        )

    results = concurrently(submit, submit)
    assert [type(result) for result in raised(results)] == [PossibleDuplicatePayment]
    assert Payment.objects.filter(customer=customer).count() == 1
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == ("paid", 0)
    assert customer_credit_balance(customer=customer, currency="EUR") == 0


# --- 4b. e-mail provider tracking webhooks replayed -----------------------------------------------------

ANYMAIL_SECRET = "hook:s3cret-value"
MESSAGE_ID = "883953f4-6105-42a2-a16a-77a8eac79483"


def _tracking(client: Client, payload: dict[str, Any]) -> Any:
    auth = base64.b64encode(ANYMAIL_SECRET.encode()).decode()
    return client.post(
        "/anymail/postmark/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {auth}",
    )


def test_email_tracking_events_replayed_at_once_take_effect_once(billing, hooks_off, settings):
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.ANYMAIL = {"WEBHOOK_SECRET": ANYMAIL_SECRET}
    customer = CustomerFactory(email="Billing@Kunde.example")
    invoice = InvoiceFactory(customer=customer, finalized=ISSUE)
    hooks_off()
    email = delivery.invoice_email_on_finalize(invoice_id=invoice.pk)
    assert email is not None
    OutboundEmail.objects.filter(pk=email.pk).update(provider_message_id=MESSAGE_ID)
    delivered = {  # Postmark sends no id with deliveries: the event is recognised by a hash of its content
        "RecordType": "Delivery",
        "MessageID": MESSAGE_ID,
        "Recipient": "billing@kunde.example",
        "DeliveredAt": "2026-03-02T10:00:00Z",
        "Details": "smtp;250 2.0.0 OK",
        "Tag": "invoice",
        "Metadata": {},
    }
    bounced = {
        "RecordType": "Bounce",
        "ID": 4323372036,
        "Type": "HardBounce",
        "MessageID": MESSAGE_ID,
        "Email": "billing@kunde.example",
        "BouncedAt": "2026-03-02T11:00:00Z",
        "Description": "The server was unable to deliver your message (mailbox unknown).",
        "Details": "smtp;550 5.1.1 user unknown",
    }

    responses = concurrently(*[lambda p=payload: _tracking(Client(), p) for payload in [delivered, bounced] * 3])

    assert [response.status_code for response in responses] == [200] * 6
    assert sorted(EmailEvent.objects.values_list("event_type", flat=True)) == ["bounced", "delivered"]
    email.refresh_from_db()
    assert email.status == EmailStatus.BOUNCED  # whatever order: the later bounce wins over the delivery
    flagged = EmailAddressStatus.objects.get()
    assert flagged.email == "billing@kunde.example" and flagged.bounced_at is not None
    assert len(mail.outbox) == 1  # the invoice e-mail itself, sent once; tracking sends nothing
