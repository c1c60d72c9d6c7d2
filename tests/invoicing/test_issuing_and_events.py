"""One issue path, one due-date rule (docs/decisions/issuing.md), and the invoice.issued domain event handled in
phases: settle (credit, collection) before deliver (PDF, e-mail), each handler once, resumed by the sweep."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal as D

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import transaction
from django.utils import timezone
from djmoney.money import Money
from pypdf import PdfReader

from core import events
from core import formatting as fmt
from core.models import DomainEvent, EventHandlerRun, EventStatus
from invoicing import delivery
from invoicing.billing_run import billing_run
from invoicing.models import BillingReason, Invoice, InvoiceStatus
from invoicing.services import (
    InvoiceLineSpec,
    invoice_create_draft,
    invoice_finalize,
    invoice_void,
    invoices_finalize_many,
)
from notifications.models import EmailKind, OutboundEmail
from notifications.sweep import outbox_sweep
from payments import services as payment_services
from payments.models import CreditEntryKind, CreditLedgerEntry
from payments.services import customer_credit_adjust, payment_record
from subscriptions.models import Subscription
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory
from tests.factories.customers import StaffUserFactory
from tests.factories.invoicing import InvoiceFactory

pytestmark = pytest.mark.django_db
JAN_1 = dt.date(2026, 1, 1)
PLAN = D("29.00")


@pytest.fixture(autouse=True)
def _vat(series, vat_de):
    """Default number series and German VAT 19 % (the customers' default country)."""


# --- (a) the same invoice through every path -------------------------------------------------------------


def _customer(terms: int | None, **kwargs):
    return CustomerFactory(**kwargs) if terms is None else CustomerFactory(payment_terms_days=terms, **kwargs)


@pytest.mark.parametrize(
    ("subscription_days", "customer_terms", "expected_days"),
    [
        pytest.param(10, 30, 10, id="subscription-days-until-due"),
        pytest.param(None, 30, 30, id="customer-terms"),
        pytest.param(None, None, django_settings.DEFAULT_PAYMENT_TERMS_DAYS, id="neither-the-setting"),
    ],
)
def test_every_issue_path_gives_the_same_amounts_and_due_date(subscription_days, customer_terms, expected_days):
    price = PriceFactory(unit_amount=Money(PLAN, "EUR"))

    def subscribed(**kwargs):
        customer = _customer(customer_terms, **kwargs)
        return SubscriptionFactory(customer=customer, price=price, start_date=JAN_1, days_until_due=subscription_days)

    # 1. the billing run issues it
    by_run = subscribed()
    billing_run(as_of=JAN_1, customer_id=by_run.customer_id)
    # 2. the billing run holds it for review and staff finalize the draft
    held = subscribed(review_invoices=True)
    billing_run(as_of=JAN_1, customer_id=held.customer_id)
    draft = Invoice.objects.get(subscription=held, status=InvoiceStatus.DRAFT)
    outcome = invoices_finalize_many(invoices=[draft], issue_date=JAN_1, actor=StaffUserFactory())
    assert not outcome.failed, outcome.failed
    # 3. a one-off invoice for the subscription, through the services
    one_off = subscribed()
    invoice_finalize(
        invoice=invoice_create_draft(
            customer=one_off.customer,
            subscription=one_off,
            billing_reason=BillingReason.ONE_OFF,
            lines=[InvoiceLineSpec(description="Plan", unit_amount=PLAN)],
        ),
        issue_date=JAN_1,
    )

    issued = [Invoice.objects.get(subscription=s) for s in (by_run, held, one_off)]
    figures = {(i.status, i.issue_date, i.due_date, i.subtotal, i.tax_total, i.total, i.amount_due) for i in issued}
    assert figures == {
        (InvoiceStatus.OPEN, JAN_1, JAN_1 + dt.timedelta(days=expected_days), PLAN, D("5.51"), D("34.51"), D("34.51"))
    }
    # each through the one path: one invoice.issued event apiece, written with the invoice
    assert sorted(DomainEvent.objects.filter(type="invoice.issued").values_list("subject_id", flat=True)) == sorted(
        i.pk for i in issued
    )


# --- (b) the e-mail and the PDF state the amount due after credit --------------------------------------


def _credited_subscriber(credit: D = D("10.00")) -> Subscription:
    customer = CustomerFactory(email="ap@kunde.example", language="en")
    customer_credit_adjust(customer=customer, amount=credit, currency="EUR", reason="goodwill")
    return SubscriptionFactory(customer=customer, price=PriceFactory(unit_amount=Money(PLAN, "EUR")), start_date=JAN_1)


def _pdf_text(content: bytes) -> str:
    return " ".join(" ".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages).split())


