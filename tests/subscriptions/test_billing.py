"""Billing cycles, catch-up, trials, pause/resume, cancel — exact amounts through the invoicing contract."""

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from core.money import CurrencyMismatch
from subscriptions.charges import charges_due, plans_for_chunk, upcoming_invoice
from subscriptions.models import SubscriptionEvent, SubscriptionStatus
from subscriptions.selectors import subscription_ids_due
from subscriptions.services import (
    IntervalMismatch,
    InvalidTransition,
    ItemSpec,
    plans_commit,
    subscription_cancel,
    subscription_create,
    subscription_end_trial,
    subscription_pause,
    subscription_resume,
)
from tests.factories.customers import CustomerFactory
from tests.factories.subscriptions import PriceFactory, SubscriptionFactory
from tests.subscriptions.conftest import amounts, bill

pytestmark = pytest.mark.django_db
D = dt.date


def test_first_invoice_bills_the_first_period_in_advance_at_the_start():
    price = PriceFactory(per_unit=True, unit_amount=Money("29.99", "EUR"), product__name="Pro")
    subscription = SubscriptionFactory(price=price, quantity=5, start_date=D(2026, 3, 1))
    assert charges_due(subscription=subscription, as_of=D(2026, 2, 28)) == []
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 3, 1))
    assert period.billing_reason == "subscription_create"
    assert (period.period_start, period.period_end, period.billing_date) == (
        D(2026, 3, 1),
        D(2026, 4, 1),
        D(2026, 3, 1),
    )
    (line,) = period.lines
    assert line.description == "Pro × 5"
    assert (line.quantity, line.unit_amount, line.amount) == (Decimal(5), Money("29.99", "EUR"), Money("149.95", "EUR"))
    assert (line.kind, line.proration, line.discount_amount) == ("recurring", False, Money(0, "EUR"))
    assert period.days_until_due == 14 and period.collection_method == "send_invoice"


def test_anchor_on_31st_bills_on_clamped_days_for_24_months_including_a_leap_year():
    price = PriceFactory(unit_amount=Money("10.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2027, 1, 31))
    billed = []
    for _ in range(25):
        for period in bill(subscription, subscription.next_billing_date):
            billed.append((period.period_start, period.period_end, amounts(period)))
    starts = [start for start, _, _ in billed]
    assert starts[:3] == [D(2027, 1, 31), D(2027, 2, 28), D(2027, 3, 31)]
    assert D(2028, 2, 29) in starts and D(2028, 3, 31) in starts
    assert starts[-1] == D(2029, 1, 31)
    assert all(end == nxt for (_, end, _), nxt in zip(billed, starts[1:], strict=False))
    assert all(a == [Decimal("10.00")] for _, _, a in billed)


def test_catch_up_after_downtime_bills_each_due_period_exactly_once():
    price = PriceFactory(unit_amount=Money("10.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 1, 31))
    plans = plans_for_chunk(subscription_ids=[subscription.pk], as_of=D(2026, 5, 15))
    assert [p.billing_date for p in plans[0].periods] == [
        D(2026, 1, 31),
        D(2026, 2, 28),
        D(2026, 3, 31),
        D(2026, 4, 30),
    ]
    assert len({p.period_key for p in plans[0].periods}) == 4
    assert plans_commit(plans=plans) == [subscription.pk]
    assert plans_commit(plans=plans) == []  # a second run with the same plans advances nothing
    subscription.refresh_from_db()
    assert (subscription.current_period_start, subscription.next_billing_date) == (D(2026, 4, 30), D(2026, 5, 31))
    assert charges_due(subscription=subscription, as_of=D(2026, 5, 15)) == []


def test_anchor_after_start_makes_a_prorated_first_period():
    price = PriceFactory(unit_amount=Money("31.00", "EUR"), product__name="Basic")
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 3, 10), billing_cycle_anchor=D(2026, 4, 1))
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 3, 10))
    (line,) = period.lines
    assert line.amount == Money("22.00", "EUR")  # 31.00 × 22/31
    assert line.description == "Basic × 1 — prorated 22/31 days from 10 Mar 2026"
    bill(subscription, D(2026, 3, 10))
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert amounts(period) == [Decimal("31.00")]


def test_currency_mismatch_is_rejected():
    customer = CustomerFactory(currency="EUR")
    eur, usd = PriceFactory(), PriceFactory(unit_amount=Money("10", "USD"))
    with pytest.raises(CurrencyMismatch, match="share one currency"):
        subscription_create(customer=customer, items=[ItemSpec(eur), ItemSpec(usd)], start_date=D(2026, 1, 1))
    with pytest.raises(CurrencyMismatch, match="billed in EUR"):
        subscription_create(customer=customer, items=[ItemSpec(usd)], start_date=D(2026, 1, 1))


def test_interval_mismatch_is_rejected():
    customer = CustomerFactory()
    with pytest.raises(IntervalMismatch):
        subscription_create(
            customer=customer,
            items=[ItemSpec(PriceFactory()), ItemSpec(PriceFactory(yearly=True))],
            start_date=D(2026, 1, 1),
        )


