"""A change to prices of another interval (monthly → yearly and back), as Stripe does it: the cycle restarts on
the change date, the old period's unused time is credited on the new period's invoice and that invoice is issued
at once whatever the proration behaviour; the preview equals it to the cent; the renewal comes one new interval
later. Mixed intervals after a change are refused naming the field."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from core.models import DomainEvent
from invoicing.billing_run import billing_run
from invoicing.models import Invoice, InvoiceStatus
from invoicing.subscription_billing import subscription_change_invoice, subscription_change_preview_full
from notifications.models import EmailKind, OutboundEmail
from subscriptions.models import PendingInvoiceItem, Subscription, SubscriptionEvent
from subscriptions.services import (
    IntervalMismatch,
    ItemSpec,
    ProrationBehavior,
    SubscriptionError,
    subscription_change,
    subscription_create,
)
from tests.factories import CustomerFactory, StaffUserFactory
from tests.factories.subscriptions import PriceFactory

pytestmark = pytest.mark.django_db
D = dt.date


def _summary(invoice: Invoice, lines) -> tuple:
    return (
        invoice.billing_reason,
        invoice.subtotal,
        invoice.tax_total,
        invoice.total,
        invoice.period_start,
        invoice.period_end,
        [(line.description, line.amount, line.tax_amount, line.total_amount) for line in lines],
    )


def _issued(invoice: Invoice) -> tuple:
    return _summary(invoice, list(invoice.lines.order_by("position")))


@pytest.fixture
def prices(series, vat_de):
    monthly = PriceFactory(unit_amount=Money("30.00", "EUR"), product__name="Studio")
    yearly = PriceFactory(yearly=True, unit_amount=Money("300.00", "EUR"), product=monthly.product)
    return monthly, yearly


def _subscribed(price, start: dt.date, **kwargs) -> Subscription:
    subscription = subscription_create(
        customer=CustomerFactory(), items=[ItemSpec(price=price)], start_date=start, **kwargs
    )
    billing_run(as_of=start)
    subscription.refresh_from_db()
    return subscription


def _cycle(subscription: Subscription) -> tuple:
    subscription.refresh_from_db()
    return (
        subscription.interval,
        subscription.billing_cycle_anchor,
        subscription.current_period_start,
        subscription.current_period_end,
        subscription.next_billing_date,
    )


@pytest.mark.parametrize("behavior", list(ProrationBehavior))
def test_monthly_to_yearly_on_day_10_credits_the_unused_days_and_invoices_the_year_now(
    prices, behavior, django_capture_on_commit_callbacks
):
    monthly, yearly = prices
    subscription = _subscribed(monthly, D(2026, 4, 1))  # [1 Apr, 1 May): 30 days, 30.00 billed on 1 Apr
    items = [ItemSpec(price=yearly)]
    preview = subscription_change_preview_full(
        subscription=subscription, items=items, as_of=D(2026, 4, 10), proration_behavior=behavior
    )
    assert _cycle(subscription)[0] == "month" and not PendingInvoiceItem.objects.exists()  # the preview wrote nothing
    assert preview.interval_change and (preview.new_period_start, preview.new_period_end) == (
        D(2026, 4, 10),
        D(2027, 4, 10),
    )
    with django_capture_on_commit_callbacks(execute=True):
        outcome = subscription_change_invoice(
            subscription=subscription, items=items, as_of=D(2026, 4, 10), proration_behavior=behavior
        )
    issued = Invoice.objects.get(pk=outcome.invoice.pk)
    assert issued.status == InvoiceStatus.OPEN and issued.number and issued.issue_date == D(2026, 4, 10)
    assert _issued(issued) == _summary(preview.now.invoice, preview.now.lines)  # the preview, to the cent
    assert issued.due_date == preview.now.due_date
    if behavior == ProrationBehavior.NONE:
        assert preview.proration_lines == []
        assert _issued(issued)[1:4] == (Decimal("300.00"), Decimal("57.00"), Decimal("357.00"))
    else:
        # 21 of the 30 days are unused (the change day counts as remaining): −round(30.00 × 21/30) = −21.00.
        assert [line.amount.amount for line in preview.proration_lines] == [Decimal("-21.00")]
        assert _issued(issued) == (
            "subscription_change",
            Decimal("279.00"),
            Decimal("53.01"),  # 57.00 − 3.99, tax per line
            Decimal("332.01"),
            D(2026, 4, 10),
            D(2027, 4, 10),
            [
                ("Studio", Decimal("300.00"), Decimal("57.00"), Decimal("357.00")),
                (
                    "Unused time on Studio × 1 from 10 Apr 2026 (21/30 days)",
                    Decimal("-21.00"),
                    Decimal("-3.99"),
                    Decimal("-24.99"),
                ),
            ],
        )
    assert OutboundEmail.objects.filter(invoice=issued, kind=EmailKind.INVOICE).count() == 1
    assert _cycle(subscription) == ("year", D(2026, 4, 10), D(2026, 4, 10), D(2027, 4, 10), D(2027, 4, 10))
    assert not PendingInvoiceItem.objects.filter(billed_at__isnull=True).exists()
    # No monthly invoice any more; the renewal is a year later, at the yearly price, as the preview said.
    for day in (D(2026, 5, 1), D(2026, 12, 31), D(2027, 4, 9)):
        billing_run(as_of=day)
    assert Invoice.objects.filter(subscription=subscription).count() == 2
    billing_run(as_of=D(2027, 4, 10))
    renewal = Invoice.objects.get(subscription=subscription, period_start=D(2027, 4, 10))
    assert _issued(renewal) == _summary(preview.next_invoice.invoice, preview.next_invoice.lines)
    assert (renewal.total, renewal.period_end, renewal.billing_reason) == (
        Decimal("357.00"),
        D(2028, 4, 10),
        "subscription_cycle",
    )


def test_yearly_back_to_monthly_credits_the_unused_days_of_the_year(prices):
    monthly, yearly = prices
    subscription = _subscribed(yearly, D(2026, 1, 1))  # [1 Jan 2026, 1 Jan 2027): 365 days, 300.00
    preview = subscription_change_preview_full(
        subscription=subscription, items=[ItemSpec(price=monthly)], as_of=D(2026, 12, 20)
    )
    outcome = subscription_change_invoice(
        subscription=subscription, items=[ItemSpec(price=monthly)], as_of=D(2026, 12, 20)
    )
    issued = Invoice.objects.get(pk=outcome.invoice.pk)
    assert _issued(issued) == _summary(preview.now.invoice, preview.now.lines)
    # 12 of 365 days unused: −round(300.00 × 12/365) = −9.86; the first month 30.00 → 20.14 net, tax 5.70 − 1.87.
    assert [line.amount for line in issued.lines.order_by("position")] == [Decimal("30.00"), Decimal("-9.86")]
    assert (issued.subtotal, issued.total) == (Decimal("20.14"), Decimal("23.97"))
    assert _cycle(subscription) == ("month", D(2026, 12, 20), D(2026, 12, 20), D(2027, 1, 20), D(2027, 1, 20))
    billing_run(as_of=D(2027, 1, 1))  # the old yearly boundary bills nothing
    assert Invoice.objects.filter(subscription=subscription).count() == 2
    billing_run(as_of=D(2027, 1, 20))
    assert Invoice.objects.get(subscription=subscription, period_start=D(2027, 1, 20)).total == Decimal("35.70")


def test_a_change_that_nets_to_a_credit_is_held_as_a_draft_for_review(prices):
    monthly, yearly = prices
    subscription = _subscribed(yearly, D(2026, 1, 1))
    outcome = subscription_change_invoice(
        subscription=subscription, items=[ItemSpec(price=monthly)], as_of=D(2026, 7, 1)
    )
    # 184 of 365 days unused: −151.23 against a month of 30.00: a negative invoice cannot be issued.
    assert outcome.invoice.status == InvoiceStatus.DRAFT and outcome.invoice.total == Decimal("-144.26")
    assert "draft for review" in outcome.note
    assert _cycle(subscription)[0] == "month"


def test_changing_the_interval_on_the_day_the_old_period_was_billed_credits_it_whole(prices):
    monthly, yearly = prices
    subscription = _subscribed(monthly, D(2026, 4, 1))
    outcome = subscription_change_invoice(
        subscription=subscription, items=[ItemSpec(price=yearly)], as_of=D(2026, 4, 1)
    )
    first, second = Invoice.objects.filter(subscription=subscription).order_by("pk")
    assert (first.period_start, second.period_start) == (D(2026, 4, 1), D(2026, 4, 1))
    assert second.pk == outcome.invoice.pk and first.period_key != second.period_key  # billed once each
    assert [line.amount for line in second.lines.order_by("position")] == [Decimal("300.00"), Decimal("-30.00")]
    assert _cycle(subscription) == ("year", D(2026, 4, 1), D(2026, 4, 1), D(2027, 4, 1), D(2027, 4, 1))


def test_a_change_that_would_leave_mixed_intervals_is_refused_naming_the_price(prices):
    monthly, yearly = prices
    support = PriceFactory(unit_amount=Money("10.00", "EUR"), product__name="Support")
    subscription = subscription_create(
        customer=CustomerFactory(), items=[ItemSpec(price=monthly), ItemSpec(price=support)], start_date=D(2026, 4, 1)
    )
    billing_run(as_of=D(2026, 4, 1))
    with pytest.raises(IntervalMismatch, match="share one billing interval") as refused:
        subscription_change_invoice(
            subscription=subscription, items=[ItemSpec(price=yearly), ItemSpec(price=support)], as_of=D(2026, 4, 10)
        )
    assert refused.value.field == "price"
    assert _cycle(subscription)[0] == "month" and Invoice.objects.filter(subscription=subscription).count() == 1
    # Both items to yearly prices: one yearly period for both.
    support_yearly = PriceFactory(yearly=True, unit_amount=Money("100.00", "EUR"), product=support.product)
    outcome = subscription_change_invoice(
        subscription=subscription, items=[ItemSpec(price=yearly), ItemSpec(price=support_yearly)], as_of=D(2026, 4, 10)
    )
    # Credits −21.00 and −7.00, then 300.00 + 100.00.
    assert outcome.invoice.subtotal == Decimal("372.00")
    assert _cycle(subscription)[0] == "year"


def test_an_interval_change_through_the_subscriptions_service_alone_is_invoiced_after_commit(
    prices, django_capture_on_commit_callbacks
):
    monthly, yearly = prices
    subscription = _subscribed(monthly, D(2026, 4, 1))
    with django_capture_on_commit_callbacks(execute=True):
        result = subscription_change(subscription=subscription, items=[ItemSpec(price=yearly)], as_of=D(2026, 4, 10))
    assert result.restarted_on == D(2026, 4, 10)
    event = DomainEvent.objects.filter(type="subscription.updated").order_by("pk").last()
    assert event.payload["interval_changed_on"] == "2026-04-10"
    issued = Invoice.objects.get(subscription=subscription, billing_reason="subscription_change")
    assert (issued.status, issued.subtotal, issued.issue_date) == (
        InvoiceStatus.OPEN,
        Decimal("279.00"),
        D(2026, 4, 10),
    )


def test_an_interval_change_in_a_trial_bills_the_new_interval_when_the_trial_ends(prices):
    monthly, yearly = prices
    subscription = subscription_create(
        customer=CustomerFactory(), items=[ItemSpec(price=monthly)], start_date=D(2026, 4, 1), trial_days=14
    )
    outcome = subscription_change_invoice(
        subscription=subscription, items=[ItemSpec(price=yearly)], as_of=D(2026, 4, 5)
    )
    assert outcome.invoice is None and not Invoice.objects.exists()
    assert _cycle(subscription) == ("year", D(2026, 4, 15), D(2026, 4, 1), D(2026, 4, 15), D(2026, 4, 15))
    billing_run(as_of=D(2026, 4, 15))
    first = Invoice.objects.get(subscription=subscription)
    assert (first.subtotal, first.period_start, first.period_end) == (Decimal("300.00"), D(2026, 4, 15), D(2027, 4, 15))


def test_an_interval_change_over_a_period_not_invoiced_yet_is_refused(prices):
    monthly, yearly = prices
    subscription = subscription_create(
        customer=CustomerFactory(), items=[ItemSpec(price=monthly)], start_date=D(2026, 4, 1)
    )
    with pytest.raises(SubscriptionError, match="not invoiced yet; bill it first"):
        subscription_change_invoice(subscription=subscription, items=[ItemSpec(price=yearly)], as_of=D(2026, 4, 10))
    assert _cycle(subscription)[0] == "month"


def test_an_interval_change_is_audited_with_its_actor(prices):
    monthly, yearly = prices
    clerk = StaffUserFactory(group="Billing clerk")
    subscription = _subscribed(monthly, D(2026, 4, 1))
    subscription_change_invoice(
        subscription=subscription, items=[ItemSpec(price=yearly)], as_of=D(2026, 4, 10), actor=clerk, reason="annual"
    )
    event = SubscriptionEvent.objects.filter(subscription=subscription, actor=clerk).get()
    assert "billed every year from 10 Apr 2026" in event.reason and "annual" in event.reason