def test_invoice_email_and_pdf_state_the_amount_due_after_the_customers_credit(django_capture_on_commit_callbacks):
    subscription = _credited_subscriber()
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=JAN_1)

    invoice = Invoice.objects.get(subscription=subscription)
    assert (invoice.total, invoice.amount_paid, invoice.amount_due) == (D("34.51"), D("10.00"), D("24.51"))
    [message] = mail.outbox
    after_credit, before_credit = fmt.money(D("24.51"), "EUR", "en"), fmt.money(D("34.51"), "EUR", "en")
    assert f"Amount due: {after_credit}, payable by" in message.body
    [(filename, content, _type)] = message.attachments
    assert filename == f"{invoice.number}.pdf"
    text = _pdf_text(content)
    assert after_credit in text and before_credit in text  # amount due after credit; the total
    assert text.index(before_credit) < text.rindex(after_credit)
    event = DomainEvent.objects.get(type="invoice.issued", subject_id=invoice.pk)
    assert event.status == EventStatus.PROCESSED
    assert list(event.handler_runs.values_list("phase", "handler")) == [
        ("settle", "payments.apply_customer_credit"),
        ("settle", "payments.collect_automatically"),
        ("deliver", "invoicing.render_invoice_pdf"),
        ("deliver", "invoicing.email_invoice"),
    ]


# --- (c) a crash between phases resumes where it stopped -------------------------------------------------


def test_a_deliver_handler_that_fails_once_is_resumed_by_the_sweep_without_settling_again(
    monkeypatch, django_capture_on_commit_callbacks
):
    subscription = _credited_subscriber()
    settled: list[int] = []
    real_apply = payment_services.customer_credit_apply

    def counting_apply(*, invoice, actor=None):
        settled.append(invoice.pk)
        return real_apply(invoice=invoice, actor=actor)

    real_email = delivery.invoice_email_on_finalize
    failures = ["the mail template storage is down"]

    def flaky_email(*, invoice_id):
        if failures:
            raise OSError(failures.pop())
        return real_email(invoice_id=invoice_id)

    monkeypatch.setattr(payment_services, "customer_credit_apply", counting_apply)
    monkeypatch.setattr(delivery, "invoice_email_on_finalize", flaky_email)

    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(subscription=subscription)
    event = DomainEvent.objects.get(type="invoice.issued", subject_id=invoice.pk)
    assert (event.status, event.attempts) == (EventStatus.PENDING, 1)
    assert "OSError: the mail template storage is down" in event.last_error
    assert set(event.handler_runs.values_list("handler", flat=True)) == {
        "payments.apply_customer_credit",
        "payments.collect_automatically",
        "invoicing.render_invoice_pdf",
    }
    assert settled == [invoice.pk] and mail.outbox == []

    # too early for the sweep: the normal dispatch may still be on its way
    assert events.events_sweep().processed == 0
    with django_capture_on_commit_callbacks(execute=True):
        outcome = events.events_sweep(now=timezone.now() + dt.timedelta(minutes=10))
    assert (outcome.processed, outcome.pending, outcome.failed) == (1, 0, 0)

    event.refresh_from_db()
    assert event.status == EventStatus.PROCESSED and event.processed_at is not None
    assert EventHandlerRun.objects.filter(event=event).count() == 4
    assert settled == [invoice.pk]  # settle was not run again
    assert CreditLedgerEntry.objects.filter(invoice=invoice, kind=CreditEntryKind.APPLIED_TO_INVOICE).count() == 1
    [message] = mail.outbox
    assert f"Amount due: {fmt.money(D('24.51'), 'EUR', 'en')}" in message.body
    assert OutboundEmail.objects.filter(invoice=invoice, kind=EmailKind.INVOICE).count() == 1
    # and a later sweep finds nothing more to do
    assert events.events_sweep(now=timezone.now() + dt.timedelta(hours=1)).processed == 0
    assert len(mail.outbox) == 1