def test_trial_charges_nothing_and_the_first_period_starts_when_it_ends():
    price = PriceFactory(unit_amount=Money("20.00", "EUR"), trial_days=14)
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 3, 1), trial_days=None)
    assert subscription.status == SubscriptionStatus.TRIALING
    assert subscription.trial_end == D(2026, 3, 15)
    assert charges_due(subscription=subscription, as_of=D(2026, 3, 14)) == []
    assert list(subscription_ids_due(as_of=D(2026, 3, 14))) == []
    (period,) = bill(subscription, D(2026, 3, 15))
    assert (period.period_start, period.period_end, period.billing_reason) == (
        D(2026, 3, 15),
        D(2026, 4, 15),
        "subscription_cycle",
    )
    assert amounts(period) == [Decimal("20.00")]
    assert subscription.status == SubscriptionStatus.ACTIVE
    event = SubscriptionEvent.objects.filter(subscription=subscription).order_by("pk").last()
    assert (event.from_status, event.to_status, event.reason) == ("trialing", "active", "trial ended")


def test_ending_a_trial_early_bills_from_that_day():
    price = PriceFactory(unit_amount=Money("20.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 3, 1), trial_days=30)
    subscription_end_trial(subscription=subscription, as_of=D(2026, 3, 10))
    assert subscription.status == SubscriptionStatus.ACTIVE
    (period,) = bill(subscription, D(2026, 3, 10))
    assert (period.period_start, period.period_end) == (D(2026, 3, 10), D(2026, 4, 10))
    assert amounts(period) == [Decimal("20.00")]


def test_pause_stops_invoices_and_resume_within_the_period_changes_nothing_else():
    price = PriceFactory(unit_amount=Money("20.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))
    subscription_pause(subscription=subscription, as_of=D(2026, 3, 5))
    assert list(subscription_ids_due(as_of=D(2026, 6, 1))) == []
    assert charges_due(subscription=subscription, as_of=D(2026, 6, 1)) == []
    with pytest.raises(InvalidTransition):
        subscription_pause(subscription=subscription, as_of=D(2026, 3, 6))
    subscription_resume(subscription=subscription, as_of=D(2026, 3, 20))
    assert subscription.next_billing_date == D(2026, 4, 1)
    assert [p.billing_date for p in charges_due(subscription=subscription, as_of=D(2026, 4, 1))] == [D(2026, 4, 1)]


def test_resume_after_the_paid_period_reanchors_and_skips_the_paused_months():
    price = PriceFactory(unit_amount=Money("20.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))
    subscription_pause(subscription=subscription, as_of=D(2026, 3, 5))
    subscription_resume(subscription=subscription, as_of=D(2026, 6, 17))
    (period,) = bill(subscription, D(2026, 6, 17))
    assert (period.period_start, period.period_end, amounts(period)) == (
        D(2026, 6, 17),
        D(2026, 7, 17),
        [Decimal("20.00")],
    )
    statuses = list(SubscriptionEvent.objects.filter(subscription=subscription).values_list("from_status", "to_status"))
    assert ("active", "paused") in statuses and ("paused", "active") in statuses


def test_cancel_at_period_end_bills_nothing_more_and_ends():
    price = PriceFactory(unit_amount=Money("20.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))
    subscription_cancel(subscription=subscription, as_of=D(2026, 3, 10), at_period_end=True)
    assert bill(subscription, D(2026, 4, 1)) == []  # no recurring fee, no usage: nothing to invoice
    assert (subscription.status, subscription.ended_at, subscription.next_billing_date) == (
        "ended",
        D(2026, 4, 1),
        None,
    )
    assert list(subscription_ids_due(as_of=D(2027, 1, 1))) == []


def test_cancel_now_with_prorated_credit():
    price = PriceFactory(per_unit=True, unit_amount=Money("29.99", "EUR"), product__name="Pro")
    subscription = SubscriptionFactory(price=price, quantity=5, start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))
    subscription_cancel(subscription=subscription, as_of=D(2026, 3, 14), prorate_credit=True, reason="moved away")
    assert subscription.status == SubscriptionStatus.CANCELED
    (period,) = bill(subscription, D(2026, 3, 14))
    (line,) = period.lines
    assert line.amount == Money("-87.07", "EUR")
    assert line.description == "Unused time on Pro × 5 from 14 Mar 2026 (18/31 days)"
    assert subscription.next_billing_date is None
    assert charges_due(subscription=subscription, as_of=D(2026, 12, 1)) == []


def test_upcoming_invoice_previews_the_next_period_with_the_same_code_path():
    price = PriceFactory(unit_amount=Money("20.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))
    upcoming = upcoming_invoice(subscription=subscription, as_of=D(2026, 3, 5))
    assert upcoming is not None
    assert (upcoming.billing_date, upcoming.period_start, amounts(upcoming)) == (
        D(2026, 4, 1),
        D(2026, 4, 1),
        [Decimal("20.00")],
    )
    subscription.refresh_from_db()
    assert subscription.next_billing_date == D(2026, 4, 1)  # a preview writes nothing


def test_subscription_ids_due_orders_by_id_and_filters_by_customer():
    price = PriceFactory()
    first = SubscriptionFactory(price=price, start_date=D(2026, 3, 1))
    second = SubscriptionFactory(price=price, start_date=D(2026, 3, 2))
    SubscriptionFactory(price=price, start_date=D(2026, 3, 9))
    assert list(subscription_ids_due(as_of=D(2026, 3, 2))) == [first.pk, second.pk]
    assert list(subscription_ids_due(as_of=D(2026, 3, 2), customer_id=second.customer_id)) == [second.pk]
