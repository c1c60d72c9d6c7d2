from __future__ import annotations

import datetime as dt
import json
from contextlib import nullcontext
from decimal import Decimal
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from invoicing.models import InvoiceStatus
from invoicing.services import invoice_finalize
from payments import services
from payments.gateways.sandbox import SandboxGateway
from payments.models import AttemptStatus, DeclineType, Payment, PaymentAttempt
from payments.notifications import send_payment_failed_email
from payments.services import invoice_collect, payment_attempts_recover, payment_attempts_retry_due
from subscriptions.models import SubscriptionStatus
from tests.factories import InvoiceFactory, SubscriptionFactory
from tests.factories.payments import PaymentMethodFactory, record_payment

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


def _failure_mails():
    return [m for m in mail.outbox if "payment" in m.subject.lower() or "zahlung" in m.subject.lower()]


@pytest.fixture
def subscription(customer):
    return SubscriptionFactory(
        customer=customer, collection_method="charge_automatically", start_date=dt.date(2026, 3, 1)
    )


def _finalize_subscription_invoice(subscription, capture, amount="49.00"):
    draft = InvoiceFactory(
        customer=subscription.customer,
        subscription=subscription,
        lines=[{"description": "Plan", "unit_amount": Decimal(amount)}],
    )
    with capture(execute=True):
        invoice_finalize(invoice=draft, issue_date=ISSUE)
    draft.refresh_from_db()
    return draft


def test_an_automatic_collection_invoice_is_charged_after_finalization(
    customer, subscription, django_capture_on_commit_callbacks
):
    PaymentMethodFactory(customer=customer)
    invoice = _finalize_subscription_invoice(subscription, django_capture_on_commit_callbacks)
    assert invoice.status == InvoiceStatus.PAID
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert attempt.idempotency_key == f"payment_attempt:{attempt.pk}"
    assert attempt.payment.gateway_reference == SandboxGateway.charges[0]["id"]
    assert SandboxGateway.charges[0]["amount"] == 4900
    assert SandboxGateway.charges[0]["metadata"]["payment_attempt_id"] == str(attempt.pk)


def test_a_send_invoice_subscription_is_not_charged(customer, django_capture_on_commit_callbacks):
    PaymentMethodFactory(customer=customer)
    subscription = SubscriptionFactory(customer=customer, start_date=dt.date(2026, 3, 1))
    invoice = _finalize_subscription_invoice(subscription, django_capture_on_commit_callbacks)
    assert invoice.status == InvoiceStatus.OPEN
    assert not PaymentAttempt.objects.exists()


def test_soft_declines_are_retried_on_the_schedule_then_the_subscription_goes_past_due(
    customer, subscription, django_capture_on_commit_callbacks
):
    PaymentMethodFactory(customer=customer, processing_error=True)
    invoice = _finalize_subscription_invoice(subscription, django_capture_on_commit_callbacks)
    first = PaymentAttempt.objects.get(invoice=invoice)
    assert (first.status, first.decline_code, first.decline_type) == ("failed", "processing_error", DeclineType.SOFT)
    assert first.next_retry_on == ISSUE + dt.timedelta(days=3)

    timeline = {}
    for day in range(3, 12):
        as_of = ISSUE + dt.timedelta(days=day - 1)  # March 4 … March 12
        with django_capture_on_commit_callbacks(execute=True):
            report = payment_attempts_retry_due(as_of=as_of)
        if report.retried:
            timeline[as_of] = report.retried
    assert timeline == {dt.date(2026, 3, 5): 1, dt.date(2026, 3, 7): 1, dt.date(2026, 3, 9): 1}
    attempts = list(PaymentAttempt.objects.filter(invoice=invoice).order_by("attempt_number"))
    assert [a.attempted_on for a in attempts] == [ISSUE, dt.date(2026, 3, 5), dt.date(2026, 3, 7), dt.date(2026, 3, 9)]
    assert [a.next_retry_on for a in attempts] == [None, None, None, None]
    assert [a.final_failure for a in attempts] == [False, False, False, True]
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE
    failure_mails = _failure_mails()
    assert len(failure_mails) == 1
    assert "http://127.0.0.1:8000/portal/" in failure_mails[0].body
    assert failure_mails[0].alternatives[0][1] == "text/html"
    assert not send_payment_failed_email(attempt_id=attempts[-1].pk)  # once per attempt
    assert not SandboxGateway.charges

    # Paid by bank transfer later: the subscription is active again.
    record_payment(customer=customer, amount="49.00", invoice=invoice)
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE


def test_a_hard_decline_is_not_retried(customer, subscription, django_capture_on_commit_callbacks, settings):
    settings.PAYMENTS_FAILED_SUBSCRIPTION_POLICY = "none"
    PaymentMethodFactory(customer=customer, expired_card=True)
    invoice = _finalize_subscription_invoice(subscription, django_capture_on_commit_callbacks)
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert (attempt.decline_code, attempt.decline_type) == ("expired_card", DeclineType.HARD)
    assert attempt.next_retry_on is None and attempt.final_failure
    assert payment_attempts_retry_due(as_of=ISSUE + dt.timedelta(days=30)).retried == 0
    assert len(_failure_mails()) == 1
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE  # policy "none"