def test_an_event_whose_handler_keeps_failing_is_failed_for_staff(monkeypatch, settings):
    settings.DOMAIN_EVENTS_MAX_ATTEMPTS = 2
    later = timezone.now() + dt.timedelta(minutes=10)
    with events.handler_registered(
        event_type="test.happened", name="test.broken", phase=events.NOTIFY, handler=lambda event: 1 / 0
    ):
        event = events.event_record("test.happened", subject_type="test", subject_id=1, payload={})
        assert events.event_process(event.pk) == EventStatus.PENDING
        assert events.events_sweep(now=later).failed == 1
    event.refresh_from_db()
    assert (event.status, event.attempts) == (EventStatus.FAILED, 2)
    assert "ZeroDivisionError" in event.last_error
    assert events.events_sweep(now=later + dt.timedelta(hours=1)).failed == 0  # never retried again


# --- (d) events are written in the transaction of the change ---------------------------------------------


def test_a_rolled_back_issue_writes_no_event():
    draft = InvoiceFactory()

    with pytest.raises(RuntimeError, match="rolled back"), transaction.atomic():
        invoice_finalize(invoice=draft, issue_date=JAN_1)
        assert DomainEvent.objects.filter(type="invoice.issued", subject_id=draft.pk).exists()
        raise RuntimeError("rolled back")

    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.DRAFT and draft.number == ""
    assert not DomainEvent.objects.filter(subject_type="invoice", subject_id=draft.pk).exists()


def test_events_cannot_be_recorded_outside_a_transaction(monkeypatch):
    monkeypatch.setattr(transaction.get_connection(), "in_atomic_block", False)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        events.events_record([events.event_new("test.happened", subject_type="test", subject_id=1, payload={})])


def test_the_services_record_their_domain_events():
    customer = CustomerFactory()
    subscription = SubscriptionFactory(customer=customer, start_date=JAN_1)
    to_void = InvoiceFactory(customer=customer, finalized=JAN_1)
    to_pay = InvoiceFactory(customer=customer, finalized=JAN_1)
    invoice_void(invoice=to_void, reason="typo")
    payment = payment_record(customer=customer, amount=to_pay.amount_due, received_on=JAN_1, invoice=to_pay)

    recorded = {(e.type, e.subject_type, e.subject_id) for e in DomainEvent.objects.all()}
    assert recorded >= {
        ("subscription.created", "subscription", subscription.pk),
        ("invoice.issued", "invoice", to_void.pk),
        ("invoice.voided", "invoice", to_void.pk),
        ("invoice.paid", "invoice", to_pay.pk),
        ("payment.succeeded", "payment", payment.pk),
    }
    paid = DomainEvent.objects.get(type="payment.succeeded")
    assert paid.payload["amount"] == str(to_pay.amount_due) and paid.payload["currency"] == "EUR"
    assert paid.payload["allocations"] == [{"invoice_id": to_pay.pk, "amount": str(to_pay.amount_due)}]


# --- (e) handlers off: written, never handled, never replayed ----------------------------------------------


