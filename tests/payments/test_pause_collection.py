"""Pause with a choice. *Pause collection*: the renewal invoice is still issued, but it is not charged (first
charge or retry) and dunning sends it no reminder; after the resume it is charged and reminded as usual.
*Pause billing*: no invoices. Both can end by themselves on a resume date (the billing run resumes them)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from djmoney.money import Money

from core.errors import InvalidInput
from dunning import services as dunning
from dunning.models import DunningAction
from invoicing.billing_run import billing_run
from invoicing.models import Invoice, InvoiceStatus
from notifications.models import EmailKind, OutboundEmail
from payments.models import AttemptStatus, PaymentAttempt
from payments.services import payment_attempts_retry_due
from subscriptions.models import PauseMode, SubscriptionEvent, SubscriptionStatus
from subscriptions.services import (
    InvalidTransition,
    ItemSpec,
    subscription_create,
    subscription_pause,
    subscription_resume,
)
from tests.factories import StaffUserFactory
from tests.factories.payments import PaymentMethodFactory
from tests.factories.subscriptions import PriceFactory

pytestmark = pytest.mark.django_db
D = dt.date


@pytest.fixture(autouse=True)
def _policy(billing):
    dunning.seed_dunning()


def _subscription(customer, collection_method: str):
    price = PriceFactory(unit_amount=Money("49.00", "EUR"), product__name="Gym")
    return subscription_create(
        customer=customer,
        items=[ItemSpec(price=price)],
        start_date=D(2026, 3, 1),
        collection_method=collection_method,
        days_until_due=10,
    )


def _bill(day: dt.date, capture) -> Invoice:
    with capture(execute=True):
        run = billing_run(as_of=day)
    return Invoice.objects.get(billing_run=run)


def test_a_collection_paused_renewal_is_issued_but_not_charged_until_the_resume(
    customer, django_capture_on_commit_callbacks
):
    PaymentMethodFactory(customer=customer)
    subscription = _subscription(customer, "charge_automatically")
    first = _bill(D(2026, 3, 1), django_capture_on_commit_callbacks)
    assert first.status == InvoiceStatus.PAID  # charged as usual before the pause
    clerk = StaffUserFactory(group="Billing clerk")
    subscription_pause(
        subscription=subscription, as_of=D(2026, 3, 10), mode=PauseMode.COLLECTION, actor=clerk, reason="dispute"
    )
    assert (subscription.status, subscription.pause_mode, subscription.paused_at) == (
        SubscriptionStatus.ACTIVE,
        "collection",
        D(2026, 3, 10),
    )
    renewal = _bill(D(2026, 4, 1), django_capture_on_commit_callbacks)
    assert (renewal.status, renewal.total, renewal.due_date) == (InvoiceStatus.OPEN, Decimal("49.00"), D(2026, 4, 11))
    assert renewal.number
    assert not PaymentAttempt.objects.filter(invoice=renewal).exists()
    # Neither the missed-charge sweep (a day later) nor dunning touches it while paused.
    with time_machine.travel(dt.datetime(2026, 4, 30, 12, tzinfo=dt.UTC)):
        assert payment_attempts_retry_due(as_of=D(2026, 4, 30)).first_charges == 0
        for day in (D(2026, 4, 8), D(2026, 4, 12), D(2026, 4, 18), D(2026, 4, 25)):
            dunning.send_reminders(as_of=day)
    assert not PaymentAttempt.objects.filter(invoice=renewal).exists()
    assert not DunningAction.objects.filter(invoice=renewal).exists()

    with django_capture_on_commit_callbacks(execute=True):
        subscription_resume(subscription=subscription, as_of=D(2026, 4, 30), actor=clerk)
    renewal.refresh_from_db()
    attempt = PaymentAttempt.objects.get(invoice=renewal)
    assert (attempt.status, attempt.amount, attempt.attempted_on) == (
        AttemptStatus.SUCCEEDED,
        Decimal("49.00"),
        D(2026, 4, 30),
    )
    assert renewal.status == InvoiceStatus.PAID
    assert subscription.pause_mode == "" and subscription.paused_at is None
    reasons = list(
        SubscriptionEvent.objects.filter(subscription=subscription, actor=clerk).values_list("reason", flat=True)
    )
    assert reasons == ["collection paused on 2026-03-10: dispute", "collection resumed on 2026-04-30"]


def test_a_collection_paused_invoice_gets_no_reminder_and_is_reminded_after_the_resume(
    customer, django_capture_on_commit_callbacks
):
    subscription = _subscription(customer, "send_invoice")
    _bill(D(2026, 3, 1), django_capture_on_commit_callbacks)
    subscription_pause(subscription=subscription, as_of=D(2026, 3, 20), mode=PauseMode.COLLECTION)
    renewal = _bill(D(2026, 4, 1), django_capture_on_commit_callbacks)
    assert renewal.status == InvoiceStatus.OPEN and renewal.due_date == D(2026, 4, 11)
    assert OutboundEmail.objects.filter(invoice=renewal, kind=EmailKind.INVOICE).count() == 1  # sent as usual
    for day in (D(2026, 4, 8), D(2026, 4, 12), D(2026, 4, 18)):
        dunning.send_reminders(as_of=day)
    assert not DunningAction.objects.filter(invoice=renewal).exists()
    subscription_resume(subscription=subscription, as_of=D(2026, 4, 19))
    dunning.send_reminders(as_of=D(2026, 4, 19))  # 8 days overdue: the latest due reminder, once
    reminders = DunningAction.objects.filter(invoice=renewal, outbound_email__isnull=False)
    assert [(a.as_of, a.step.offset_days) for a in reminders] == [(D(2026, 4, 19), 7)]


def test_a_soft_decline_retry_waits_for_the_resume(customer, django_capture_on_commit_callbacks):
    PaymentMethodFactory(customer=customer, processing_error=True)
    subscription = _subscription(customer, "charge_automatically")
    invoice = _bill(D(2026, 3, 1), django_capture_on_commit_callbacks)
    failed = PaymentAttempt.objects.get(invoice=invoice)
    assert failed.status == AttemptStatus.FAILED and failed.next_retry_on is not None
    retry_on = failed.next_retry_on
    subscription_pause(subscription=subscription, as_of=D(2026, 3, 2), mode=PauseMode.COLLECTION)
    payment_attempts_retry_due(as_of=retry_on)
    failed.refresh_from_db()
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1 and failed.next_retry_on == retry_on
    subscription_resume(subscription=subscription, as_of=retry_on)
    report = payment_attempts_retry_due(as_of=retry_on)
    assert report.retried == 1 and PaymentAttempt.objects.filter(invoice=invoice).count() == 2


def test_pause_billing_with_a_resume_date_issues_nothing_then_resumes_in_the_billing_run(
    customer, django_capture_on_commit_callbacks
):
    subscription = _subscription(customer, "send_invoice")
    _bill(D(2026, 3, 1), django_capture_on_commit_callbacks)
    subscription_pause(
        subscription=subscription, as_of=D(2026, 3, 15), mode=PauseMode.BILLING, resumes_on=D(2026, 5, 10)
    )
    assert (subscription.status, subscription.pause_mode, subscription.resumes_on) == (
        "paused",
        "billing",
        D(2026, 5, 10),
    )
    billing_run(as_of=D(2026, 4, 1))
    assert Invoice.objects.filter(subscription=subscription).count() == 1  # no invoice while billing is paused
    back = _bill(D(2026, 5, 10), django_capture_on_commit_callbacks)
    subscription.refresh_from_db()
    assert (subscription.status, subscription.pause_mode, subscription.resumes_on) == ("active", "", None)
    assert (back.period_start, back.period_end, back.total) == (D(2026, 5, 10), D(2026, 6, 10), Decimal("49.00"))


def test_the_resume_command_ends_a_collection_pause_on_its_date(customer, capsys):
    subscription = _subscription(customer, "send_invoice")
    subscription_pause(
        subscription=subscription, as_of=D(2026, 3, 2), mode=PauseMode.COLLECTION, resumes_on=D(2026, 3, 20)
    )
    call_command("resume_subscriptions", "--as-of", "2026-03-19")
    subscription.refresh_from_db()
    assert subscription.pause_mode == "collection"
    call_command("resume_subscriptions", "--as-of", "2026-03-20")
    subscription.refresh_from_db()
    assert subscription.pause_mode == "" and f"#{subscription.pk}" in capsys.readouterr().out


def test_bad_pause_input_is_refused_naming_the_field(customer):
    subscription = _subscription(customer, "send_invoice")
    with pytest.raises(InvalidInput, match="after the pause date") as refused:
        subscription_pause(subscription=subscription, as_of=D(2026, 3, 5), resumes_on=D(2026, 3, 5))
    assert refused.value.field == "resumes_on"
    with pytest.raises(InvalidInput) as refused:
        subscription_pause(subscription=subscription, as_of=D(2026, 3, 5), mode="forever")
    assert refused.value.field == "mode"
    subscription_pause(subscription=subscription, as_of=D(2026, 3, 5), mode=PauseMode.COLLECTION)
    with pytest.raises(InvalidTransition, match="collection is paused already"):
        subscription_pause(subscription=subscription, as_of=D(2026, 3, 6), mode=PauseMode.BILLING)
    with pytest.raises(InvalidTransition):
        subscription_resume(subscription=subscription, as_of=D(2026, 3, 6))
        subscription_resume(subscription=subscription, as_of=D(2026, 3, 7))  # not paused any more