def test_a_retry_after_the_customer_updated_the_card_succeeds(
    customer, subscription, django_capture_on_commit_callbacks
):
    PaymentMethodFactory(customer=customer, insufficient_funds=True)
    invoice = _finalize_subscription_invoice(subscription, django_capture_on_commit_callbacks)
    services.payment_method_add(customer=customer, token="pm_card_visa:new", brand="visa", last4="4242")
    report = payment_attempts_retry_due(as_of=dt.date(2026, 3, 5))
    assert (report.retried, report.succeeded) == (1, 1)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert not _failure_mails()


def test_no_payment_method_fails_hard_and_tells_the_customer(
    customer, subscription, django_capture_on_commit_callbacks
):
    invoice = _finalize_subscription_invoice(subscription, django_capture_on_commit_callbacks)
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert (attempt.status, attempt.decline_code, attempt.final_failure) == ("failed", "no_payment_method", True)
    assert len(_failure_mails()) == 1


def test_a_crash_between_processing_and_the_answer_never_charges_twice(customer, subscription, monkeypatch):
    PaymentMethodFactory(customer=customer)
    invoice = InvoiceFactory(customer=customer, subscription=subscription, finalized=ISSUE)
    real_record = services.payment_attempt_record_result

    def crash(**kwargs):
        raise RuntimeError("worker killed after the gateway charged")

    monkeypatch.setattr(services, "payment_attempt_record_result", crash)
    with pytest.raises(RuntimeError):
        invoice_collect(invoice_id=invoice.pk, as_of=ISSUE)
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert attempt.status == AttemptStatus.PROCESSING
    assert len(SandboxGateway.charges) == 1

    monkeypatch.setattr(services, "payment_attempt_record_result", real_record)
    # While the attempt is in flight nothing else charges the invoice...
    assert invoice_collect(invoice_id=invoice.pk, as_of=ISSUE) is None
    assert payment_attempts_recover(now=timezone.now()) == 0  # ...and the sweep waits for the timeout.
    recovered = payment_attempts_recover(now=timezone.now() + dt.timedelta(minutes=16))
    assert recovered == 1
    attempt.refresh_from_db()
    invoice.refresh_from_db()
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert invoice.status == InvoiceStatus.PAID
    assert len(SandboxGateway.charges) == 1  # the same idempotency key: the gateway's first answer
    assert Payment.objects.count() == 1
    # A second sweep finds nothing to do.
    assert payment_attempts_recover(now=timezone.now() + dt.timedelta(hours=1)) == 0


def test_retry_payments_command_reports_json(customer, subscription, django_capture_on_commit_callbacks):
    PaymentMethodFactory(customer=customer, declined=True)
    _finalize_subscription_invoice(subscription, django_capture_on_commit_callbacks)
    out = StringIO()
    call_command("retry_payments", "--as-of", "2026-03-05", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["as_of"] == "2026-03-05"
    assert (report["retried"], report["failed"]) == (1, 1)
    out = StringIO()
    call_command("retry_payments", "--as-of", "2026-03-05", stdout=out)
    assert "0 retried" in out.getvalue()


def test_a_first_charge_whose_hook_was_lost_is_made_by_the_daily_retry_job_once(customer, subscription, time_machine):
    """The broker was down when the invoice was finalized: no collect task was ever queued. The daily
    "Payment retries" job charges it (after the grace hour), applying credit first, and only once."""
    time_machine.move_to(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC), tick=False)
    PaymentMethodFactory(customer=customer)
    record_payment(customer=customer, amount=Decimal("9.00"), received_on=dt.date(2026, 3, 1))  # credit
    # pytest-django's transaction never commits: without executing the captured callbacks, no hook runs
    lost = _finalize_subscription_invoice(subscription, lambda execute: nullcontext())
    assert (lost.status, lost.amount_due) == (InvoiceStatus.OPEN, Decimal("49.00"))
    assert not PaymentAttempt.objects.exists()

    time_machine.move_to(dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC), tick=False)
    assert payment_attempts_retry_due(as_of=ISSUE).first_charges == 0  # its hook may still be on the way

    time_machine.move_to(dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.UTC), tick=False)
    out = StringIO()
    call_command("retry_payments", "--as-of", ISSUE.isoformat(), stdout=out)
    assert "1 missed first charges made" in out.getvalue()
    lost.refresh_from_db()
    assert lost.status == InvoiceStatus.PAID
    attempt = PaymentAttempt.objects.get(invoice=lost)
    assert (attempt.status, attempt.amount) == (AttemptStatus.SUCCEEDED, Decimal("40.00"))  # 49.00 − 9.00 credit
    assert [charge["amount"] for charge in SandboxGateway.charges] == [4000]
    assert payment_attempts_retry_due(as_of=ISSUE).first_charges == 0
    assert len(SandboxGateway.charges) == 1