def test_with_the_hooks_off_events_are_processed_without_handlers_and_never_replayed(
    settings, django_capture_on_commit_callbacks
):
    settings.BILLING_AFTER_FINALIZE_HOOKS = False
    subscription = _credited_subscriber()
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get(subscription=subscription)
    event = DomainEvent.objects.get(type="invoice.issued", subject_id=invoice.pk)
    assert event.status == EventStatus.SKIPPED and event.processed_at is not None
    assert not event.handler_runs.exists()

    settings.BILLING_AFTER_FINALIZE_HOOKS = True  # the demo's history is written; today's work begins
    with django_capture_on_commit_callbacks(execute=True):
        assert events.events_sweep(now=timezone.now() + dt.timedelta(days=2)).processed == 0
        assert outbox_sweep(now=timezone.now() + dt.timedelta(days=2)).sent == 0
    invoice.refresh_from_db()
    assert invoice.amount_due == D("34.51")  # no credit applied, no e-mail, no PDF
    assert not OutboundEmail.objects.exists() and mail.outbox == []


def test_the_admin_shows_events_and_their_handler_runs_read_only(admin_client, django_capture_on_commit_callbacks):
    from django.urls import reverse

    with django_capture_on_commit_callbacks(execute=True):
        invoice = InvoiceFactory(finalized=JAN_1)
    event = DomainEvent.objects.get(type="invoice.issued", subject_id=invoice.pk)
    changelist = reverse("admin:core_domainevent_changelist")
    response = admin_client.get(changelist, {"type": "invoice.issued", "status__exact": "processed"})
    assert response.status_code == 200 and b"invoice.issued" in response.content
    page = admin_client.get(reverse("admin:core_domainevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert b"invoicing.email_invoice" in page.content and b"payments.apply_customer_credit" in page.content
    assert b'name="_save"' not in page.content  # read-only
    assert admin_client.get(reverse("admin:core_domainevent_add")).status_code == 403


# --- one render per issued invoice ------------------------------------------------------------------------


def test_an_emailed_invoice_is_rendered_once_by_its_email_and_a_charged_one_by_the_render_task(
    monkeypatch, django_capture_on_commit_callbacks
):
    """Two workers must not render the same PDF side by side (the render task and the e-mail's attachment): the
    e-mailed invoice's PDF comes from its e-mail, the other invoice's from the render task — each once."""
    from invoicing import documents
    from invoicing.models import DocumentPdf
    from subscriptions.models import CollectionMethod

    rendered: list[int] = []
    real = documents.render_invoice_pdf

    def counting(*, invoice, lines=None):
        rendered.append(invoice.pk)
        return real(invoice=invoice, lines=lines)

    monkeypatch.setattr(documents, "render_invoice_pdf", counting)
    render_tasks: list[int] = []
    real_task = delivery.render_invoice_pdf

    class RecordingTask:
        @staticmethod
        def delay(invoice_id):
            render_tasks.append(invoice_id)
            return real_task.delay(invoice_id)

    monkeypatch.setattr(delivery, "render_invoice_pdf", RecordingTask)
    price = PriceFactory(unit_amount=Money(PLAN, "EUR"))
    emailed = SubscriptionFactory(
        customer=CustomerFactory(email="ap@mailed.example"), price=price, start_date=JAN_1,
        collection_method=CollectionMethod.SEND_INVOICE,
    )  # fmt: skip
    charged = SubscriptionFactory(
        customer=CustomerFactory(email="ap@charged.example"), price=price, start_date=JAN_1,
        collection_method=CollectionMethod.CHARGE_AUTOMATICALLY,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=JAN_1)

    mailed_invoice = Invoice.objects.get(subscription=emailed)
    charged_invoice = Invoice.objects.get(subscription=charged)
    # on workers the render task and the e-mail run side by side: only one of them may render each invoice
    assert render_tasks == [charged_invoice.pk]
    assert sorted(rendered) == sorted([mailed_invoice.pk, charged_invoice.pk])
    assert DocumentPdf.objects.filter(invoice__in=[mailed_invoice, charged_invoice]).count() == 2
    # the charged invoice's customer has no card: a "payment failed" notice, without the PDF
    [message] = [m for m in mail.outbox if m.attachments]
    assert message.to == ["ap@mailed.example"]
    assert message.attachments[0][0] == f"{mailed_invoice.number}.pdf"
